"""Episode files: names as upstream gives them, the header, reading back and checking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medimeta_cli.dataset.gate import open_folder
from medimeta_cli.errors import IntegrityError
from medimeta_cli.sample.episodes import Shots
from medimeta_cli.sample.files import (
    EpisodeFormat,
    check_episode_file,
    episode_file_name,
    file_differences,
    read_episode_file,
    write_json_file,
)
from medimeta_cli.sample.results import EpisodeSample
from tests.conftest import InstalledData
from tests.sample.test_episodes import selection_of


def test_file_names_follow_upstream_and_never_leave_the_folder() -> None:
    name = episode_file_name(
        "crc", "tissue class", shots=Shots(1, 10), queries=10, episodes=1000, split="test"
    )
    assert name == Path("crc/tissue_class_1-10_10_1000_test.json")
    odd = episode_file_name(
        "x", "../grp/sub", shots=Shots(5, 5), queries=10, episodes=100, split="val"
    )
    # One file name inside the dataset's folder, the odd name's hash keeping it apart.
    assert odd.parent == Path("x") and odd.name.endswith("_5_10_100_val.json")
    assert len(odd.name.split("-")[-1]) > 10 and "/" not in odd.name
    csv_name = episode_file_name(
        "x",
        "t",
        shots=Shots(5, 5),
        queries=10,
        episodes=100,
        split="train",
        original=True,
        file_format=EpisodeFormat.CSV,
    )
    assert csv_name == Path("x/t_5_10_100_original-train.csv")


def test_a_multilabel_file_checks_against_its_own_label_keys(
    installed: InstalledData, tmp_path: Path
) -> None:
    selection = selection_of(installed, "cxr", task="disease labels", splits=("train",))
    sample = EpisodeSample.draw(
        selection, ways=None, shots=Shots(1, 1), queries=0, episodes=2, seed=1
    )
    path = write_json_file(tmp_path, sample, None)
    parsed = read_episode_file(path)
    data = open_folder(installed.root / "cxr", "cxr")
    assert parsed.label_keys == tuple(selection.classes) and parsed.images
    check_episode_file(parsed, data, None)
    recorded = {"record_id": 1, "record_version": None, "archive_md5": "a", "listed_md5": "a"}
    assert file_differences(parsed, data, recorded)[0].startswith("the data's identity is")

    document = json.loads(path.read_text())
    image = document["episodes"][0]["support"][0]
    image["label"] = [1 - v for v in image["label"]]
    path.write_text(json.dumps(document))
    with pytest.raises(IntegrityError, match=f"index {image['index']}: label"):
        check_episode_file(read_episode_file(path), data, None)
