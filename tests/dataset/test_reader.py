"""Opening installed datasets and reading their labels and splits (upstream layout)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medimeta_cli.dataset.reader import DatasetReader
from medimeta_cli.errors import (
    IntegrityError,
    NotInstalledError,
    UnknownTaskError,
    UsageError,
)
from tests.support.archives import (
    ALL_SPECS,
    CRC,
    CXR,
    DR_REGULAR,
    SPLIT_NAMES,
    DatasetSpec,
    expected_labels,
    split_indices,
)
from tests.support.helpers import write_installed

SPECS = list(ALL_SPECS.values())


# --------------------------------------------------------------------------- opening


def test_open_needs_info_yaml(tmp_path: Path) -> None:
    folder, dataset = write_installed(CRC, tmp_path)
    (folder / "info.yaml").unlink()
    with pytest.raises(NotInstalledError) as caught:
        DatasetReader.open(tmp_path, dataset)
    assert "medimeta download crc" in caught.value.hint


def test_open_finds_the_dataset_folder(tmp_path: Path) -> None:
    folder, dataset = write_installed(CRC, tmp_path)
    with DatasetReader.open(tmp_path, dataset) as reader:
        assert reader.folder == folder
        assert reader.dataset == dataset  # read again from info.yaml, the authority
        assert reader.has_hdf5


@pytest.mark.parametrize("spec", [CRC, CXR], ids=["rgb", "grayscale"])
def test_size_and_shape(tmp_path: Path, spec: DatasetSpec) -> None:
    _, dataset = write_installed(spec, tmp_path)
    with DatasetReader.open(tmp_path, dataset) as reader:
        assert reader.num_images == spec.num_images
        assert reader.image_shape == spec.image_shape


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_labels_of_every_task(tmp_path: Path, spec: DatasetSpec) -> None:
    _, dataset = write_installed(spec, tmp_path)
    with DatasetReader.open(tmp_path, dataset) as reader:
        for task in dataset.tasks:
            np.testing.assert_array_equal(reader.labels(task), expected_labels(spec, task.name))
            np.testing.assert_array_equal(
                reader.labels(task.name.upper()), expected_labels(spec, task.name)
            )


def test_label_keys_are_kept_as_stored(tmp_path: Path) -> None:
    _, dataset = write_installed(DR_REGULAR, tmp_path)
    with DatasetReader.open(tmp_path, dataset) as reader:
        clarity = reader.labels("Clarity")
    assert set(np.unique(clarity).tolist()) == {1, 4, 6, 8, 10}


def test_multilabel_labels_are_a_matrix(tmp_path: Path) -> None:
    _, dataset = write_installed(CXR, tmp_path)
    with DatasetReader.open(tmp_path, dataset) as reader:
        labels = reader.labels("disease labels")
    assert labels.shape == (CXR.num_images, 14)


def test_unknown_task(tmp_path: Path) -> None:
    _, dataset = write_installed(CXR, tmp_path)
    with DatasetReader.open(tmp_path, dataset) as reader, pytest.raises(UnknownTaskError):
        reader.labels("patient age")


@pytest.mark.parametrize("damage", ["missing", "truncated", "short", "not numeric", "2-D"])
def test_damaged_labels(tmp_path: Path, damage: str) -> None:
    folder, dataset = write_installed(DR_REGULAR, tmp_path)
    path = folder / "task_labels" / "DR level.npy"
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "short":
        np.save(path, np.zeros(DR_REGULAR.num_images - 1, np.int64))
    elif damage == "not numeric":
        np.save(path, np.array(["a"] * DR_REGULAR.num_images))
    else:
        np.save(path, np.zeros((DR_REGULAR.num_images, 2), np.int64))
    with DatasetReader.open(tmp_path, dataset) as reader, pytest.raises(IntegrityError) as caught:
        reader.labels("DR level")
    assert "task_labels/DR level.npy" in caught.value.message
    assert "medimeta verify --deep dr_regular" in caught.value.hint


# --------------------------------------------------------------------------- splits


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_split_indices_match_the_fixture(tmp_path: Path, spec: DatasetSpec) -> None:
    _, dataset = write_installed(spec, tmp_path)
    with DatasetReader.open(tmp_path, dataset) as reader:
        for original in (False, True):
            for split in SPLIT_NAMES:
                found = reader.split_indices(split, original=original)
                assert found.dtype == np.int64
                np.testing.assert_array_equal(found, split_indices(spec, split, original=original))


def test_an_absent_split_file_is_an_empty_split(tmp_path: Path) -> None:
    folder, dataset = write_installed(CRC, tmp_path)
    assert not (folder / "original_splits" / "test.txt").exists()
    with DatasetReader.open(tmp_path, dataset) as reader:
        found = reader.split_indices("test", original=True)
    assert found.shape == (0,)
    assert found.dtype == np.int64


@pytest.mark.parametrize("original", [False, True])
def test_a_lost_split_file_is_an_integrity_error(tmp_path: Path, original: bool) -> None:
    folder, dataset = write_installed(CRC, tmp_path)
    kind = "original_splits" if original else "splits"
    (folder / kind / "val.txt").unlink()
    with DatasetReader.open(tmp_path, dataset) as reader, pytest.raises(IntegrityError) as caught:
        reader.split_indices("val", original=original)
    count = CRC.split_count("val", original=original)
    assert count > 0
    assert str(caught.value) == (
        f"{kind}/val.txt of 'crc' is missing, but info.yaml gives the "
        f"{'original ' if original else ''}val split {count} images"
    )
    assert "verify --repair crc" in caught.value.hint


def test_split_indices_keep_file_order(tmp_path: Path) -> None:
    folder, dataset = write_installed(CRC, tmp_path)
    path = folder / "splits" / "val.txt"
    # Descending order, as many lines as info.yaml gives the split.
    lines = sorted(path.read_text().split("\n"), reverse=True)
    path.write_text("\n".join(lines))
    expected = [int(line[len("images/") : -len(".tiff")]) for line in lines]
    assert expected != sorted(expected)
    with DatasetReader.open(tmp_path, dataset) as reader:
        assert reader.split_indices("val").tolist() == expected


@pytest.mark.parametrize(
    ("line", "what"),
    [("images/12.tiff", "line 3"), (f"images/{CRC.num_images:06d}.tiff", "line 3"), ("", "line 3")],
    ids=["malformed", "out of range", "blank"],
)
def test_bad_split_line(tmp_path: Path, line: str, what: str) -> None:
    folder, dataset = write_installed(CRC, tmp_path)
    path = folder / "splits" / "train.txt"
    lines = path.read_text().split("\n")
    lines[2] = line
    path.write_text("\n".join(lines))
    with DatasetReader.open(tmp_path, dataset) as reader, pytest.raises(IntegrityError) as caught:
        reader.split_indices("train")
    assert "splits/train.txt" in caught.value.message
    assert what in caught.value.message
    assert "medimeta verify --deep crc" in caught.value.hint


def test_unknown_split_name(tmp_path: Path) -> None:
    _, dataset = write_installed(CRC, tmp_path)
    with DatasetReader.open(tmp_path, dataset) as reader, pytest.raises(UsageError):
        reader.split_indices("validation")
