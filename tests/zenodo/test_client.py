"""``medimeta_cli.zenodo.client``: polite HTTP (Retry-After, rate limits, retries) and the record
as a run sees it (fetched once and saved, the saved copy offline, upstream changes)."""

from __future__ import annotations

import json
import time
from email.utils import formatdate
from pathlib import Path

import httpx
import pytest

from medimeta_cli.catalog.datasets import RECORD_ID
from medimeta_cli.errors import NetworkError, OfflineError, RemoteDataError
from medimeta_cli.events import Notice
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.records import read_install_record
from medimeta_cli.zenodo.client import (
    USER_AGENT,
    RateLimiter,
    RemoteClient,
    RetryPolicy,
    parse_retry_after,
)
from tests.conftest import FixtureData
from tests.support import archives
from tests.support import zenodo_server as zs
from tests.support.helpers import make_downloader

BASE = "https://zenodo.example"


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
    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(min(seconds, 0.05))

    return RemoteClient(
        server.url,
        RECORD_ID,
        timeout=5,
        policy=RetryPolicy(retries=retries, backoff_base=0.01, backoff_cap=0.02),
        sleep=sleep,
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


@pytest.mark.slow
def test_rate_limit_headers_prevent_429(tmp_path: Path) -> None:
    with zs.ZenodoServer({"crc.zip": b"PK\x03\x04"}, rate_limit=3, rate_window=1.0) as server:
        waits: list[float] = []

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            time.sleep(seconds)

        with RemoteClient(server.url, RECORD_ID, sleep=sleep) as client:
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
    # A couple of quick retries, never the back-off of eight that a busy server gets.
    assert len(calls) == 3 and len(waits) == 2
    assert all(wait <= 1.0 for wait in waits)
    for named in ("--offline", "--print-urls", "medimeta doctor"):
        assert named in caught.value.hint


def test_a_refused_connection_fails_fast_and_the_rest_of_the_run_at_once() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waits: list[float] = []
    client = RemoteClient(f"http://127.0.0.1:{port}", 1, sleep=waits.append)
    with pytest.raises(NetworkError, match="connection refused") as caught:
        client.fetch_record()
    assert len(waits) == 2 and all(wait <= 1.0 for wait in waits)
    assert "--offline" in caught.value.hint
    # Nobody was there: the next request of the run does not try (and wait) again.
    with pytest.raises(NetworkError, match="connection refused"):
        client.fetch_record()
    assert len(waits) == 2


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectTimeout("timed out"),
        httpx.ReadTimeout("timed out"),
        httpx.ReadError("[Errno 104] Connection reset by peer"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
    ids=["connect-timeout", "read-timeout", "reset", "disconnected"],
)
def test_busy_is_not_nobody_there(error: httpx.TransportError) -> None:
    """Timeouts and resets keep the polite back-off: every retry, with growing waits."""
    calls: list[httpx.Request] = []

    def failing(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise error

    waits: list[float] = []
    client = RemoteClient(
        BASE,
        1,
        policy=RetryPolicy(retries=5),
        sleep=waits.append,
        transport=httpx.MockTransport(failing),
    )
    with pytest.raises(NetworkError, match="giving up after 6 attempts"):
        client.fetch_record()
    assert len(calls) == 6 and len(waits) == 5
    assert waits[-1] >= 8.0  # the back-off grew: 16 s at most, half of it at least


# ----------------------------------------------------------------------------- RecordSource


def test_record_api_shapes(zenodo: zs.ZenodoServer) -> None:
    for shape in ("legacy", "entries", "current"):
        zenodo.record_shape = shape
        downloader, _ = make_downloader()
        manifest = downloader.manifest()
        assert manifest.archive("crc.zip").md5 == zenodo.file_md5("crc.zip"), shape
        assert manifest.archive("crc.zip").size == zenodo.file_size("crc.zip"), shape


def test_manifest_is_saved_and_used_offline(zenodo: zs.ZenodoServer, data_root: Path) -> None:
    online, _ = make_downloader()
    fetched = online.manifest()
    saved = json.loads((data_root / ".medimeta" / "records" / "7884735.json").read_text())
    assert saved["fetched_at"] and saved["files"]["crc.zip"]["md5"] == zenodo.file_md5("crc.zip")
    offline, _ = make_downloader(offline=True)
    assert offline.manifest().files == fetched.files


def test_offline_without_data_is_an_offline_error(zenodo: zs.ZenodoServer) -> None:
    downloader, _ = make_downloader(offline=True)
    with pytest.raises(OfflineError):
        downloader.download([downloader.catalog.get("crc")])
    assert zenodo.requests == []


def test_upstream_change_is_reported_and_nothing_is_mixed(
    zenodo: zs.ZenodoServer, data_root: Path, fixture_data: FixtureData, tmp_path: Path
) -> None:
    downloader, _ = make_downloader()
    downloader.download([downloader.catalog.get("cxr")])
    before = read_install_record(RootLayout(data_root), "cxr")
    changed = archives.DatasetSpec(**{**vars(fixture_data.specs["cxr"]), "seed": 99})
    zenodo.replace_file("cxr.zip", archives.build_archive(changed, tmp_path))
    again, events = make_downloader()
    # Installed datasets are skipped without a fetch; fetching for another one reveals it.
    cxr, crc = again.download([again.catalog.get("cxr"), again.catalog.get("crc")])
    assert (cxr.status, crc.status) == ("skipped", "installed")
    warnings = [e.message for e in events if isinstance(e, Notice) and e.warning]
    assert any("upstream changed" in w and "cxr.zip" in w for w in warnings)
    assert read_install_record(RootLayout(data_root), "cxr") == before
