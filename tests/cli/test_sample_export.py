"""``medimeta sample --export``: every episode's support and query images, in class folders
named as ``medimeta export`` names them, with the episode file beside them."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medimeta_cli.export import class_folder_names
from tests.conftest import InstalledData
from tests.support.helpers import invoke


def _pixels(path: Path) -> np.ndarray[Any, Any]:
    with Image.open(path) as image:
        return np.asarray(image)


def _stored(installed: InstalledData, dataset_id: str, index: int) -> np.ndarray[Any, Any]:
    with h5py.File(installed.root / dataset_id / "images.hdf5") as handle:
        return np.asarray(handle["images"][index]).squeeze()


def _export(runner: CliRunner, out: Path, *args: str) -> dict[str, Any]:
    result = invoke(runner, "sample", *args, "--export", str(out))
    assert result.exit_code == 0, result.stderr
    document: dict[str, Any] = json.loads((out / "episodes.json").read_text(encoding="utf-8"))
    # The episode file beside the images is the one --out writes for the same command.
    written = invoke(runner, "sample", *args, "--out", str(out.parent / "files"))
    assert written.exit_code == 0, written.stderr
    path = Path(json.loads(written.stdout)["file"])
    assert path.read_text(encoding="utf-8") == (out / "episodes.json").read_text("utf-8")
    return document


def test_every_episode_of_a_multiclass_task_is_exported(
    runner: CliRunner, installed: InstalledData, tmp_path: Path
) -> None:
    out = tmp_path / "episodes"
    args = ("crc", "--ways", "3", "--shots", "1", "-Q", "1", "--episodes", "3", "--seed", "5")
    document = _export(runner, out, *args)
    labels = installed.catalog().get("crc").task("tissue class")
    expected = set()
    for episode in document["episodes"]:
        folders = class_folder_names(labels, episode["classes"])
        for role in ("support", "query"):
            for item in episode[role]:
                key = episode["classes"][item["target"]]
                assert key == item["label"]
                # The class folder's number is the image's target within its episode.
                assert folders[key].startswith(f"{item['target']:02d}_")
                expected.add(
                    f"episode-{episode['episode']:03d}/{role}/{folders[key]}/"
                    f"crc_{item['index']:06d}.png"
                )
    found = {p.relative_to(out).as_posix() for p in out.rglob("*.png")}
    assert found == expected and len(found) == 3 * 3 * (1 + 1)
    for name in found:
        index = int(name.rsplit("_", 1)[1].removesuffix(".png"))
        assert np.array_equal(_pixels(out / name), _stored(installed, "crc", index))
    classes = json.loads((out / "episode-001" / "classes.json").read_text(encoding="utf-8"))
    assert [c["key"] for c in classes["classes"]] == document["episodes"][1]["classes"]
    assert json.loads((out / "provenance.json").read_text(encoding="utf-8"))["pieces"]


def test_every_episode_of_a_multilabel_task_is_exported(
    runner: CliRunner, installed: InstalledData, tmp_path: Path
) -> None:
    out = tmp_path / "episodes"
    args = ("cxr", "--task", "disease labels", "--shots", "1", "-Q", "1", "--episodes", "2")
    document = _export(runner, out, *args)
    for episode in document["episodes"]:
        for role in ("support", "query"):
            folder = out / f"episode-{episode['episode']:03d}" / role
            # Each image once, in its set's folder; its targets in metadata.csv.
            files = {int(p.stem.split("_")[-1]) for p in folder.glob("*.png")}
            assert files == {item["index"] for item in episode[role]}
            assert len(files) == len(episode[role])
            with (folder / "metadata.csv").open(encoding="utf-8") as handle:
                rows = {int(row["upstream_index"]): row for row in csv.DictReader(handle)}
            names = [
                installed.catalog().get("cxr").task("disease labels").labels[k]
                for k in episode["classes"]
            ]
            for item in episode[role]:
                assert [int(rows[item["index"]][n]) for n in names] == item["target"]
                stored = _stored(installed, "cxr", item["index"])
                assert np.array_equal(_pixels(folder / f"cxr_{item['index']:06d}.png"), stored)
    episodes = sorted(p.name for p in out.iterdir() if p.name.startswith("episode-"))
    assert episodes == ["episode-000", "episode-001"]


def test_per_class_export_keeps_its_layout(
    runner: CliRunner, installed: InstalledData, tmp_path: Path
) -> None:
    out = tmp_path / "subset"
    result = invoke(runner, "sample", "crc", "--per-class", "1", "--export", str(out))
    assert result.exit_code == 0, result.stderr
    assert not (out / "episodes.json").exists() and (out / "train").is_dir()


@pytest.mark.parametrize("again", ["same", "other"])
def test_an_episode_export_is_up_to_date_only_for_the_same_episodes(
    runner: CliRunner, installed: InstalledData, tmp_path: Path, again: str
) -> None:
    out = tmp_path / "episodes"
    args = ["sample", "crc", "--ways", "2", "--shots", "1", "-Q", "1", "--export", str(out)]
    assert invoke(runner, *args).exit_code == 0
    second = invoke(runner, *args, *(["--seed", "3"] if again == "other" else []))
    if again == "same":
        assert second.exit_code == 0 and "up to date" in second.stderr
    else:
        assert second.exit_code != 0 and "already exists" in second.stderr


def test_a_binary_episode_exports_both_classes(
    runner: CliRunner, installed: InstalledData, tmp_path: Path
) -> None:
    out = tmp_path / "episodes"
    document = _export(runner, out, "cxr", "--task", "patient sex", "--shots", "2", "-Q", "1")
    episode = document["episodes"][0]
    for role, each in (("support", 2), ("query", 1)):
        folders = sorted((out / "episode-000" / role).iterdir())
        assert [f.name for f in folders if f.is_dir()] == ["00_F", "01_M"]
        for target, folder in enumerate(f for f in folders if f.is_dir()):
            indices = {int(p.stem.split("_")[-1]) for p in folder.glob("*.png")}
            assert indices == {i["index"] for i in episode[role] if i["target"] == target}
            assert len(indices) == each
