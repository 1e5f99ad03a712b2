"""The quick structure check of a dataset folder: what must be there before it counts.

Every file the official loader reads must be present as a regular file (not a link,
not a folder), and ``images.hdf5`` must open with an ``images`` dataset of uint8
pixels of the shape info.yaml gives, whose bytes live in the file itself. Only headers are
read, so installs and every ``verify`` can afford it; the full check of contents is
:func:`medimeta_cli.dataset.structure.check_structure` (``verify --deep``).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medimeta_cli.catalog.datasets import Dataset
from medimeta_cli.dataset.gate import label_relpath
from medimeta_cli.dataset.upstream import (
    HDF5_ERRORS,
    HDF5_NAME,
    IMAGES_DATASET,
    foreign_storage,
    open_hdf5,
    split_relpath,
)

__all__ = ["EssentialProblem", "essential_problems", "required_file_problems", "required_files"]

_SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class EssentialProblem:
    """A required file that is missing or not what it must be."""

    path: str
    message: str
    missing: bool = False

    def __str__(self) -> str:
        return f"{self.path} {self.message}"


def required_files(dataset: Dataset) -> list[str]:
    """Paths (inside the dataset folder) of the files every install of ``dataset`` holds,
    in either layout: what the official loader reads."""
    paths = ["info.yaml", "LICENSE", "annotations.csv", HDF5_NAME]
    paths += [label_relpath(task) for task in dataset.tasks]
    for original in (False, True):
        counts = (dataset.original_splits if original else dataset.splits).as_dict()
        # Upstream leaves out the file of an empty split.
        paths += [split_relpath(s, original=original) for s in _SPLITS if counts.get(s)]
    return paths


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a special file"


def required_file_problems(folder: Path, dataset: Dataset) -> list[EssentialProblem]:
    """Required files that are missing, or that are links, folders or special files
    (checked without following links)."""
    problems = []
    for path in required_files(dataset):
        try:
            mode = os.lstat(folder / path).st_mode
        except FileNotFoundError:
            problems.append(EssentialProblem(path, "is missing", missing=True))
            continue
        except OSError as exc:
            problems.append(EssentialProblem(path, f"cannot be examined: {exc.strerror}"))
            continue
        if not stat.S_ISREG(mode):
            problems.append(EssentialProblem(path, f"is {_kind(mode)}, not a regular file"))
    return problems


def _hdf5_problem(path: Path, dataset: Dataset) -> str | None:
    """Why ``images.hdf5`` cannot be what the loader expects, from its header only."""
    import h5py

    size = dataset.input_size
    pixels = (size.height, size.width) if size.channels == 1 else (size.height, size.width, 3)
    expected = (dataset.num_samples, *pixels)
    try:
        with open_hdf5(path) as handle:
            dset = handle.get(IMAGES_DATASET)
            if not isinstance(dset, h5py.Dataset):
                return f"has no dataset {IMAGES_DATASET!r}"
            foreign = foreign_storage(dset)
            if foreign is not None:
                return f"{IMAGES_DATASET!r} {foreign} (refused, never read)"
            if dset.dtype != np.uint8:
                return f"{IMAGES_DATASET!r} has dtype {dset.dtype}, expected uint8"
            shape = tuple(int(n) for n in dset.shape)
            if shape != expected:
                return f"{IMAGES_DATASET!r} has shape {shape}, expected {expected}"
    except HDF5_ERRORS as exc:
        return f"cannot be opened as HDF5: {' '.join(str(exc).split())}"
    return None


def essential_problems(folder: Path, dataset: Dataset) -> list[EssentialProblem]:
    """The quick check: required files present and regular, and the header of
    ``images.hdf5`` (when it is a regular file) as the loader needs it."""
    problems = required_file_problems(folder, dataset)
    if not any(p.path == HDF5_NAME for p in problems):
        found = _hdf5_problem(folder / HDF5_NAME, dataset)
        if found is not None:
            problems.append(EssentialProblem(HDF5_NAME, found))
    return problems
