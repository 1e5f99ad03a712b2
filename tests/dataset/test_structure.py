"""Structure checks of installed datasets (``verify --deep``) against real fixture datasets."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import yaml

from medimeta_cli.catalog.build import dataset_from_info, read_info_yaml
from medimeta_cli.catalog.file import load_catalog
from medimeta_cli.dataset.structure import StructureProblem, check_structure
from tests.support.archives import (
    ALL_SPECS,
    CRC,
    CXR,
    DR_REGULAR,
    ORGANS_AXIAL,
    SPLIT_NAMES,
    DatasetSpec,
    expected_labels,
    info_yaml,
    split_file_text,
    split_indices,
    with_num_images,
)
from tests.support.helpers import point_images_outside, write_installed

SPECS = list(ALL_SPECS.values())


def problems_at(problems: list[StructureProblem], path: str) -> list[str]:
    return [problem.message for problem in problems if problem.path == path]


def paths(problems: list[StructureProblem]) -> set[str]:
    return {problem.path for problem in problems}


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines))


def read_lines(path: Path) -> list[str]:
    return path.read_text().split("\n")


# --------------------------------------------------------------------------- clean datasets


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_a_clean_dataset_has_no_problems(tmp_path: Path, spec: DatasetSpec) -> None:
    folder, dataset = write_installed(spec, tmp_path)
    assert check_structure(folder, dataset) == []


def test_problem_reads_as_path_and_message() -> None:
    problem = StructureProblem("task_labels/DR level.npy", "has 9 rows, expected 10")
    assert str(problem) == "task_labels/DR level.npy: has 9 rows, expected 10"


def test_a_crc_sized_dataset_is_checked_without_reading_pixels(tmp_path: Path) -> None:
    """107,180 images: splits, labels and the HDF5 header, without touching pixels."""
    spec = with_num_images(CRC, 107_180)
    folder = tmp_path / spec.id
    for sub in ("task_labels", "splits", "original_splits"):
        (folder / sub).mkdir(parents=True)
    (folder / "info.yaml").write_text(info_yaml(spec))
    (folder / "LICENSE").write_text("license\n")
    (folder / "annotations.csv").write_text("index\n")
    for original in (False, True):
        for split in SPLIT_NAMES:
            text = split_file_text(spec, split, original=original)
            if text is not None:
                kind = "original_splits" if original else "splits"
                (folder / kind / f"{split}.txt").write_text(text)
    for task in spec.tasks:
        np.save(folder / task.labels_relpath, expected_labels(spec, task.name))
    with h5py.File(folder / "images.hdf5", "w") as handle:
        # Chunks that are never written take no space: a 16 GB dataset in a tiny file.
        handle.create_dataset("images", shape=spec.hdf5_shape, dtype=np.uint8, chunks=True)
    dataset = dataset_from_info(read_info_yaml(folder / "info.yaml"))
    assert dataset.num_samples == 107_180

    # A crc-sized dataset (107,180 images) is checked without reading the pixels.
    assert check_structure(folder, dataset) == []

    train = folder / "splits" / "train.txt"
    train.write_text(train.read_text() + "\nimages/000000.tiff")
    assert problems_at(check_structure(folder, dataset), "splits/train.txt")


# --------------------------------------------------------------------------- info.yaml and files


def edit_info(folder: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Change the parsed info.yaml of ``folder`` and write it back."""
    path = folder / "info.yaml"
    info = read_info_yaml(path)
    edit(info)
    path.write_text(yaml.safe_dump(info, allow_unicode=True, sort_keys=False), encoding="utf-8")


def test_info_yaml_with_other_counts_is_measured_against_the_files(tmp_path: Path) -> None:
    """info.yaml is the authority: files that disagree with it are the problem, not it.
    (This test used to expect "info.yaml differs from the catalog", which was the bug.)"""
    folder, dataset = write_installed(CXR, tmp_path)

    def one_more(info: dict[str, Any]) -> None:
        info["total_num_samples"] += 1
        info["splits_num_samples"]["train"] += 1
        info["original_splits_num_samples"]["train"] += 1

    edit_info(folder, one_more)
    problems = check_structure(folder, dataset)
    total = CXR.num_images
    assert problems_at(problems, "info.yaml") == []
    assert problems_at(problems, "images.hdf5") == [
        f"'images' holds {total} images, expected {total + 1}"
    ]
    assert problems_at(problems, "task_labels/patient sex.npy") == [
        f"has {total} rows, expected {total + 1}"
    ]
    assert problems_at(problems, "splits/train.txt") == [
        f"has {CXR.split_count('train')} lines, expected {CXR.split_count('train') + 1}"
    ]


def test_data_of_another_release_is_no_problem(tmp_path: Path) -> None:
    """The fixture's crc is far smaller than the real one (107,180 images), but consistent
    in itself: checked against the bundled catalog's entry, nothing is wrong."""
    folder, _ = write_installed(CRC, tmp_path)
    assert check_structure(folder, load_catalog().get("crc")) == []


def test_info_yaml_with_a_changed_task(tmp_path: Path) -> None:
    """A label key renamed in info.yaml leaves label values that are no longer keys."""
    folder, dataset = write_installed(DR_REGULAR, tmp_path)

    def rename_key(info: dict[str, Any]) -> None:
        task = next(t for t in info["tasks"] if t["task_name"] == "Clarity")
        task["labels"][12] = task["labels"].pop(10)

    edit_info(folder, rename_key)
    problems = check_structure(folder, dataset)
    assert paths(problems) == {"task_labels/Clarity.npy"}
    assert "values that are not label keys (1, 4, 6, 8, 12): 10" in problems[0].message


def test_info_yaml_with_another_target_is_no_problem(tmp_path: Path) -> None:
    folder, dataset = write_installed(DR_REGULAR, tmp_path)

    def change_target(info: dict[str, Any]) -> None:
        task = next(t for t in info["tasks"] if t["task_name"] == "DR level")
        task["task_target"] = "MULTICLASS_CLASSIFICATION"

    edit_info(folder, change_target)
    assert check_structure(folder, dataset) == []


def test_info_yaml_of_another_dataset(tmp_path: Path) -> None:
    folder, dataset = write_installed(CRC, tmp_path)
    edit_info(folder, lambda info: info.update(id="cxr"))
    assert problems_at(check_structure(folder, dataset), "info.yaml") == [
        "names dataset 'cxr', not 'crc'"
    ]


def test_a_linked_info_yaml_is_not_followed(tmp_path: Path) -> None:
    folder, dataset = write_installed(CRC, tmp_path)
    outside = tmp_path / "elsewhere.yaml"
    (folder / "info.yaml").rename(outside)
    (folder / "info.yaml").symlink_to(outside)
    assert problems_at(check_structure(folder, dataset), "info.yaml") == [
        "is a symbolic link (never followed)"
    ]


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("missing", "is missing"),
        ("not yaml", "not valid YAML"),
        ("no name", "name"),
        ("labels as a list", "is malformed"),
    ],
)
def test_broken_info_yaml(tmp_path: Path, damage: str, expected: str) -> None:
    folder, dataset = write_installed(CRC, tmp_path)
    path = folder / "info.yaml"
    if damage == "missing":
        path.unlink()
    elif damage == "not yaml":
        path.write_text("id: crc\nname: [unclosed\n")
    elif damage == "labels as a list":
        edit_info(folder, lambda info: info["tasks"][0].update(labels=["a", "b"]))
    else:
        path.write_text(re.sub(r"(?m)^name: .*\n", "", path.read_text()))
    messages = problems_at(check_structure(folder, dataset), "info.yaml")
    assert len(messages) == 1
    assert expected in messages[0]


@pytest.mark.parametrize("name", ["LICENSE", "annotations.csv"])
def test_missing_plain_file(tmp_path: Path, name: str) -> None:
    folder, dataset = write_installed(ORGANS_AXIAL, tmp_path)
    (folder / name).unlink()
    assert check_structure(folder, dataset) == [StructureProblem(name, "is missing")]


# --------------------------------------------------------------------------- images.hdf5


def replace_hdf5(folder: Path, name: str, shape: tuple[int, ...], dtype: Any) -> None:
    """Replace images.hdf5 with one holding an (unwritten, hence tiny) dataset."""
    path = folder / "images.hdf5"
    path.unlink()
    with h5py.File(path, "w") as handle:
        handle.create_dataset(name, shape=shape, dtype=dtype, chunks=True)


N_CXR, N_CRC = CXR.num_images, CRC.num_images


@pytest.mark.parametrize(
    ("spec", "name", "shape", "dtype", "expected"),
    [
        (CXR, "images", (N_CXR, 224, 224), np.int16, "dtype int16, expected uint8"),
        (CXR, "images", (N_CXR, 224, 224, 3), np.uint8, f"expected ({N_CXR}, 224, 224)"),
        (CRC, "images", (N_CRC, 224, 224), np.uint8, f"expected ({N_CRC}, 224, 224, 3)"),
        (CXR, "images", (N_CXR, 112, 112), np.uint8, f"expected ({N_CXR}, 224, 224)"),
        (CXR, "images", (N_CXR - 1, 224, 224), np.uint8, f"holds {N_CXR - 1} images"),
        (CXR, "pixels", (N_CXR, 224, 224), np.uint8, "no dataset 'images'"),
    ],
    ids=["dtype", "rgb-for-gray", "gray-for-rgb", "size", "count", "name"],
)
def test_wrong_hdf5(
    tmp_path: Path,
    spec: DatasetSpec,
    name: str,
    shape: tuple[int, ...],
    dtype: Any,
    expected: str,
) -> None:
    folder, dataset = write_installed(spec, tmp_path)
    replace_hdf5(folder, name, shape, dtype)
    problems = check_structure(folder, dataset)
    assert paths(problems) == {"images.hdf5"}
    assert any(expected in message for message in problems_at(problems, "images.hdf5")), problems


def test_extra_hdf5_member(tmp_path: Path) -> None:
    folder, dataset = write_installed(CXR, tmp_path)
    with h5py.File(folder / "images.hdf5", "a") as handle:
        handle.create_dataset("extra", data=np.zeros(3))
    messages = problems_at(check_structure(folder, dataset), "images.hdf5")
    assert messages == ["has unexpected members: extra"]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing"])
def test_unreadable_hdf5(tmp_path: Path, damage: str) -> None:
    folder, dataset = write_installed(CRC, tmp_path)
    path = folder / "images.hdf5"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size - 1000])
    elif damage == "garbage":
        path.write_bytes(b"\0" * 4096)
    else:
        path.unlink()
    problems = check_structure(folder, dataset)
    assert paths(problems) == {"images.hdf5"}
    expected = "is missing" if damage == "missing" else "cannot be read"
    assert expected in problems[0].message


# --------------------------------------------------------------------------- task labels


def test_truncated_label_file(tmp_path: Path) -> None:
    folder, dataset = write_installed(CRC, tmp_path)
    path = folder / "task_labels" / "tissue class.npy"
    path.write_bytes(path.read_bytes()[:-40])
    problems = check_structure(folder, dataset)
    assert paths(problems) == {"task_labels/tissue class.npy"}
    assert "cannot be read" in problems[0].message


def test_missing_label_file(tmp_path: Path) -> None:
    folder, dataset = write_installed(CXR, tmp_path)
    (folder / "task_labels" / "patient sex.npy").unlink()
    assert check_structure(folder, dataset) == [
        StructureProblem("task_labels/patient sex.npy", "is missing")
    ]


def test_label_value_that_is_not_a_key(tmp_path: Path) -> None:
    """dr_regular's Clarity keys are 1, 4, 6, 8, 10: 0 and 3 are not keys."""
    assert DR_REGULAR.task("Clarity").keys == (1, 4, 6, 8, 10)
    folder, dataset = write_installed(DR_REGULAR, tmp_path)
    path = folder / "task_labels" / "Clarity.npy"
    labels = np.load(path)
    labels[5] = 3
    labels[9] = 0
    np.save(path, labels)
    problems = check_structure(folder, dataset)
    assert paths(problems) == {"task_labels/Clarity.npy"}
    assert problems[0].message == (
        "has 2 values that are not label keys (1, 4, 6, 8, 10): 0, 3 (first in row 5)"
    )


def test_keys_of_other_tasks_are_not_accepted(tmp_path: Path) -> None:
    """A key valid for DR level (0..4) is wrong for Clarity, and the other way round."""
    folder, dataset = write_installed(DR_REGULAR, tmp_path)
    clarity = folder / "task_labels" / "Clarity.npy"
    level = folder / "task_labels" / "DR level.npy"
    np.save(clarity, np.load(level))
    np.save(level, expected_labels(DR_REGULAR, "Clarity"))
    problems = check_structure(folder, dataset)
    assert paths(problems) == {"task_labels/Clarity.npy", "task_labels/DR level.npy"}


@pytest.mark.parametrize("change", [-1, 1])
def test_wrong_label_length(tmp_path: Path, change: int) -> None:
    folder, dataset = write_installed(DR_REGULAR, tmp_path)
    total = DR_REGULAR.num_images
    np.save(folder / "task_labels" / "DR level.npy", np.zeros(total + change, np.int64))
    assert check_structure(folder, dataset) == [
        StructureProblem("task_labels/DR level.npy", f"has {total + change} rows, expected {total}")
    ]


def test_single_label_task_with_a_matrix(tmp_path: Path) -> None:
    folder, dataset = write_installed(CXR, tmp_path)
    np.save(folder / "task_labels" / "patient sex.npy", np.zeros((N_CXR, 2), np.int64))
    messages = problems_at(check_structure(folder, dataset), "task_labels/patient sex.npy")
    assert messages == [f"has shape ({N_CXR}, 2), expected ({N_CXR},)"]


def test_multilabel_values_must_be_zero_or_one(tmp_path: Path) -> None:
    folder, dataset = write_installed(CXR, tmp_path)
    path = folder / "task_labels" / "disease labels.npy"
    labels = np.load(path)
    labels[4, -1] = 2
    np.save(path, labels)
    messages = problems_at(check_structure(folder, dataset), "task_labels/disease labels.npy")
    assert messages == ["has 1 values other than 0 and 1: 2 (first in row 4)"]


def test_multilabel_needs_a_column_per_label(tmp_path: Path) -> None:
    folder, dataset = write_installed(CXR, tmp_path)
    path = folder / "task_labels" / "disease labels.npy"
    columns = len(CXR.task("disease labels").labels)
    np.save(path, np.load(path)[:, :-1])
    messages = problems_at(check_structure(folder, dataset), "task_labels/disease labels.npy")
    assert messages == [f"has {columns - 1} columns, expected {columns}"]


def test_multilabel_as_a_vector(tmp_path: Path) -> None:
    folder, dataset = write_installed(CXR, tmp_path)
    columns = len(CXR.task("disease labels").labels)
    np.save(folder / "task_labels" / "disease labels.npy", np.zeros(N_CXR, np.uint8))
    messages = problems_at(check_structure(folder, dataset), "task_labels/disease labels.npy")
    assert messages == [f"has shape ({N_CXR},), expected ({N_CXR}, {columns})"]


# --------------------------------------------------------------------------- split files


def test_a_flipped_split_line(tmp_path: Path) -> None:
    """A train line that names a val image: train and val overlap, one image is lost."""
    folder, dataset = write_installed(CRC, tmp_path)
    train = folder / "splits" / "train.txt"
    lines = read_lines(train)
    lost = lines[4]
    lines[4] = f"images/{int(split_indices(CRC, 'val')[0]):06d}.tiff"
    write_lines(train, lines)
    problems = check_structure(folder, dataset)
    assert paths(problems) == {"splits"}
    messages = problems_at(problems, "splits")
    assert f"train and val share 1 image, e.g. {lines[4]}" in messages
    assert f"1 image is in no split, e.g. {lost}" in messages


def test_a_repeated_split_line(tmp_path: Path) -> None:
    folder, dataset = write_installed(CRC, tmp_path)
    train = folder / "splits" / "train.txt"
    lines = read_lines(train)
    lines[4] = lines[0]
    write_lines(train, lines)
    problems = check_structure(folder, dataset)
    assert f"lists 1 image more than once, e.g. {lines[0]} (2 times)" in problems_at(
        problems, "splits/train.txt"
    )
    assert any("in no split" in message for message in problems_at(problems, "splits"))


def test_a_missing_split_line(tmp_path: Path) -> None:
    folder, dataset = write_installed(CXR, tmp_path)
    test = folder / "original_splits" / "test.txt"
    lines = read_lines(test)
    write_lines(test, lines[:-1])
    problems = check_structure(folder, dataset)
    count = CXR.split_count("test", original=True)
    assert problems_at(problems, "original_splits/test.txt") == [
        f"has {count - 1} lines, expected {count}"
    ]
    assert problems_at(problems, "original_splits") == [f"1 image is in no split, e.g. {lines[-1]}"]
    assert paths(problems) == {"original_splits/test.txt", "original_splits"}


def test_an_extra_split_line(tmp_path: Path) -> None:
    folder, dataset = write_installed(CXR, tmp_path)
    val = folder / "splits" / "val.txt"
    extra = f"images/{int(split_indices(CXR, 'test')[1]):06d}.tiff"
    write_lines(val, [*read_lines(val), extra])
    problems = check_structure(folder, dataset)
    count = CXR.split_count("val")
    assert problems_at(problems, "splits/val.txt") == [f"has {count + 1} lines, expected {count}"]
    assert problems_at(problems, "splits") == [f"val and test share 1 image, e.g. {extra}"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("images/31.tiff", "has 1 malformed line, first line 3: 'images/31.tiff'"),
        ("images/000031.png", "has 1 malformed line, first line 3: 'images/000031.png'"),
        (f"images/{N_CRC:06d}.tiff", "has 1 line naming images that do not exist, first line 3"),
    ],
)
def test_bad_split_lines(tmp_path: Path, line: str, expected: str) -> None:
    folder, dataset = write_installed(CRC, tmp_path)
    test = folder / "splits" / "test.txt"
    lines = read_lines(test)
    lines[2] = line
    write_lines(test, lines)
    messages = problems_at(check_structure(folder, dataset), "splits/test.txt")
    assert any(message.startswith(expected) for message in messages), messages


def test_a_split_file_for_an_empty_split(tmp_path: Path) -> None:
    """crc's original test split is empty, so upstream writes no file for it."""
    folder, dataset = write_installed(CRC, tmp_path)
    assert dataset.original_splits.test == 0
    (folder / "original_splits" / "test.txt").write_text("")
    problems = check_structure(folder, dataset)
    assert problems == [
        StructureProblem("original_splits/test.txt", "is present, but the split is empty")
    ]


def test_a_missing_split_file(tmp_path: Path) -> None:
    folder, dataset = write_installed(ORGANS_AXIAL, tmp_path)
    (folder / "splits" / "val.txt").unlink()
    problems = check_structure(folder, dataset)
    count = ORGANS_AXIAL.split_count("val")
    assert problems == [StructureProblem("splits/val.txt", f"is missing ({count} images expected)")]


def test_a_trailing_newline_is_tolerated(tmp_path: Path) -> None:
    folder, dataset = write_installed(CRC, tmp_path)
    train = folder / "splits" / "train.txt"
    train.write_text(train.read_text() + "\n")
    assert check_structure(folder, dataset) == []


# --------------------------------------------------------------------------- many at once


def test_every_problem_is_collected(tmp_path: Path) -> None:
    folder, dataset = write_installed(DR_REGULAR, tmp_path)
    (folder / "LICENSE").unlink()
    (folder / "images.hdf5").write_bytes(b"")
    (folder / "task_labels" / "Artifact.npy").write_bytes(b"\x93NUMPY")
    (folder / "splits" / "test.txt").write_text("garbage")
    (folder / "info.yaml").write_text("id: dr_regular\n")
    assert paths(check_structure(folder, dataset)) == {
        "info.yaml",
        "LICENSE",
        "images.hdf5",
        "task_labels/Artifact.npy",
        "splits/test.txt",
        "splits",
    }


def test_an_empty_folder(tmp_path: Path) -> None:
    folder, dataset = write_installed(CXR, tmp_path)
    problems = check_structure(tmp_path / "elsewhere", dataset)
    assert {p.path for p in problems if p.message.startswith("is missing")} == {
        "info.yaml",
        "LICENSE",
        "annotations.csv",
        "images.hdf5",
        "task_labels/disease labels.npy",
        "task_labels/patient sex.npy",
        *(f"splits/{split}.txt" for split in SPLIT_NAMES if CXR.split_count(split)),
        *(
            f"original_splits/{split}.txt"
            for split in SPLIT_NAMES
            if CXR.split_count(split, original=True)
        ),
    }
    assert folder.is_dir()


@pytest.mark.parametrize("kind", ["external", "virtual"])
def test_images_stored_outside_the_folder_are_a_problem(tmp_path: Path, kind: str) -> None:
    folder, dataset = write_installed(CXR, tmp_path / "root")
    point_images_outside(folder, tmp_path / "outside.bin", kind)
    [problem] = check_structure(folder, dataset)
    assert problem.path == "images.hdf5"
    assert re.search("external storage|virtual dataset", problem.message)
