"""NumPy exports: streamed .npy and .npz files (``export.npy``)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from medimeta_cli.dataset.selection import SelectionSpec
from tests.conftest import InstalledData
from tests.support import archives
from tests.support.exports import files_of, run_export


@pytest.mark.parametrize("npz", [False, True])
def test_numpy_arrays_equal_the_hdf5_rows(
    installed: InstalledData, tmp_path: Path, npz: bool
) -> None:
    spec = installed.specs["cxr"]
    out = tmp_path / "out"
    run_export(
        installed,
        "cxr",
        out,
        SelectionSpec(task="patient sex"),
        format="numpy",
        npz=npz,
        compress=npz,
    )
    images = archives.expected_images(spec)
    labels = archives.expected_labels(spec, "patient sex")
    for split in ("train", "val", "test"):
        if npz:
            with np.load(out / f"{split}.npz") as bundle:
                arrays = {name: bundle[name] for name in ("images", "labels", "indices")}
        else:
            arrays = {n: np.load(out / split / f"{n}.npy") for n in ("images", "labels", "indices")}
        expected = np.array(sorted(archives.split_indices(spec, split)))
        np.testing.assert_array_equal(arrays["indices"], expected)
        np.testing.assert_array_equal(arrays["images"], images[expected])
        np.testing.assert_array_equal(arrays["labels"], labels[expected])
        assert arrays["images"].dtype == np.uint8 and arrays["images"].shape[1:] == (224, 224)


def test_npy_files_are_what_np_save_writes(installed: InstalledData, tmp_path: Path) -> None:
    run_export(installed, "crc", tmp_path / "out", format="numpy")
    images = np.load(tmp_path / "out" / "train" / "images.npy")
    np.save(tmp_path / "ref.npy", images)
    assert (tmp_path / "ref.npy").read_bytes() == (tmp_path / "out/train/images.npy").read_bytes()


@pytest.mark.parametrize("npz", [False, True])
def test_numpy_exports_hold_keys_and_class_indices(
    installed: InstalledData, tmp_path: Path, npz: bool
) -> None:
    """dr_regular "Clarity" keys are 1, 4, 6, 8, 10; cross-entropy needs 0..4."""
    spec = installed.specs["dr_regular"]
    out = tmp_path / "out"
    run_export(installed, "dr_regular", out, SelectionSpec(task="Clarity"), format="numpy", npz=npz)
    classes = json.loads((out / "classes.json").read_text())
    assert classes["index_by_key"] == {"1": 0, "4": 1, "6": 2, "8": 3, "10": 4}
    assert "label_indices.npy" in classes["labels"]
    labels = archives.expected_labels(spec, "Clarity")
    for split in ("train", "val", "test"):
        if npz:
            with np.load(out / f"{split}.npz") as bundle:
                assert bundle.files == ["images", "labels", "label_indices", "indices"]
                arrays = {name: bundle[name] for name in bundle.files}
        else:
            arrays = {
                n: np.load(out / split / f"{n}.npy") for n in ("labels", "label_indices", "indices")
            }
        np.testing.assert_array_equal(arrays["labels"], labels[arrays["indices"]])
        expected = [classes["index_by_key"][str(key)] for key in arrays["labels"].tolist()]
        assert arrays["label_indices"].tolist() == expected
        assert arrays["label_indices"].dtype == np.int64


def test_multilabel_numpy_exports_have_no_label_indices(
    installed: InstalledData, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run_export(installed, "cxr", out, SelectionSpec(task="disease labels"), format="numpy")
    assert sorted(p.name for p in (out / "train").iterdir()) == [
        "images.npy",
        "indices.npy",
        "labels.npy",
    ]
    classes = json.loads((out / "classes.json").read_text())
    assert [c["index"] for c in classes["classes"]] == [c["key"] for c in classes["classes"]]
    assert "columns are in index order" in classes["labels"]


def test_shards_of_a_numpy_export_merge_the_class_indices(
    installed: InstalledData, tmp_path: Path
) -> None:
    spec = SelectionSpec(task="Artifact")
    run_export(installed, "dr_regular", tmp_path / "whole", spec, format="numpy", command="c")
    for i in (1, 2, 3):
        run_export(
            installed,
            "dr_regular",
            tmp_path / "sharded",
            replace(spec, shard=(i, 3)),
            format="numpy",
            command="c",
        )
    assert files_of(tmp_path / "sharded") == files_of(tmp_path / "whole")
    assert (tmp_path / "sharded" / "test" / "label_indices.npy").is_file()
