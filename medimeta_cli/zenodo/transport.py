"""An httpx transport whose connections read the socket in 1 MiB steps, and never wait
on a silent or trickling server for longer than the run allows.

httpcore's HTTP/1.1 connections ask the socket for 64 KiB at a time; every read is
one trip through the HTTP/1.1 parser and several layers of Python. Asking for 1 MiB
(the socket returns what has arrived, up to that) takes about a quarter less CPU per
archive, which shows as wall time on shared or busy nodes (see
``benchmarks/download.py``).

The larger reads apply to this tool's own client only: its connections are made
through :class:`LargeReadBackend`, a network backend (a public httpcore interface)
wrapping httpcore's own. Nothing of httpx or httpcore is changed for other users in
the process.

A read waits in slices of :data:`WAKE_SECONDS`, so that between two slices it notices
a cancelled run (SIGTERM, Ctrl-C in a worker thread) and a stalled transfer: fewer
than :data:`STALL_MIN_RATE` bytes a second over a whole stall window (httpx's read
timeout is per read, so a server trickling a few bytes at a time never trips it).
A stall ends the request with a read timeout, which callers retry and resume.
"""

from __future__ import annotations

import logging
import ssl
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

logger = logging.getLogger(__name__)

#: Bytes asked of the socket per read (httpcore asks for 64 KiB).
SOCKET_READ_BYTES = 1024 * 1024
#: A waiting read looks up at least this often (seconds) for a cancelled run or a stall.
WAKE_SECONDS = 0.5
#: Bytes a second under which a transfer counts as stalled, averaged over a stall window.
STALL_MIN_RATE = 1024


def _never() -> bool:
    return False


class StalledRead(httpcore.ReadTimeout):
    """Too few bytes arrived over a stall window (httpx reports it as a ``ReadTimeout``)."""


def stalled(exc: BaseException) -> bool:
    """Whether an httpx error (or what caused it) is a :class:`StalledRead`: no progress
    worth the name, even if a few bytes came."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, StalledRead):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@dataclass(frozen=True)
class ReadWatch:
    """What a waiting read keeps an eye on: the run being cancelled, and stalls."""

    #: True once the run is being cancelled: the read raises KeyboardInterrupt.
    should_stop: Callable[[], bool] = _never
    #: The stall window in seconds (None: no stall rule).
    stall_seconds: float | None = None

    @property
    def stall_bytes(self) -> int:
        """Fewer bytes than this in a stall window is a stall."""
        return int(STALL_MIN_RATE * (self.stall_seconds or 0.0))


class LargeReadStream(httpcore.NetworkStream):
    """A network stream that asks the socket for at least :data:`SOCKET_READ_BYTES`, and
    waits in short slices watched by a :class:`ReadWatch`."""

    def __init__(self, inner: httpcore.NetworkStream, watch: ReadWatch | None = None) -> None:
        self.inner = inner
        self.watch = watch or ReadWatch()
        self._window_start = time.monotonic()
        self._window_bytes = 0

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Up to ``max(max_bytes, SOCKET_READ_BYTES)`` bytes: what has arrived, as any read.

        Raises ``httpcore.ReadTimeout`` after ``timeout`` seconds without a byte or when the
        transfer stalls, and KeyboardInterrupt once the run is being cancelled.
        """
        size = max(max_bytes, SOCKET_READ_BYTES)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.watch.should_stop():
                raise KeyboardInterrupt
            step = WAKE_SECONDS
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise httpcore.ReadTimeout("timed out")
                step = min(step, left)
            try:
                data = self.inner.read(size, step)
            except httpcore.ReadTimeout:
                self._check_stall(0)
                continue
            self._check_stall(len(data))
            return data

    def _check_stall(self, received: int) -> None:
        """Count bytes in the current window; at its end, too few of them is a stall."""
        seconds = self.watch.stall_seconds
        if seconds is None:
            return
        self._window_bytes += received
        now = time.monotonic()
        if now - self._window_start < seconds:
            return
        if self._window_bytes < self.watch.stall_bytes:
            raise StalledRead(
                f"stalled: {self._window_bytes} bytes in {now - self._window_start:.0f} s, "
                f"under {STALL_MIN_RATE} bytes a second"
            )
        self._window_start, self._window_bytes = now, 0

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Send ``buffer`` (a request: its answer gets a stall window of its own)."""
        self._window_start, self._window_bytes = time.monotonic(), 0
        self.inner.write(buffer, timeout)

    def close(self) -> None:
        """Close the connection."""
        self.inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        """The TLS stream over this one, reading in large steps too."""
        tls = self.inner.start_tls(ssl_context, server_hostname, timeout)
        return LargeReadStream(tls, self.watch)

    def get_extra_info(self, info: str) -> Any:
        """What the wrapped stream says (the socket, the TLS object...)."""
        return self.inner.get_extra_info(info)


class LargeReadBackend(httpcore.NetworkBackend):
    """Makes connections as ``inner`` does, with streams that read in large steps."""

    def __init__(self, inner: httpcore.NetworkBackend, watch: ReadWatch | None = None) -> None:
        self.inner = inner
        self.watch = watch

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """A TCP connection."""
        stream = self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return LargeReadStream(stream, self.watch)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """A Unix socket connection."""
        stream = self.inner.connect_unix_socket(path, timeout, socket_options)
        return LargeReadStream(stream, self.watch)

    def sleep(self, seconds: float) -> None:
        """Wait as the wrapped backend waits."""
        self.inner.sleep(seconds)


class LargeReadTransport(httpx.HTTPTransport):
    """httpx's default transport (same settings), whose connections read in large steps
    (watched by ``watch``: cancellation and stalls)."""

    def __init__(self, watch: ReadWatch | None = None) -> None:
        super().__init__()
        # HTTPTransport keeps its httpcore pool in `_pool`, and the pool the backend its
        # connections are made with. Should either move, the default reads are used (slower,
        # never wrong); tests/zenodo/test_transport.py notices.
        pool = getattr(self, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore.NetworkBackend):
            pool._network_backend = LargeReadBackend(backend, watch)  # type: ignore[union-attr]
        else:
            logger.debug("cannot set the socket read size on this httpx; using its default")


def large_read_mounts(watch: ReadWatch | None = None) -> dict[str, httpx.BaseTransport]:
    """Mounts for an ``httpx.Client`` that send every request not routed through a proxy of
    the environment through a :class:`LargeReadTransport` watched by ``watch``.

    Proxies from the environment (``HTTPS_PROXY``...) keep httpx's own transports, and
    with ``ALL_PROXY`` set nothing is mounted, so proxies work exactly as without this.
    """
    if "all" in urllib.request.getproxies():
        return {}
    return {"all://": LargeReadTransport(watch)}
