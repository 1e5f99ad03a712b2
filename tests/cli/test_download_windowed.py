"""`medimeta download` of a large archive by default: pieces over several connections,
installed while they download; a SIGKILL costs only what no checkpoint covered; a byte
flipped anywhere, a full disk, nothing visible; peak disk on a real tmpfs."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medimeta_cli.events import BytesTransferred, OutcomeStatus, TransferStarted
from medimeta_cli.fetch.connections import ConnectionBudget
from medimeta_cli.fetch.window import piece_size, window_bytes
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.records import read_install_record
from tests.support import archives
from tests.support import zenodo_server as zs
from tests.support.helpers import (
    installed_script,
    invoke,
    invoke_json,
    make_downloader,
    tmpfs,
    wait_for,
)

#: Four connections, as the tests ask for.
CONNECTIONS = 4


@pytest.fixture(scope="module")
def large_crc_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A crc-like archive of about 80 MiB (above the 64 MiB from which archives install
    while they download in pieces) and its catalog."""
    from medimeta_cli.catalog.build import build_catalog
    from medimeta_cli.catalog.file import catalog_to_json

    base = tmp_path_factory.mktemp("large-crc")
    spec = archives.spec_for_archive_size(archives.CRC, 80 * 1024 * 1024)
    archives.build_archive(spec, base / "archives")
    (base / "info").mkdir()
    (base / "info" / "crc.yaml").write_text(archives.info_yaml(spec), encoding="utf-8")
    catalog = base / "catalog.json"
    catalog.write_text(catalog_to_json(build_catalog(base / "info")), encoding="utf-8")
    return base / "archives" / "crc.zip", catalog


@pytest.fixture
def large_crc(
    large_crc_data: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[zs.ZenodoServer]:
    archive, catalog = large_crc_data
    with zs.ZenodoServer({"crc.zip": archive}) as server:
        monkeypatch.setenv("MEDIMETA_BASE_URL", server.url)
        monkeypatch.setenv("MEDIMETA_CATALOG", str(catalog))
        monkeypatch.setenv("MEDIMETA_TIMEOUT", "10")
        yield server


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [installed_script(), "download", "crc", "--connections", str(CONNECTIONS), *args],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    job = _start(*args)
    out, err = job.communicate(timeout=120)
    return subprocess.CompletedProcess(job.args, job.returncode, out, err)


def _installed_size(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / "crc").rglob("*") if p.is_file())


def _check_installed(server: zs.ZenodoServer, root: Path, runner: CliRunner) -> None:
    result = invoke(runner, "verify", "crc", "--full")
    assert result.exit_code == 0, result.stdout + result.stderr
    record = read_install_record(RootLayout(root), "crc")
    assert record is not None and record.archive_md5 == server.file_md5("crc.zip")


@pytest.mark.slow
def test_a_large_archive_installs_in_pieces_by_default_with_no_archive_file(
    large_crc: zs.ZenodoServer, data_root: Path, runner: CliRunner
) -> None:
    size = large_crc.file_size("crc.zip")
    large_crc.connection_rate = size / 4  # overlapping connections, as on a capped link
    proc = _run()
    assert proc.returncode == 0, proc.stderr
    gets = large_crc.requests_for("crc.zip", method="GET")
    assert all(g.status == 206 for g in gets)
    assert large_crc.max_concurrent > 1
    # Every byte once, in a handful of requests (plus the directory read first).
    assert large_crc.bytes_sent("crc.zip") <= size + 128 * 1024
    piece = piece_size(size, ConnectionBudget(CONNECTIONS))
    starts = {int((g.range or "bytes=0-").split("=")[1].split("-")[0]) for g in gets}
    assert set(range(0, size, piece)) <= starts and len(starts) <= size // piece + 3
    assert not list((data_root / ".medimeta").rglob("*.part"))
    assert not list((data_root / ".medimeta" / "partial").glob("crc.zip.members.*"))
    _check_installed(large_crc, data_root, runner)


@pytest.mark.slow
@pytest.mark.parametrize("killed_at", [0.2, 0.6, 0.9])
def test_sigkill_leaves_nothing_visible_and_the_next_run_fetches_only_what_it_lacked(
    large_crc: zs.ZenodoServer, data_root: Path, runner: CliRunner, killed_at: float
) -> None:
    size = large_crc.file_size("crc.zip")
    large_crc.connection_rate = size / 12  # about 3 s over four connections
    job = _start()
    wait_for(lambda: large_crc.bytes_sent("crc.zip") >= killed_at * size, timeout=60)
    job.send_signal(signal.SIGKILL)
    assert job.wait(timeout=30) == -signal.SIGKILL
    sent = large_crc.bytes_sent("crc.zip")
    assert not (data_root / "crc").exists()
    partial = RootLayout(data_root).partial_dir
    # Members installed while downloading and a checkpoint; never an archive file.
    assert not list(partial.glob("*.part"))
    assert list(partial.glob("crc.zip.members.*/progress.json"))
    large_crc.wait_idle()
    large_crc.clear_log()
    large_crc.connection_rate = None
    proc = _run()
    assert proc.returncode == 0, proc.stderr
    again = large_crc.bytes_sent("crc.zip")
    # What the killed run received is kept (checkpoints, spill files): the next run fetches
    # what was missing, plus what was in flight and the directory once more.
    refetched = sent + again - size
    assert refetched <= 0.1 * size, (sent, again, size)
    _check_installed(large_crc, data_root, runner)


@pytest.mark.slow
def test_list_shows_a_killed_download_in_pieces_as_partial_with_its_percent(
    large_crc: zs.ZenodoServer, data_root: Path, runner: CliRunner
) -> None:
    size = large_crc.file_size("crc.zip")
    large_crc.connection_rate = size / 12  # about 3 s over four connections
    job = _start()
    wait_for(lambda: large_crc.bytes_sent("crc.zip") >= 0.6 * size, timeout=60)
    job.send_signal(signal.SIGKILL)
    assert job.wait(timeout=30) == -signal.SIGKILL
    sent = large_crc.bytes_sent("crc.zip")
    assert list(RootLayout(data_root).partial_dir.glob("crc.zip.members.*/progress.json"))
    listed = {item["id"]: item for item in invoke_json(runner, "list")}
    # What a next run would not fetch again: the checkpoint and the pieces ahead of it.
    percent = listed["crc"]["state"], listed["crc"]["percent"]
    assert percent[0] == "partial" and 20 < percent[1] <= 100 * sent / size, (percent, sent)
    table = invoke(runner, "list")
    assert table.exit_code == 0, table.stderr
    assert f"partial {percent[1]:.0f}%" in table.stdout


@pytest.mark.slow
def test_the_progress_of_a_resumed_run_counts_the_pieces_a_killed_run_left(
    large_crc: zs.ZenodoServer, data_root: Path
) -> None:
    size = large_crc.file_size("crc.zip")
    large_crc.connection_rate = size / 12  # about 3 s over four connections
    job = _start()
    wait_for(lambda: large_crc.bytes_sent("crc.zip") >= 0.6 * size, timeout=60)
    job.send_signal(signal.SIGKILL)
    assert job.wait(timeout=30) == -signal.SIGKILL
    large_crc.wait_idle()
    large_crc.connection_rate = None
    downloader, events = make_downloader(connections=CONNECTIONS)
    [outcome] = downloader.download([downloader.catalog.get("crc")])
    assert outcome.status is OutcomeStatus.INSTALLED, outcome
    [started] = [e for e in events if isinstance(e, TransferStarted)]
    counted = sum(e.count for e in events if isinstance(e, BytesTransferred))
    # The bar ends at the archive's size: what was there at the start (the checkpoint and
    # the pieces ahead of it) plus what this run fetched, no byte twice, none left out.
    assert started.total == size and started.done + counted == size, (started, counted)


@pytest.mark.slow
@pytest.mark.parametrize("where", [0.05, 0.5, 0.95])
def test_a_flipped_byte_in_any_piece_installs_nothing_exit_4(
    large_crc: zs.ZenodoServer,
    large_crc_data: tuple[Path, Path],
    data_root: Path,
    where: float,
) -> None:
    data = bytearray(large_crc_data[0].read_bytes())
    data[int(len(data) * where)] ^= 0xFF
    large_crc.tamper("crc.zip", bytes(data), tail_only=False)
    large_crc.connection_rate = len(data) / 4
    proc = _run()
    assert proc.returncode == 4, proc.stderr
    assert not (data_root / "crc").exists()
    assert not list((data_root / ".medimeta" / "partial").glob("crc.zip.members.*"))


def _used(path: Path) -> int:
    stats = os.statvfs(path)
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize


@pytest.mark.slow
def test_peak_disk_on_a_tmpfs_is_the_installed_size_plus_the_window(
    large_crc: zs.ZenodoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = large_crc.file_size("crc.zip")
    window = window_bytes(size, ConnectionBudget(CONNECTIONS))
    # Room for about 1.05 times the archive plus the window: never for archive and extraction.
    limit = int(1.05 * size) + window + 4 * 1024 * 1024
    assert limit < 2 * size
    with tmpfs(tmp_path / "disk", f"size={limit}") as disk:
        root = disk / "root"
        monkeypatch.setenv("MEDIMETA_HOME", str(root))
        large_crc.connection_rate = size / 6
        peak = [0]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _used(disk))
                done.wait(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            proc = _run()
        finally:
            done.set()
            sampler.join()
        assert proc.returncode == 0, proc.stderr
        installed = _installed_size(root)
        assert peak[0] <= 1.05 * installed + window, (peak[0], installed, window)
        shutil.rmtree(root)


@pytest.mark.slow
def test_a_full_disk_while_members_stream_installs_nothing(
    large_crc: zs.ZenodoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = large_crc.file_size("crc.zip")
    window = window_bytes(size, ConnectionBudget(CONNECTIONS))
    with tmpfs(tmp_path / "disk", f"size={int(1.1 * size) + window}") as disk:
        root = disk / "root"
        monkeypatch.setenv("MEDIMETA_HOME", str(root))
        large_crc.connection_rate = size / 8
        job = _start()
        partial = RootLayout(root).partial_dir
        wait_for(lambda: any(partial.glob("crc.zip.members.*/data/*")), timeout=60)
        # Another job fills the disk meanwhile.
        with open(disk / "filler", "wb") as filler, contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 1024 * 1024)
                filler.flush()
        _, err = job.communicate(timeout=120)
        assert job.returncode == 5, err
        assert not (root / "crc").exists()
        assert not list(partial.glob("crc.zip.members.*"))
