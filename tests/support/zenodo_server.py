"""A local, Zenodo-compatible HTTP server for tests and benchmarks (standard library only).

The server binds ``127.0.0.1`` on a free port and serves one Zenodo record built from the
files you register (key -> path on disk, or bytes)::

    GET  /api/records/<id>                          record JSON (current, legacy or entries shape)
    GET  /api/records/<id>/files                    file listing (InvenioRDM shape)
    GET  /api/records/<id>/files/<key>              one file's metadata
    GET  /api/records/<id>/files/<key>/content      the file, always 200 (Range is ignored)
    GET  /records/<id>/files/<key>?download=1       the file, honours one "Range: bytes=..."
    GET  /record/<id>/...                           301 to /records/<id>/... (old URLs)
    GET  /api/records/<id>/versions/latest          302 to the latest version's record JSON

Newer versions of the record (:meth:`ZenodoServer.publish_version`) are served beside it
under their own record ids, all under one concept record (``parent``, ``conceptrecid``,
``versions.is_latest``/``index``); :attr:`ZenodoServer.latest_answer` replaces the
``versions/latest`` answer (a hostile or broken server).

``HEAD`` works everywhere. Every response carries ``Content-Length`` and Zenodo-style
``X-RateLimit-Limit/-Remaining/-Reset`` headers; a fixed-window limiter answers ``429`` with
``Retry-After`` once :attr:`ZenodoServer.rate_limit` requests were made in one window.

``connection_rate`` caps each file body's bytes per second (per connection, like nginx
``limit_rate`` and Zenodo); ``connection_limit`` answers ``429`` with ``Retry-After: 1`` to
file requests beyond that many at once (a storm of 429s on extra connections), and
:attr:`ZenodoServer.max_concurrent` is the most file requests served at once.

Faults are queued per file key (or :data:`RECORD` for the metadata endpoints) with
:meth:`ZenodoServer.inject`; each queued entry is consumed, in order, by one request::

    with ZenodoServer({"crc.zip": path}) as server:
        server.inject("crc.zip", status(503, retry_after=1))
        server.inject("crc.zip", cut_after(1000), slow(50_000))   # both on one request
        server.inject("crc.zip", stall_after(1 << 20))            # then silence, link open
        ...
        assert server.bytes_sent("crc.zip") == ...

Unmodified file bodies go out with ``socket.sendfile`` (zero copy); bodies altered by a
fault are streamed in 1 MiB chunks. ``python -m tests.support.zenodo_server --dir DIR``
serves every ``*.zip`` in ``DIR`` until killed and prints the base URL on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import hashlib
import json
import math
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, Final, Literal, TypeAlias
from urllib.parse import parse_qs, quote, unquote, urlsplit

__all__ = [
    "DEFAULT_HTML",
    "DEFAULT_RECORD_ID",
    "RECORD",
    "VERSIONS",
    "Corrupt",
    "CutAfter",
    "Delay",
    "Fault",
    "FileSource",
    "HtmlPage",
    "IgnoreRange",
    "JsonError",
    "RecordShape",
    "RequestRecord",
    "Slow",
    "StallAfter",
    "StatusFault",
    "ZenodoServer",
    "corrupt",
    "cut_after",
    "delay",
    "html",
    "http_date",
    "ignore_range",
    "json_error",
    "main",
    "running_server",
    "slow",
    "stall_after",
    "status",
]

RECORD: Final = "__record__"
"""Fault key for the metadata endpoints (record JSON, file listing, file metadata)."""

VERSIONS: Final = "__versions__"
"""Fault key for ``/api/records/<id>/versions/latest``."""

DEFAULT_RECORD_ID: Final = 7884735
"""The MedIMeta Zenodo record."""

DEFAULT_HTML: Final = (
    b"<!DOCTYPE html>\n<html><head><title>Zenodo</title></head><body>"
    b"<h1>Zenodo is down for maintenance</h1><p>We will be back shortly.</p>"
    b"</body></html>\n"
)

RecordShape: TypeAlias = Literal["current", "legacy", "entries"]
FileSource: TypeAlias = Path | str | bytes

_CHUNK: Final = 1 << 20
_SENDFILE_PIECE: Final = 8 << 20
_DEFAULT_RATE_LIMIT: Final = 1_000_000
_SOCKET_TIMEOUT: Final = 60.0


# --------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class StatusFault:
    """Answer with ``code`` (and optional ``Retry-After``) instead of the real response."""

    code: int
    retry_after: int | str | None = None
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class CutAfter:
    """Send the full headers but drop the connection after ``n_bytes`` body bytes."""

    n_bytes: int


@dataclass(frozen=True)
class Corrupt:
    """XOR ``length`` body bytes from ``offset`` (relative to this response's body)."""

    offset: int
    xor: int = 0xFF
    length: int = 1


@dataclass(frozen=True)
class HtmlPage:
    """Answer ``code`` with a ``text/html`` page instead of the real response."""

    code: int = 200
    body: bytes = DEFAULT_HTML


@dataclass(frozen=True)
class JsonError:
    """Answer ``code`` with an ``application/json`` error body instead of the real response."""

    code: int = 500
    message: str = "Internal server error."


@dataclass(frozen=True)
class Slow:
    """Throttle the body to ``bytes_per_second``."""

    bytes_per_second: float


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds`` before sending the response headers."""

    seconds: float


@dataclass(frozen=True)
class IgnoreRange:
    """Answer ``200`` with the full body even if a ``Range`` header was sent."""


@dataclass(frozen=True)
class StallAfter:
    """Send ``n_bytes`` body bytes, then hold the connection open, silent, for ``seconds``
    (or until the server stops), then drop it."""

    n_bytes: int
    seconds: float = 3600.0


@dataclass(frozen=True)
class Redirect:
    """Answer ``code`` with a ``Location`` header: ``location``, or (None) the very URL
    asked for, a redirect loop when injected more times than a client follows."""

    location: str | None = None
    code: int = 302


Fault: TypeAlias = (
    StatusFault
    | Redirect
    | CutAfter
    | Corrupt
    | HtmlPage
    | JsonError
    | Slow
    | Delay
    | IgnoreRange
    | StallAfter
)
"""Any of the fault types; combine several in one :meth:`ZenodoServer.inject` call."""


def status(
    code: int,
    retry_after: int | str | None = None,
    body: bytes = b"",
    *,
    content_type: str = "text/plain; charset=utf-8",
) -> StatusFault:
    """Fault: answer ``code``; ``retry_after`` is seconds or an HTTP date (:func:`http_date`)."""
    return StatusFault(code, retry_after, body, content_type)


def redirect(location: str | None = None, code: int = 302) -> Redirect:
    """Fault: redirect to ``location`` (None: the URL asked for itself, a loop)."""
    return Redirect(location, code)


def cut_after(n_bytes: int) -> CutAfter:
    """Fault: announce the full ``Content-Length`` but close after ``n_bytes`` body bytes."""
    if n_bytes < 0:
        raise ValueError("n_bytes must not be negative")
    return CutAfter(n_bytes)


def corrupt(offset: int, xor: int = 0xFF, *, length: int = 1) -> Corrupt:
    """Fault: flip body bytes ``offset..offset+length-1`` (XOR with ``xor``); size unchanged."""
    if offset < 0 or length < 1 or not 0 < xor < 256:
        raise ValueError("need offset >= 0, length >= 1 and 0 < xor < 256")
    return Corrupt(offset, xor, length)


def html(code: int = 200, body: bytes = DEFAULT_HTML) -> HtmlPage:
    """Fault: answer with an HTML page ("Zenodo is down ...") instead of the file."""
    return HtmlPage(code, body)


def json_error(code: int = 500, message: str = "Internal server error.") -> JsonError:
    """Fault: answer ``code`` (e.g. 200 or 500) with ``{"status": code, "message": ...}``."""
    return JsonError(code, message)


def slow(bytes_per_second: float) -> Slow:
    """Fault: throttle the body to ``bytes_per_second``."""
    if bytes_per_second <= 0:
        raise ValueError("bytes_per_second must be positive")
    return Slow(bytes_per_second)


def delay(seconds: float) -> Delay:
    """Fault: wait ``seconds`` before answering."""
    if seconds < 0:
        raise ValueError("seconds must not be negative")
    return Delay(seconds)


def ignore_range() -> IgnoreRange:
    """Fault: ignore the ``Range`` header and answer 200 with the whole file."""
    return IgnoreRange()


def stall_after(n_bytes: int, seconds: float = 3600.0) -> StallAfter:
    """Fault: send ``n_bytes`` body bytes, then go silent for ``seconds`` (the connection
    stays open) and drop the connection."""
    if n_bytes < 0 or seconds < 0:
        raise ValueError("n_bytes and seconds must not be negative")
    return StallAfter(n_bytes, seconds)


def http_date(seconds_from_now: float = 0.0) -> str:
    """An RFC 7231 HTTP date ``seconds_from_now`` in the future (for ``Retry-After``)."""
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


@dataclass(frozen=True)
class _QueuedFaults:
    """Faults applied together to the next matching request."""

    faults: tuple[Fault, ...]
    methods: frozenset[str]


# --------------------------------------------------------------------------- request log


@dataclass
class RequestRecord:
    """One request as seen by the server (live object: updated while the body is sent).

    ``bytes_sent`` counts body bytes handed to the socket; it is updated *before* each write,
    so once a client has received bytes they are already counted. ``headers`` has lower-case
    names. ``endpoint`` is one of ``record``, ``files``, ``file_metadata``, ``download``,
    ``content``, ``redirect``, ``latest`` or ``not_found``. ``client`` is the peer
    ``host:port`` (equal for requests that reused a keep-alive connection).
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    endpoint: str
    key: str | None
    client: str
    started: float
    status: int = 0
    bytes_sent: int = 0
    faults: tuple[str, ...] = ()
    finished: bool = False

    @property
    def range(self) -> str | None:
        """The request's ``Range`` header, if any."""
        return self.headers.get("range")

    @property
    def user_agent(self) -> str | None:
        """The request's ``User-Agent`` header, if any."""
        return self.headers.get("user-agent")


# --------------------------------------------------------------------------- files


class _FileEntry:
    """A served file: a path on disk (re-stat'ed on use) or bytes in memory."""

    def __init__(self, key: str, source: FileSource) -> None:
        self.key = key
        self.path: Path | None = None
        self.data: bytes | None = None
        if isinstance(source, bytes):
            self.data = source
        else:
            self.path = Path(source)
            if not self.path.is_file():
                raise FileNotFoundError(self.path)
        self._lock = threading.Lock()
        self._md5: tuple[tuple[int, int], str] | None = None

    def size(self) -> int:
        """Current size in bytes."""
        if self.data is not None:
            return len(self.data)
        assert self.path is not None
        return self.path.stat().st_size

    def md5(self) -> str:
        """Hex MD5 of the current content (cached while size and mtime are unchanged)."""
        if self.data is not None:
            stamp = (len(self.data), 0)
        else:
            assert self.path is not None
            st = self.path.stat()
            stamp = (st.st_size, st.st_mtime_ns)
        with self._lock:
            if self._md5 is None or self._md5[0] != stamp:
                self._md5 = (stamp, self._compute_md5())
            return self._md5[1]

    def _compute_md5(self) -> str:
        if self.data is not None:
            return hashlib.md5(self.data).hexdigest()
        assert self.path is not None
        digest = hashlib.md5()
        with open(self.path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()


@dataclass
class _Body:
    """A response body: bytes, or ``length`` bytes of an open file from ``start``."""

    data: bytes = b""
    file: IO[bytes] | None = None
    start: int = 0
    length: int = -1

    def __post_init__(self) -> None:
        if self.length < 0:
            self.length = len(self.data)

    def chunks(self, limit: int, size: int) -> Iterator[bytes]:
        """The first ``limit`` body bytes in chunks of at most ``size`` bytes."""
        sent = 0
        if self.file is not None:
            self.file.seek(self.start)
        while sent < limit:
            want = min(size, limit - sent)
            chunk = self.data[sent : sent + want] if self.file is None else self.file.read(want)
            if not chunk:
                raise ConnectionAbortedError("file shrank while being served")
            sent += len(chunk)
            yield chunk


@dataclass
class _Response:
    """Status, headers and body of one response."""

    code: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: _Body = field(default_factory=_Body)


# --------------------------------------------------------------------------- rate limiting


class _RateLimiter:
    """Fixed-window request counter."""

    def __init__(self, limit: int, window: float) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("rate limit and window must be positive")
        self.limit = limit
        self.window = window
        self._lock = threading.Lock()
        self._window_start = 0.0
        self._count = 0

    def hit(self) -> tuple[bool, list[tuple[str, str]], int]:
        """Count one request: (allowed, X-RateLimit headers, seconds until reset)."""
        with self._lock:
            now = time.time()
            if now >= self._window_start + self.window:
                self._window_start = now
                self._count = 0
            self._count += 1
            reset = self._window_start + self.window
            allowed = self._count <= self.limit
            remaining = max(0, self.limit - self._count)
        headers = [
            ("X-RateLimit-Limit", str(self.limit)),
            ("X-RateLimit-Remaining", str(remaining)),
            ("X-RateLimit-Reset", str(math.ceil(reset))),
        ]
        return allowed, headers, max(1, math.ceil(reset - now))


# --------------------------------------------------------------------------- routing

_ROUTES: Final = (
    ("latest", re.compile(r"^/api/records/(?P<rid>[^/]+)/versions/latest/?$")),
    ("content", re.compile(r"^/api/records/(?P<rid>[^/]+)/files/(?P<key>[^/]+)/content/?$")),
    ("file_metadata", re.compile(r"^/api/records/(?P<rid>[^/]+)/files/(?P<key>[^/]+)/?$")),
    ("files", re.compile(r"^/api/records/(?P<rid>[^/]+)/files/?$")),
    ("record", re.compile(r"^/api/records/(?P<rid>[^/]+)/?$")),
    ("download", re.compile(r"^/records/(?P<rid>[^/]+)/files/(?P<key>[^/]+)/?$")),
    ("redirect", re.compile(r"^/record/(?P<rid>[^/]+)(?P<rest>/.*)?$")),
)
_RANGE_RE: Final = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class _Route:
    """Result of matching a request path."""

    endpoint: str
    record_id: str = ""
    key: str | None = None
    rest: str = ""


def _route(raw_path: str) -> _Route:
    """Match a (still percent-encoded) request path against the known endpoints."""
    for endpoint, pattern in _ROUTES:
        match = pattern.match(raw_path)
        if match:
            groups = match.groupdict()
            key = groups.get("key")
            return _Route(
                endpoint,
                unquote(groups["rid"]),
                unquote(key) if key is not None else None,
                groups.get("rest") or "",
            )
    return _Route("not_found")


def _parse_range(value: str, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """Parse a single byte range: inclusive ``(first, last)``, ``"unsatisfiable"``, or
    ``None`` when the header must be ignored (syntax error, several ranges, last < first)."""
    match = _RANGE_RE.match(value)
    if not match or not (match.group(1) or match.group(2)):
        return None
    first_text, last_text = match.groups()
    if not first_text:  # suffix range "bytes=-N"
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - suffix), size - 1
    first = int(first_text)
    if first >= size:
        return "unsatisfiable"
    last = int(last_text) if last_text else size - 1
    if last < first:
        return None
    return first, min(last, size - 1)


# --------------------------------------------------------------------------- HTTP plumbing


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its :class:`ZenodoServer` and its open connections."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: ZenodoServer) -> None:
        super().__init__(address, _Handler)
        self.app = app
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Remember the connection so :meth:`close_connections` can abort it."""
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Forget and close a finished connection."""
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Abort every open connection (clients mid-transfer see the connection drop)."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that went away; report anything else."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Serves one connection (HTTP/1.1, keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "ZenodoTestServer/1.0"
    sys_version = ""
    timeout = _SOCKET_TIMEOUT
    server: _HTTPServer

    def do_GET(self) -> None:
        """Handle GET."""
        self._handle(head=False)

    def do_HEAD(self) -> None:
        """Handle HEAD (same headers as GET, no body)."""
        self._handle(head=True)

    def do_POST(self) -> None:
        """Reject writes like a read-only record would."""
        self._handle(head=False, allowed=False)

    do_PUT = do_POST
    do_DELETE = do_POST

    def version_string(self) -> str:
        """The ``Server`` header value."""
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log (see :attr:`ZenodoServer.requests`)."""

    # ---- request handling

    def _handle(self, *, head: bool, allowed: bool = True) -> None:
        app = self.server.app
        parts = urlsplit(self.path)
        route = _route(parts.path) if allowed else _Route("not_found")
        record = RequestRecord(
            method=self.command,
            path=unquote(parts.path),
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in self.headers.items()},
            endpoint=route.endpoint,
            key=route.key if route.endpoint in ("download", "content") else None,
            client=f"{self.client_address[0]}:{self.client_address[1]}",
            started=time.time(),
        )
        app._log_start(record)
        counted = record.endpoint in ("download", "content") and self.command == "GET"
        if counted:
            app._file_started()
        if not allowed:
            self.close_connection = True  # the request body (if any) is not read
        body_file: IO[bytes] | None = None
        try:
            allowed_rate, rate_headers, retry_after = app._rate_limiter.hit()
            if not allowed_rate:
                response = _json_response(429, {"status": 429, "message": "Too Many Requests"})
                response.headers.append(("Retry-After", str(retry_after)))
                self._send(response, rate_headers, record, head=head)
                return
            crowded = app._crowded() if counted else None
            if crowded is not None:
                response = _json_response(429, {"status": 429, "message": "Too many connections"})
                response.headers.append(("Retry-After", str(crowded)))
                record.faults = ("TooManyConnections",)
                self._send(response, rate_headers, record, head=head)
                return
            fault_key = self._fault_key(route)
            faults = app._take_faults(fault_key, self.command) if fault_key else ()
            record.faults = tuple(type(f).__name__ for f in faults)
            for fault in faults:
                if isinstance(fault, Delay) and not app._sleep(fault.seconds):
                    raise ConnectionAbortedError("server stopping")
            try:
                response = _replacement_response(faults, self.path) or self._normal_response(
                    app, route, faults, parts.query, allowed
                )
            except OSError as exc:  # e.g. a registered file vanished from disk
                response = _json_response(500, {"status": 500, "message": str(exc)})
            body_file = response.body.file
            self._send(response, rate_headers, record, head=head, faults=faults)
        except OSError:
            self.close_connection = True
        finally:
            if body_file is not None:
                body_file.close()
            if counted:
                app._file_finished()
            app._log_finish(record)

    @staticmethod
    def _fault_key(route: _Route) -> str | None:
        if route.endpoint in ("download", "content"):
            return route.key
        if route.endpoint in ("record", "files", "file_metadata"):
            return RECORD
        if route.endpoint == "latest":
            return VERSIONS
        return None

    def _normal_response(
        self,
        app: ZenodoServer,
        route: _Route,
        faults: tuple[Fault, ...],
        query: str,
        allowed: bool,
    ) -> _Response:
        if not allowed:
            return _json_response(405, {"status": 405, "message": "Method not allowed."})
        rid = app._served_id(route.record_id)
        if route.endpoint == "not_found" or rid is None:
            return _json_response(404, {"status": 404, "message": "PID does not exist."})
        if route.endpoint == "redirect":
            location = f"/records/{quote(route.record_id)}{route.rest}"
            response = _json_response(301, {"status": 301, "location": location})
            response.headers.append(("Location", location + (f"?{query}" if query else "")))
            return response
        if route.endpoint == "latest":
            if app.latest_answer is not None:
                return _json_response(200, app.latest_answer)
            location = f"/api/records/{app.latest_id}"
            response = _json_response(302, {"status": 302, "location": location})
            response.headers.append(("Location", location))
            return response
        if route.endpoint == "record":
            return _json_response(200, app.record_json(rid))
        if route.endpoint == "files":
            return _json_response(200, app._files_listing_json(rid))
        assert route.key is not None
        entry = app._entry(route.key, rid)
        if entry is None:
            return _json_response(404, {"status": 404, "message": "File not found."})
        if route.endpoint == "file_metadata":
            return _json_response(200, app._entry_json(entry, "entries", rid))
        honour_range = (
            route.endpoint == "download"
            and app.ranges_enabled
            and not any(isinstance(f, IgnoreRange) for f in faults)
        )
        return self._file_response(app, entry, route.endpoint, honour_range)

    def _file_response(
        self, app: ZenodoServer, entry: _FileEntry, endpoint: str, honour_range: bool
    ) -> _Response:
        if entry.data is not None:
            body = _Body(data=entry.data)
        else:
            assert entry.path is not None
            fh = open(entry.path, "rb")  # noqa: SIM115 - closed by _handle
            body = _Body(file=fh, length=os.fstat(fh.fileno()).st_size)
        size = body.length
        headers = [
            ("Content-Type", "application/octet-stream"),
            ("Content-Disposition", f'attachment; filename="{entry.key}"'),
        ]
        if endpoint == "download":
            headers.append(("Accept-Ranges", "bytes" if app.ranges_enabled else "none"))
        range_header = self.headers.get("Range")
        if not honour_range or range_header is None:
            return _Response(200, headers, app._tampered_body(entry.key, body, 0, size - 1))
        parsed = _parse_range(range_header, size)
        if parsed is None:
            return _Response(200, headers, body)
        if parsed == "unsatisfiable":
            if body.file is not None:
                body.file.close()
            headers.append(("Content-Range", f"bytes */{size}"))
            return _Response(416, headers, _Body())
        first, last = parsed
        headers.append(("Content-Range", f"bytes {first}-{last}/{size}"))
        body.start += first
        body.length = last - first + 1
        if body.file is None:
            body.data = body.data[first : last + 1]
            body.start = 0
        return _Response(206, headers, app._tampered_body(entry.key, body, first, last))

    # ---- response writing

    def _send(
        self,
        response: _Response,
        rate_headers: list[tuple[str, str]],
        record: RequestRecord,
        *,
        head: bool,
        faults: tuple[Fault, ...] = (),
    ) -> None:
        record.status = response.code
        self.send_response(response.code)
        for name, value in (*response.headers, *rate_headers):
            self.send_header(name, value)
        self.send_header("Content-Length", str(response.body.length))
        self.end_headers()
        if head or response.body.length == 0:
            return
        cut = next((f.n_bytes for f in faults if isinstance(f, CutAfter)), None)
        stall = next((f for f in faults if isinstance(f, StallAfter)), None)
        if stall is not None:
            cut = stall.n_bytes if cut is None else min(cut, stall.n_bytes)
        corrupts = [f for f in faults if isinstance(f, Corrupt)]
        rate = next((f.bytes_per_second for f in faults if isinstance(f, Slow)), None)
        if rate is None and record.endpoint in ("download", "content") and response.code < 300:
            rate = self.server.app.connection_rate  # each connection capped, like nginx
        limit = response.body.length if cut is None else min(cut, response.body.length)
        if response.body.file is not None and not corrupts and rate is None:
            self._sendfile(response.body, limit, record)
        else:
            self._write_chunks(response.body, limit, record, corrupts, rate)
        if stall is not None:
            self.server.app._sleep(stall.seconds)  # silent, the connection open
        if limit < response.body.length:
            self.close_connection = True  # the "dropped link": EOF before Content-Length

    def _sendfile(self, body: _Body, limit: int, record: RequestRecord) -> None:
        assert body.file is not None
        sent = 0
        while sent < limit:
            piece = min(_SENDFILE_PIECE, limit - sent)
            record.bytes_sent += piece
            done = 0
            try:
                done = self.connection.sendfile(body.file, body.start + sent, piece)
            finally:
                record.bytes_sent -= piece - done
            if done == 0:
                raise ConnectionAbortedError("file shrank while being served")
            sent += done

    def _write_chunks(
        self,
        body: _Body,
        limit: int,
        record: RequestRecord,
        corrupts: list[Corrupt],
        rate: float | None,
    ) -> None:
        app = self.server.app
        chunk_size = _CHUNK if rate is None else max(1, min(256 * 1024, int(rate / 20)))
        started = time.monotonic()
        position = 0
        for chunk in body.chunks(limit, chunk_size):
            if corrupts:
                chunk = _apply_corruption(chunk, position, corrupts)
            if rate is not None:
                wait = started + (position + len(chunk)) / rate - time.monotonic()
                if wait > 0 and not app._sleep(wait):
                    raise ConnectionAbortedError("server stopping")
            record.bytes_sent += len(chunk)
            try:
                self.wfile.write(chunk)
            except OSError:
                record.bytes_sent -= len(chunk)
                raise
            position += len(chunk)


def _json_response(code: int, payload: Any) -> _Response:
    """A JSON response."""
    data = json.dumps(payload, indent=None, separators=(",", ":")).encode()
    return _Response(code, [("Content-Type", "application/json")], _Body(data=data))


def _replacement_response(faults: Iterable[Fault], path: str) -> _Response | None:
    """The response dictated by the first status/redirect/html/json fault, if any."""
    for fault in faults:
        if isinstance(fault, Redirect):
            location = path if fault.location is None else fault.location
            return _Response(fault.code, [("Location", location)], _Body(data=b""))
        if isinstance(fault, StatusFault):
            response = _Response(
                fault.code, [("Content-Type", fault.content_type)], _Body(data=fault.body)
            )
            if fault.retry_after is not None:
                response.headers.append(("Retry-After", str(fault.retry_after)))
            return response
        if isinstance(fault, HtmlPage):
            return _Response(
                fault.code, [("Content-Type", "text/html; charset=utf-8")], _Body(data=fault.body)
            )
        if isinstance(fault, JsonError):
            return _json_response(fault.code, {"status": fault.code, "message": fault.message})
    return None


def _apply_corruption(chunk: bytes, position: int, corrupts: list[Corrupt]) -> bytes:
    """``chunk`` (body bytes ``position..``) with the corrupted ranges XOR-ed."""
    end = position + len(chunk)
    hits = [c for c in corrupts if c.offset < end and c.offset + c.length > position]
    if not hits:
        return chunk
    buf = bytearray(chunk)
    for fault in hits:
        for i in range(max(fault.offset, position), min(fault.offset + fault.length, end)):
            buf[i - position] ^= fault.xor
    return bytes(buf)


# --------------------------------------------------------------------------- public server


class ZenodoServer:
    """A Zenodo look-alike serving one record on ``127.0.0.1`` from a background thread.

    Use it as a context manager (``with ZenodoServer(files) as server: ...``) or call
    :meth:`start`/:meth:`stop`. Options may be changed while it runs:
    :attr:`record_shape` (or the :attr:`legacy_shape`/:attr:`entries_shape` flags),
    :attr:`ranges_enabled`, :meth:`set_rate_limit`, :meth:`replace_file`,
    :meth:`publish_version`, :attr:`latest_answer`.
    """

    def __init__(
        self,
        files: Mapping[str, FileSource] | None = None,
        *,
        record_id: int = DEFAULT_RECORD_ID,
        host: str = "127.0.0.1",
        port: int = 0,
        version: str = "1.0",
        title: str = "MedIMeta: A Multi-Domain Multi-Task Meta-Dataset for Medical Imaging",
        legacy_shape: bool = False,
        entries_shape: bool = False,
        ranges_enabled: bool = True,
        rate_limit: int = _DEFAULT_RATE_LIMIT,
        rate_window: float = 60.0,
        connection_rate: float | None = None,
        connection_limit: int | None = None,
    ) -> None:
        """Create (but do not start) a server; ``files`` maps keys to paths or bytes.

        ``connection_rate`` caps every file body at that many bytes per second (per
        connection, like nginx ``limit_rate`` or Zenodo); ``connection_limit`` answers
        429 with ``Retry-After: 1`` to file requests beyond that many at once."""
        if legacy_shape and entries_shape:
            raise ValueError("choose at most one of legacy_shape and entries_shape")
        self.record_id = record_id
        self.version = version
        #: The concept record every version belongs to (Zenodo's ``conceptrecid``).
        self.concept_id = record_id - 1
        #: Newer versions, oldest first: record id -> (version, publication date, files).
        self._newer: dict[int, tuple[str, str, dict[str, _FileEntry]]] = {}
        #: When set, ``versions/latest`` answers 200 with this JSON instead of redirecting to
        #: the latest version (a hostile or broken server).
        self.latest_answer: Any = None
        self.title = title
        self.record_shape: RecordShape = (
            "legacy" if legacy_shape else "entries" if entries_shape else "current"
        )
        self.ranges_enabled = ranges_enabled
        #: key -> (tampered bytes of the file, whether only tail ranges get them)
        self._tampered: dict[str, tuple[bytes, bool]] = {}
        self._host = host
        self._port = port
        self._rate_limiter = _RateLimiter(rate_limit, rate_window)
        self._files: dict[str, _FileEntry] = {}
        self._files_lock = threading.Lock()
        self._faults: dict[str, deque[_QueuedFaults]] = {}
        self._faults_lock = threading.Lock()
        self._log: list[RequestRecord] = []
        self._log_cond = threading.Condition()
        self._in_flight = 0
        self.connection_rate = connection_rate
        self.connection_limit = connection_limit
        self._files_in_flight = 0
        self._most_files_in_flight = 0
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        for key, source in (files or {}).items():
            self.add_file(key, source)

    # ---- lifecycle

    def start(self) -> ZenodoServer:
        """Bind and serve in a daemon thread; returns ``self``."""
        if self._httpd is not None:
            raise RuntimeError("server already started")
        self._httpd = _HTTPServer((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"zenodo-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, abort open connections (even mid-transfer) and close the socket."""
        httpd = self._httpd
        if httpd is None or self._stopping.is_set():
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
        self.wait_idle(timeout)

    def __enter__(self) -> ZenodoServer:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    # ---- addresses

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self._host}:{self.port}"

    @property
    def record_url(self) -> str:
        """Record API URL, ``<url>/api/records/<id>``."""
        return f"{self.url}/api/records/{self.record_id}"

    def download_url(self, key: str, record_id: int | None = None) -> str:
        """Range-capable download URL ``<url>/records/<id>/files/<key>?download=1``."""
        rid = self.record_id if record_id is None else record_id
        return f"{self.url}/records/{rid}/files/{quote(key, safe='')}?download=1"

    def content_url(self, key: str, record_id: int | None = None) -> str:
        """API content URL ``<record_url>/files/<key>/content`` (ignores Range)."""
        return f"{self.file_api_url(key, record_id)}/content"

    def file_api_url(self, key: str, record_id: int | None = None) -> str:
        """API URL of one file's metadata, ``<record_url>/files/<key>``."""
        rid = self.record_id if record_id is None else record_id
        return f"{self.url}/api/records/{rid}/files/{quote(key, safe='')}"

    # ---- versions

    def publish_version(
        self,
        files: Mapping[str, FileSource] | None = None,
        *,
        record_id: int | None = None,
        version: str | None = None,
        published: str = "2025-03-01",
    ) -> int:
        """Publish a newer version of the record under the same concept and return its
        record id (by default the latest id + 1). ``files`` maps keys to paths or bytes;
        by default the latest version's files, unchanged. The record served so far stays
        served (no longer the latest), as Zenodo keeps every version."""
        latest = self.latest_id
        rid = latest + 1 if record_id is None else record_id
        if rid <= latest or rid == self.concept_id:
            raise ValueError(f"a newer version needs a record id above {latest}")
        if files is None:
            entries = dict(self._version_files(latest))
        else:
            entries = {key: _FileEntry(key, source) for key, source in files.items()}
        index = len(self._newer) + 2
        with self._files_lock:
            self._newer[rid] = (version or f"{index}.0", published, entries)
        return rid

    @property
    def latest_id(self) -> int:
        """The record id of the latest version."""
        with self._files_lock:
            return max([self.record_id, *self._newer])

    def _served_id(self, text: str) -> int | None:
        """The record id a path names, if it is one of the versions served."""
        with self._files_lock:
            ids = {str(self.record_id): self.record_id, **{str(r): r for r in self._newer}}
        return ids.get(text)

    def _version_files(self, record_id: int) -> dict[str, _FileEntry]:
        with self._files_lock:
            if record_id in self._newer:
                return dict(self._newer[record_id][2])
            return dict(self._files)

    # ---- files and options

    def add_file(self, key: str, source: FileSource) -> None:
        """Register (or replace) file ``key``; ``source`` is a path or the bytes themselves."""
        if not key or "/" in key:
            raise ValueError(f"invalid file key {key!r}")
        entry = _FileEntry(key, source)
        with self._files_lock:
            self._files[key] = entry

    def tamper(self, key: str, data: bytes, *, tail_only: bool = True) -> None:
        """Answer with bytes of ``data`` (a tampered copy of the file, of its size) instead of
        the file's, while the record keeps listing the genuine size and md5: for range
        requests that start after byte 0 and end at the file's end (``tail_only``: how a
        client reads a zip's central directory ahead), or for every request. Not consumed."""
        with self._files_lock:
            entry = self._files[key]
            if len(data) != entry.size():
                raise ValueError("a tampered copy must have the file's size")
            self._tampered[key] = (data, tail_only)

    def untamper(self, key: str) -> None:
        """Answer with the genuine bytes of ``key`` again (the server was fixed)."""
        with self._files_lock:
            self._tampered.pop(key, None)

    def _tampered_body(self, key: str, body: _Body, first: int, last: int) -> _Body:
        """``body``, or bytes ``first..last`` of the tampered copy where :meth:`tamper` says."""
        with self._files_lock:
            found = self._tampered.get(key)
        if found is None:
            return body
        data, tail_only = found
        if tail_only and not (first > 0 and last == len(data) - 1):
            return body
        if body.file is not None:
            body.file.close()
        return _Body(data=data[first : last + 1])

    def replace_file(self, key: str, source: FileSource) -> None:
        """Swap the content of an existing key ("upstream changed": new size and md5)."""
        with self._files_lock:
            if key not in self._files:
                raise KeyError(key)
            self._files[key] = _FileEntry(key, source)

    def remove_file(self, key: str) -> None:
        """Unregister file ``key`` (it then answers 404)."""
        with self._files_lock:
            del self._files[key]

    @property
    def keys(self) -> list[str]:
        """Registered file keys in registration order."""
        with self._files_lock:
            return list(self._files)

    def file_size(self, key: str) -> int:
        """Current size of file ``key``."""
        return self._require_entry(key).size()

    def file_md5(self, key: str) -> str:
        """Current hex MD5 of file ``key``."""
        return self._require_entry(key).md5()

    @property
    def legacy_shape(self) -> bool:
        """Whether the record JSON uses the old ``filename/filesize/links.download`` shape."""
        return self.record_shape == "legacy"

    @legacy_shape.setter
    def legacy_shape(self, value: bool) -> None:
        self.record_shape = "legacy" if value else "current"

    @property
    def entries_shape(self) -> bool:
        """Whether the record JSON uses the ``files.entries`` mapping shape."""
        return self.record_shape == "entries"

    @entries_shape.setter
    def entries_shape(self, value: bool) -> None:
        self.record_shape = "entries" if value else "current"

    @property
    def rate_limit(self) -> int:
        """Requests allowed per rate window."""
        return self._rate_limiter.limit

    def set_rate_limit(self, limit: int, window: float = 60.0) -> None:
        """Allow ``limit`` requests per ``window`` seconds from now on (counter reset)."""
        self._rate_limiter = _RateLimiter(limit, window)

    # ---- faults

    def inject(
        self,
        key: str,
        *faults: Fault,
        times: int = 1,
        methods: Iterable[str] = ("GET",),
    ) -> None:
        """Queue ``faults`` for the next ``times`` requests to ``key`` (or :data:`RECORD`).

        All ``faults`` of one call apply together to one request (e.g. ``cut_after`` plus
        ``slow``). Queued entries are consumed in order; a request whose method is not in
        the head entry's ``methods`` leaves the queue untouched (HEAD does not consume the
        GET faults by default). Of status/html/json faults only the first one counts.
        """
        if not faults:
            raise ValueError("inject needs at least one fault")
        if times < 1:
            raise ValueError("times must be at least 1")
        entry = _QueuedFaults(tuple(faults), frozenset(m.upper() for m in methods))
        with self._faults_lock:
            self._faults.setdefault(key, deque()).extend([entry] * times)

    def pending_faults(self, key: str) -> int:
        """Number of queued, not yet consumed fault entries for ``key``."""
        with self._faults_lock:
            return len(self._faults.get(key, ()))

    def clear_faults(self, key: str | None = None) -> None:
        """Drop queued faults for ``key`` (all keys if ``None``)."""
        with self._faults_lock:
            if key is None:
                self._faults.clear()
            else:
                self._faults.pop(key, None)

    # ---- request log

    @property
    def requests(self) -> list[RequestRecord]:
        """Snapshot list of all requests so far (the records themselves are live)."""
        with self._log_cond:
            return list(self._log)

    def requests_for(
        self, key: str, *, method: str | None = None, endpoint: str | None = None
    ) -> list[RequestRecord]:
        """Requests that served (or tried to serve) file ``key``; ``RECORD`` for metadata."""
        if key == RECORD:
            selected = [r for r in self.requests if r.endpoint in ("record", "files")]
        else:
            selected = [r for r in self.requests if r.key == key]
        return [
            r
            for r in selected
            if (method is None or r.method == method)
            and (endpoint is None or r.endpoint == endpoint)
        ]

    @property
    def max_concurrent(self) -> int:
        """The most file requests (downloads) served at once so far."""
        with self._log_cond:
            return self._most_files_in_flight

    def bytes_sent(self, key: str) -> int:
        """Total body bytes sent for file ``key`` over all requests."""
        return sum(r.bytes_sent for r in self.requests_for(key))

    def clear_log(self) -> None:
        """Forget all logged requests."""
        with self._log_cond:
            self._log.clear()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no request is being handled; ``False`` on timeout."""
        with self._log_cond:
            return self._log_cond.wait_for(lambda: self._in_flight == 0, timeout)

    # ---- JSON documents

    def record_json(self, record_id: int | None = None) -> dict[str, Any]:
        """The record document of a version (by default the first one served) in the
        current :attr:`record_shape`."""
        rid = self.record_id if record_id is None else record_id
        entries = list(self._version_files(rid).values())
        with self._files_lock:
            ids = [self.record_id, *self._newer]
            version, published, _ = self._newer.get(rid, (self.version, "2023-05-01", {}))
        index, is_latest, concept = ids.index(rid) + 1, rid == max(ids), self.concept_id
        doi = f"10.5281/zenodo.{rid}"
        files: Any
        if self.record_shape == "entries":
            files = {
                "enabled": True,
                "entries": {e.key: self._entry_json(e, "entries", rid) for e in entries},
                "count": len(entries),
                "total_bytes": sum(e.size() for e in entries),
                "order": [],
                "default_preview": None,
            }
        else:
            files = [self._entry_json(e, self.record_shape, rid) for e in entries]
        return {
            "created": "2023-05-01T12:00:00.000000+00:00",
            "modified": "2024-01-15T09:30:00.000000+00:00",
            "updated": "2024-01-15T09:30:00.000000+00:00",
            "id": rid,
            "recid": str(rid),
            "conceptrecid": str(concept),
            "parent": {"id": str(concept)},
            "versions": {"is_latest": is_latest, "index": index},
            "doi": doi,
            "conceptdoi": f"10.5281/zenodo.{concept}",
            "doi_url": f"https://doi.org/{doi}",
            "title": self.title,
            "metadata": {
                "title": self.title,
                "doi": doi,
                "publication_date": published,
                "description": "<p>MedIMeta test record served by tests.support.</p>",
                "access_right": "open",
                "creators": [{"name": "Woerner, Stefano"}, {"name": "Baumgartner, Christian F."}],
                "version": version,
                "license": {"id": "cc-by-sa-4.0"},
                "resource_type": {"title": "Dataset", "type": "dataset"},
                "relations": {
                    "version": [
                        {
                            "index": index - 1,
                            "is_last": is_latest,
                            "parent": {"pid_type": "recid", "pid_value": str(concept)},
                        }
                    ]
                },
            },
            "links": {
                "self": f"{self.url}/api/records/{rid}",
                "html": f"{self.url}/records/{rid}",
                "doi": f"https://doi.org/{doi}",
                "files": f"{self.url}/api/records/{rid}/files",
                "latest": f"{self.url}/api/records/{rid}/versions/latest",
                "latest_html": f"{self.url}/records/{rid}/latest",
            },
            "files": files,
            "swh": {},
            "owners": [{"id": 1}],
            "status": "published",
            "state": "done",
            "submitted": True,
            "revision": 3,
            "stats": {"downloads": 0, "unique_downloads": 0, "views": 0, "unique_views": 0},
        }

    def _entry_json(
        self, entry: _FileEntry, shape: RecordShape, record_id: int | None = None
    ) -> dict[str, Any]:
        """One file of a version (by default the first one served) in the given shape."""
        rid = self.record_id if record_id is None else record_id
        file_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{rid}/{entry.key}"))
        size, md5 = entry.size(), entry.md5()
        if shape == "legacy":
            return {
                "id": file_id,
                "filename": entry.key,
                "filesize": size,
                "checksum": md5,
                "links": {
                    "download": self.download_url(entry.key, rid),
                    "self": self.file_api_url(entry.key, rid),
                },
            }
        if shape == "entries":
            return {
                "key": entry.key,
                "file_id": file_id,
                "size": size,
                "checksum": f"md5:{md5}",
                "mimetype": "application/zip",
                "status": "completed",
                "storage_class": "L",
                "links": {
                    "self": self.file_api_url(entry.key, rid),
                    "content": self.content_url(entry.key, rid),
                },
            }
        return {
            "id": file_id,
            "key": entry.key,
            "size": size,
            "checksum": f"md5:{md5}",
            "links": {"self": self.content_url(entry.key, rid)},
        }

    def _files_listing_json(self, record_id: int | None = None) -> dict[str, Any]:
        """``/api/records/<id>/files`` document."""
        rid = self.record_id if record_id is None else record_id
        entries = self._version_files(rid).values()
        return {
            "enabled": True,
            "entries": [self._entry_json(e, "entries", rid) for e in entries],
            "default_preview": None,
            "order": [],
            "links": {"self": f"{self.url}/api/records/{rid}/files"},
        }

    # ---- internals used by the handler

    def _entries(self) -> list[_FileEntry]:
        with self._files_lock:
            return list(self._files.values())

    def _entry(self, key: str, record_id: int | None = None) -> _FileEntry | None:
        with self._files_lock:
            if record_id is not None and record_id in self._newer:
                return self._newer[record_id][2].get(key)
            return self._files.get(key)

    def _require_entry(self, key: str) -> _FileEntry:
        entry = self._entry(key)
        if entry is None:
            raise KeyError(key)
        return entry

    def _take_faults(self, key: str, method: str) -> tuple[Fault, ...]:
        with self._faults_lock:
            queue = self._faults.get(key)
            if not queue or method.upper() not in queue[0].methods:
                return ()
            return queue.popleft().faults

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the server stops meanwhile; ``False`` if it is stopping."""
        return not self._stopping.wait(seconds)

    def _log_start(self, record: RequestRecord) -> None:
        with self._log_cond:
            self._log.append(record)
            self._in_flight += 1

    def _file_started(self) -> None:
        with self._log_cond:
            self._files_in_flight += 1
            self._most_files_in_flight = max(self._most_files_in_flight, self._files_in_flight)

    def _file_finished(self) -> None:
        with self._log_cond:
            self._files_in_flight -= 1

    def _crowded(self) -> int | None:
        """``Retry-After`` seconds when this file request is beyond the connection limit."""
        with self._log_cond:
            limit = self.connection_limit
            return 1 if limit is not None and self._files_in_flight > limit else None

    def _log_finish(self, record: RequestRecord) -> None:
        with self._log_cond:
            record.finished = True
            self._in_flight -= 1
            self._log_cond.notify_all()


def running_server(
    files: Mapping[str, FileSource] | None = None, **options: Any
) -> Iterator[ZenodoServer]:
    """Generator for pytest fixtures: ``yield from running_server({...})``.

    Starts a :class:`ZenodoServer` with ``options``, yields it, and stops it afterwards.
    """
    with ZenodoServer(files, **options) as server:
        yield server


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """Serve every ``*.zip`` in ``--dir`` and print the base URL; run until killed."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.zenodo_server", description=main.__doc__
    )
    parser.add_argument("--dir", type=Path, required=True, help="folder with <id>.zip files")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: any free port)")
    parser.add_argument("--record-id", type=int, default=DEFAULT_RECORD_ID)
    parser.add_argument("--rate-limit", type=int, default=_DEFAULT_RATE_LIMIT)
    parser.add_argument("--shape", choices=("current", "legacy", "entries"), default="current")
    parser.add_argument(
        "--connection-rate", type=float, default=None, help="bytes/s per connection (none)"
    )
    args = parser.parse_args(argv)
    archives = sorted(args.dir.glob("*.zip"))
    if not archives:
        parser.error(f"no *.zip files in {args.dir}")
    server = ZenodoServer(
        {path.name: path for path in archives},
        record_id=args.record_id,
        port=args.port,
        rate_limit=args.rate_limit,
        connection_rate=args.connection_rate,
    )
    server.record_shape = args.shape
    for key in server.keys:
        server.file_md5(key)  # hash big files now, not on the first record request
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with server:
        print(server.url, flush=True)
        while not stop.wait(0.1):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
