"""``normalization`` in provenance.json: the mean and std of what an export holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from medimeta_cli.dataset.images import ImageReader
from medimeta_cli.dataset.reader import DatasetReader
from medimeta_cli.dataset.selection import SelectionSpec, select, shard_bounds
from medimeta_cli.dataset.stats import PixelSums, pixel_sums
from medimeta_cli.export import ExportOptions, parquet
from medimeta_cli.export.normalization import export_sums, observe, observe_sums, tallied
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
@pytest.mark.parametrize("export_format", ["imagefolder", "numpy", "webdataset", "parquet"])
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
    """Arrays are summed in this process as they are written, class folders where their
    images are read and encoded."""
    found = []
    for export_format in ("imagefolder", "numpy"):
        out = tmp_path / export_format
        run_export(installed, "crc", out, SelectionSpec(limit=6), format=export_format, jobs=1)
        found.append(_provenance(out)["normalization"])
    assert found[0] == found[1]


def test_the_sums_a_writer_hands_over_are_completed_by_reading_only_the_rest(
    installed: InstalledData,
) -> None:
    """Every chosen image handed over once: those sums (here of blank images, which no
    read of the real ones would give); some: the rest are read; an image twice, or one
    not chosen: a pass of their own over the real images."""
    dataset = installed.catalog().get("crc")
    with DatasetReader.open(installed.root, dataset) as reader:
        selection = select(reader, SelectionSpec(limit=4))
    options = ExportOptions()
    folder = installed.root / "crc"
    train = next(p for p in selection.parts if p.split == "train")
    val = next(p for p in selection.parts if p.split == "val")
    blank = np.zeros((len(train.indices), *archives.CRC.image_shape), dtype=np.uint8)
    with tallied(folder, selection, selection, options) as sums:
        observe("train", blank, train.indices)
        observe("val", blank + 200, val.indices)  # not a chosen split: not counted
    assert sums().mean() == [0.0, 0.0, 0.0] and sums().images == len(train.indices)
    expected = export_sums(folder, selection, selection, options)
    assert expected.mean() != [0.0, 0.0, 0.0]
    # One blank image handed over (in a worker's sums): the real others are read.
    with tallied(folder, selection, selection, options) as sums:
        observe_sums("train", train.indices[:1], PixelSums(3, 1, 0, [0] * 3, [0] * 3).to_json())
    with ImageReader(folder, dataset) as reader:
        first = pixel_sums(reader, train.indices[:1])
    completed = sums()
    assert completed.images == expected.images and completed.count == expected.count - first.count
    assert completed.sums == [a - b for a, b in zip(expected.sums, first.sums, strict=True)]
    for handed in (np.repeat(train.indices[:1], 2), val.indices[:1] + 10_000):
        with tallied(folder, selection, selection, options) as sums:
            observe("train", blank[: len(handed)], handed)
        assert sums() == expected


def _spy_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every image index read through an image reader in this process, as read."""
    read: list[int] = []
    original = ImageReader.read_images

    def read_images(self: ImageReader, indices: Any, **kwargs: Any) -> npt.NDArray[np.uint8]:
        read.extend(int(i) for i in np.asarray(indices).ravel())
        return original(self, indices, **kwargs)

    monkeypatch.setattr(ImageReader, "read_images", read_images)
    return read


@pytest.mark.parametrize("export_format", ["imagefolder", "webdataset", "parquet", "numpy"])
def test_every_format_reads_each_image_once(
    installed: InstalledData,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    export_format: str,
) -> None:
    """The normalization is summed as the images are written: no second read."""
    read = _spy_reads(monkeypatch)
    out = tmp_path / "out"
    result = run_export(installed, "crc", out, SelectionSpec(), format=export_format, jobs=1)
    assert len(read) == result.images and len(set(read)) == len(read)
    reference = tmp_path / "numpy"
    run_export(installed, "crc", reference, SelectionSpec(), format="numpy", jobs=1)
    assert _provenance(out)["normalization"] == _provenance(reference)["normalization"]


@pytest.mark.slow
@pytest.mark.parametrize("export_format", ["imagefolder", "webdataset", "parquet"])
def test_worker_processes_sum_what_they_read(
    installed: InstalledData,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    export_format: str,
) -> None:
    """With --jobs 2 the workers read the images and sum them; this process reads none
    (not one image, so no pass after writing), and the figures are those of one process."""
    spec = SelectionSpec(task=installed.catalog().get("cxr").tasks[0].name)
    # Units of 2 images, so that the few of each split go to both workers.
    monkeypatch.setattr(parquet, "UNIT", 2)
    reference = tmp_path / "one"
    run_export(installed, "cxr", reference, spec, format=export_format, jobs=1)
    read = _spy_reads(monkeypatch)
    out = tmp_path / "two"
    run_export(installed, "cxr", out, spec, format=export_format, jobs=2)
    assert read == []
    assert _provenance(out)["normalization"] == _provenance(reference)["normalization"]


@pytest.mark.slow
def test_a_webdataset_job_reads_again_only_the_images_the_job_before_wrote(
    installed: InstalledData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """3 images per tar: the slices of 3 jobs cut through tars, and a job writes the tars
    that begin in its slice; it sums those images of its slice, and reads for the sums
    only the ones at the start of its slice that the job before wrote into its last tar."""
    common: dict[str, Any] = {"format": "webdataset", "shard_size": "3images", "jobs": 1}
    whole = tmp_path / "whole"
    run_export(installed, "crc", whole, **common)
    read = _spy_reads(monkeypatch)
    sharded = tmp_path / "sharded"
    for index in (1, 2, 3):
        run_export(installed, "crc", sharded, SelectionSpec(shard=(index, 3)), **common)
    train = installed.specs["crc"].split_count("train")
    total = sum(installed.specs["crc"].split_count(s) for s in ("train", "val", "test"))
    gaps = 0
    for job in (1, 2, 3):
        start, stop = shard_bounds(train, (job, 3))
        gaps += min(-(-start // 3) * 3, stop) - start
    assert gaps > 0
    assert len(read) == total + gaps
    assert files_of(sharded) == files_of(whole)
