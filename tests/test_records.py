"""Local store: layout, install records, dataset states and the inter-process lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from medimeta_cli.errors import LockTimeoutError
from medimeta_cli.layout import RootLayout
from medimeta_cli.locking import DatasetLock
from medimeta_cli.records import (
    CheckStamp,
    FileEntry,
    FileManifest,
    InstallRecord,
    read_file_manifest,
    read_install_record,
    stamp_check,
    write_install_record,
)
from medimeta_cli.status import State, local_status
from tests.helpers import install_stub


def _record(dataset_id: str = "crc") -> InstallRecord:
    return InstallRecord(
        dataset_id=dataset_id,
        archive_key=f"{dataset_id}.zip",
        archive_size=10,
        archive_md5="0" * 32,
        record_id=7884735,
        record_version="1.0",
        installed_at="2026-11-28T00:00:00+00:00",
        tool_version="0",
        file_count=1,
        total_bytes=5,
    )


def test_absent_until_info_yaml_exists(tmp_path: Path) -> None:
    assert local_status(tmp_path, "crc").state is State.ABSENT
    (tmp_path / "crc").mkdir()
    assert local_status(tmp_path, "crc").state is State.ABSENT
    folder = install_stub(tmp_path, "crc")
    status = local_status(tmp_path, "crc")
    assert (status.state, status.path, status.tracked) == (State.INSTALLED, folder, False)
    assert status.to_json()["state"] == "installed"


def test_partial_state_with_percent(tmp_path: Path) -> None:
    partial = RootLayout(tmp_path).partial_dir
    partial.mkdir(parents=True)
    (partial / "crc.zip.host.1.abc.json").write_text(json.dumps({"size": 200, "md5": "x"}))
    (partial / "crc.zip.host.1.abc.part").write_bytes(b"\0" * 50)
    status = local_status(tmp_path, "crc")
    assert (status.state, status.percent) == (State.PARTIAL, 25.0)
    assert status.describe() == "partial 25%"


def test_verified_and_damaged_states_come_from_the_last_check(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path)
    install_stub(tmp_path, "crc")
    write_install_record(layout, _record())
    assert local_status(tmp_path, "crc").state is State.INSTALLED
    stamp_check(layout, "crc", CheckStamp("2026-11-28T10:00:00+00:00", True, "full"))
    status = local_status(tmp_path, "crc")
    assert (status.state, status.checked_at) == (State.VERIFIED, "2026-11-28T10:00:00+00:00")
    assert status.describe() == "verified 2026-11-28"
    stamp_check(layout, "crc", CheckStamp("2026-11-29T10:00:00+00:00", False, "fast", 2))
    assert local_status(tmp_path, "crc").state is State.DAMAGED


def test_records_round_trip(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path)
    manifest = FileManifest((FileEntry("images/000001.tiff", 5, 123, ("ab",)),), block_size=4)
    write_install_record(layout, _record(), manifest)
    assert read_install_record(layout, "crc") == _record()
    assert read_file_manifest(layout, "crc") == manifest
    layout.install_record_path("crc").write_text("{broken")
    assert read_install_record(layout, "crc") is None


def test_layout_keeps_state_out_of_dataset_folders(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path)
    assert layout.dataset_dir("crc") == tmp_path / "crc"
    for folder in (layout.partial_dir, layout.locks_dir, layout.installed_dir, layout.tmp_dir):
        assert folder.parent == tmp_path / ".medimeta"


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from medimeta_cli.layout import RootLayout
    from medimeta_cli.locking import DatasetLock
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
