"""The record manifest and polite HTTP: shapes, Retry-After, rate limits, retries."""

from __future__ import annotations

import time
from email.utils import formatdate
from pathlib import Path

import httpx
import pytest

from medimeta_cli.errors import NetworkError, RemoteDataError
from medimeta_cli.record import parse_record
from medimeta_cli.remote import (
    USER_AGENT,
    RateLimiter,
    RemoteClient,
    RetryPolicy,
    parse_retry_after,
)
from tests.support import zenodo_server as zs

MD5 = "0123456789abcdef0123456789abcdef"
BASE = "https://zenodo.example"


def _parse(payload: object) -> object:
    return parse_record(payload, record_id=7884735, base_url=BASE)


@pytest.mark.parametrize(
    "files",
    [
        [{"key": "crc.zip", "size": 10, "checksum": f"md5:{MD5}", "links": {"self": "x"}}],
        [{"filename": "crc.zip", "filesize": 10, "checksum": MD5}],
        {
            "enabled": True,
            "entries": {
                "crc.zip": {"key": "crc.zip", "size": 10, "checksum": f"md5:{MD5.upper()}"}
            },
        },
    ],
    ids=["current", "legacy", "entries"],
)
def test_every_record_shape_gives_the_same_manifest(files: object) -> None:
    manifest = parse_record(
        {"id": 7884735, "metadata": {"version": "1.0"}, "files": files},
        record_id=7884735,
        base_url=BASE,
    )
    info = manifest.archive("crc.zip")  # type: ignore[attr-defined]
    assert (info.size, info.md5) == (10, MD5)
    assert info.url == f"{BASE}/records/7884735/files/crc.zip?download=1"


@pytest.mark.parametrize(
    ("files", "field"),
    [
        ([{"key": "crc.zip", "size": -1, "checksum": f"md5:{MD5}"}], "files[0].size"),
        (
            [
                {"key": "a.zip", "size": 1, "checksum": f"md5:{MD5}"},
                {"key": "b.zip", "size": 1, "checksum": f"sha256:{MD5}"},
            ],
            "files[1].md5",
        ),
        ([{"key": "crc.zip", "size": 1, "checksum": "md5:xyz"}], "files[0].md5"),
        ([{"size": 1, "checksum": f"md5:{MD5}"}], "files[0].key"),
    ],
)
def test_invalid_record_names_the_field(files: object, field: str) -> None:
    with pytest.raises(RemoteDataError) as caught:
        _parse({"id": 1, "files": files})
    assert caught.value.message.startswith(f"invalid record response: {field}")


def test_record_without_files_is_refused() -> None:
    with pytest.raises(RemoteDataError, match="no list of files"):
        _parse({"id": 1})
    with pytest.raises(RemoteDataError, match="not a JSON object"):
        _parse(["files"])


def test_missing_archive_is_a_remote_data_error() -> None:
    manifest = _parse({"id": 7884735, "files": []})
    with pytest.raises(RemoteDataError, match=r"has no file 'crc\.zip'"):
        manifest.archive("crc.zip")  # type: ignore[attr-defined]


def test_retry_after_in_both_forms() -> None:
    now = time.time()
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_rate_limiter_pauses_only_when_the_budget_is_spent() -> None:
    limiter = RateLimiter()
    now = time.time()
    limiter.update({"x-ratelimit-remaining": "30", "x-ratelimit-reset": str(now + 40)})
    assert limiter.pause_needed(now) == 0.0
    limiter.update({"x-ratelimit-remaining": "1", "x-ratelimit-reset": str(now + 40)})
    assert limiter.pause_needed(now) == pytest.approx(40)


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_cap=8.0)
    assert 0.5 <= policy.backoff(1) <= 1.0
    assert 4.0 <= policy.backoff(4) <= 8.0
    assert 4.0 <= policy.backoff(10) <= 8.0


def _client(server: zs.ZenodoServer, waits: list[float], retries: int = 3) -> RemoteClient:
    return RemoteClient(
        server.url,
        7884735,
        timeout=5,
        policy=RetryPolicy(retries=retries, backoff_base=0.01, backoff_cap=0.02),
        sleep=lambda seconds: (waits.append(seconds), time.sleep(min(seconds, 0.05)))[1],
    )


def test_fetch_record_from_a_real_server(tmp_path: Path) -> None:
    archive = tmp_path / "crc.zip"
    archive.write_bytes(b"PK\x03\x04" + b"x" * 100)
    with zs.ZenodoServer({"crc.zip": archive}) as server, _client(server, []) as client:
        manifest = client.fetch_record()
        assert manifest.archive("crc.zip").md5 == server.file_md5("crc.zip")
        assert manifest.version == "1.0" and manifest.fetched_at
        [request] = server.requests
        assert request.user_agent == USER_AGENT


def test_retries_honour_retry_after_from_the_server(tmp_path: Path) -> None:
    with zs.ZenodoServer({"crc.zip": b"PK\x03\x04"}) as server:
        server.inject(zs.RECORD, zs.status(503, retry_after=2))
        server.inject(zs.RECORD, zs.status(429, retry_after=zs.http_date(3)))
        waits: list[float] = []
        with _client(server, waits) as client:
            client.fetch_record()
        assert [r.status for r in server.requests] == [503, 429, 200]
        assert waits[0] == 2.0
        assert 1.0 <= waits[1] <= 3.5


def test_rate_limit_headers_prevent_429(tmp_path: Path) -> None:
    with zs.ZenodoServer({"crc.zip": b"PK\x03\x04"}, rate_limit=3, rate_window=1.0) as server:
        waits: list[float] = []
        with RemoteClient(
            server.url, 7884735, sleep=lambda s: (waits.append(s), time.sleep(s))[1]
        ) as client:
            for _ in range(5):
                client.fetch_record()
        assert all(r.status == 200 for r in server.requests)
        # Reset times are whole epoch seconds, so a pause may round up by one second.
        assert waits and all(0 < wait <= 2.5 for wait in waits)


def test_giving_up_after_retries_is_a_network_error() -> None:
    calls: list[httpx.Request] = []

    def always_503(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503)

    client = RemoteClient(
        BASE,
        1,
        policy=RetryPolicy(retries=2, backoff_base=0.001),
        sleep=lambda s: None,
        transport=httpx.MockTransport(always_503),
    )
    with pytest.raises(NetworkError, match=r"giving up after 3 attempts: HTTP 503"):
        client.fetch_record()
    assert len(calls) == 3


def test_an_absurd_retry_after_fails_at_once() -> None:
    client = RemoteClient(
        BASE,
        1,
        policy=RetryPolicy(retries=5),
        sleep=lambda s: pytest.fail("slept"),
        transport=httpx.MockTransport(
            lambda r: httpx.Response(429, headers={"Retry-After": "86400"})
        ),
    )
    with pytest.raises(NetworkError, match="asks to wait 86400 s"):
        client.fetch_record()


def test_unreachable_server_is_a_network_error() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = RemoteClient(
        f"http://127.0.0.1:{port}",
        1,
        policy=RetryPolicy(retries=1, backoff_base=0.001),
        sleep=lambda s: None,
    )
    with pytest.raises(NetworkError, match="ConnectError"):
        client.fetch_record()


def test_non_json_record_response() -> None:
    client = RemoteClient(
        BASE,
        1,
        sleep=lambda s: None,
        transport=httpx.MockTransport(
            lambda r: httpx.Response(
                200, text="<html>down</html>", headers={"content-type": "text/html"}
            )
        ),
    )
    with pytest.raises(RemoteDataError, match="sent text/html, not JSON"):
        client.fetch_record()


def test_an_unresolvable_name_fails_fast_with_an_offline_hint() -> None:
    calls: list[httpx.Request] = []

    def no_dns(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("[Errno -2] Name or service not known", request=request)

    waits: list[float] = []
    client = RemoteClient(
        BASE,
        1,
        policy=RetryPolicy(retries=8),
        sleep=waits.append,
        transport=httpx.MockTransport(no_dns),
    )
    with pytest.raises(NetworkError, match="cannot resolve the server's name") as caught:
        client.fetch_record()
    assert len(calls) == 2 and len(waits) == 1
    assert "--offline" in caught.value.hint
