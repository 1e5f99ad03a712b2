"""The default install of a whole archive: pieces over several connections, every member
installed from the contiguous front, the md5 over every byte, no archive file; a killed
run goes on from its last checkpoint."""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from medimeta_cli.catalog.datasets import RECORD_ID
from medimeta_cli.errors import IntegrityError
from medimeta_cli.events import Notice
from medimeta_cli.fetch import pieces
from medimeta_cli.fetch.connections import ConnectionBudget
from medimeta_cli.fetch.result import MembersFolder, TransferContext, TransferUnavailable
from medimeta_cli.fetch.window import piece_size
from medimeta_cli.fetch.windowed import WindowedTransfer, _OpenedLater
from medimeta_cli.install.archive import member_path
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.zenodo.client import RemoteClient, RetryPolicy
from medimeta_cli.zenodo.record import ArchiveInfo
from tests.conftest import FixtureData
from tests.fetch.test_ranged import pass_listing_requests
from tests.support import zenodo_server as zs
from tests.support.helpers import make_downloader, wait_for

#: Pieces of 256 KiB at least: the fixture archives (a few MB) take several.
PIECE = 256 * 1024


@pytest.fixture
def client(zenodo: zs.ZenodoServer) -> Iterator[RemoteClient]:
    policy = RetryPolicy(retries=3, backoff_base=0.01, backoff_cap=0.02)
    with RemoteClient(zenodo.url, RECORD_ID, timeout=5, policy=policy) as remote:
        yield remote


def budget(connections: int = 4) -> ConnectionBudget:
    return ConnectionBudget(connections, min_slice=PIECE, fast_link=None)


def test_a_small_archive_is_left_to_the_archive_transfers(
    zenodo: zs.ZenodoServer, client: RemoteClient, data_root: Path
) -> None:
    downloader, _ = make_downloader()
    info = client.fetch_record().archive("crc.zip")
    context = TransferContext(client, RootLayout(data_root), budget=budget())
    zenodo.clear_log()
    with pytest.raises(TransferUnavailable):  # crc is about 10 MB: below 64 MiB
        WindowedTransfer(context).fetch(downloader.catalog.get("crc"), info)
    assert zenodo.requests_for("crc.zip") == []


def fetch_windowed(
    client: RemoteClient, data_root: Path, dataset_id: str, connections: int = 4
) -> MembersFolder:
    downloader, _ = make_downloader()
    info: ArchiveInfo = client.fetch_record().archive(f"{dataset_id}.zip")
    context = TransferContext(client, RootLayout(data_root), budget=budget(connections))
    # The fixture archives are a few MB: windowed here, as archives of 64 MiB are by default.
    transfer = WindowedTransfer(context, window_from=0)
    fetched = transfer.fetch(downloader.catalog.get(dataset_id), info)
    assert isinstance(fetched.content, MembersFolder)
    return fetched.content


def _expected(archive: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(archive) as handle:
        return {member_path(i): handle.read(i) for i in handle.infolist() if not i.is_dir()}


def _found(members: MembersFolder) -> dict[str, bytes]:
    return {
        p.relative_to(members.data).as_posix(): p.read_bytes()
        for p in members.data.rglob("*")
        if p.is_file()
    }


def _piece_requests(zenodo: zs.ZenodoServer, key: str) -> list[str]:
    return [g.range or "" for g in zenodo.requests_for(key, method="GET") if g.status == 206]


def test_pieces_over_several_connections_install_every_member_without_an_archive(
    zenodo: zs.ZenodoServer, client: RemoteClient, data_root: Path, fixture_data: FixtureData
) -> None:
    archive = fixture_data.archive("crc")
    pass_listing_requests(zenodo, archive)
    zenodo.inject("crc.zip", zs.slow(8_000_000), times=20)  # connections that overlap
    zenodo.clear_log()
    members = fetch_windowed(client, data_root, "crc")
    assert _found(members) == _expected(archive)
    size = archive.stat().st_size
    starts = sorted(int(r.split("=")[1].split("-")[0]) for r in _piece_requests(zenodo, "crc.zip"))
    # Consecutive pieces on the fixed grid, every byte asked for once.
    piece = piece_size(size, budget())
    grid = list(range(0, size, piece))
    assert set(grid) <= set(starts)
    assert len(starts) <= len(grid) + 2  # and the one or two reads of the directory
    assert zenodo.max_concurrent > 1
    partial = RootLayout(data_root).partial_dir
    assert not list(partial.glob("*.part"))
    assert not list(members.folder.glob("pieces/*"))  # every spill file read and dropped


@pytest.mark.parametrize("connections", [1, 4])
def test_the_front_piece_goes_to_the_pass_through_memory(
    zenodo: zs.ZenodoServer,
    client: RemoteClient,
    data_root: Path,
    fixture_data: FixtureData,
    monkeypatch: pytest.MonkeyPatch,
    connections: int,
) -> None:
    # A front of 32 KiB at most: its connection waits for the pass again and again.
    monkeypatch.setattr(pieces, "FRONT_MEMORY", 32 * 1024)
    spilled: list[int] = []
    spill = pieces.PieceWindow._spill

    def recording(window: pieces.PieceWindow, piece: Any, data: bytes) -> None:
        spilled.append(piece.start)
        spill(window, piece, data)

    monkeypatch.setattr(pieces.PieceWindow, "_spill", recording)
    archive = fixture_data.archive("crc")
    pass_listing_requests(zenodo, archive)
    zenodo.inject("crc.zip", zs.slow(8_000_000), times=20)
    members = fetch_windowed(client, data_root, "crc", connections=connections)
    assert _found(members) == _expected(archive)
    # The first piece is the front from its first byte: never written to a spill file.
    assert 0 not in spilled
    assert not list(members.folder.glob("pieces/*"))


@pytest.mark.parametrize("where", [0.1, 0.5, 0.9])
def test_a_flipped_byte_in_any_piece_installs_nothing(
    zenodo: zs.ZenodoServer,
    client: RemoteClient,
    data_root: Path,
    fixture_data: FixtureData,
    where: float,
) -> None:
    archive = fixture_data.archive("crc")
    size = archive.stat().st_size
    pass_listing_requests(zenodo, archive)
    offset = int(size * where)
    data = bytearray(archive.read_bytes())
    data[offset] ^= 0xFF
    zenodo.tamper("crc.zip", bytes(data), tail_only=False)
    try:
        with pytest.raises(IntegrityError):
            fetch_windowed(client, data_root, "crc")
    finally:
        zenodo.untamper("crc.zip")
    assert not list(RootLayout(data_root).partial_dir.glob("crc.zip.members.*"))


def test_a_server_that_ignores_ranges_on_some_pieces_still_installs(
    zenodo: zs.ZenodoServer, client: RemoteClient, data_root: Path, fixture_data: FixtureData
) -> None:
    archive = fixture_data.archive("crc")
    pass_listing_requests(zenodo, archive)
    zenodo.inject("crc.zip", zs.delay(0), times=2)
    zenodo.inject("crc.zip", zs.ignore_range(), times=2)
    zenodo.clear_log()
    members = fetch_windowed(client, data_root, "crc")
    assert _found(members) == _expected(archive)
    assert any(r.status == 200 for r in zenodo.requests_for("crc.zip", method="GET"))


def test_a_server_without_ranges_for_pieces_leaves_it_to_the_archive_transfers(
    zenodo: zs.ZenodoServer, client: RemoteClient, data_root: Path, fixture_data: FixtureData
) -> None:
    archive = fixture_data.archive("crc")
    pass_listing_requests(zenodo, archive)
    zenodo.inject("crc.zip", zs.ignore_range(), times=50)
    with pytest.raises(TransferUnavailable):
        fetch_windowed(client, data_root, "crc")
    zenodo.clear_faults()
    assert not list(RootLayout(data_root).partial_dir.glob("crc.zip.members.*"))


def test_cut_pieces_resume_where_they_stopped(
    zenodo: zs.ZenodoServer, client: RemoteClient, data_root: Path, fixture_data: FixtureData
) -> None:
    archive = fixture_data.archive("crc")
    pass_listing_requests(zenodo, archive)
    zenodo.inject("crc.zip", zs.cut_after(100_000), times=3)
    zenodo.clear_log()
    members = fetch_windowed(client, data_root, "crc")
    assert _found(members) == _expected(archive)
    # A cut piece costs only what was lost in flight, never the archive again.
    assert zenodo.bytes_sent("crc.zip") < archive.stat().st_size * 1.1
    assert hashlib.md5(archive.read_bytes()).hexdigest()  # the fixture is whole


def fetch_with_fresh_client(url: str, data_root: Path, dataset_id: str) -> MembersFolder:
    """A windowed fetch with its own client (for a process of its own)."""
    policy = RetryPolicy(retries=3, backoff_base=0.01, backoff_cap=0.02)
    with RemoteClient(url, RECORD_ID, timeout=5, policy=policy) as remote:
        return fetch_windowed(remote, data_root, dataset_id)


def _killed_halfway(zenodo: zs.ZenodoServer, data_root: Path, size: int) -> Path:
    """The members folder a windowed fetch of crc (``size`` bytes) leaves when killed with
    SIGKILL once its pass has a checkpoint past half the archive, each connection capped
    so that the whole would take about six seconds."""
    zenodo.connection_rate = size / 6
    try:
        return _killed_mid_pass(zenodo, data_root, size // 2)
    finally:
        zenodo.connection_rate = None


def _killed_mid_pass(zenodo: zs.ZenodoServer, data_root: Path, at: int) -> Path:
    """Run a windowed fetch in a process killed with SIGKILL once its pass has a checkpoint
    at byte ``at`` or later; the members folder it leaves."""
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tests.fetch.test_windowed import fetch_with_fresh_client\n"
        "fetch_with_fresh_client(sys.argv[1], Path(sys.argv[2]), 'crc')\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, zenodo.url, str(data_root)], cwd=Path(__file__).parents[2]
    )
    partial = RootLayout(data_root).partial_dir

    def checkpoint() -> int:
        for progress in partial.glob("crc.zip.members.*/progress.json"):
            with contextlib.suppress(ValueError, OSError):
                return int(json.loads(progress.read_text())["window"]["hashed"])
        return 0

    try:
        wait_for(lambda: checkpoint() >= at, timeout=30)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    [left] = partial.glob("crc.zip.members.*")
    return left


def _done_at_checkpoint(left: Path) -> list[str]:
    """The members the checkpoint of a killed pass counts as done (its progress file
    names the length of the done log it counts on, and lists none itself)."""
    progress = json.loads((left / "progress.json").read_text())
    assert "done" not in progress
    lines = (left / "stream.done").read_bytes()[: progress["window"]["done"]].splitlines()
    return [json.loads(line)[0] for line in lines]


@pytest.mark.slow
def test_a_killed_pass_goes_on_from_its_checkpoint(
    zenodo: zs.ZenodoServer, client: RemoteClient, data_root: Path, fixture_data: FixtureData
) -> None:
    archive = fixture_data.archive("crc")
    left = _killed_halfway(zenodo, data_root, archive.stat().st_size)
    hashed = json.loads((left / "progress.json").read_text())["window"]["hashed"]
    assert _done_at_checkpoint(left)  # members done, listed once each in the done log
    # What a run killed between appending to the done log and renaming its checkpoint
    # leaves: lines the checkpoint does not count on, cut off by the next run.
    with (left / "stream.done").open("ab") as log:
        log.write(json.dumps(["crc/images/999999.tiff", 1, 1, []]).encode() + b"\n")
    zenodo.wait_idle()
    zenodo.clear_log()
    members = fetch_windowed(client, data_root, "crc")
    assert _found(members) == _expected(archive)
    starts = [int(r.split("=")[1].split("-")[0]) for r in _piece_requests(zenodo, "crc.zip")]
    # Nothing before the checkpoint is asked for again (but the directory's read).
    assert min(starts) >= hashed > 0, (starts, hashed)


@pytest.mark.slow
def test_files_changed_after_a_kill_are_not_trusted(
    zenodo: zs.ZenodoServer, client: RemoteClient, data_root: Path, fixture_data: FixtureData
) -> None:
    archive = fixture_data.archive("crc")
    left = _killed_halfway(zenodo, data_root, archive.stat().st_size)
    done = _done_at_checkpoint(left)
    planted = left / "data" / sorted(done)[0]
    planted.write_bytes(b"not what the archive holds")
    (left / "data" / "planted.txt").write_text("not in the archive")
    zenodo.wait_idle()
    members = fetch_windowed(client, data_root, "crc")
    assert _found(members) == _expected(archive)


def test_throttled_pieces_mean_fewer_connections_and_still_install(
    zenodo: zs.ZenodoServer, data_root: Path, fixture_data: FixtureData
) -> None:
    archive = fixture_data.archive("crc")
    pass_listing_requests(zenodo, archive)
    zenodo.inject("crc.zip", zs.status(429), times=2)
    notices: list[str] = []
    downloader, _ = make_downloader()
    policy = RetryPolicy(retries=3, backoff_base=0.01, backoff_cap=0.02)
    with RemoteClient(zenodo.url, RECORD_ID, timeout=5, policy=policy) as remote:
        info = remote.fetch_record().archive("crc.zip")
        context = TransferContext(
            remote,
            RootLayout(data_root),
            on_event=lambda e: notices.append(e.message) if isinstance(e, Notice) else None,
            budget=budget(),
        )
        fetched = WindowedTransfer(context, window_from=0).fetch(
            downloader.catalog.get("crc"), info
        )
    assert isinstance(fetched.content, MembersFolder)
    assert _found(fetched.content) == _expected(archive)
    assert any("HTTP 429" in n and "connection(s)" in n for n in notices), notices


def test_a_link_planted_where_a_member_goes_is_removed_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.tiff"
    outside.write_bytes(b"keep me")
    target = tmp_path / "data" / "crc" / "images" / "000000.tiff"
    target.parent.mkdir(parents=True)
    target.symlink_to(outside)
    writer = _OpenedLater(target, "crc/images/000000.tiff")
    writer.open()
    writer.write(b"member")
    assert writer.finish().size == 6
    assert outside.read_bytes() == b"keep me"
    assert not target.is_symlink()
    assert target.read_bytes() == b"member"
