"""Check that an installed dataset folder has the upstream layout and agrees with its info.yaml.

This is the core of ``verify --deep``: it reads metadata, labels and split files
but never the pixels (only the header of ``images.hdf5``), so it takes well under
a second even for the largest dataset. Every problem found is collected; a
damaged dataset never makes the check itself fail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import h5py
import numpy as np
import numpy.typing as npt

from medimeta_cli.catalog.datasets import SPLIT_NAMES, Dataset, Task
from medimeta_cli.dataset.contents import label_file_problems, split_lines
from medimeta_cli.dataset.gate import InfoError, label_relpath, read_info
from medimeta_cli.dataset.upstream import (
    HDF5_ERRORS,
    HDF5_NAME,
    IMAGES_DATASET,
    foreign_storage,
    image_relpath,
    open_hdf5,
    split_relpath,
)

__all__ = ["StructureProblem", "check_structure"]

#: Plain files every dataset folder holds besides the data files checked in detail.
REQUIRED_FILES: Final = ("LICENSE", "annotations.csv")


@dataclass(frozen=True)
class StructureProblem:
    """One thing wrong with an installed dataset."""

    path: str
    """Path relative to the dataset folder, e.g. ``task_labels/DR level.npy``."""
    message: str
    """One line saying what is wrong, e.g. ``has 9 rows, expected 10``."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def check_structure(folder: Path, dataset: Dataset) -> list[StructureProblem]:
    """Every way ``folder`` is inconsistent in itself; empty if none.

    The files are checked against the folder's own ``info.yaml``: the header of
    images.hdf5, every task's label file, the split files of both kinds and the presence
    of LICENSE and annotations.csv. How ``info.yaml`` differs from the catalog is no
    problem (see :func:`medimeta_cli.dataset.installed.catalog_differences`). ``dataset`` (the
    catalog entry) names the dataset, and stands in for an ``info.yaml`` that is
    missing or unreadable (itself a problem), so that the other files are still checked.
    """
    folder = Path(folder)
    dataset, problems = _described(folder, dataset)
    problems += [
        StructureProblem(name, "is missing")
        for name in REQUIRED_FILES
        if not (folder / name).is_file()
    ]
    problems += _check_hdf5(folder, dataset)
    for task in dataset.tasks:
        problems += _check_labels(folder, dataset, task)
    for original in (False, True):
        problems += _check_splits(folder, dataset, original=original)
    return problems


# --------------------------------------------------------------------------- info.yaml


def _described(folder: Path, fallback: Dataset) -> tuple[Dataset, list[StructureProblem]]:
    """The folder's own description, or ``fallback`` and the problem with info.yaml."""
    try:
        return read_info(folder, fallback.id, summary=fallback.summary), []
    except InfoError as exc:
        return fallback, [StructureProblem("info.yaml", exc.reason)]


# --------------------------------------------------------------------------- images.hdf5


def _check_hdf5(folder: Path, dataset: Dataset) -> list[StructureProblem]:
    path = folder / HDF5_NAME
    if not path.is_file():
        return [StructureProblem(HDF5_NAME, "is missing")]
    size = dataset.input_size
    pixel_shape = (
        (size.height, size.width)
        if size.channels == 1
        else (size.height, size.width, size.channels)
    )
    expected = (dataset.num_samples, *pixel_shape)
    problems: list[str] = []
    try:
        with open_hdf5(path) as handle:
            members = sorted(handle.keys())
            extra = [name for name in members if name != IMAGES_DATASET]
            if extra:
                problems.append(f"has unexpected members: {', '.join(extra)}")
            dset = handle.get(IMAGES_DATASET)
            if dset is None:
                problems.append(f"has no dataset {IMAGES_DATASET!r}")
            elif not isinstance(dset, h5py.Dataset):
                problems.append(f"{IMAGES_DATASET!r} is a group, not a dataset")
            elif (foreign := foreign_storage(dset)) is not None:
                problems.append(f"{IMAGES_DATASET!r} {foreign} (refused, never read)")
            else:
                if dset.dtype != np.uint8:
                    problems.append(f"{IMAGES_DATASET!r} has dtype {dset.dtype}, expected uint8")
                shape = tuple(int(n) for n in dset.shape)
                if shape[1:] != expected[1:]:
                    problems.append(
                        f"{IMAGES_DATASET!r} has shape {shape}, expected {expected} "
                        f"({'grayscale' if size.channels == 1 else 'RGB'})"
                    )
                elif shape[0] != expected[0]:
                    problems.append(
                        f"{IMAGES_DATASET!r} holds {shape[0]} images, expected {expected[0]}"
                    )
    except HDF5_ERRORS as exc:
        problems.append(f"cannot be read (truncated or corrupt): {_one_line(str(exc))}")
    return [StructureProblem(HDF5_NAME, message) for message in problems]


# --------------------------------------------------------------------------- task labels


def _check_labels(folder: Path, dataset: Dataset, task: Task) -> list[StructureProblem]:
    """The gate's checks of a label file, every problem collected."""
    rel = label_relpath(task)
    return [StructureProblem(rel, m) for m in label_file_problems(folder, dataset, task)]


# --------------------------------------------------------------------------- split files


def _check_splits(folder: Path, dataset: Dataset, *, original: bool) -> list[StructureProblem]:
    """Check the three split files of one kind, then that they partition the images."""
    kind = "original_splits" if original else "splits"
    counts: Mapping[str, int] = (dataset.original_splits if original else dataset.splits).as_dict()
    total = dataset.num_samples
    problems: list[StructureProblem] = []
    members: dict[str, npt.NDArray[np.int64]] = {}
    complete = True  # every non-empty split could be read, so coverage can be judged
    for split in SPLIT_NAMES:
        rel = split_relpath(split, original=original)
        path = folder / rel
        expected = counts[split]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            if expected:
                problems.append(StructureProblem(rel, f"is missing ({expected} images expected)"))
                complete = False
            continue
        except OSError as exc:
            problems.append(StructureProblem(rel, f"cannot be read: {exc.strerror}"))
            complete = False
            continue
        if expected == 0:
            problems.append(StructureProblem(rel, "is present, but the split is empty"))
        lines = split_lines(data, total, expected)
        problems += [StructureProblem(rel, message) for message in lines.problems()]
        members[split] = lines.distinct
    problems += [StructureProblem(kind, m) for m in _check_partition(members, total, complete)]
    return problems


def _check_partition(
    members: Mapping[str, npt.NDArray[np.int64]], total: int, complete: bool
) -> list[str]:
    """The splits of one kind must be disjoint and, together, cover every image."""
    messages: list[str] = []
    names = list(members)
    for position, first in enumerate(names):
        for second in names[position + 1 :]:
            shared = np.intersect1d(members[first], members[second], assume_unique=True)
            if len(shared):
                messages.append(
                    f"{first} and {second} share {_plural(len(shared), 'image')}, e.g. "
                    f"{image_relpath(int(shared[0]))}"
                )
    if complete:
        seen = np.zeros(total, dtype=bool)
        for indices in members.values():
            seen[indices] = True
        unassigned = np.flatnonzero(~seen)
        if len(unassigned):
            messages.append(
                f"{_plural(len(unassigned), 'image')} {'is' if len(unassigned) == 1 else 'are'} "
                "in no split, e.g. "
                f"{image_relpath(int(unassigned[0]))}"
            )
    return messages


# --------------------------------------------------------------------------- helpers


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _one_line(text: str) -> str:
    return " ".join(text.split())
