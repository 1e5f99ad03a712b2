"""The gate: one parser of info.yaml, task names that are never paths, checked labels and splits."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from medimeta_cli.dataset.contents import load_labels, load_split
from medimeta_cli.dataset.gate import (
    DatasetFolder,
    InfoError,
    RefusedInfoError,
    describe_info,
    label_path,
    label_relpath,
    open_folder,
)
from medimeta_cli.errors import IntegrityError
from tests.support.archives import CRC, DR_REGULAR
from tests.support.helpers import write_installed

EVIL = "../../../outside/evil"


def evil_info(folder: Path, name: str = EVIL) -> bytes:
    """The folder's info.yaml with its first task renamed to ``name``."""
    text = (folder / "info.yaml").read_text(encoding="utf-8")
    first = text.split("task_name: ", 1)[1].split("\n", 1)[0]
    return text.replace(f"task_name: {first}", f"task_name: {json.dumps(name)}", 1).encode()


@pytest.mark.parametrize("name", [EVIL, "a/b", "a\\b", "nul\0byte", "..", "."])
def test_a_task_name_that_is_a_path_is_refused(tmp_path: Path, name: str) -> None:
    folder, _ = write_installed(CRC, tmp_path)
    with pytest.raises(RefusedInfoError) as caught:
        describe_info(evil_info(folder, name), "crc")
    assert f"names task {name!r}" in caught.value.message
    assert caught.value.message.endswith("refused")
    with pytest.raises(IntegrityError):
        label_relpath(name)


def test_label_relpath_maps_a_plain_name_into_task_labels() -> None:
    assert label_relpath("DR level") == "task_labels/DR level.npy"


def test_a_validated_folder_is_frozen_and_cannot_hold_a_refused_description(
    tmp_path: Path,
) -> None:
    folder, _ = write_installed(CRC, tmp_path)
    data = open_folder(folder, "crc")
    assert data.folder == folder and data.dataset_id == "crc"
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.folder = tmp_path  # type: ignore[misc]
    task = data.dataset.tasks[0]
    bad = dataclasses.replace(data.dataset, tasks=(dataclasses.replace(task, name=EVIL),))
    with pytest.raises(InfoError, match="names task"):
        DatasetFolder(folder, bad)


def test_a_linked_task_labels_folder_is_not_followed(tmp_path: Path) -> None:
    folder, _ = write_installed(CRC, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    (folder / "task_labels").rename(elsewhere)
    (folder / "task_labels").symlink_to(elsewhere)
    data = open_folder(folder, "crc")
    with pytest.raises(IntegrityError, match="not a folder"):
        label_path(folder, data.dataset.tasks[0])
    with pytest.raises(IntegrityError):
        load_labels(data, data.dataset.tasks[0])


def test_a_linked_label_file_is_not_followed(tmp_path: Path) -> None:
    folder, _ = write_installed(DR_REGULAR, tmp_path)
    path = folder / "task_labels" / "DR level.npy"
    moved = tmp_path / "moved.npy"
    path.rename(moved)
    path.symlink_to(moved)
    with pytest.raises(IntegrityError, match="symbolic link"):
        load_labels(open_folder(folder, "dr_regular"), "DR level")


def test_labels_and_splits_are_handed_out_read_only(tmp_path: Path) -> None:
    folder, _ = write_installed(CRC, tmp_path)
    data = open_folder(folder, "crc")
    labels = load_labels(data, data.dataset.tasks[0])
    assert labels.shape == (CRC.num_images,) and not labels.flags.writeable
    train = load_split(data, "train")
    assert len(train) == CRC.split_count("train") and not train.flags.writeable


def test_labels_of_the_wrong_shape_are_refused_with_the_verify_wording(tmp_path: Path) -> None:
    folder, _ = write_installed(DR_REGULAR, tmp_path)
    np.save(folder / "task_labels" / "DR level.npy", np.zeros(3, np.int64))
    with pytest.raises(IntegrityError) as caught:
        load_labels(open_folder(folder, "dr_regular"), "DR level")
    where = "task_labels/DR level.npy of 'dr_regular'"
    assert caught.value.message == f"{where} has 3 rows, expected {DR_REGULAR.num_images}"
