"""Where an export may write (``export.target``): never into a data root; dead jobs'
staging folders beside the output are cleaned up."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medimeta_cli.errors import UsageError
from medimeta_cli.export.options import ExportFormat
from medimeta_cli.export.target import clean_dead_staging, default_out, refuse_root_overlap
from tests.conftest import InstalledData
from tests.support.exports import files_of, run_export
from tests.support.helpers import invoke_json


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


# --------------------------------------------------------------------------- default folders


def test_default_folders_keep_every_upstream_tasks_name() -> None:
    """Existing users' paths stay: each upstream task's folder is what it always was (the
    name with its spaces as _), for imagefolder exports."""
    import json
    from importlib import resources

    raw = resources.files("medimeta_cli").joinpath("data/catalog.json").read_text("utf-8")
    tasks = [(d["id"], t["name"]) for d in json.loads(raw)["datasets"] for t in d["tasks"]]
    assert len(tasks) > 40
    for dataset_id, task in tasks:
        before = re.sub(r"[^A-Za-z0-9._-]+", "_", task).strip("_")
        assert default_out(dataset_id, task) == Path(f"{dataset_id}-{before}"), task


def test_default_folders_never_collide() -> None:
    """Before, grp/sub, grp_sub and grp sub shared one folder, and so did every format."""
    names = [
        "grp/sub",
        "grp_sub",
        "grp sub",
        "grp  sub",
        "grp\tsub",
        "grp-sub",
        "x",
        "x-numpy",
        "x numpy",
        "a-0123456789",
        "a",
        "a/",
        "",
        "task",
        "_",
        "..",
        "Kind",
        "über",
        "\x1b[31mred",
    ]
    folders = {
        default_out(dataset_id, task, export_format)
        for dataset_id in ("crc", "crc_x")
        for task in names
        for export_format in ExportFormat
    }
    assert len(folders) == 2 * len(names) * len(ExportFormat)
    for folder in folders:
        assert re.fullmatch(r"[A-Za-z0-9._-]+", str(folder)), folder
    assert default_out("crc", "tissue class", ExportFormat.NUMPY) == Path("crc-tissue_class-numpy")


def test_an_export_in_each_format_goes_to_its_own_default_folder(
    runner: CliRunner, installed: InstalledData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`export crc` then `export crc --format numpy`: the second refused to write into the
    first one's folder before ("exists"), or replaced it with --overwrite."""
    monkeypatch.chdir(tmp_path)
    first = invoke_json(runner, "export", "crc", "--split", "val", "--jobs", "1")
    second = invoke_json(
        runner, "export", "crc", "--split", "val", "--format", "numpy", "--jobs", "1"
    )
    assert first["out"] == str(tmp_path / "crc-tissue_class")
    assert second["out"] == str(tmp_path / "crc-tissue_class-numpy")
    assert (tmp_path / "crc-tissue_class" / "val" / "metadata.csv").is_file()
    assert (tmp_path / "crc-tissue_class-numpy" / "val" / "images.npy").is_file()
