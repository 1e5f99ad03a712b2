"""The upstream file format of one dataset: file names, split files and opening HDF5.

What every archive of the record holds (``images.hdf5``, ``images/NNNNNN.tiff``,
``splits/<split>.txt`` listing image paths), shared by the reader and the
structure checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

HDF5_NAME: Final = "images.hdf5"
IMAGES_DATASET: Final = "images"

# A well-formed split line is exactly "images/NNNNNN.tiff".
_PREFIX: Final = b"images/"
_SUFFIX: Final = b".tiff"
_DIGITS: Final = 6
_LINE_BYTES: Final = len(_PREFIX) + _DIGITS + len(_SUFFIX)

#: What h5py raises for a truncated or corrupt file (mostly OSError; some metadata
#: damage surfaces as the others).
HDF5_ERRORS: Final = (OSError, RuntimeError, KeyError, ValueError)


def open_hdf5(path: Path) -> Any:
    """Open an HDF5 file read-only, without HDF5's file locking.

    Installed files are never written in place (installs rename whole folders), and
    locking fails on many network file systems ("unable to lock file"), where it would
    make an intact file look damaged.
    """
    import h5py  # here: a download imports this module for its names, not for h5py

    try:
        return h5py.File(path, "r", locking=False)
    except (TypeError, ValueError):
        # An HDF5 library without the locking switch: open it the default way.
        return h5py.File(path, "r")


def image_relpath(index: int) -> str:
    """Relative path of image ``index`` inside a dataset, e.g. ``images/000007.tiff``."""
    return f"images/{index:0{_DIGITS}d}.tiff"


def split_relpath(split: str, *, original: bool = False) -> str:
    """Relative path of a split file, e.g. ``splits/train.txt``."""
    return f"{'original_splits' if original else 'splits'}/{split}.txt"


def parse_split_bytes(data: bytes) -> npt.NDArray[np.int64]:
    """Image indices of a split file's lines, in file order; ``-1`` marks a malformed line.

    One trailing newline is tolerated (upstream writes none). Empty data has no lines.
    """
    import numpy as np  # here, as h5py above

    if not data:
        return np.empty(0, dtype=np.int64)
    body = data if data.endswith(b"\n") else data + b"\n"
    row_bytes = _LINE_BYTES + 1
    if len(body) % row_bytes == 0:
        # Fast path: every line has the right length, so the file is a byte matrix.
        rows = np.frombuffer(body, dtype=np.uint8).reshape(-1, row_bytes)
        start, stop = len(_PREFIX), len(_PREFIX) + _DIGITS
        digits = rows[:, start:stop].astype(np.int64) - ord("0")
        ok = (
            (rows[:, :start] == np.frombuffer(_PREFIX, dtype=np.uint8)).all(axis=1)
            & (rows[:, stop:] == np.frombuffer(_SUFFIX + b"\n", dtype=np.uint8)).all(axis=1)
            & ((digits >= 0) & (digits <= 9)).all(axis=1)
        )
        if ok.all():
            weights = 10 ** np.arange(_DIGITS - 1, -1, -1, dtype=np.int64)
            values: npt.NDArray[np.int64] = digits @ weights
            return values
        # Some row is bad: rows may not even align with lines, so take the slow path.
    lines = body[:-1].split(b"\n")
    out = np.empty(len(lines), dtype=np.int64)
    for number, line in enumerate(lines):
        number_part = line[len(_PREFIX) : len(_PREFIX) + _DIGITS]
        well_formed = (
            len(line) == _LINE_BYTES
            and line.startswith(_PREFIX)
            and line.endswith(_SUFFIX)
            and number_part.isdigit()
        )
        out[number] = int(number_part) if well_formed else -1
    return out


def split_line(data: bytes, line_number: int) -> str:
    """Text of line ``line_number`` (1-based) of a split file, for error messages."""
    lines = data.split(b"\n")
    if not 1 <= line_number <= len(lines):
        return ""
    text = lines[line_number - 1].decode("utf-8", errors="replace")
    return text if len(text) <= 60 else text[:57] + "..."


def foreign_storage(dset: Any) -> str | None:
    """Why the bytes of an HDF5 dataset may lie outside its own file, or None.

    External storage and virtual datasets point at other files, anywhere on the machine;
    reading them would hand out bytes from outside the dataset folder, so the tool refuses
    such files instead of reading them.
    """
    if getattr(dset, "is_virtual", False):
        return "is a virtual dataset, whose data lives in other files"
    if getattr(dset, "external", None):
        return "uses external storage, whose data lives in other files"
    return None
