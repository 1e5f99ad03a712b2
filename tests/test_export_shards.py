"""``--shard I/N`` exports (``export.shards``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medimeta_cli.errors import OutputExistsError
from medimeta_cli.selection import SelectionSpec
from tests.conftest import InstalledData
from tests.support.exports import files_of, run_export


@pytest.mark.parametrize("fmt", ["imagefolder", "numpy"])
def test_shards_make_exactly_one_full_export(
    installed: InstalledData, tmp_path: Path, fmt: str
) -> None:
    run_export(installed, "crc", tmp_path / "whole", format=fmt, command="c")
    out = tmp_path / "sharded"
    results = [
        run_export(installed, "crc", out, SelectionSpec(shard=(i, 3)), format=fmt, command="c")
        for i in (2, 3, 1)
    ]
    assert [r.complete for r in results] == [False, False, True]
    assert sum(r.images for r in results) == installed.specs["crc"].num_images
    assert files_of(out) == files_of(tmp_path / "whole")
    assert (
        run_export(
            installed, "crc", out, SelectionSpec(shard=(2, 3)), format=fmt, command="c"
        ).status
        == "shard up to date"
    )


def test_shard_images_do_not_overlap(installed: InstalledData, tmp_path: Path) -> None:
    out = tmp_path / "sharded"
    totals = [
        run_export(installed, "crc", out, SelectionSpec(shard=(i, 4))).images for i in (1, 2, 3, 4)
    ]
    assert sum(totals) == installed.specs["crc"].num_images
    assert sum(1 for _ in out.rglob("*.png")) == installed.specs["crc"].num_images


def test_incomplete_shards_show_no_provenance(installed: InstalledData, tmp_path: Path) -> None:
    out = tmp_path / "sharded"
    run_export(installed, "crc", out, SelectionSpec(shard=(1, 2)))
    assert not (out / "provenance.json").exists()
    with pytest.raises(OutputExistsError, match="shards of another export"):
        run_export(installed, "crc", out, SelectionSpec(shard=(2, 2), limit=3))


def test_shards_leave_every_class_folder_in_every_split(
    installed: InstalledData, tmp_path: Path
) -> None:
    """crc's val split lacks a class; its empty folder exists however the export was cut."""
    run_export(installed, "crc", tmp_path / "whole")
    for i in (1, 2, 3):
        run_export(installed, "crc", tmp_path / "sharded", SelectionSpec(shard=(i, 3)))
    folders = {
        name: sorted(
            p.relative_to(tmp_path / name).as_posix() for p in base.rglob("*") if p.is_dir()
        )
        for name, base in (("whole", tmp_path / "whole"), ("sharded", tmp_path / "sharded"))
    }
    assert folders["whole"] == folders["sharded"]
    assert "val/01_background (BACK)" in folders["sharded"]
    assert not any((tmp_path / "sharded" / "val" / "01_background (BACK)").iterdir())
