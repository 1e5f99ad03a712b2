"""``normalization`` in provenance.json: the mean and std of what an export holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from medimeta_cli.dataset.reader import DatasetReader
from medimeta_cli.dataset.selection import SelectionSpec, select
from medimeta_cli.export import ExportOptions
from medimeta_cli.export.normalization import export_sums, observe, tallied
from tests.conftest import InstalledData
from tests.support import archives
from tests.support.exports import files_of, run_export


def _provenance(out: Path) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    return found


def _numpy(images: npt.NDArray[np.uint8]) -> tuple[list[float], list[float]]:
    scaled = images.astype(np.float64) / 255
    if scaled.ndim == 3:
        return [float(scaled.mean())], [float(scaled.std())]
    return scaled.mean(axis=(0, 1, 2)).tolist(), scaled.std(axis=(0, 1, 2)).tolist()


@pytest.mark.parametrize(
    ("dataset_id", "color", "channels"),
    [("crc", None, 3), ("crc", "grayscale", 1), ("cxr", "rgb", 3), ("cxr", None, 1)],
)
def test_normalization_is_numpys_on_the_exported_train_images(
    installed: InstalledData, tmp_path: Path, dataset_id: str, color: str | None, channels: int
) -> None:
    """After --rgb/--grayscale, of the exported (here: --limit) train images only."""
    out = tmp_path / "out"
    run_export(
        installed,
        dataset_id,
        out,
        SelectionSpec(task=installed.catalog().get(dataset_id).tasks[0].name, limit=9),
        format="numpy",
        color=color,
    )
    entry = _provenance(out)["normalization"]
    images = np.load(out / "train" / "images.npy")
    mean, std = _numpy(images)
    assert entry["of"] == "the exported train split"
    assert entry["images"] == len(images) and entry["channels"] == channels
    np.testing.assert_allclose(entry["mean"], mean, rtol=1e-9)
    np.testing.assert_allclose(entry["std"], std, rtol=1e-9)


def test_without_a_train_split_every_exported_image_counts(
    installed: InstalledData, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run_export(installed, "crc", out, SelectionSpec(splits=("val", "test")), format="numpy")
    entry = _provenance(out)["normalization"]
    images = np.concatenate([np.load(out / s / "images.npy") for s in ("val", "test")])
    mean, std = _numpy(images)
    assert entry["of"] == "all exported images"
    np.testing.assert_allclose(entry["mean"], mean, rtol=1e-9)
    np.testing.assert_allclose(entry["std"], std, rtol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("export_format", ["imagefolder", "numpy"])
def test_a_sharded_export_has_the_same_normalization_byte_for_byte(
    installed: InstalledData, tmp_path: Path, export_format: str
) -> None:
    whole = tmp_path / "whole"
    run_export(installed, "crc", whole, SelectionSpec(), format=export_format)
    sharded = tmp_path / "sharded"
    for index in (2, 3, 1):
        run_export(installed, "crc", sharded, SelectionSpec(shard=(index, 3)), format=export_format)
    assert files_of(sharded) == files_of(whole)
    assert "normalization" in _provenance(sharded)


def test_class_folders_and_arrays_give_the_same_normalization(
    installed: InstalledData, tmp_path: Path
) -> None:
    """Arrays are summed as they are written, class folders by a pass of their own."""
    found = []
    for export_format in ("imagefolder", "numpy"):
        out = tmp_path / export_format
        run_export(installed, "crc", out, SelectionSpec(limit=6), format=export_format, jobs=1)
        found.append(_provenance(out)["normalization"])
    assert found[0] == found[1]


def test_the_sums_a_writer_hands_over_are_used_only_when_complete(
    installed: InstalledData,
) -> None:
    """Every chosen image observed once: those sums (here of blank images, which no pass
    over the real ones would give); fewer: a pass of its own over the real images."""
    dataset = installed.catalog().get("crc")
    with DatasetReader.open(installed.root, dataset) as reader:
        selection = select(reader, SelectionSpec(limit=4))
    options = ExportOptions()
    folder = installed.root / "crc"
    train = next(p for p in selection.parts if p.split == "train")
    blank = np.zeros((len(train.indices), *archives.CRC.image_shape), dtype=np.uint8)
    with tallied(folder, selection, selection, options) as sums:
        observe("train", blank)
        observe("val", blank + 200)  # not a chosen split: not counted
    assert sums().mean() == [0.0, 0.0, 0.0]
    with tallied(folder, selection, selection, options) as sums:
        observe("train", blank[:1])
    expected = export_sums(folder, selection, selection, options)
    assert sums() == expected and expected.mean() != [0.0, 0.0, 0.0]
