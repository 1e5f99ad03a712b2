"""Images of one installed dataset: ``images.hdf5``, or the identical TIFF files.

Reads from the HDF5 file are sorted and grouped into runs of whole chunks, so a
full pass streams at disk speed whatever order the caller asks for.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from itertools import pairwise
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

import h5py
import numpy as np
import numpy.typing as npt
from PIL import Image

from medimeta_cli.catalog.datasets import Dataset
from medimeta_cli.dataset.upstream import (
    HDF5_ERRORS,
    HDF5_NAME,
    IMAGES_DATASET,
    foreign_storage,
    image_relpath,
    open_hdf5,
)
from medimeta_cli.errors import IntegrityError, UsageError

_Reader = TypeVar("_Reader", bound="ImageReader")

# Upper bound on the rows one HDF5 read may span; a sparse run reads whole chunks,
# so this bounds the scratch memory of a read (64 RGB images are about 10 MB).
_MAX_RUN_ROWS: Final = 64


def _as_indices(indices: npt.NDArray[Any] | Sequence[int]) -> npt.NDArray[np.int64]:
    """Validate and convert caller-supplied image indices to a 1-D int64 array."""
    array = np.asarray(indices)
    if array.size == 0:
        return np.empty(0, dtype=np.int64)
    if array.ndim != 1 or array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise UsageError(
            f"image indices must be a 1-D sequence of integers, not {array.dtype} "
            f"with shape {array.shape}",
            hint="Pass image numbers such as those returned by split_indices().",
        )
    return array.astype(np.int64, copy=False)


def _runs(rows: npt.NDArray[np.int64], chunk_rows: int, max_rows: int) -> list[tuple[int, int]]:
    """Group sorted unique ``rows`` into ``(start, stop)`` position ranges to read at once.

    Rows in the same or neighbouring chunks share a run (their chunks must be read
    anyway); a run never skips a whole chunk and spans at most ``max_rows`` rows,
    cut at chunk-aligned boundaries. With ``chunk_rows == 1`` (or a contiguous
    layout) a run is a stretch of consecutive rows.
    """
    count = len(rows)
    if count == 0:
        return []
    chunk_rows = max(1, chunk_rows)
    max_rows = max(chunk_rows, max_rows - max_rows % chunk_rows)
    chunk_ids = rows // chunk_rows
    breaks = np.flatnonzero(np.diff(chunk_ids) > 1) + 1
    starts = [0, *breaks.tolist()]
    stops = [*breaks.tolist(), count]
    runs: list[tuple[int, int]] = []
    for start, stop in zip(starts, stops, strict=True):
        first, last = int(rows[start]), int(rows[stop - 1])
        if last - first < max_rows:
            runs.append((start, stop))
            continue
        base = first - first % chunk_rows
        boundaries = np.arange(base + max_rows, last + 1, max_rows, dtype=np.int64)
        cuts = [start, *(start + np.searchsorted(rows[start:stop], boundaries)).tolist(), stop]
        runs.extend((a, b) for a, b in pairwise(cuts) if a < b)
    return runs


class ImageReader:
    """Read access to the images of one installed dataset folder ``<root>/<id>/``.

    The HDF5 file is opened on first use and kept open until :meth:`close` (or the
    end of a ``with`` block); a closed reader opens it again when used again.
    """

    def __init__(self, folder: Path, dataset: Dataset) -> None:
        self._folder = Path(folder)
        self._dataset = dataset
        self._file: Any = None
        self._images: Any = None
        self._tiff_count: int | None = None

    @property
    def folder(self) -> Path:
        """The dataset folder."""
        return self._folder

    @property
    def dataset(self) -> Dataset:
        """The description of the dataset (its own ``info.yaml`` when opened with
        :meth:`medimeta_cli.dataset.reader.DatasetReader.open`)."""
        return self._dataset

    @property
    def has_hdf5(self) -> bool:
        """Whether ``images.hdf5`` exists (otherwise images come from the TIFF files)."""
        return self._images is not None or (self._folder / HDF5_NAME).is_file()

    @property
    def num_images(self) -> int:
        """Number of images: rows of images.hdf5, else TIFF files, else the described count."""
        if self.has_hdf5:
            return int(self._hdf5_images().shape[0])
        if self._tiff_count is None:
            images = self._folder / "images"
            if images.is_dir():
                with os.scandir(images) as entries:
                    self._tiff_count = sum(1 for e in entries if e.name.endswith(".tiff"))
            else:
                self._tiff_count = self._dataset.num_samples
        return self._tiff_count

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one image: ``(H, W)`` for grayscale, ``(H, W, 3)`` for RGB."""
        if self.has_hdf5:
            return tuple(int(n) for n in self._hdf5_images().shape[1:])
        return self._described_image_shape()

    def _described_image_shape(self) -> tuple[int, ...]:
        size = self._dataset.input_size
        if size.channels == 1:
            return (size.height, size.width)
        return (size.height, size.width, size.channels)

    def _deep_hint(self) -> str:
        return f"Run `medimeta verify --deep {self._dataset.id}` to see every problem."

    def _full_hint(self) -> str:
        return f"Run `medimeta verify --full {self._dataset.id}` to check the files on disk."

    def read_images(
        self,
        indices: npt.NDArray[Any] | Sequence[int],
        *,
        out: npt.NDArray[np.uint8] | None = None,
    ) -> npt.NDArray[np.uint8]:
        """Images at ``indices`` (any order, repeats allowed) as uint8 ``(len, H, W[, C])``.

        ``out``, a buffer of at least ``len(indices)`` images, is filled and a view of it
        returned when the indices are ascending and distinct (the streaming case).
        """
        wanted = self._checked_indices(indices)
        shape = self.image_shape
        if len(wanted) == 0:
            return np.empty((0, *shape), dtype=np.uint8)
        # Read each image once, in ascending order, then restore the order asked for.
        unique, inverse = np.unique(wanted, return_inverse=True)
        if self.has_hdf5:
            reuse = out if out is not None and len(unique) == len(wanted) else None
            images = self._read_hdf5_sorted(unique, reuse)
        else:
            images = self._read_tiffs(unique, shape)
        if len(unique) == len(wanted) and bool(np.all(unique == wanted)):
            return images
        result: npt.NDArray[np.uint8] = images[inverse.reshape(-1)]
        return result

    def iter_batches(
        self,
        indices: npt.NDArray[Any] | Sequence[int],
        batch_size: int = 256,
        *,
        reuse_buffer: bool = False,
    ) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]]:
        """Yield ``(batch_indices, images)`` over ``indices`` in order, ``batch_size`` at most.

        For ascending indices, batches end at chunk boundaries, so no HDF5 chunk is
        read twice and memory stays bounded by one batch. With ``reuse_buffer`` every
        batch is read into the same array (valid until the next batch): a fresh 40 MB
        array per batch costs the kernel more than reading it does.
        """
        if batch_size < 1:
            raise UsageError(
                f"batch size must be positive, not {batch_size}", hint="Use a batch size >= 1."
            )
        wanted = self._checked_indices(indices)
        count = len(wanted)
        chunk_rows = self._chunk_rows() if self.has_hdf5 else 1
        ascending = count < 2 or bool(np.all(wanted[1:] >= wanted[:-1]))
        buffer = (
            np.empty((min(batch_size, count), *self.image_shape), dtype=np.uint8)
            if reuse_buffer and count
            else None
        )
        position = 0
        while position < count:
            end = min(position + batch_size, count)
            if ascending and chunk_rows > 1 and end < count:
                # Leave the chunk holding the next index entirely to the next batch.
                boundary = (int(wanted[end]) // chunk_rows) * chunk_rows
                aligned = position + int(np.searchsorted(wanted[position:end], boundary))
                if aligned > position:
                    end = aligned
            batch = wanted[position:end]
            yield batch, self.read_images(batch, out=buffer)
            position = end

    def _checked_indices(self, indices: npt.NDArray[Any] | Sequence[int]) -> npt.NDArray[np.int64]:
        wanted = _as_indices(indices)
        if len(wanted):
            total = self.num_images
            low, high = int(wanted.min()), int(wanted.max())
            if low < 0 or high >= total:
                bad = low if low < 0 else high
                raise UsageError(
                    f"image index {bad} is out of range: {self._dataset.id!r} has {total} images",
                    hint=f"Use indices from 0 to {total - 1}.",
                )
        return wanted

    def _read_hdf5_sorted(
        self, rows: npt.NDArray[np.int64], buffer: npt.NDArray[np.uint8] | None = None
    ) -> npt.NDArray[np.uint8]:
        """Rows (sorted, unique) of the HDF5 dataset, one slice per chunk-aligned run."""
        dset = self._hdf5_images()
        shape = (len(rows), *self.image_shape)
        if buffer is not None and buffer.shape[1:] == shape[1:] and len(buffer) >= len(rows):
            out = buffer[: len(rows)]
        else:
            out = np.empty(shape, dtype=np.uint8)
        try:
            for start, stop in _runs(rows, self._chunk_rows(), _MAX_RUN_ROWS):
                first, last = int(rows[start]), int(rows[stop - 1])
                if last - first + 1 == stop - start:
                    dset.read_direct(out, np.s_[first : last + 1], np.s_[start:stop])
                else:
                    block = dset[first : last + 1]
                    out[start:stop] = block[rows[start:stop] - first]
        except HDF5_ERRORS as exc:
            raise self._hdf5_error(exc) from exc
        return out

    def _read_tiffs(
        self, rows: npt.NDArray[np.int64], shape: tuple[int, ...]
    ) -> npt.NDArray[np.uint8]:
        out = np.empty((len(rows), *shape), dtype=np.uint8)
        for position, index in enumerate(rows.tolist()):
            rel = image_relpath(index)
            try:
                with Image.open(self._folder / rel) as image:
                    pixels = np.asarray(image)
            except FileNotFoundError as exc:
                raise IntegrityError(
                    f"{rel} of {self._dataset.id!r} is missing (and there is no {HDF5_NAME})",
                    hint=self._full_hint(),
                ) from exc
            except (OSError, ValueError) as exc:
                raise IntegrityError(
                    f"{rel} of {self._dataset.id!r} cannot be read: {one_line(exc)}",
                    hint=self._full_hint(),
                ) from exc
            if pixels.shape != shape or pixels.dtype != np.uint8:
                raise IntegrityError(
                    f"{rel} of {self._dataset.id!r} is {pixels.dtype} {pixels.shape}, "
                    f"expected uint8 {shape}",
                    hint=self._deep_hint(),
                )
            out[position] = pixels
        return out

    def _hdf5_error(self, exc: BaseException) -> IntegrityError:
        return IntegrityError(
            f"{HDF5_NAME} of {self._dataset.id!r} cannot be read (truncated or corrupt): "
            f"{one_line(exc)}",
            hint=self._full_hint(),
        )

    def _hdf5_images(self) -> Any:
        """The ``images`` dataset of the HDF5 file, opening the file on first use."""
        if self._images is not None:
            return self._images
        path = self._folder / HDF5_NAME
        try:
            handle = open_hdf5(path)
        except HDF5_ERRORS as exc:
            raise self._hdf5_error(exc) from exc
        try:
            dset = handle.get(IMAGES_DATASET)
            if not isinstance(dset, h5py.Dataset):
                raise IntegrityError(
                    f"{HDF5_NAME} of {self._dataset.id!r} has no dataset {IMAGES_DATASET!r}",
                    hint=self._deep_hint(),
                )
            foreign = foreign_storage(dset)
            if foreign is not None:
                raise IntegrityError(
                    f"{HDF5_NAME} of {self._dataset.id!r}: {IMAGES_DATASET!r} {foreign}; "
                    "refused, only data inside the dataset folder is read",
                    hint=f"Reinstall it: `medimeta download --force {self._dataset.id}`.",
                )
            if dset.dtype != np.uint8 or dset.ndim not in (3, 4):
                raise IntegrityError(
                    f"{HDF5_NAME} of {self._dataset.id!r} holds {dset.dtype} {dset.shape}, "
                    "expected uint8 (N, H, W) or (N, H, W, 3)",
                    hint=self._deep_hint(),
                )
        except HDF5_ERRORS as exc:
            handle.close()
            raise self._hdf5_error(exc) from exc
        except BaseException:
            handle.close()
            raise
        self._file = handle
        self._images = dset
        return dset

    def _chunk_rows(self) -> int:
        chunks = self._hdf5_images().chunks
        return int(chunks[0]) if chunks else 1

    def close(self) -> None:
        """Close the HDF5 file if it is open (safe to call more than once)."""
        handle, self._file, self._images = self._file, None, None
        if handle is not None:
            handle.close()

    def __enter__(self: _Reader) -> _Reader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def one_line(exc: BaseException) -> str:
    """An exception's message folded onto one line."""
    return " ".join(str(exc).split()) or type(exc).__name__
