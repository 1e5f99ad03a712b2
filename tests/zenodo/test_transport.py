"""``medimeta_cli.zenodo.transport``: the tool's own connections read the socket in 1 MiB steps."""

from __future__ import annotations

from pathlib import Path

import httpcore
import pytest

from medimeta_cli.zenodo import transport as largereads
from medimeta_cli.zenodo.client import RemoteClient
from medimeta_cli.zenodo.transport import (
    SOCKET_READ_BYTES,
    LargeReadStream,
    ReadWatch,
    large_read_mounts,
)
from tests.support import zenodo_server as zs

_PROXY_VARIABLES = ("ALL_PROXY", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "http_proxy")


@pytest.fixture
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*_PROXY_VARIABLES, "https_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_the_clients_connections_ask_the_socket_for_a_mebibyte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_proxies: None
) -> None:
    """Fails when the mechanism stops working (e.g. httpx or httpcore moved what it wraps)."""
    asked: list[int] = []

    class Spy(httpcore.NetworkStream):
        def __init__(self, inner: httpcore.NetworkStream) -> None:
            self.inner = inner

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            asked.append(max_bytes)
            return self.inner.read(max_bytes, timeout)

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self.inner.write(buffer, timeout)

        def close(self) -> None:
            self.inner.close()

    original = LargeReadStream.__init__

    def spying_init(
        self: LargeReadStream, inner: httpcore.NetworkStream, watch: ReadWatch | None = None
    ) -> None:
        original(self, Spy(inner), watch)

    monkeypatch.setattr(LargeReadStream, "__init__", spying_init)
    archive = tmp_path / "crc.zip"
    archive.write_bytes(b"PK\x03\x04" + bytes(3 * SOCKET_READ_BYTES))
    with (
        zs.ZenodoServer({"crc.zip": archive}) as server,
        RemoteClient(server.url, 1) as client,
        client.stream(server.download_url("crc.zip")) as response,
    ):
        body = b"".join(response.iter_raw())
    assert len(body) == archive.stat().st_size
    assert asked and min(asked) == SOCKET_READ_BYTES == 1024 * 1024


def test_reads_ask_for_at_least_a_mebibyte_and_tls_streams_too() -> None:
    class Inner(httpcore.NetworkStream):
        def __init__(self) -> None:
            self.asked: list[int] = []

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            self.asked.append(max_bytes)
            return b"x"

        def start_tls(self, *args: object, **kwargs: object) -> httpcore.NetworkStream:
            return Inner()

    inner = Inner()
    stream = LargeReadStream(inner)
    assert stream.read(4096) == b"x" and stream.read(4 * SOCKET_READ_BYTES) == b"x"
    assert inner.asked == [SOCKET_READ_BYTES, 4 * SOCKET_READ_BYTES]
    assert isinstance(stream.start_tls(None), LargeReadStream)  # type: ignore[arg-type]


def test_proxies_of_the_environment_are_left_to_httpx(
    monkeypatch: pytest.MonkeyPatch, no_proxies: None
) -> None:
    assert set(large_read_mounts()) == {"all://"}
    monkeypatch.setenv("ALL_PROXY", "http://proxy.invalid:3128")
    assert large_read_mounts() == {}


def test_the_transport_wraps_httpcores_backend() -> None:
    transport = largereads.LargeReadTransport()
    try:
        backend = transport._pool._network_backend
        assert isinstance(backend, largereads.LargeReadBackend)
    finally:
        transport.close()
