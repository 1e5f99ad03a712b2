"""``sample --protocol medimeta-paper``: the paper's grid, skips, determinism, counts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medimeta_cli.catalog.build import build_catalog
from medimeta_cli.catalog.file import catalog_to_json
from medimeta_cli.dataset.reader import DatasetReader
from medimeta_cli.dataset.selection import SelectionSpec, select
from medimeta_cli.errors import UsageError
from medimeta_cli.sample.episodes import WayRange, sample_episodes
from medimeta_cli.sample.protocol import PAPER_GRID
from tests.conftest import InstalledData
from tests.support import archives
from tests.support.helpers import invoke, medimeta_process

SHOTS = (1, 2, 3, 5, 7, 10, 15, 20, 25, 30)


def grid_names(task: str) -> set[str]:
    """The file names upstream's pre-sampling gives one task's grid (test split)."""
    return {f"{task}_{k}_10_100_test.json" for k in SHOTS} | {f"{task}_1-10_10_1000_test.json"}


@dataclass(frozen=True)
class GridRoot:
    root: Path
    catalog: Path
    full: Path  # the grid of every task of crc and cxr, written once


@pytest.fixture(scope="module")
def grid_root(tmp_path_factory: pytest.TempPathFactory) -> GridRoot:
    """crc and cxr large enough for the whole grid with --min-class-images 40."""
    base = tmp_path_factory.mktemp("grid")
    root, info = base / "root", base / "info"
    info.mkdir()
    for spec, n in ((archives.CRC, 2700), (archives.CXR, 1800)):
        scaled = archives.with_num_images(spec, n)
        archives.write_dataset_dir(scaled, root)
        (info / f"{scaled.id}.yaml").write_text(archives.info_yaml(scaled), encoding="utf-8")
    catalog = base / "catalog.json"
    catalog.write_text(catalog_to_json(build_catalog(info)), encoding="utf-8")
    full = base / "full"
    env = {"MEDIMETA_HOME": str(root), "MEDIMETA_CATALOG": str(catalog)}
    done = medimeta_process(
        "sample", "--protocol", "medimeta-paper", "--min-class-images", "40", "--seed", "4",
        "--out", str(full), env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return GridRoot(root, catalog, full)


def _use(grid: GridRoot, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"MEDIMETA_HOME": str(grid.root), "MEDIMETA_CATALOG": str(grid.catalog)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


@pytest.mark.slow
def test_the_grid_is_written_named_as_upstream(grid_root: GridRoot) -> None:
    assert _names(grid_root.full) == {"crc", "cxr"}
    assert _names(grid_root.full / "crc") == grid_names("tissue_class")
    assert _names(grid_root.full / "cxr") == grid_names("disease_labels") | grid_names(
        "patient_sex"
    )
    assert len(PAPER_GRID) == 11


@pytest.mark.slow
def test_first_task_writes_only_each_dataset_s_first_task(
    runner: CliRunner, grid_root: GridRoot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(grid_root, monkeypatch)
    out = tmp_path / "out"
    result = invoke(
        runner, "sample", "--protocol", "medimeta-paper", "cxr", "--first-task",
        "--min-class-images", "40", "--seed", "4", "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert _names(out / "cxr") == grid_names("disease_labels")
    summary = json.loads(result.stdout)
    assert (summary["complete"], summary["files_written"], summary["settings_skipped"]) == (
        True,
        11,
        0,
    )
    assert "cxr / disease labels: 11 of 11 files" in result.stderr
    # A subset run writes the very bytes of the full run.
    for name in grid_names("disease_labels"):
        assert (out / "cxr" / name).read_bytes() == (grid_root.full / "cxr" / name).read_bytes()


@pytest.mark.slow
def test_one_id_in_two_processes_gives_the_full_run_s_bytes(
    grid_root: GridRoot, tmp_path: Path
) -> None:
    env = {"MEDIMETA_HOME": str(grid_root.root), "MEDIMETA_CATALOG": str(grid_root.catalog)}
    args = ("sample", "--protocol", "medimeta-paper", "crc", "--min-class-images", "40")
    for name in ("a", "b"):
        done = medimeta_process(*args, "--seed", "4", "--out", str(tmp_path / name), env=env)
        assert done.returncode == 0, done.stderr
    for name in grid_names("tissue_class"):
        first = (tmp_path / "a" / "crc" / name).read_bytes()
        assert first == (tmp_path / "b" / "crc" / name).read_bytes()
        assert first == (grid_root.full / "crc" / name).read_bytes()


@pytest.mark.slow
def test_written_files_meet_each_task_type_s_counts(grid_root: GridRoot) -> None:
    for name in ("patient_sex_7_10_100_test.json", "disease_labels_30_10_100_test.json"):
        document = json.loads((grid_root.full / "cxr" / name).read_text())
        assert document["min_class_images"] == 40 and len(document["episodes"]) == 100
        for episode in document["episodes"]:
            support = [item["index"] for item in episode["support"]]
            query = [item["index"] for item in episode["query"]]
            assert not set(support) & set(query)
            for items, k in ((episode["support"], episode["shots"]), (episode["query"], 10)):
                if document["task_type"] == "binary":
                    assert sorted(item["label"] for item in items) == [0] * k + [1] * k
                else:
                    rows = np.array([item["target"] for item in items])
                    assert (rows.sum(axis=0) >= k).all() and ((1 - rows).sum(axis=0) >= k).all()
    ranged = json.loads(
        (grid_root.full / "crc" / "tissue_class_1-10_10_1000_test.json").read_text()
    )
    assert ranged["ways"] == "2-all"
    ways = {len(e["classes"]) for e in ranged["episodes"]}
    shots = {e["shots"] for e in ranged["episodes"]}
    usable = len(ranged["classes"])
    assert min(ways) == 2 and max(ways) == usable and shots == set(range(1, 11))


def test_a_too_small_task_is_skipped_and_reported(
    runner: CliRunner, installed: InstalledData, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    stale = out / "crc" / "tissue_class_1_10_100_test.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("from another run")
    result = invoke(runner, "sample", "--protocol", "medimeta-paper", "crc", "--out", str(out))
    # Skipping what the data cannot meet is the protocol's outcome; --strict makes it fail.
    assert result.exit_code == 0, result.stderr
    strict = invoke(
        runner, "sample", "--protocol", "medimeta-paper", "crc", "--out", str(out), "--strict"
    )
    assert strict.exit_code == 11 and strict.stdout == result.stdout
    summary = json.loads(result.stdout)
    assert (summary["complete"], summary["files_written"], summary["tasks_without_files"]) == (
        False,
        0,
        1,
    )
    [task] = summary["tasks"]
    assert task["dataset"] == "crc" and len(task["settings"]) == 11
    assert all(s["file"] is None and "only 0 classes" in s["skipped"] for s in task["settings"])
    assert "crc / tissue class: 0 of 11 files" in result.stderr
    assert "skipped 1_10_100, 2_10_100" in result.stderr
    assert not stale.exists()  # no file of an earlier run passes for this one's


def test_protocol_needs_out_and_a_known_name(runner: CliRunner, installed: InstalledData) -> None:
    assert invoke(runner, "sample", "--protocol", "medimeta-paper", "crc").exit_code == 2
    unknown = invoke(runner, "sample", "--protocol", "nope", "crc", "--out", "x")
    assert unknown.exit_code == 2 and "medimeta-paper" in unknown.stderr


def test_ways_ranges_are_drawn_per_episode(installed: InstalledData) -> None:
    with DatasetReader.open(installed.root, installed.catalog().get("crc")) as reader:
        selection = select(reader, SelectionSpec(splits=("train",)))
    drawn = sample_episodes(selection, ways=WayRange(2), shots=1, queries=0, episodes=60, seed=3)
    usable = {k for k in selection.classes if (selection.parts[0].labels == k).any()}
    assert {len(e.classes) for e in drawn} == set(range(2, len(usable) + 1))
    capped = sample_episodes(
        selection, ways=WayRange.parse("2-3"), shots=1, queries=0, episodes=30, seed=3
    )
    assert {len(e.classes) for e in capped} == {2, 3}
    assert WayRange.parse("5") is None and str(WayRange.parse("2-ALL")) == "2-all"


def test_the_api_runs_the_same_use_case(installed: InstalledData, tmp_path: Path) -> None:
    from medimeta_cli import api

    seen: list[str] = []
    result = api.sample_protocol(
        tmp_path / "out", "crc", root=installed.root, on_task=lambda t: seen.append(t.task)
    )
    assert seen == ["tissue class"] and not result.complete and result.files == []
    summary = result.to_json()
    assert (summary["split"], summary["min_class_images"], summary["settings_skipped"]) == (
        "test",
        50,
        11,
    )
    with pytest.raises(UsageError, match="unknown episode format"):
        api.sample_protocol(tmp_path / "out", "crc", root=installed.root, format="xml")
