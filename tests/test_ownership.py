"""Owners of temporary names, and whether the job writing a partial download lives."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medimeta_cli.ownership import owner_from_name, partial_in_use


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
