"""The second half of the gate: what the files of an installed dataset hold.

Label files (``task_labels/<task>.npy``) and split files (``splits/*.txt``,
``original_splits/*.txt``) are input like the ``info.yaml`` that says what they must be.
:func:`load_labels` and :func:`load_split` hand out their contents only after checking
them against a :class:`~medimeta_cli.dataset.gate.DatasetFolder`'s validated description;
:func:`label_file_problems`, :func:`label_problems` and :func:`split_lines` are the same
checks for ``verify --deep``, which collects every problem instead of refusing;
:func:`check_contents` runs them all before an install's commit.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from medimeta_cli.catalog.datasets import SPLIT_NAMES, Dataset, Task, TaskTarget
from medimeta_cli.dataset.gate import (
    DatasetFolder,
    deep_hint,
    label_path,
    label_relpath,
    one_line,
)
from medimeta_cli.errors import IntegrityError, UsageError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "SplitLines",
    "check_contents",
    "label_file_problems",
    "label_problems",
    "label_value_problem",
    "load_labels",
    "load_split",
    "split_lines",
]

#: How many example values a message lists before it says "...".
_EXAMPLES: Final = 3


def _expected_label_shape(dataset: Dataset, task: Task) -> tuple[int, ...]:
    if task.target is TaskTarget.MULTILABEL:
        return (dataset.num_samples, task.num_classes)
    return (dataset.num_samples,)


def label_problems(array: Any, dataset: Dataset, task: Task) -> list[str]:
    """What is wrong with a label array for ``task``: not one numeric array, or not of
    the shape the description gives (one row per image; a column per label for a
    multi-label task). Empty when it can be used."""
    import numpy as np

    if not isinstance(array, np.ndarray):
        return ["is not a single array"]
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        return [f"has dtype {array.dtype}, expected numeric labels"]
    expected = _expected_label_shape(dataset, task)
    if array.ndim != len(expected):
        return [f"has shape {array.shape}, expected {expected}"]
    problems: list[str] = []
    if array.shape[0] != expected[0]:
        problems.append(f"has {array.shape[0]} rows, expected {expected[0]}")
    if array.ndim == 2 and array.shape[1] != task.num_classes:
        problems.append(f"has {array.shape[1]} columns, expected {task.num_classes}")
    return problems


def label_value_problem(array: npt.NDArray[Any], task: Task) -> str | None:
    """Values of a label array (of a usable shape) that are no label of ``task``: not
    0/1 for a multi-label task, not a label key otherwise; None when all are."""
    import numpy as np

    if task.target is TaskTarget.MULTILABEL:
        valid = np.array([0, 1])
        what = "values other than 0 and 1"
    else:
        valid = np.array(sorted(task.labels))
        keys = ", ".join(str(key) for key in sorted(task.labels))
        what = f"values that are not label keys ({keys})"
    bad = np.isin(array, valid, invert=True)
    if not bad.any():
        return None
    values = np.unique(array[bad])
    examples = ", ".join(_show_number(v) for v in values[:_EXAMPLES])
    more = ", ..." if len(values) > _EXAMPLES else ""
    row = int(np.argwhere(bad)[0][0])
    return f"has {int(bad.sum())} {what}: {examples}{more} (first in row {row})"


def _show_number(value: Any) -> str:
    import numpy as np

    number = value.item() if isinstance(value, np.generic) else value
    if isinstance(number, float) and number.is_integer():
        return str(int(number))
    return str(number)


def read_label_array(folder: Path, task: Task) -> npt.NDArray[Any]:
    """The array in a task's label file, read without following a link; raises
    :class:`FileNotFoundError` when it is missing and :class:`ValueError` (or OSError,
    EOFError, MemoryError) when it cannot be read as one array."""
    import numpy as np

    path = label_path(folder, task)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            raise ValueError("is a symbolic link (never followed)") from exc
        raise
    with open(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ValueError("is not a regular file")
        array = np.load(handle, allow_pickle=False)
    if not isinstance(array, np.ndarray):  # pragma: no cover - np.load of a .npz
        raise ValueError("is not a single array")
    return array


def load_labels(data: DatasetFolder, task: Task | str) -> npt.NDArray[Any]:
    """The label array of a task, after the checks of :func:`label_problems`: label keys
    (N,) or a 0/1 matrix (N, C), N being the described image count; read-only.

    :class:`IntegrityError` when the file is missing, unreadable, of the wrong dtype or
    shape, or holds a value that is no label of the task (not integral, not finite, not a
    label key; not 0/1 for a multi-label task): such a file never reaches an export or a
    sample, where 1.5 would become class 1 and NaN would drop images.
    :class:`~medimeta_cli.errors.UnknownTaskError` for a task the dataset lacks.
    """
    dataset = data.dataset
    resolved = dataset.task(task) if isinstance(task, str) else task
    where = f"{label_relpath(resolved)} of {dataset.id!r}"
    try:
        array = read_label_array(data.folder, resolved)
    except FileNotFoundError:
        raise IntegrityError(f"{where} is missing", hint=deep_hint(dataset.id)) from None
    except (OSError, ValueError, EOFError, MemoryError) as exc:
        # MemoryError: a damaged header can claim an absurd shape.
        raise IntegrityError(
            f"{where} cannot be read: {one_line(str(exc))}", hint=deep_hint(dataset.id)
        ) from exc
    problems = label_problems(array, dataset, resolved)
    if not problems and (values := label_value_problem(array, resolved)) is not None:
        problems.append(values)
    if problems:
        raise IntegrityError(f"{where} {problems[0]}", hint=deep_hint(dataset.id))
    array.setflags(write=False)
    return array


def label_file_problems(folder: Path, dataset: Dataset, task: Task) -> list[str]:
    """Every problem of a task's label file, as ``verify --deep`` reports them: missing,
    unreadable, of the wrong dtype or shape (:func:`label_problems`), or holding a value
    that is no label (:func:`label_value_problem`). Empty when :func:`load_labels` would
    hand it out."""
    try:
        array = read_label_array(folder, task)
    except FileNotFoundError:
        return ["is missing"]
    except (OSError, ValueError, EOFError, MemoryError) as exc:
        # MemoryError: a damaged header can claim an absurd shape.
        return [f"cannot be read: {one_line(str(exc))}"]
    problems = label_problems(array, dataset, task)
    if not problems and (values := label_value_problem(array, task)) is not None:
        problems.append(values)
    return problems


def check_contents(data: DatasetFolder) -> None:
    """Refuse a dataset whose label or split files the gate would not hand out: every
    task's labels (:func:`load_labels`: shape, dtype, every value a label of its task)
    and every split file of both kinds (:func:`load_split`: well-formed lines naming
    images that exist, each once, as many as the description says). Installs run it
    before their commit; :class:`IntegrityError` names the first problem."""
    for task in data.dataset.tasks:
        load_labels(data, task)
    for original in (False, True):
        for split in SPLIT_NAMES:
            load_split(data, split, original=original)


# --------------------------------------------------------------------------- split files


@dataclass(frozen=True)
class SplitLines:
    """The lines of one split file, checked against the image count."""

    indices: npt.NDArray[np.int64]
    """Image index of each line in file order; -1 marks a malformed line."""
    distinct: npt.NDArray[np.int64]
    """The valid indices, sorted and without repeats."""
    malformed: str | None
    """What the malformed lines are, or None."""
    beyond: str | None
    """Which lines name images that do not exist, or None."""
    repeated: str | None
    """Which images are listed more than once, or None."""
    miscounted: str | None = None
    """How the line count differs from the described count, or None."""

    @property
    def count(self) -> int:
        """Number of lines."""
        return len(self.indices)

    def problems(self) -> list[str]:
        """Every problem found, for ``verify --deep``."""
        found = (self.malformed, self.beyond, self.repeated, self.miscounted)
        return [m for m in found if m is not None]


def split_lines(data: bytes, total: int, expected: int | None = None) -> SplitLines:
    """Check the lines of a split file of a dataset of ``total`` images: each
    ``images/NNNNNN.tiff`` naming an image that exists, none listed twice, and (when
    ``expected`` is given) as many lines as the description gives the split."""
    import numpy as np

    from medimeta_cli.dataset.upstream import image_relpath, parse_split_bytes, split_line

    indices = parse_split_bytes(data)
    malformed = beyond = repeated = None
    bad = np.flatnonzero(indices < 0)
    if len(bad):
        first = int(bad[0]) + 1
        malformed = (
            f"has {_plural(len(bad), 'malformed line')}, first line {first}: "
            f"{split_line(data, first)!r} (expected 'images/NNNNNN.tiff')"
        )
    outside = np.flatnonzero(indices >= total)
    if len(outside):
        first = int(outside[0]) + 1
        beyond = (
            f"has {_plural(len(outside), 'line')} naming images that do not exist, first line "
            f"{first}: {split_line(data, first)!r} (the dataset has {total} images)"
        )
    valid = indices[(indices >= 0) & (indices < total)]
    distinct, occurrences = np.unique(valid, return_counts=True)
    twice = np.flatnonzero(occurrences > 1)
    if len(twice):
        index = int(distinct[twice[0]])
        repeated = (
            f"lists {_plural(len(twice), 'image')} more than once, e.g. "
            f"{image_relpath(index)} ({int(occurrences[twice[0]])} times)"
        )
    miscounted = None
    if expected is not None and len(indices) != expected:
        miscounted = f"has {len(indices)} lines, expected {expected}"
    return SplitLines(indices, distinct, malformed, beyond, repeated, miscounted)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def described_split_count(dataset: Dataset, split: str, *, original: bool) -> int:
    """Images of a split by the dataset's description (its own ``info.yaml``)."""
    counts: Mapping[str, int] = (dataset.original_splits if original else dataset.splits).as_dict()
    return int(counts[split])


def load_split(data: DatasetFolder, split: str, *, original: bool = False) -> npt.NDArray[np.int64]:
    """Image indices listed in ``splits/<split>.txt`` (or ``original_splits/``), in file
    order, after the checks of :func:`split_lines`; read-only.

    An absent file means an empty split when the description gives the split no images;
    otherwise the file was lost and :class:`IntegrityError` names it. Raises
    :class:`IntegrityError` naming the file and line when a line is not
    ``images/NNNNNN.tiff``, names an image beyond the described image count or one
    listed before, or when the file's line count is not the described count of the split.
    """
    import numpy as np

    from medimeta_cli.dataset.upstream import split_relpath

    dataset = data.dataset
    if split not in SPLIT_NAMES:
        raise UsageError(
            f"unknown split {split!r}", hint=f"Valid splits: {', '.join(SPLIT_NAMES)}."
        )
    rel = split_relpath(split, original=original)
    path = data.folder / rel
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        # Upstream leaves out the file of an empty split; info.yaml tells which.
        expected = described_split_count(dataset, split, original=original)
        if expected > 0:
            raise IntegrityError(
                f"{rel} of {dataset.id!r} is missing, but info.yaml gives the "
                f"{'original ' if original else ''}{split} split {expected} images",
                hint=f"Run `medimeta verify --repair {dataset.id}` to restore it (a dataset "
                "outside the catalog: reinstall it with `medimeta download --from`).",
            ) from None
        return np.empty(0, dtype=np.int64)
    except OSError as exc:
        raise IntegrityError(
            f"cannot read {rel} of {dataset.id!r}: {exc.strerror}", hint=deep_hint(dataset.id)
        ) from exc
    expected = described_split_count(dataset, split, original=original)
    lines = split_lines(raw, dataset.num_samples, expected)
    problems = lines.problems()
    if problems:
        # A repeated line would export an image twice; a count that contradicts the
        # description would make every number derived from it wrong.
        raise IntegrityError(f"{rel} of {dataset.id!r} {problems[0]}", hint=deep_hint(dataset.id))
    indices = lines.indices
    indices.setflags(write=False)
    return indices
