"""Where an export may write (``export.target``): never into a data root; dead jobs'
staging folders beside the output are cleaned up."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from medimeta_cli.errors import UsageError
from medimeta_cli.export.target import clean_dead_staging, refuse_root_overlap
from tests.conftest import InstalledData
from tests.support.exports import files_of, run_export


def _dead_pid() -> int:
    """The id of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _suffix_of(pid: int) -> str:
    """A ``unique_suffix()`` as process ``pid`` of this host would have made it."""
    return f"{socket.gethostname()}.{pid}.0badc0de"


def test_a_dataset_folder_kept_elsewhere_through_a_link_is_protected(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "root", tmp_path / "big" / "crc"
    elsewhere.mkdir(parents=True)
    root.mkdir()
    (root / "crc").symlink_to(elsewhere)
    with pytest.raises(UsageError, match="lies inside the data folder"):
        refuse_root_overlap(elsewhere / "export", [root])
    with pytest.raises(UsageError, match="contains the data folder"):
        refuse_root_overlap(tmp_path / "big", [root])
    refuse_root_overlap(tmp_path / "exports" / "crc", [root])  # a sibling is fine
    refuse_root_overlap(tmp_path / "root-export", [root])  # a shared name prefix too


def test_a_killed_exports_staging_folder_is_cleaned_up(
    installed: InstalledData, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    dead = tmp_path / f".out.partial-{_suffix_of(_dead_pid())}"
    (dead / "train").mkdir(parents=True)
    (dead / "train" / "crc_000001.png").write_bytes(b"half")
    live = tmp_path / f".out.partial-{_suffix_of(os.getpid())}"
    live.mkdir()
    other = tmp_path / f".other.partial-{_suffix_of(_dead_pid())}"
    other.mkdir()
    run_export(installed, "crc", out, command="c")
    assert not dead.exists()
    assert live.is_dir() and other.is_dir()  # a live job's, and another output's, stay
    assert (out / "provenance.json").is_file()


def test_a_dead_jobs_old_copy_stays_while_it_is_the_only_copy(tmp_path: Path) -> None:
    out = tmp_path / "out"
    old = tmp_path / f".out.old-{_suffix_of(_dead_pid())}"
    old.mkdir()
    (old / "provenance.json").write_text("{}")
    clean_dead_staging(out)
    assert files_of(old) == {"provenance.json": b"{}"}
    out.mkdir()
    clean_dead_staging(out)
    assert not old.exists()


def test_a_staging_name_that_is_a_link_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    (tmp_path / f".out.partial-{_suffix_of(_dead_pid())}").symlink_to(outside)
    clean_dead_staging(tmp_path / "out")
    assert files_of(outside) == {"keep.txt": b"mine"}
