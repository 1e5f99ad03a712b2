"""``--shard I/N`` exports (``export.shards``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from medimeta_cli.dataset.selection import SelectionSpec
from medimeta_cli.errors import OutputExistsError, UsageError
from medimeta_cli.export.shards import resolve_shard
from tests.conftest import InstalledData
from tests.support.exports import files_of, run_export


@pytest.mark.parametrize(
    "fmt",
    [
        "imagefolder",
        "numpy",
        pytest.param(
            "parquet",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("pyarrow") is None, reason="needs pyarrow"
            ),
        ),
    ],
)
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


# ----------------------------------------------------------------------------- --shard auto


def _slurm(task: int, first: int, last: int, count: int, step: int = 1) -> dict[str, str]:
    """The variables sbatch --array sets in each task (as seen on a real cluster)."""
    return {
        "SLURM_ARRAY_JOB_ID": "41",
        "SLURM_ARRAY_TASK_ID": str(task),
        "SLURM_ARRAY_TASK_MIN": str(first),
        "SLURM_ARRAY_TASK_MAX": str(last),
        "SLURM_ARRAY_TASK_COUNT": str(count),
        "SLURM_ARRAY_TASK_STEP": str(step),
    }


@pytest.mark.parametrize(
    ("tasks", "first", "last", "step"),
    [(range(0, 8), 0, 7, 1), (range(1, 9), 1, 8, 1), (range(0, 15, 2), 0, 14, 2)],
    ids=["0-7", "1-8", "0-14:2"],
)
def test_auto_numbers_every_slurm_array_1_to_n(
    tasks: range, first: int, last: int, step: int
) -> None:
    """--array=0-7 (SLURM's usual) gives shards 1..8, as do 1-8 and 0-14:2."""
    shards = [resolve_shard("auto", _slurm(t, first, last, len(tasks), step)) for t in tasks]
    assert shards == [(i, 8) for i in range(1, 9)]


def test_auto_with_a_count_checks_it_against_the_array() -> None:
    assert resolve_shard("AUTO/4", _slurm(0, 0, 3, 4)) == (1, 4)
    with pytest.raises(UsageError, match="has 4 tasks, not 8"):
        resolve_shard("auto/8", _slurm(0, 0, 3, 4))


def test_auto_refuses_a_slurm_list_with_gaps() -> None:
    """--array=1,2,5: three tasks, but task 5 cannot be numbered 3 from its variables."""
    with pytest.raises(UsageError, match="cannot be numbered as one of 3 shards") as caught:
        resolve_shard("auto", _slurm(2, 1, 5, 3))
    assert "evenly spaced" in (caught.value.hint or "")


@pytest.mark.parametrize(
    "env",
    [{}, {"SLURM_JOB_ID": "7"}, {"LSB_JOBID": "7", "LSB_JOBINDEX": "0"}],
    ids=["no scheduler", "plain SLURM job", "plain LSF job"],
)
def test_auto_outside_an_array_fails_clearly(env: dict[str, str]) -> None:
    with pytest.raises(UsageError, match="not a task of a job array") as caught:
        resolve_shard("auto", env)
    assert "--shard I/N" in (caught.value.hint or "")


def test_auto_with_a_broken_slurm_environment_fails_clearly() -> None:
    env = _slurm(3, 0, 7, 8)
    del env["SLURM_ARRAY_TASK_COUNT"]
    with pytest.raises(UsageError, match="SLURM_ARRAY_TASK_COUNT is not set"):
        resolve_shard("auto", env)
    with pytest.raises(UsageError, match="not a whole number"):
        resolve_shard("auto", {**_slurm(3, 0, 7, 8), "SLURM_ARRAY_TASK_ID": "3a"})


def test_auto_under_lsf_assumes_arrays_start_at_1() -> None:
    """LSF sets LSB_JOBINDEX, LSB_JOBINDEX_END and LSB_JOBINDEX_STEP, not the start."""
    lsf = [
        resolve_shard("auto", {"LSB_JOBINDEX": str(i), "LSB_JOBINDEX_END": "15"} | step)
        for i, step in [(1, {}), (9, {"LSB_JOBINDEX_STEP": "2"})]
    ]
    assert lsf == [(1, 15), (5, 8)]
    with pytest.raises(UsageError, match="array that starts at 1"):
        resolve_shard(
            "auto", {"LSB_JOBINDEX": "4", "LSB_JOBINDEX_END": "7", "LSB_JOBINDEX_STEP": "2"}
        )


def test_auto_under_pbs_needs_the_count_and_maps_either_start() -> None:
    """PBS gives only the index: auto/N maps -J 0-7 and -J 1-8 one to one onto 1..8."""
    with pytest.raises(UsageError, match="not how many") as caught:
        resolve_shard("auto", {"PBS_ARRAY_INDEX": "3"})
    assert "auto/8" in (caught.value.hint or "")
    for indices in (range(0, 8), range(1, 9)):
        shards = {resolve_shard("auto/8", {"PBS_ARRAY_INDEX": str(i)}) for i in indices}
        assert shards == {(i, 8) for i in range(1, 9)}
    assert resolve_shard("auto/2", {"PBS_ARRAYID": "2"}) == (1, 2)  # Torque's name


def test_shard_zero_points_to_auto() -> None:
    """`--shard $SLURM_ARRAY_TASK_ID/8` under --array=0-7 gives task 0 the shard 0/8."""
    with pytest.raises(UsageError, match="shards count from 1") as caught:
        resolve_shard("0/8", {})
    assert "--shard auto" in (caught.value.hint or "")
    assert resolve_shard("3/8", _slurm(0, 0, 7, 8)) == (3, 8)  # I/N ignores the array


_HOSTILE = ["1_0", "+3", "\u0663", "\uff13", "3.0", "0x3", "-1", "1e3", "9" * 5000]


@pytest.mark.parametrize("value", _HOSTILE)
@pytest.mark.parametrize(
    "variable",
    [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_STEP",
        "LSB_JOBINDEX",
        "LSB_JOBINDEX_END",
        "PBS_ARRAY_INDEX",
    ],
)
def test_auto_takes_plain_ascii_digits_only_from_every_variable(variable: str, value: str) -> None:
    """int() would take 1_0, +3, Arabic-Indic or full-width digits, and a 5,000-digit
    number; none is a task number. The value is echoed cut short."""
    if variable.startswith("SLURM"):
        env = _slurm(3, 0, 7, 8)
    elif variable.startswith("LSB"):
        env = {"LSB_JOBINDEX": "3", "LSB_JOBINDEX_END": "8"}
    else:
        env = {}
    env[variable] = value
    with pytest.raises(UsageError, match="not a whole number") as caught:
        resolve_shard("auto/8", env)
    assert len(caught.value.message) < 200


@pytest.mark.parametrize("text", ["1_0/12", "\u0663/8", "3/1_0", "+3/8", "9" * 5000 + "/8"])
def test_i_n_takes_plain_ascii_digits_only(text: str) -> None:
    with pytest.raises(UsageError, match="takes I/N or auto") as caught:
        resolve_shard(text, {})
    assert len(caught.value.message) < 200


@pytest.mark.parametrize("count", ["1_0", "\u0668", "+8", "8" * 5000])
def test_auto_n_takes_plain_ascii_digits_only(count: str) -> None:
    with pytest.raises(UsageError, match="not a whole number") as caught:
        resolve_shard("auto/" + count, _slurm(3, 0, 7, 8))
    assert len(caught.value.message) < 200


@pytest.mark.parametrize("index", ["9", "16", "12345"])
def test_auto_range_checks_a_pbs_index(index: str) -> None:
    """-J 0-7 and -J 1-8 have no index above 8: taken modulo 8, 9 would be shard 2 again."""
    with pytest.raises(UsageError, match="not one of 8 consecutive"):
        resolve_shard("auto/8", {"PBS_ARRAY_INDEX": index})
