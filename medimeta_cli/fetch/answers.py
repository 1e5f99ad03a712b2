"""The server's answer to a range request, opened and classified in one place.

Every transfer asks for bytes of an archive the same way (``GET`` with ``Range`` and
``Accept-Encoding: identity``: the bytes hashed must be the archive's, never a proxy's
gzip of it) and meets the same answers: the bytes asked for (206, at the start asked for
and of the archive's size), the whole file (200: the range was ignored), a range the
server will not serve (416), the file gone (404), "fewer requests, please" (429, 403,
503...), an HTML page or a JSON message instead of the archive, another status.
:func:`open_range` asks and tells which; nothing else in :mod:`medimeta_cli.fetch`
reads a status code or a ``Content-Range``. :func:`check_zip_start` is the one check
that the first bytes of an archive look like a zip.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum

import httpx

from medimeta_cli.errors import NetworkError, RemoteDataError
from medimeta_cli.zenodo.client import RemoteClient, content_range, parse_retry_after

logger = logging.getLogger(__name__)

#: How a zip archive starts: a local header, or the end record of an empty archive.
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
#: Statuses that mean "fewer connections, or wait, please" (or a passing server error).
_THROTTLE_STATUSES = frozenset({403, 408, 425, 429, 500, 502, 503, 504})
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_JSON_TYPES = ("application/json", "application/problem+json")


class RangesUnsupported(RemoteDataError):
    """The server answered a range request with the whole file."""


class Kind(str, Enum):
    """What the server answered to a range request."""

    PARTIAL = "partial content"  # 206 at the start asked for (and the expected total)
    WRONG_RANGE = "unexpected Content-Range"  # 206, but not the bytes asked for
    WHOLE = "whole file"  # 200: the range was ignored
    UNSATISFIABLE = "range not satisfiable"  # 416
    NOT_FOUND = "not found"  # 404
    THROTTLED = "throttled"  # 429, 403, 503...: wait, or fewer connections
    NOT_ARCHIVE = "not an archive"  # an HTML page or a JSON message instead of bytes
    HTTP_ERROR = "HTTP error"  # any other status


@dataclass(frozen=True)
class Answer:
    """A classified answer; its body is read from :attr:`response` (as it streams)."""

    kind: Kind
    status: int
    response: httpx.Response
    #: First byte and total size the ``Content-Range`` of a 206 says (total None: ``*``).
    start: int | None = None
    total: int | None = None
    #: Seconds the server asked to wait (``Retry-After``), for a throttled answer.
    retry_after: float | None = None
    #: What the server said instead of the archive (an HTML page, a JSON message).
    detail: str = ""

    def refuse(self, key: str, url: str) -> RemoteDataError | NetworkError:
        """The error that tells a user what this answer is, for an answer no transfer
        can use (not found, not an archive, another status)."""
        if self.kind is Kind.NOT_FOUND:
            return RemoteDataError(
                f"{key} was not found at {url} (HTTP 404)",
                hint="The record may have changed; check MEDIMETA_BASE_URL and MEDIMETA_RECORD.",
            )
        if self.kind is Kind.NOT_ARCHIVE and self.detail == "html":
            return RemoteDataError(
                f"the server sent an HTML page instead of {key} ({url})",
                hint="Zenodo may be in maintenance, or a proxy is intercepting; try again later.",
            )
        if self.kind is Kind.NOT_ARCHIVE:
            return RemoteDataError(
                f"the server sent a JSON message instead of {key}: {self.detail}"
            )
        return NetworkError(f"HTTP {self.status} for {url}")


def classify(response: httpx.Response, start: int, total: int | None) -> Answer:
    """What ``response`` is, for a request of the bytes from ``start`` of a file of
    ``total`` bytes (None: not known yet)."""
    status = response.status_code
    if status in (200, 206):
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type in _HTML_TYPES:
            return Answer(Kind.NOT_ARCHIVE, status, response, detail="html")
        if content_type in _JSON_TYPES:
            body = response.read()[:500].decode("utf-8", "replace").strip()
            return Answer(Kind.NOT_ARCHIVE, status, response, detail=body or "(empty)")
    if status == 206:
        found = content_range(response)
        if found is None:
            return Answer(Kind.WRONG_RANGE, status, response)
        first, size = found
        right = first == start and (total is None or size is None or size == total)
        kind = Kind.PARTIAL if right else Kind.WRONG_RANGE
        return Answer(kind, status, response, start=first, total=size)
    if status == 200:
        return Answer(Kind.WHOLE, status, response)
    if status == 416:
        return Answer(Kind.UNSATISFIABLE, status, response)
    if status == 404:
        return Answer(Kind.NOT_FOUND, status, response)
    if status in _THROTTLE_STATUSES:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return Answer(Kind.THROTTLED, status, response, retry_after=retry_after)
    return Answer(Kind.HTTP_ERROR, status, response)


@contextmanager
def open_range(
    client: RemoteClient,
    url: str,
    start: int,
    end: int | None = None,
    *,
    total: int | None = None,
    retry: bool = True,
) -> Iterator[Answer]:
    """Ask for bytes ``[start, end)`` of ``url`` (to its end when ``end`` is None; no
    ``Range`` at all for the whole file from 0) and classify the answer.

    ``retry`` as for :meth:`RemoteClient.stream` (connection errors and retryable statuses
    are retried there first); transport errors while reading the body propagate.
    """
    # identity: the bytes hashed must be the archive's, never a proxy's gzip of it.
    headers = {"Accept-Encoding": "identity"}
    if end is not None:
        headers["Range"] = f"bytes={start}-{end - 1}"
    elif start:
        headers["Range"] = f"bytes={start}-"
    with client.stream(url, headers, retry=retry) as response:
        answer = classify(response, start, total)
        if answer.kind is Kind.THROTTLED and answer.status == 429 and answer.retry_after is None:
            # No Retry-After: the rate-limit headers tell how long the window lasts.
            pause = client.limiter.pause_needed() or None
            answer = Answer(answer.kind, answer.status, response, retry_after=pause)
        logger.debug("HTTP %d for %s from %d: %s", answer.status, url, start, answer.kind.value)
        yield answer


def check_zip_start(head: bytes, key: str) -> None:
    """Refuse the first bytes of an archive that are not those of a zip (a page of some
    kind, with a 200 and the archive's content type)."""
    if head[:4] not in ZIP_MAGIC:
        raise RemoteDataError(
            f"the server sent something that is not a zip archive for {key} "
            f"(it starts with {head[:16]!r})"
        )
