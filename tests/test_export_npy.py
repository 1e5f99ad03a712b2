"""NumPy exports: streamed .npy and .npz files (``export.npy``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medimeta_cli.selection import SelectionSpec
from tests.conftest import InstalledData
from tests.support import archives
from tests.support.exports import run_export


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
