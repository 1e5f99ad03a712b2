"""Care of a data root: file modes under the umask, owners of temporary names, removal
and pruning in the core, and sizes in ``list``."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medimeta_cli.errors import NotInstalledError
from medimeta_cli.fsutil import human_bytes
from medimeta_cli.layout import RootLayout
from medimeta_cli.locking import DatasetLock, current_umask, lock_file_mode
from medimeta_cli.maintenance import dataset_usage, plan_prune, remove_dataset
from medimeta_cli.ownership import owner_from_name, partial_in_use
from medimeta_cli.records import read_install_record
from tests.helpers import install_from_server, install_stub, invoke, invoke_json, make_downloader
from tests.support import zenodo_server as zs


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


def test_owner_from_name_handles_dotted_host_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "node1.cluster.local")
    assert owner_from_name("crc.zip.node1.cluster.local.123.0badc0de.part") == (
        "node1.cluster.local",
        123,
    )
    assert owner_from_name("crc.old.node1.cluster.local.9.deadbeef") == ("node1.cluster.local", 9)
    assert owner_from_name(".crc.json.node1.cluster.local.7.12345678.tmp") == (
        "node1.cluster.local",
        7,
    )
    assert owner_from_name("crc.node2.cluster.local.123.0badc0de") == (None, 123)
    assert owner_from_name("crc.zip") is None
    assert owner_from_name("crc.lock") is None


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def test_partial_in_use(tmp_path: Path) -> None:
    part = tmp_path / "crc.zip.x.part"
    part.write_bytes(b"1")
    here = socket.gethostname()
    assert not partial_in_use({"host": here, "pid": os.getpid()}, part)  # ours: free to take
    assert partial_in_use({"host": here, "pid": os.getppid()}, part)  # a live process
    assert not partial_in_use({"host": here, "pid": _dead_pid()}, part)
    assert not partial_in_use({"host": here, "pid": "12"}, part)
    assert not partial_in_use({"host": here, "pid": 0}, part)
    assert partial_in_use({"host": "elsewhere", "pid": 1}, part)  # written to just now
    old = time.time() - 200
    os.utime(part, (old, old))
    assert not partial_in_use({"host": "elsewhere", "pid": 1}, part)
    assert partial_in_use({"host": "elsewhere", "pid": 1}, part, quiet_seconds=24 * 3600)


def test_other_hosts_leftovers_go_after_a_day(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path)
    layout.partial_dir.mkdir(parents=True)
    stem = "crc.zip.elsewhere.42.0badc0de"
    (layout.partial_dir / f"{stem}.part").write_bytes(b"x" * 10)
    (layout.partial_dir / f"{stem}.json").write_text(json.dumps({"host": "elsewhere", "pid": 42}))
    assert plan_prune(layout) == []
    [item] = plan_prune(layout, now=time.time() + 25 * 3600)
    assert (item.kind, item.path.name) == ("partial", f"{stem}.part")
    assert item.reason == "untouched for 25 h (by a job on elsewhere)"


def test_remove_untracked_and_linked_datasets(tmp_path: Path) -> None:
    root = tmp_path / "root"
    layout = RootLayout(root)
    folder = install_stub(root, "bus")
    (folder / "images").mkdir()
    (folder / "images" / "1.tiff").write_bytes(b"t" * 1000)
    usage = dataset_usage(layout, "bus")
    assert (usage.bytes, usage.files, usage.recorded) == (1000 + 8, 2, False)
    removed = remove_dataset(layout, "bus")
    assert (removed.bytes_freed, removed.files, removed.leftover) == (1008, 2, None)
    assert not folder.exists() and list(layout.tmp_dir.iterdir()) == []
    # A linked dataset folder: the link goes, what it points to stays.
    target = install_stub(tmp_path / "elsewhere", "crc")
    (root / "crc").symlink_to(target, target_is_directory=True)
    removed = remove_dataset(layout, "crc")
    assert removed.files == 1 and not os.path.lexists(root / "crc")
    assert (target / "info.yaml").is_file()
    with pytest.raises(NotInstalledError):
        remove_dataset(layout, "crc")


def test_list_shows_sizes_from_install_records(
    runner: CliRunner, zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    layout, _ = install_from_server("crc")
    record = read_install_record(layout, "crc")
    assert record is not None
    install_stub(data_root, "cxr")  # unpacked by hand: no record, size unknown
    result = invoke(runner, "list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split()[-2:] == ["STATE", "SIZE"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["crc"].endswith(f"installed  {human_bytes(record.total_bytes)}")
    assert rows["cxr"].endswith("installed  ?")
    assert rows["dr_regular"].endswith("absent     -")
    sizes = {item["id"]: item["size_bytes"] for item in invoke_json(runner, "list")}
    assert sizes["crc"] == record.total_bytes and sizes["cxr"] is None
