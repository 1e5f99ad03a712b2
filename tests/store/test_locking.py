"""The inter-process dataset lock, and file modes under the umask."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from medimeta_cli.errors import LockTimeoutError
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.locking import DatasetLock, current_umask, lock_file_mode
from tests.support import zenodo_server as zs
from tests.support.helpers import install_from_server, make_downloader


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def _everything_below(root: Path) -> list[Path]:
    found = [root]
    for folder, dirs, files in os.walk(root):
        found += [Path(folder, name) for name in dirs + files]
    return found


def _download_into(root: Path) -> None:
    """A real download of two datasets, one with its archive kept."""
    install_from_server("crc", root=root)
    downloader, _ = make_downloader(retries=1, root=root)
    try:
        [outcome] = downloader.download([downloader.catalog.get("cxr")], keep_archive=True)
    finally:
        downloader.close()
    assert outcome.status == "installed"


def test_everything_created_follows_the_umask(zenodo: zs.ZenodoServer, tmp_path: Path) -> None:
    group_root, private_root = tmp_path / "group", tmp_path / "private"
    with umask(0o002):
        _download_into(group_root)
    with umask(0o022):
        _download_into(private_root)
    for root, group_writable in ((group_root, True), (private_root, False)):
        paths = _everything_below(root)
        names = {path.relative_to(root).as_posix() for path in paths}
        # The walk covers the state folder: records, install records, locks, kept archives.
        assert {
            ".medimeta/locks/crc.lock",
            ".medimeta/installed/crc.json",
            ".medimeta/records/7884735.json",
            ".medimeta/archives/cxr.zip",
            "crc/info.yaml",
        } <= names
        wrong = [
            f"{path}: {stat.filemode(path.lstat().st_mode)}"
            for path in paths
            if bool(path.lstat().st_mode & stat.S_IWGRP) != group_writable
            or path.lstat().st_mode & stat.S_IWOTH
        ]
        assert wrong == [], wrong


@pytest.mark.parametrize(("mask", "mode"), [(0o002, 0o664), (0o022, 0o644), (0o077, 0o600)])
def test_lock_files_follow_the_umask(tmp_path: Path, mask: int, mode: int) -> None:
    with umask(mask):
        assert current_umask() == mask
        assert lock_file_mode() == mode
        lock = DatasetLock(RootLayout(tmp_path), "crc", timeout=5)
        with lock.hold():
            assert stat.S_IMODE(lock.path.stat().st_mode) == mode
            assert stat.S_IMODE(lock.owner_path.stat().st_mode) == mode


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from medimeta_cli.store.layout import RootLayout
    from medimeta_cli.store.locking import DatasetLock
    lock = DatasetLock(RootLayout(Path(sys.argv[1])), "crc", timeout=30)
    with lock.hold():
        print("held", flush=True)
        time.sleep(60)
    """
)


def _start_holder(root: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(root)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.slow
def test_waiters_name_the_holder_and_time_out(tmp_path: Path) -> None:
    holder = _start_holder(tmp_path)
    try:
        messages: list[str] = []
        lock = DatasetLock(
            RootLayout(tmp_path), "crc", timeout=1.0, on_wait=messages.append, poll_interval=0.2
        )
        with pytest.raises(LockTimeoutError, match=f"pid {holder.pid} on "), lock.hold():
            pass
        assert messages and f"locked by pid {holder.pid} on " in messages[0]
    finally:
        holder.kill()
        holder.wait()


def test_lock_of_a_killed_process_is_recovered(tmp_path: Path) -> None:
    holder = _start_holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    started = time.monotonic()
    with DatasetLock(RootLayout(tmp_path), "crc", timeout=5.0).hold():
        owner = json.loads((tmp_path / ".medimeta" / "locks" / "crc.owner.json").read_text())
        assert owner["pid"] == os.getpid()
    assert time.monotonic() - started < 2.0
    assert not (tmp_path / ".medimeta" / "locks" / "crc.owner.json").exists()


def test_disabled_lock_holds_nothing(tmp_path: Path) -> None:
    with DatasetLock(RootLayout(tmp_path), "crc", timeout=1, enabled=False).hold():
        assert not (tmp_path / ".medimeta").exists()


# ----------------------------------------------------------------------------- links


def _take(layout: RootLayout, name: str) -> None:
    with DatasetLock(layout, name, timeout=1).hold():
        pass


def _outside_file(tmp_path: Path) -> Path:
    target = tmp_path / "someone-elses.txt"
    target.write_text("precious\n")
    target.chmod(0o600)
    return target


def _state(path: Path) -> tuple[str, int]:
    return path.read_text(), stat.S_IMODE(path.stat().st_mode)


def test_a_lock_file_that_is_a_link_is_refused_not_followed(tmp_path: Path) -> None:
    from medimeta_cli.errors import LinkRefusedError

    target = _outside_file(tmp_path)
    layout = RootLayout(tmp_path / "root")
    layout.locks_dir.mkdir(parents=True)
    (layout.locks_dir / "cxr.lock").symlink_to(target)
    with umask(0o002), pytest.raises(LinkRefusedError) as caught:
        _take(layout, "cxr")
    assert "cxr.lock is a symbolic link; it is never followed" in str(caught.value)
    assert "deleting a link never touches what it points to" in caught.value.hint
    assert _state(target) == ("precious\n", 0o600)
    dangling = layout.locks_dir / "crc.lock"
    dangling.symlink_to(tmp_path / "would-be-created")
    with pytest.raises(LinkRefusedError):
        _take(layout, "crc")
    assert not (tmp_path / "would-be-created").exists()


def test_a_lock_file_that_is_a_fifo_or_a_linked_locks_folder_is_refused(tmp_path: Path) -> None:
    from medimeta_cli.errors import LinkRefusedError

    layout = RootLayout(tmp_path / "root")
    layout.locks_dir.mkdir(parents=True)
    os.mkfifo(layout.locks_dir / "cxr.lock")
    with pytest.raises(LinkRefusedError, match="not a regular file"):
        _take(layout, "cxr")
    outside = tmp_path / "outside"
    outside.mkdir()
    other = RootLayout(tmp_path / "other")
    other.state_dir.mkdir(parents=True)
    other.locks_dir.symlink_to(outside)
    with pytest.raises(LinkRefusedError, match="locks is a symbolic link"):
        _take(other, "cxr")
    assert list(outside.iterdir()) == []


def test_a_holder_note_that_is_a_link_is_replaced_not_written_through(tmp_path: Path) -> None:
    target = _outside_file(tmp_path)
    layout = RootLayout(tmp_path / "root")
    layout.locks_dir.mkdir(parents=True)
    note = layout.locks_dir / "cxr.owner.json"
    note.symlink_to(target)
    lock = DatasetLock(layout, "cxr", timeout=1)
    assert lock.holder() == "another process"  # the link is not read
    with lock.hold():
        assert not note.is_symlink()
        assert json.loads(note.read_text())["pid"] == os.getpid()
    assert not os.path.lexists(note)
    assert _state(target) == ("precious\n", 0o600)


def test_download_prune_and_doctor_leave_a_linked_locks_target_alone(
    zenodo: zs.ZenodoServer, tmp_path: Path, data_root: Path
) -> None:
    from typer.testing import CliRunner

    from tests.support.helpers import invoke

    target = _outside_file(tmp_path)
    layout = RootLayout(data_root)
    layout.locks_dir.mkdir(parents=True)
    (layout.locks_dir / "cxr.lock").symlink_to(target)
    runner = CliRunner()
    download = invoke(runner, "download", "cxr")
    assert download.exit_code == 4, download.stderr
    assert "cxr.lock is a symbolic link; it is never followed" in download.stderr
    assert not (data_root / "cxr").exists()
    assert "file locks" in invoke(runner, "doctor", "--offline").stdout
    pruned = invoke(runner, "prune")
    assert pruned.exit_code == 4 and "cxr.lock: it is a symbolic link" in pruned.stderr
    assert _state(target) == ("precious\n", 0o600)
    (layout.locks_dir / "cxr.lock").unlink()  # as the hint says; the next run works
    assert invoke(runner, "download", "cxr").exit_code == 0
    assert _state(target) == ("precious\n", 0o600)
