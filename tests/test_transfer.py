"""``medimeta_cli.transfer``: resumable, verified transfers against a real HTTP server."""

from __future__ import annotations

from pathlib import Path

import pytest

from medimeta_cli.errors import IntegrityError, NetworkError, RemoteDataError
from medimeta_cli.events import Notice
from tests.helpers import make_downloader
from tests.support import zenodo_server as zs


def test_resume_after_a_cut_fetches_only_the_missing_bytes(zenodo: zs.ZenodoServer) -> None:
    size = zenodo.file_size("crc.zip")
    cut = size // 3
    zenodo.inject("crc.zip", zs.cut_after(cut))
    downloader, events = make_downloader()
    [outcome] = downloader.download([downloader.catalog.get("crc")])
    assert outcome.status == "installed"
    gets = zenodo.requests_for("crc.zip", method="GET")
    assert [g.range for g in gets] == [None, f"bytes={cut}-"]
    assert zenodo.bytes_sent("crc.zip") == size
    assert any(isinstance(e, Notice) and "interrupted" in e.message for e in events)


def test_server_ignoring_ranges_restarts_cleanly(zenodo: zs.ZenodoServer) -> None:
    zenodo.inject("crc.zip", zs.cut_after(1000))
    zenodo.inject("crc.zip", zs.ignore_range())
    downloader, events = make_downloader()
    [outcome] = downloader.download([downloader.catalog.get("crc")])
    assert outcome.status == "installed"
    assert any(isinstance(e, Notice) and "ignored the range" in e.message for e in events)


def test_retry_honours_retry_after(zenodo: zs.ZenodoServer) -> None:
    zenodo.inject("cxr.zip", zs.status(503, retry_after=1))
    zenodo.inject("cxr.zip", zs.status(429, retry_after=zs.http_date(1)))
    downloader, _ = make_downloader()
    waits: list[float] = []
    downloader.sleep = waits.append
    [outcome] = downloader.download([downloader.catalog.get("cxr")])
    assert outcome.status == "installed"
    assert [g.status for g in zenodo.requests_for("cxr.zip", method="GET")] == [503, 429, 200]
    assert waits[0] == 1.0
    assert 0.0 <= waits[1] <= 1.5


def test_gives_up_after_the_retries(zenodo: zs.ZenodoServer, data_root: Path) -> None:
    zenodo.inject("cxr.zip", zs.status(502), times=10)
    downloader, _ = make_downloader(retries=2)
    [outcome] = downloader.download([downloader.catalog.get("cxr")])
    assert isinstance(outcome.error, NetworkError)
    assert "giving up after 3 attempts" in outcome.error.message
    assert not (data_root / "cxr").exists()


def test_corrupted_bytes_are_an_integrity_error_and_nothing_is_installed(
    zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    zenodo.inject("cxr.zip", zs.corrupt(5000))
    downloader, _ = make_downloader()
    [outcome] = downloader.download([downloader.catalog.get("cxr")])
    assert isinstance(outcome.error, IntegrityError)
    assert "does not match the record" in outcome.error.message
    assert not (data_root / "cxr").exists()
    assert list((data_root / ".medimeta" / "partial").iterdir()) == []
    # The next run starts afresh and succeeds.
    [retry] = make_downloader()[0].download([downloader.catalog.get("cxr")])
    assert retry.status == "installed"


@pytest.mark.parametrize(
    ("fault", "message"),
    [(zs.html(), "HTML page instead of cxr.zip"), (zs.json_error(200), "JSON message instead")],
)
def test_error_pages_are_named_as_such(
    zenodo: zs.ZenodoServer, data_root: Path, fault: zs.Fault, message: str
) -> None:
    zenodo.inject("cxr.zip", fault)
    downloader, _ = make_downloader()
    [outcome] = downloader.download([downloader.catalog.get("cxr")])
    assert isinstance(outcome.error, RemoteDataError)
    assert message in outcome.error.message
    assert not (data_root / "cxr").exists()
