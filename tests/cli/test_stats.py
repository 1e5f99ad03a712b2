"""``medimeta stats``: what it prints, as JSON and for people, and its exit codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medimeta_cli.cli.exit_codes import ExitCode
from tests.conftest import InstalledData
from tests.support import archives
from tests.support.helpers import invoke, invoke_json, run_cli


def test_json_has_counts_of_every_task_and_the_train_splits_mean_and_std(
    installed: InstalledData, runner: CliRunner
) -> None:
    spec = installed.specs["dr_regular"]
    found = invoke_json(runner, "stats", "dr_regular")
    assert set(found) == {"id", "pixels", "tasks"}
    assert found["id"] == "dr_regular"
    pixels = found["pixels"]
    assert set(pixels) == {"split", "images", "channels", "mean", "std", "cached"}
    images = archives.expected_images(spec)[archives.split_indices(spec, "train")] / 255
    axes = tuple(range(images.ndim - 1)) if images.ndim == 4 else None
    np.testing.assert_allclose(pixels["mean"], np.atleast_1d(images.mean(axis=axes)), rtol=1e-9)
    np.testing.assert_allclose(pixels["std"], np.atleast_1d(images.std(axis=axes)), rtol=1e-9)
    assert pixels["split"] == "train" and pixels["images"] == len(images)
    dataset = installed.catalog().get("dr_regular")
    assert [t["task"] for t in found["tasks"]] == [t.name for t in dataset.tasks]
    first = found["tasks"][0]
    assert set(first) == {"task", "task_type", "images", "classes"}
    assert set(first["classes"][0]) == {"key", "name", "counts"}
    assert set(first["classes"][0]["counts"]) == {"train", "val", "test"}


def test_task_and_split_options(installed: InstalledData, runner: CliRunner) -> None:
    found = invoke_json(runner, "stats", "cxr", "--task", "disease", "--split", "test")
    assert found["pixels"]["split"] == "test"
    assert [t["task"] for t in found["tasks"]] == ["disease labels"]
    assert found["tasks"][0]["task_type"] == "multilabel"


def test_plain_text_names_each_task_and_gives_a_normalize_line(
    installed: InstalledData, runner: CliRunner
) -> None:
    result = invoke(runner, "stats", "crc")
    assert result.exit_code == 0, result.stderr
    task = installed.catalog().get("crc").tasks[0]
    assert task.name in result.stdout
    assert "transforms.Normalize(mean=[" in result.stdout
    assert "█" not in result.stdout  # the chart is for terminals


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("stats", "crc", "--split", "nope"), ExitCode.USAGE),
        (("stats", "crc", "--task", "nope"), ExitCode.USAGE),
        (("stats", "unknown"), ExitCode.USAGE),
    ],
)
def test_usage_errors(
    installed: InstalledData, runner: CliRunner, args: tuple[str, ...], code: int
) -> None:
    assert invoke(runner, *args).exit_code == code


def test_not_installed(installed: InstalledData, runner: CliRunner, tmp_path: Path) -> None:
    result = invoke(runner, "--root", str(tmp_path / "empty"), "stats", "crc", "--json")
    assert result.exit_code == ExitCode.NOT_INSTALLED
    assert '"exit_code": 8' in result.stdout


def test_damaged_images_are_an_integrity_error(
    installed: InstalledData, runner: CliRunner, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    archives.write_dataset_dir(installed.specs["crc"], root)
    hdf5 = root / "crc" / "images.hdf5"
    hdf5.write_bytes(hdf5.read_bytes()[:1000])
    result = invoke(runner, "--root", str(root), "stats", "crc")
    assert result.exit_code == ExitCode.INTEGRITY, result.stderr
    assert "verify" in result.stderr


@pytest.mark.slow
def test_a_terminal_gets_a_table_per_task_with_a_bar_chart(installed: InstalledData) -> None:
    code, screen, _ = run_cli("stats", "crc", terminal=True, env={"TERM": "xterm"})
    assert code == 0, screen
    task = installed.catalog().get("crc").tasks[0]
    assert task.name in screen and "train share" in screen
    assert "█" in screen and "transforms.Normalize(mean=[" in screen
