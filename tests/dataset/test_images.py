"""Reading the images of installed datasets (HDF5 and TIFF, written in the upstream layout)."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from medimeta_cli.dataset.images import ImageReader, _runs
from medimeta_cli.dataset.reader import DatasetReader
from medimeta_cli.errors import (
    IntegrityError,
    UsageError,
)
from tests.support.archives import (
    ALL_SPECS,
    CRC,
    CXR,
    DatasetSpec,
    expected_images,
)
from tests.support.helpers import point_images_outside, write_installed

SPECS = list(ALL_SPECS.values())


def rewrite_hdf5(folder: Path, data: np.ndarray[Any, Any], *, chunks: Any = None) -> None:
    """Replace images.hdf5 with one holding ``data`` (chunked ``chunks`` rows, or contiguous)."""
    path = folder / "images.hdf5"
    path.unlink()
    layout = None if chunks is None else (chunks, *data.shape[1:])
    with h5py.File(path, "w") as handle:
        handle.create_dataset("images", data=data, chunks=layout)


class RecordingImages:
    """Stands in for the h5py dataset and records every read (to count HDF5 requests)."""

    def __init__(self, dset: Any) -> None:
        self.dset = dset
        self.reads: list[tuple[int, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.dset, name)

    def __getitem__(self, key: slice) -> Any:
        self.reads.append((key.start, key.stop))
        return self.dset[key]

    def read_direct(self, out: Any, source: slice, dest: slice) -> None:
        self.reads.append((source.start, source.stop))
        self.dset.read_direct(out, source, dest)


def recording(reader: DatasetReader) -> RecordingImages:
    spy = RecordingImages(reader._hdf5_images())
    reader._images = spy
    return spy


# --------------------------------------------------------------------------- images


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_reads_every_image(tmp_path: Path, spec: DatasetSpec) -> None:
    _, dataset = write_installed(spec, tmp_path)
    with DatasetReader.open(tmp_path, dataset) as reader:
        images = reader.read_images(np.arange(spec.num_images))
    assert images.dtype == np.uint8
    np.testing.assert_array_equal(images, expected_images(spec))


@pytest.mark.parametrize("spec", [CRC, CXR], ids=["rgb", "grayscale"])
def test_random_order_and_repeats(tmp_path: Path, spec: DatasetSpec) -> None:
    _, dataset = write_installed(spec, tmp_path)
    rng = np.random.default_rng(7)
    wanted = np.concatenate([rng.permutation(spec.num_images), [3, 3, 0, spec.num_images - 1]])
    with DatasetReader.open(tmp_path, dataset) as reader:
        images = reader.read_images(wanted)
        as_list = reader.read_images([5, 2, 5])
    np.testing.assert_array_equal(images, expected_images(spec)[wanted])
    np.testing.assert_array_equal(as_list, expected_images(spec)[[5, 2, 5]])


def test_no_indices_gives_an_empty_batch(tmp_path: Path) -> None:
    _, dataset = write_installed(CXR, tmp_path)
    with DatasetReader.open(tmp_path, dataset) as reader:
        images = reader.read_images([])
    assert images.shape == (0, *CXR.image_shape)
    assert images.dtype == np.uint8


@pytest.mark.parametrize(
    "bad", [[0, CRC.num_images], [-1], np.array([0.5, 1.0]), np.zeros((2, 2), int)]
)
def test_bad_indices_are_usage_errors(tmp_path: Path, bad: Any) -> None:
    _, dataset = write_installed(CRC, tmp_path)
    with DatasetReader.open(tmp_path, dataset) as reader, pytest.raises(UsageError):
        reader.read_images(bad)


def test_a_shuffled_pass_reads_sorted_runs(tmp_path: Path) -> None:
    """Random order costs nothing extra: the reads are ascending, contiguous slices."""
    _, dataset = write_installed(CRC, tmp_path)
    with DatasetReader.open(tmp_path, dataset) as reader:
        spy = recording(reader)
        wanted = np.random.default_rng(1).permutation(CRC.num_images)
        images = reader.read_images(wanted)
        assert spy.reads == [(0, CRC.num_images)]
        spy.reads.clear()
        reader.read_images([9, 2, 3, 4, 10, 30])
        assert spy.reads == [(2, 5), (9, 11), (30, 31)]
    np.testing.assert_array_equal(images, expected_images(CRC)[wanted])


@pytest.mark.parametrize("chunks", [None, 4, 5], ids=["contiguous", "chunks4", "chunks5"])
def test_other_hdf5_layouts(tmp_path: Path, chunks: int | None) -> None:
    folder, dataset = write_installed(CRC, tmp_path)
    expected = expected_images(CRC)
    rewrite_hdf5(folder, expected, chunks=chunks)
    wanted = np.array([35, 0, 7, 8, 21, 3, 3, 17, 34, 12])
    with DatasetReader.open(tmp_path, dataset) as reader:
        np.testing.assert_array_equal(reader.read_images(wanted), expected[wanted])
        np.testing.assert_array_equal(reader.read_images(np.arange(36)), expected)


def test_hdf5_is_opened_once_per_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, dataset = write_installed(CXR, tmp_path)
    opened: list[Path] = []
    real_file = h5py.File

    def counting_file(path: Path, *args: Any, **kwargs: Any) -> Any:
        opened.append(path)
        return real_file(path, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", counting_file)
    with DatasetReader.open(tmp_path, dataset) as reader:
        for _ in reader.iter_batches(np.arange(CXR.num_images), batch_size=3):
            pass
        reader.read_images([1, 2])
        assert reader.num_images == CXR.num_images
        handle = reader._file
    assert len(opened) == 1
    assert not handle.id.valid  # closed at the end of the with block


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_unreadable_hdf5_is_an_integrity_error(tmp_path: Path, damage: str) -> None:
    folder, dataset = write_installed(CRC, tmp_path)
    path = folder / "images.hdf5"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(b"not an HDF5 file" * 100)
    with DatasetReader.open(tmp_path, dataset) as reader, pytest.raises(IntegrityError) as caught:
        reader.read_images([0])
    assert "images.hdf5" in caught.value.message
    assert "medimeta verify --full crc" in caught.value.hint


def test_hdf5_without_images_dataset(tmp_path: Path) -> None:
    folder, dataset = write_installed(CXR, tmp_path)
    path = folder / "images.hdf5"
    path.unlink()
    with h5py.File(path, "w") as handle:
        handle.create_dataset("pixels", data=np.zeros((3, 4), np.uint8))
    with DatasetReader.open(tmp_path, dataset) as reader, pytest.raises(IntegrityError):
        reader.read_images([0])


@pytest.mark.parametrize("spec", [CRC, CXR], ids=["rgb", "grayscale"])
def test_tiff_fallback_without_hdf5(tmp_path: Path, spec: DatasetSpec) -> None:
    folder, dataset = write_installed(spec, tmp_path)
    (folder / "images.hdf5").unlink()
    wanted = np.array([4, 1, 4, spec.num_images - 1, 0])
    with DatasetReader.open(tmp_path, dataset) as reader:
        assert not reader.has_hdf5
        assert reader.num_images == spec.num_images
        assert reader.image_shape == spec.image_shape
        np.testing.assert_array_equal(reader.read_images(wanted), expected_images(spec)[wanted])
        batches = list(reader.iter_batches(np.arange(spec.num_images), batch_size=7))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), expected_images(spec))


def test_tiff_fallback_reports_a_missing_tiff(tmp_path: Path) -> None:
    folder, dataset = write_installed(CXR, tmp_path)
    (folder / "images.hdf5").unlink()
    (folder / "images" / "000003.tiff").unlink()
    with DatasetReader.open(tmp_path, dataset) as reader, pytest.raises(IntegrityError) as caught:
        reader.read_images([2, 3])
    assert "images/000003.tiff" in caught.value.message


# --------------------------------------------------------------------------- batches


def test_batches_keep_the_requested_order(tmp_path: Path) -> None:
    _, dataset = write_installed(CRC, tmp_path)
    wanted = np.random.default_rng(3).permutation(CRC.num_images)
    with DatasetReader.open(tmp_path, dataset) as reader:
        batches = list(reader.iter_batches(wanted, batch_size=5))
    assert all(len(indices) <= 5 for indices, _ in batches)
    np.testing.assert_array_equal(np.concatenate([i for i, _ in batches]), wanted)
    np.testing.assert_array_equal(
        np.concatenate([images for _, images in batches]), expected_images(CRC)[wanted]
    )


def test_batches_end_at_chunk_boundaries(tmp_path: Path) -> None:
    folder, dataset = write_installed(CRC, tmp_path)
    rewrite_hdf5(folder, expected_images(CRC), chunks=4)
    wanted = np.arange(1, CRC.num_images)
    with DatasetReader.open(tmp_path, dataset) as reader:
        batches = list(reader.iter_batches(wanted, batch_size=10))
    ends = [int(indices[-1]) for indices, _ in batches[:-1]]
    # Each batch but the last ends just before a chunk starts (rows 4k..4k+3 per chunk).
    assert all(end % 4 == 3 for end in ends), ends
    assert all(len(indices) <= 10 for indices, _ in batches)
    np.testing.assert_array_equal(np.concatenate([i for i, _ in batches]), wanted)
    np.testing.assert_array_equal(
        np.concatenate([images for _, images in batches]), expected_images(CRC)[wanted]
    )


def test_batch_size_must_be_positive(tmp_path: Path) -> None:
    _, dataset = write_installed(CXR, tmp_path)
    with DatasetReader.open(tmp_path, dataset) as reader, pytest.raises(UsageError):
        next(reader.iter_batches([0, 1], batch_size=0))


@pytest.mark.parametrize(
    ("rows", "chunk_rows", "max_rows", "expected"),
    [
        ([0, 1, 2, 3], 1, 64, [(0, 4)]),
        ([0, 2, 3, 7], 1, 64, [(0, 1), (1, 3), (3, 4)]),
        # Rows 1 and 6 sit in neighbouring 4-row chunks: both chunks are read anyway.
        ([1, 6, 13], 4, 64, [(0, 2), (2, 3)]),
        ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 1, 4, [(0, 4), (4, 8), (8, 10)]),
        ([], 1, 4, []),
    ],
)
def test_read_runs(
    rows: list[int], chunk_rows: int, max_rows: int, expected: list[tuple[int, int]]
) -> None:
    assert _runs(np.array(rows, dtype=np.int64), chunk_rows, max_rows) == expected


def test_runs_are_bounded_and_cover_every_row() -> None:
    rows = np.unique(np.random.default_rng(0).integers(0, 5000, size=900))
    runs = _runs(rows, 16, 64)
    assert runs[0][0] == 0
    assert runs[-1][1] == len(rows)
    assert all(a < b and b == c for (a, b), (c, _) in pairwise(runs))
    assert all(rows[b - 1] - rows[a] < 64 for a, b in runs)


def test_iter_batches_can_reuse_one_buffer(tmp_path: Path) -> None:
    folder, dataset = write_installed(CRC, tmp_path)
    with ImageReader(folder, dataset) as reader:
        indices = np.arange(CRC.num_images)
        fresh = [images.copy() for _, images in reader.iter_batches(indices, batch_size=8)]
        reused = list(reader.iter_batches(indices, batch_size=8, reuse_buffer=True))
    assert np.shares_memory(reused[0][1], reused[1][1])
    expected = expected_images(CRC)
    for (batch, _), images in zip(reused, fresh, strict=True):
        np.testing.assert_array_equal(images, expected[batch])


@pytest.mark.parametrize("kind", ["external", "virtual"])
def test_images_stored_outside_the_folder_are_refused(tmp_path: Path, kind: str) -> None:
    folder, dataset = write_installed(CXR, tmp_path / "root")
    point_images_outside(folder, tmp_path / "outside.bin", kind)
    with h5py.File(folder / "images.hdf5", "r") as handle:  # the trap itself works
        np.testing.assert_array_equal(handle["images"][:2], expected_images(CXR)[:2])
    with (
        DatasetReader.open(tmp_path / "root", dataset) as reader,
        pytest.raises(IntegrityError, match=r"external storage|virtual dataset"),
    ):
        reader.read_images([0, 1])
