"""The ``numpy`` format: streamed ``.npy`` files or one ``.npz`` per split, and shard merging.

Arrays are never held whole in memory: a header is written first, then the rows
batch by batch, byte for byte what ``np.save`` writes. ``.npz`` members get fixed
time stamps, so the same export gives the same bytes.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from medimeta_cli.dataset.images import ImageReader
from medimeta_cli.dataset.selection import Selection
from medimeta_cli.export.naming import task_column
from medimeta_cli.export.normalization import observe
from medimeta_cli.export.options import Color, ExportFormat, ExportOptions, ProgressCallback
from medimeta_cli.export.pixels import convert_color
from medimeta_cli.export.writer import Writer
from medimeta_cli.fsutil import atomic_output

logger = logging.getLogger(__name__)

#: The arrays of one split, in the order they are written; ``label_indices`` (the class
#: index of classes.json, 0..K-1) only for single-label tasks, where a key is one number.
ARRAY_NAMES = ("images", "labels", "label_indices", "indices")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_ROWS_PER_WRITE = 256

#: name -> (shape, dtype, batches of rows)
Members = dict[str, tuple[tuple[int, ...], Any, Iterable[Any]]]


def write_npy(
    handle: IO[bytes], shape: tuple[int, ...], dtype: Any, batches: Iterable[Any]
) -> None:
    """Write an ``.npy`` stream: header, then the rows batch by batch (as np.save would)."""
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
        "fortran_order": False,
        "shape": shape,
    }
    np.lib.format.write_array_header_1_0(handle, header)
    for batch in batches:
        handle.write(np.ascontiguousarray(batch, dtype=dtype).data)


def _image_batches(
    reader: ImageReader,
    split: str,
    indices: npt.NDArray[np.int64],
    color: Color | None,
    progress: ProgressCallback,
) -> Iterator[npt.NDArray[np.uint8]]:
    for batch_indices, images in reader.iter_batches(
        indices, batch_size=_ROWS_PER_WRITE, reuse_buffer=True
    ):
        converted = convert_color(images, color)
        # The mean and std of provenance.json, summed while the batch is written.
        summed = observe(split, converted, batch_indices)
        yield converted
        summed()  # before the next batch is read into the same buffer
        progress(len(batch_indices))


def write_arrays(
    folder: Path,
    selection: Selection,
    target: Path,
    options: ExportOptions,
    progress: ProgressCallback,
) -> None:
    """Write images, labels (keys and indices) and upstream indices of every split under
    ``target``."""
    reader = ImageReader(folder, selection.dataset)
    try:
        shape = convert_color(np.zeros((1, *reader.image_shape), np.uint8), options.color).shape[1:]
        for part in selection.parts:
            members: Members = {
                "images": (
                    (len(part.indices), *shape),
                    np.uint8,
                    _image_batches(reader, part.split, part.indices, options.color, progress),
                ),
                "labels": (part.labels.shape, part.labels.dtype, [part.labels]),
            }
            if not selection.multilabel:
                positions = label_indices(selection, part.labels)
                members["label_indices"] = (positions.shape, np.int64, [positions])
            members["indices"] = (part.indices.shape, np.int64, [part.indices])
            for task in selection.every_task:
                # --task all: every task's labels as task_labels/ holds them.
                rows = selection.labels_of(part, task)
                members[task_column(task)] = (rows.shape, rows.dtype, [rows])
            _write_split(target, part.split, members, options)
    finally:
        reader.close()


def array_names(selection: Selection) -> tuple[str, ...]:
    """The arrays a split of this selection has, in the order they are written (with
    ``--task all``, then ``labels_<task>`` of every task)."""
    names = tuple(n for n in ARRAY_NAMES if n != "label_indices" or not selection.multilabel)
    return names + tuple(task_column(task) for task in selection.every_task)


def label_indices(selection: Selection, keys: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """The class index (position in classes.json, 0..K-1) of each label key."""
    classes = np.asarray(selection.classes, dtype=np.int64)
    order = np.argsort(classes, kind="stable")
    return order[np.searchsorted(classes[order], keys.astype(np.int64))].astype(np.int64)


def _write_split(target: Path, split: str, members: Members, options: ExportOptions) -> None:
    """One split's arrays: ``<split>.npz``, or ``<split>/<name>.npy`` each."""
    if options.npz:
        write_npz(target / f"{split}.npz", members, options.compress)
        return
    split_dir = target / split
    split_dir.mkdir(parents=True, exist_ok=True)
    for name, (shape, dtype, batches) in members.items():
        with atomic_output(split_dir / f"{name}.npy", durable=False) as handle:
            write_npy(handle, shape, dtype, batches)


def write_npz(path: Path, members: Members, compress: bool) -> None:
    """One ``.npz`` per split, streamed member by member, with fixed time stamps."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with (
        atomic_output(path, durable=False) as handle,
        zipfile.ZipFile(handle, "w", compression=method, allowZip64=True) as archive,
    ):
        for name, (shape, dtype, batches) in members.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = method
            with archive.open(info, "w", force_zip64=True) as member:
                write_npy(member, shape, dtype, batches)


def merge_numpy_shards(
    full: Selection, out: Path, pieces: Sequence[Path], options: ExportOptions
) -> None:
    """Concatenate the shards' ``.npy`` files, in shard order, into the final arrays."""
    for part in full.parts:
        logger.debug("merging %d shards of split %s into %s", len(pieces), part.split, out)
        members: Members = {}
        for name in array_names(full):
            arrays = [np.load(p / part.split / f"{name}.npy", mmap_mode="r") for p in pieces]
            shape = (sum(len(a) for a in arrays), *arrays[0].shape[1:])
            members[name] = (shape, arrays[0].dtype, _rows(arrays))
        _write_split(out, part.split, members, options)


def _rows(arrays: Sequence[Any], step: int = _ROWS_PER_WRITE) -> Iterator[Any]:
    for array in arrays:
        for start in range(0, len(array), step):
            yield np.asarray(array[start : start + step])


class NumpyWriter(Writer):
    """Arrays per split: ``.npy`` files, or one ``.npz``; shards are joined at the end."""

    format = ExportFormat.NUMPY
    every_task = True

    def write_images(
        self,
        folder: Path,
        selection: Selection,
        target: Path,
        options: ExportOptions,
        progress: ProgressCallback,
        *,
        atomic: bool,
    ) -> None:
        """Stream every split's arrays (each file is written atomically anyway)."""
        write_arrays(folder, selection, target, options, progress)

    def write_shard(
        self,
        folder: Path,
        selection: Selection,
        out: Path,
        piece: Path,
        options: ExportOptions,
        progress: ProgressCallback,
        *,
        full: Selection,
    ) -> None:
        """A shard's slices as plain ``.npy`` files in its own piece folder; joining them
        writes the format asked for."""
        piece.mkdir(exist_ok=True)
        write_arrays(folder, selection, piece, replace(options, npz=False), progress)

    def join_shards(
        self, full: Selection, out: Path, pieces: Sequence[Path], options: ExportOptions
    ) -> None:
        """Concatenate the pieces' arrays, in shard order (see :func:`merge_numpy_shards`)."""
        merge_numpy_shards(full, out, pieces, options)

    def labels_note(self, multilabel: bool) -> str:
        """labels.npy holds keys (or a 0/1 matrix), label_indices.npy the index."""
        if multilabel:
            return (
                "Multi-label: labels.npy is an N x K 0/1 matrix whose columns are in index order."
            )
        return "label_indices.npy holds the index (0..K-1), labels.npy the upstream key."
