"""Owners of temporary names, and whether the job writing a partial download lives."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medimeta_cli.errors import NetworkError
from medimeta_cli.store.ownership import owner_from_name, partial_in_use, process_alive
from tests.support import zenodo_server as zs
from tests.support.helpers import make_downloader, wait_for


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


def _zombie() -> subprocess.Popen[bytes]:
    """A child process killed and not reaped: a zombie until the test waits for it."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    proc.kill()

    def state() -> bytes:
        stat = Path(f"/proc/{proc.pid}/stat").read_bytes()
        return stat[stat.rfind(b")") + 1 :].split()[0]

    wait_for(lambda: state() == b"Z")
    return proc


def test_a_zombie_is_dead() -> None:
    proc = _zombie()
    try:
        assert not process_alive(proc.pid)
        assert process_alive(os.getpid()) and process_alive(os.getppid())
    finally:
        proc.wait()


def test_a_partial_left_by_a_zombie_is_resumed(zenodo: zs.ZenodoServer, data_root: Path) -> None:
    size = zenodo.file_size("crc.zip")
    cut = size // 2
    zenodo.inject("crc.zip", zs.cut_after(cut))
    first, _ = make_downloader(retries=0)
    [failed] = first.download([first.catalog.get("crc")])
    assert isinstance(failed.error, NetworkError)
    [sidecar] = (data_root / ".medimeta" / "partial").glob("crc.zip.*.json")
    proc = _zombie()
    try:
        # The job writing it was killed and is not reaped yet.
        sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "pid": proc.pid}))
        zenodo.wait_idle()
        zenodo.clear_log()
        second, _ = make_downloader()
        [outcome] = second.download([second.catalog.get("crc")])
    finally:
        proc.wait()
    assert outcome.status == "installed", outcome
    assert outcome.resumed_from == cut
    assert zenodo.bytes_sent("crc.zip") == size - cut
    assert list((data_root / ".medimeta" / "partial").iterdir()) == []
