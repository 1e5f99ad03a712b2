"""An httpx transport whose connections read the socket in 1 MiB steps.

httpcore's HTTP/1.1 connections ask the socket for 64 KiB at a time; every read is
one trip through the HTTP/1.1 parser and several layers of Python. Asking for 1 MiB
(the socket returns what has arrived, up to that) takes about a quarter less CPU per
archive, which shows as wall time on shared or busy nodes (see
``benchmarks/download.py``).

The larger reads apply to this tool's own client only: its connections are made
through :class:`LargeReadBackend`, a network backend (a public httpcore interface)
wrapping httpcore's own. Nothing of httpx or httpcore is changed for other users in
the process.
"""

from __future__ import annotations

import logging
import ssl
import urllib.request
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

logger = logging.getLogger(__name__)

#: Bytes asked of the socket per read (httpcore asks for 64 KiB).
SOCKET_READ_BYTES = 1024 * 1024


class LargeReadStream(httpcore.NetworkStream):
    """A network stream that asks the socket for at least :data:`SOCKET_READ_BYTES`."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self.inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Up to ``max(max_bytes, SOCKET_READ_BYTES)`` bytes: what has arrived, as any read."""
        return self.inner.read(max(max_bytes, SOCKET_READ_BYTES), timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Send ``buffer``."""
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
        return LargeReadStream(self.inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        """What the wrapped stream says (the socket, the TLS object...)."""
        return self.inner.get_extra_info(info)


class LargeReadBackend(httpcore.NetworkBackend):
    """Makes connections as ``inner`` does, with streams that read in large steps."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self.inner = inner

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
        return LargeReadStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """A Unix socket connection."""
        return LargeReadStream(self.inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        """Wait as the wrapped backend waits."""
        self.inner.sleep(seconds)


class LargeReadTransport(httpx.HTTPTransport):
    """httpx's default transport (same settings), whose connections read in large steps."""

    def __init__(self) -> None:
        super().__init__()
        # HTTPTransport keeps its httpcore pool in `_pool`, and the pool the backend its
        # connections are made with. Should either move, the default reads are used (slower,
        # never wrong); tests/test_largereads.py notices.
        pool = getattr(self, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore.NetworkBackend):
            pool._network_backend = LargeReadBackend(backend)  # type: ignore[union-attr]
        else:
            logger.debug("cannot set the socket read size on this httpx; using its default")


def large_read_mounts() -> dict[str, httpx.BaseTransport]:
    """Mounts for an ``httpx.Client`` that send every request not routed through a proxy of
    the environment through a :class:`LargeReadTransport`.

    Proxies from the environment (``HTTPS_PROXY``...) keep httpx's own transports, and
    with ``ALL_PROXY`` set nothing is mounted, so proxies work exactly as without this.
    """
    if "all" in urllib.request.getproxies():
        return {}
    return {"all://": LargeReadTransport()}
