"""``medimeta_cli.fetch.segmented``: one archive over several range requests, against a real server.

The fixture archives are a few MB: the tests plan small slices (``min_slice``) where the
tool plans 8 MiB ones, which keeps the shapes (how many slices, how many requests) while
the bytes stay few. Nothing is timed: requests and bytes are counted on the server.
"""

from __future__ import annotations

import contextlib
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from medimeta_cli.errors import DiskSpaceError, IntegrityError
from medimeta_cli.events import DownloadInterrupted, Event, Notice, Outcome
from medimeta_cli.fetch.connections import MIN_SLICE, SPLIT_AT, ConnectionBudget
from medimeta_cli.fetch.result import ArchiveFile, TransferContext
from medimeta_cli.fetch.segmented import SegmentedTransfer
from medimeta_cli.fetch.slices import SliceTable
from medimeta_cli.settings import resolve_settings
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.partials import read_state_json, slice_list
from medimeta_cli.zenodo.client import RemoteClient, RetryPolicy
from tests.conftest import FixtureData
from tests.support import archives
from tests.support import zenodo_server as zs
from tests.support.helpers import make_downloader, tmpfs, wait_for

MiB = 1024 * 1024


@dataclass(frozen=True)
class _Fetched:
    """The archive a segmented transfer left, checked, and the bytes it transferred."""

    path: Path
    fetched: int


def _fetch(
    server: zs.ZenodoServer, key: str, budget: ConnectionBudget, events: list[Event] | None = None
) -> _Fetched:
    settings = resolve_settings()
    downloader, _ = make_downloader()
    info = downloader.manifest().archive(key)
    client = RemoteClient(
        server.url,
        settings.record_id,
        timeout=10,
        policy=RetryPolicy(retries=3, backoff_base=0.01, backoff_cap=0.05),
    )
    sink = events.append if events is not None else (lambda event: None)
    dataset = downloader.catalog.get(key.removesuffix(".zip"))
    with client:
        context = TransferContext(client, RootLayout(settings.root), sink, budget=budget)
        fetched = SegmentedTransfer(context).fetch(dataset, info)
    fetched.proof.confirm()
    assert isinstance(fetched.content, ArchiveFile)
    return _Fetched(fetched.content.path, fetched.fetched)


def _gets(server: zs.ZenodoServer, key: str) -> list[zs.RequestRecord]:
    return server.requests_for(key, method="GET", endpoint="download")


def test_slices_tile_the_archive_and_split_the_largest() -> None:
    table = SliceTable.fresh(100, 3)
    assert [(s.start, s.end) for s in table.slices] == [(0, 33), (33, 66), (66, 100)]
    first = table.take(split_at=10, may_split=True)
    assert first is table.slices[0] and first.busy
    for piece in table.slices:
        piece.busy = True
    table.slices[0].pos = 13  # 20 left
    table.slices[1].pos = 60  # 6 left
    table.slices[2].pos = 100  # done
    second = table.take(split_at=10, may_split=True)
    assert second is not None and (second.start, second.end) == (23, 33)
    assert table.slices[0].end == 23
    assert table.take(split_at=10, may_split=False) is None
    assert table.prefix() == 13
    assert table.done() == 13 + 27 + 34


def test_an_archive_in_slices_is_fetched_once_and_verified(
    zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    size = zenodo.file_size("crc.zip")
    fetched = _fetch(zenodo, "crc.zip", ConnectionBudget(4, min_slice=MiB, fast_link=None))
    gets = _gets(zenodo, "crc.zip")
    assert len(gets) == 4
    assert all(g.status == 206 and g.range is not None for g in gets)
    assert zenodo.bytes_sent("crc.zip") == size
    assert fetched.fetched == size
    assert archives.md5_of(fetched.path) == zenodo.file_md5("crc.zip")


def test_a_small_archive_goes_in_one_stream(zenodo: zs.ZenodoServer, data_root: Path) -> None:
    # cxr is 2 MB: below two default slices, one request without Range, as before.
    _fetch(zenodo, "cxr.zip", ConnectionBudget(8))
    [get] = _gets(zenodo, "cxr.zip")
    assert get.range is None and get.status == 200


def test_server_ignoring_the_range_of_the_second_slice(
    zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    size = zenodo.file_size("crc.zip")
    zenodo.inject("crc.zip", zs.slow(size))  # the first slice is still running...
    zenodo.inject("crc.zip", zs.ignore_range())  # ...when the second one gets a 200
    events: list[Event] = []
    fetched = _fetch(zenodo, "crc.zip", ConnectionBudget(2, min_slice=MiB, fast_link=None), events)
    assert archives.md5_of(fetched.path) == zenodo.file_md5("crc.zip")
    assert any(
        isinstance(e, Notice) and "stopped honouring byte ranges" in e.message for e in events
    )
    statuses = [g.status for g in _gets(zenodo, "crc.zip")]
    assert statuses[:2] == [206, 200] and statuses[-1] in (200, 206)


def test_a_byte_flipped_in_one_slice_installs_nothing(
    zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    zenodo.inject("crc.zip", zs.slow(4 * MiB))
    zenodo.inject("crc.zip", zs.corrupt(1000))
    downloader, _ = make_downloader()
    downloader.min_slice = MiB
    downloader.fast_link = None  # every connection at once: these tests are about slices
    [outcome] = downloader.download([downloader.catalog.get("crc")])
    assert isinstance(outcome.error, IntegrityError)
    assert "does not match the record" in outcome.error.message
    assert len(_gets(zenodo, "crc.zip")) == 8
    assert not (data_root / "crc").exists()
    assert list((data_root / ".medimeta" / "partial").iterdir()) == []


@pytest.mark.slow
def test_a_429_storm_on_extra_connections_ends_verified_with_fewer(
    zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    zenodo.connection_limit = 1
    zenodo.connection_rate = 8 * MiB
    downloader, events = make_downloader(connections=4)
    downloader.min_slice = MiB
    downloader.fast_link = None  # every connection at once: these tests are about slices
    [outcome] = downloader.download([downloader.catalog.get("crc")])
    assert outcome.status == "installed", outcome.error
    assert outcome.archive_md5 == zenodo.file_md5("crc.zip")
    gets = _gets(zenodo, "crc.zip")
    assert 429 in [g.status for g in gets]
    served = [g for g in gets if g.status == 206]
    assert sum(g.bytes_sent for g in served) == zenodo.file_size("crc.zip")
    told = [e.message for e in events if isinstance(e, Notice)]
    assert any("HTTP 429 on a slice of crc.zip" in m for m in told), told


def test_connections_1_is_a_single_request(zenodo: zs.ZenodoServer, data_root: Path) -> None:
    downloader, _ = make_downloader(connections=1)
    downloader.min_slice = MiB
    downloader.fast_link = None  # every connection at once: these tests are about slices
    [outcome] = downloader.download([downloader.catalog.get("crc")])
    assert outcome.status == "installed"
    [get] = _gets(zenodo, "crc.zip")
    assert get.range is None and get.status == 200


def test_a_gigabyte_like_plan_stays_under_the_request_bound(
    zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    """The crc archive scaled to 1 GB: slices and splits proportional to the real ones;
    the first slice is slow, so the others finish early and keep splitting."""
    size = zenodo.file_size("crc.zip")
    scale = size / 1e9
    zenodo.inject("crc.zip", zs.slow(size / 4))
    budget = ConnectionBudget(
        8,
        min_slice=int(MIN_SLICE * scale),
        split_at=int(SPLIT_AT * scale),
        fast_link=None,
    )
    fetched = _fetch(zenodo, "crc.zip", budget)
    assert archives.md5_of(fetched.path) == zenodo.file_md5("crc.zip")
    gets = _gets(zenodo, "crc.zip")
    assert 8 < len(gets) <= 20  # split for idle connections, yet few requests
    assert zenodo.bytes_sent("crc.zip") <= size + 8 * MiB


@pytest.mark.slow
@pytest.mark.parametrize(
    ("connections", "jobs", "ids"),
    [(5, 2, ["crc", "dr_regular"]), (2, 3, ["crc", "dr_regular", "organs_axial"])],
    ids=["slices-for-two-jobs", "jobs-waiting-for-a-connection"],
)
def test_the_budget_is_never_exceeded_with_jobs(
    zenodo: zs.ZenodoServer, data_root: Path, connections: int, jobs: int, ids: list[str]
) -> None:
    zenodo.connection_rate = 6 * MiB
    downloader, _ = make_downloader(connections=connections)
    downloader.min_slice = MiB
    downloader.fast_link = None  # every connection at once: these tests are about slices
    outcomes = downloader.download([downloader.catalog.get(i) for i in ids], jobs=jobs)
    assert [o.status for o in outcomes] == ["installed"] * len(ids)
    assert 2 <= zenodo.max_concurrent <= connections
    if connections > jobs:
        assert len(_gets(zenodo, "crc.zip")) == connections // jobs  # in slices


@pytest.mark.parametrize("total", [0, -1])
def test_a_run_needs_a_connection(total: int) -> None:
    with pytest.raises(ValueError, match="at least one connection"):
        ConnectionBudget(total)


def test_a_full_disk_while_slices_write_keeps_them_for_a_resume(
    zenodo: zs.ZenodoServer, tmp_path: Path
) -> None:
    size = zenodo.file_size("crc.zip")
    with tmpfs(tmp_path / "disk", f"size={3 * size}") as disk:
        root = disk / "root"
        zenodo.connection_rate = size / 2  # a few seconds, so that the disk fills meanwhile
        downloader, _ = make_downloader(root=str(root))
        downloader.min_slice = MiB
        downloader.fast_link = None  # every connection at once: these tests are about slices
        outcomes: list[Outcome] = []
        worker = threading.Thread(
            target=lambda: outcomes.extend(downloader.download([downloader.catalog.get("crc")]))
        )
        worker.start()
        partial = root / ".medimeta" / "partial"

        def saved_progress() -> int:
            states = [read_state_json(p) for p in partial.glob("crc.zip.*.json")]
            return sum(pos - start for state in states for start, _, pos in slice_list(state) or [])

        wait_for(lambda: saved_progress() > 0)
        filler = open(disk / "filler", "wb")  # noqa: SIM115 - closed below, after ENOSPC
        with pytest.raises(OSError, match="No space left"):
            while True:
                filler.write(bytes(1 << 16))
                filler.flush()
        worker.join(timeout=60)
        [outcome] = outcomes
        assert isinstance(outcome.error, DiskSpaceError), outcome.error
        assert not (root / "crc").exists()
        (disk / "filler").unlink()
        with contextlib.suppress(OSError):
            filler.close()  # what stayed in its buffer cannot be written
        # The slices' state was kept beside the partial data: the next run goes on.
        kept = saved_progress()
        assert kept > 0
        zenodo.connection_rate = None
        zenodo.clear_log()
        again, _ = make_downloader(root=str(root))
        again.min_slice = MiB
        again.fast_link = None  # every connection at once: these tests are about slices
        [outcome] = again.download([again.catalog.get("crc")])
        assert outcome.status == "installed", outcome.error
        assert outcome.archive_md5 == zenodo.file_md5("crc.zip")
        sent = sum(g.bytes_sent for g in _gets(zenodo, "crc.zip"))
        assert sent == size - kept  # only what the first run had not saved as written


def test_a_worker_waiting_on_a_silent_server_notices_a_stop(
    zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    # The first slice goes silent after a few bytes and stays open far longer than the
    # join below waits; only the run's stop can end that worker's read.
    zenodo.inject("crc.zip", zs.stall_after(4096, seconds=600))
    downloader, _ = make_downloader(stall_seconds=600)
    downloader.min_slice = MiB
    downloader.fast_link = None  # every connection at once: these tests are about slices
    raised: list[BaseException] = []

    def run() -> None:
        try:
            downloader.download([downloader.catalog.get("crc")])
        except BaseException as exc:  # handed to the test thread
            raised.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    partial = data_root / ".medimeta" / "partial"
    wait_for(lambda: len(_gets(zenodo, "crc.zip")) >= 2 and any(partial.glob("*.json")))
    downloader.cancel.set()
    worker.join(timeout=30)
    assert not worker.is_alive(), "a worker stayed blocked on the silent connection"
    [error] = raised
    assert isinstance(error, DownloadInterrupted)
    assert not (data_root / "crc").exists()
    assert read_state_json(next(partial.glob("crc.zip.*.json"))) is not None


def test_a_fast_first_connection_stays_alone(zenodo: zs.ZenodoServer, data_root: Path) -> None:
    """A server that caps no connection gets one at a time: more would only cost CPU."""
    downloader, _ = make_downloader(connections=4)
    downloader.min_slice = MiB
    downloader.fast_link = 1.0  # whatever the first connection does is fast enough
    [outcome] = downloader.download([downloader.catalog.get("crc")])
    assert outcome.status == "installed", outcome.error
    assert outcome.archive_md5 == zenodo.file_md5("crc.zip")
    assert zenodo.max_concurrent == 1
    gets = _gets(zenodo, "crc.zip")
    assert len(gets) == 4  # the planned slices, one after the other
    assert sum(g.bytes_sent for g in gets) == zenodo.file_size("crc.zip")


@pytest.mark.slow
def test_a_capped_first_connection_opens_the_share(
    zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    """Like Zenodo, the server caps each connection: after measuring the first one alone,
    the transfer opens its share of the run's connections."""
    zenodo.connection_rate = 4 * MiB
    downloader, _ = make_downloader(connections=4)
    downloader.min_slice = MiB
    downloader.fast_link = 1e12  # no capped connection is that fast
    [outcome] = downloader.download([downloader.catalog.get("crc")])
    assert outcome.status == "installed", outcome.error
    assert zenodo.max_concurrent == 4


def test_a_flipped_byte_that_extracts_cleanly_is_still_refused_before_the_commit(
    zenodo: zs.ZenodoServer, data_root: Path, fixture_data: FixtureData
) -> None:
    """Extraction starts while the md5 of the last bytes is computed; a byte only the md5
    covers (a member's modification time) must still stop the install before the rename."""
    archive = fixture_data.archive("crc")
    with zipfile.ZipFile(archive) as handle:
        first = min((i for i in handle.infolist() if not i.is_dir()), key=lambda i: i.header_offset)
    zenodo.inject("crc.zip", zs.corrupt(offset=first.header_offset + 10))
    downloader, _ = make_downloader(connections=4)
    downloader.min_slice = MiB
    downloader.fast_link = None
    [outcome] = downloader.download([downloader.catalog.get("crc")])
    assert isinstance(outcome.error, IntegrityError)
    assert "does not match the record" in outcome.error.message
    assert "discarded" in outcome.error.message
    assert not (data_root / "crc").exists()
    assert list((data_root / ".medimeta" / "partial").iterdir()) == []
    assert not any((data_root / ".medimeta" / "tmp").iterdir())
