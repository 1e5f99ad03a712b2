"""``medimeta_cli.fetch.whole`` and the job around it: resumable, verified transfers
against a real HTTP server."""

from __future__ import annotations

from pathlib import Path

import pytest

from medimeta_cli.errors import IntegrityError, NetworkError, RemoteDataError
from medimeta_cli.events import Notice
from medimeta_cli.store.status import State, local_status
from tests.support import zenodo_server as zs
from tests.support.helpers import make_downloader


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


def test_bytes_of_an_attempt_cut_short_count_as_downloaded(zenodo: zs.ZenodoServer) -> None:
    size = zenodo.file_size("crc.zip")
    zenodo.inject("crc.zip", zs.cut_after(size // 3))
    zenodo.inject("crc.zip", zs.cut_after(size // 3))
    downloader, _ = make_downloader()
    [outcome] = downloader.download([downloader.catalog.get("crc")])
    assert outcome.status == "installed"
    assert len(zenodo.requests_for("crc.zip", method="GET")) == 3
    assert outcome.downloaded_bytes == zenodo.bytes_sent("crc.zip") == size


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


@pytest.mark.slow
def test_a_trickling_server_is_cut_and_resumed(
    zenodo: zs.ZenodoServer, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each read gets a few bytes, so no read ever times out; the stall rule cuts it.
    monkeypatch.setenv("MEDIMETA_STALL_SECONDS", "1")
    zenodo.inject("cxr.zip", zs.slow(300))
    downloader, events = make_downloader()
    [outcome] = downloader.download([downloader.catalog.get("cxr")])
    assert outcome.status == "installed", outcome
    first, second = zenodo.requests_for("cxr.zip", method="GET")
    assert 0 < first.bytes_sent < zenodo.file_size("cxr.zip")
    assert second.range is not None and second.range.startswith("bytes=")
    assert any("stalled" in e.message for e in events if isinstance(e, Notice))


@pytest.mark.slow
def test_a_server_that_keeps_trickling_runs_out_of_retries(
    zenodo: zs.ZenodoServer, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMETA_STALL_SECONDS", "1")
    zenodo.inject("cxr.zip", zs.slow(300), times=3)
    downloader, _ = make_downloader(retries=1)
    [outcome] = downloader.download([downloader.catalog.get("cxr")])
    assert isinstance(outcome.error, NetworkError)
    assert "stalled" in outcome.error.message
    assert "giving up after 2 attempts" in outcome.error.message


def test_a_refused_archive_is_discarded_and_fetched_afresh(
    zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    # The record lists exactly these bytes (size and md5 match), but they are no zip archive.
    zenodo.replace_file("cxr.zip", b"PK\x03\x04" + b"\x00" * 5000)
    for run in range(2):
        downloader, _ = make_downloader()
        [outcome] = downloader.download([downloader.catalog.get("cxr")], force=True)
        assert isinstance(outcome.error, IntegrityError)
        assert "cxr.zip" in outcome.error.message
        assert ".part" not in outcome.error.message + outcome.error.hint
        assert "again" in outcome.error.hint
        assert list((data_root / ".medimeta" / "partial").iterdir()) == []
        assert local_status(data_root, "cxr").state is State.ABSENT
        # Each run fetched the archive: none was refused again from a local copy.
        assert len(zenodo.requests_for("cxr.zip", method="GET")) == run + 1


@pytest.mark.parametrize(
    "fault",
    [zs.html(), zs.status(200, body=b"<html>maintenance</html>", content_type="application/zip")],
    ids=["HTML page", "not a zip"],
)
def test_a_refused_response_leaves_no_empty_partial(
    zenodo: zs.ZenodoServer, data_root: Path, fault: zs.Fault
) -> None:
    zenodo.inject("cxr.zip", fault)
    downloader, _ = make_downloader()
    [outcome] = downloader.download([downloader.catalog.get("cxr")])
    assert isinstance(outcome.error, RemoteDataError)
    assert list((data_root / ".medimeta" / "partial").iterdir()) == []
    assert local_status(data_root, "cxr").state is State.ABSENT


def test_a_refused_range_is_reported_as_such_and_the_download_restarts(
    zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    zenodo.inject("cxr.zip", zs.cut_after(1000))
    zenodo.inject("cxr.zip", zs.status(416))
    downloader, events = make_downloader()
    [outcome] = downloader.download([downloader.catalog.get("cxr")])
    assert outcome.status == "installed", outcome
    messages = [e.message for e in events if isinstance(e, Notice)]
    assert any("refused the byte range" in m and "416" in m for m in messages), messages
    assert not any("closed the transfer early" in m for m in messages), messages
    ranges = [g.range for g in zenodo.requests_for("cxr.zip", method="GET")]
    assert ranges == [None, "bytes=1000-", None]


def test_a_range_refused_every_time_ends_in_a_clear_error(
    zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    zenodo.inject("cxr.zip", zs.cut_after(1000))
    zenodo.inject("cxr.zip", zs.status(416), times=5)
    downloader, _ = make_downloader(retries=2)
    [outcome] = downloader.download([downloader.catalog.get("cxr")])
    assert isinstance(outcome.error, NetworkError)
    assert "HTTP 416" in outcome.error.message
    assert "closed the transfer early" not in outcome.error.message
