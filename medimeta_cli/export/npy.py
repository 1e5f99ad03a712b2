"""The ``numpy`` layout: streamed ``.npy`` files or one ``.npz`` per split, and shard merging.

Arrays are never held whole in memory: a header is written first, then the rows
batch by batch, byte for byte what ``np.save`` writes. ``.npz`` members get fixed
time stamps, so the same export gives the same bytes.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from medimeta_cli.export.options import Color, ExportOptions, ProgressCallback
from medimeta_cli.export.pixels import convert_color
from medimeta_cli.fsutil import atomic_output
from medimeta_cli.reader import DatasetReader
from medimeta_cli.selection import Selection

logger = logging.getLogger(__name__)

#: The arrays of one split, in the order they are written.
ARRAY_NAMES = ("images", "labels", "indices")
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
    reader: DatasetReader,
    indices: npt.NDArray[np.int64],
    color: Color | None,
    progress: ProgressCallback,
) -> Iterator[npt.NDArray[np.uint8]]:
    for batch_indices, images in reader.iter_batches(
        indices, batch_size=_ROWS_PER_WRITE, reuse_buffer=True
    ):
        yield convert_color(images, color)
        progress(len(batch_indices))


def write_arrays(
    folder: Path,
    selection: Selection,
    target: Path,
    options: ExportOptions,
    progress: ProgressCallback,
) -> None:
    """Write images, labels and upstream indices of every selected split under ``target``."""
    reader = DatasetReader(folder, selection.dataset)
    try:
        shape = convert_color(np.zeros((1, *reader.image_shape), np.uint8), options.color).shape[1:]
        for part in selection.parts:
            members: Members = {
                "images": (
                    (len(part.indices), *shape),
                    np.uint8,
                    _image_batches(reader, part.indices, options.color, progress),
                ),
                "labels": (part.labels.shape, part.labels.dtype, [part.labels]),
                "indices": (part.indices.shape, np.int64, [part.indices]),
            }
            _write_split(target, part.split, members, options)
    finally:
        reader.close()


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
        for name in ARRAY_NAMES:
            arrays = [np.load(p / part.split / f"{name}.npy", mmap_mode="r") for p in pieces]
            shape = (sum(len(a) for a in arrays), *arrays[0].shape[1:])
            members[name] = (shape, arrays[0].dtype, _rows(arrays))
        _write_split(out, part.split, members, options)


def _rows(arrays: Sequence[Any], step: int = _ROWS_PER_WRITE) -> Iterator[Any]:
    for array in arrays:
        for start in range(0, len(array), step):
            yield np.asarray(array[start : start + step])
