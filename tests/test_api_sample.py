"""The Python API's few-shot episodes: the command's episodes, written, loaded, checked and
exported through the same use case."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medimeta_cli import api
from medimeta_cli.errors import IntegrityError, UsageError
from tests.conftest import InstalledData
from tests.support.helpers import invoke

ARGS = ("--ways", "3", "--shots", "1-2", "--queries", "0", "--episodes", "3", "--seed", "4")


def test_sample_gives_the_commands_episodes(runner: CliRunner, installed: InstalledData) -> None:
    drawn = api.sample("crc", ways=3, shots="1-2", queries=0, episodes=3, seed=4)
    printed = invoke(runner, "sample", "crc", *ARGS)
    assert printed.exit_code == 0, printed.stderr
    assert drawn.to_json() == json.loads(printed.stdout)
    first = drawn.to_json()["episodes"][0]["support"][0]
    assert set(first) == {"index", "position", "label", "target"}
    multilabel = api.sample("cxr", task="disease labels", shots=1, queries=1, ways="all")
    assert all(len(item["target"]) == 14 for item in multilabel.to_json()["episodes"][0]["query"])


def test_written_episodes_load_and_check(
    installed: InstalledData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    shutil.copytree(installed.root / "crc", root / "crc")
    drawn = api.sample("crc", ways=2, shots=1, queries=1, episodes=4, root=root)
    path = api.write_episodes(drawn, tmp_path / "out", root=root)
    assert path == tmp_path / "out" / "crc" / "tissue_class_1_1_4_train.json"
    loaded = api.load_episodes(path)
    assert (loaded.dataset, loaded.task, loaded.split) == ("crc", "tissue class", "train")
    assert [i.index for i in loaded.images if i.episode == 0] == [
        i for i, _ in drawn.episodes[0].support + drawn.episodes[0].query
    ]
    checked = api.check_episodes(path, root=root)
    assert (checked.dataset, checked.images) == ("crc", len(loaded.images))
    labels_path = root / "crc" / "task_labels" / "tissue class.npy"
    labels = np.load(labels_path)
    index = drawn.episodes[1].query[0][0]
    labels[index] = (labels[index] + 1) % 9
    np.save(labels_path, labels)
    with pytest.raises(IntegrityError, match=f"index {index}: label"):
        api.check_episodes(path, root=root)
    csv_path = api.write_episodes(drawn, tmp_path / "out", format="csv", root=root)
    assert csv_path.suffix == ".csv" and csv_path.read_text().startswith("episode,set,")


def test_export_episodes_writes_every_episode(installed: InstalledData, tmp_path: Path) -> None:
    drawn = api.sample("crc", ways=2, shots=1, queries=1, episodes=2, seed=1)
    result = api.export_episodes(drawn, tmp_path / "episodes")
    assert result.images == 8
    assert len(list((tmp_path / "episodes").rglob("*.png"))) == 8
    on_disk = json.loads((tmp_path / "episodes" / "episodes.json").read_text(encoding="utf-8"))
    assert on_disk["episodes"] == drawn.to_json()["episodes"]


def test_sample_refuses_wrong_arguments(installed: InstalledData, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="shots must be"):
        api.sample("crc", shots=[5])  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="neither a number, 'all' nor a range"):
        api.sample("crc", ways="some")
    with pytest.raises(UsageError, match="sample must be"):
        api.write_episodes({"episodes": []}, tmp_path)  # type: ignore[arg-type]
    with pytest.raises(IntegrityError, match="not a valid episode file"):
        api.load_episodes(tmp_path / "missing.json")
