"""Which images an export or a sample works on: task, splits, classes, limit and shard.

A selection is a pure function of the installed dataset and the options, so the
same command selects the same images on any machine, and the shards of
``--shard I/N`` partition a selection exactly.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from medimeta_cli.catalog.datasets import SPLIT_NAMES, Dataset, Task, TaskTarget, closest
from medimeta_cli.dataset.reader import DatasetReader
from medimeta_cli.errors import (
    UnknownClassError,
    UnknownSplitError,
    UsageError,
)


@dataclass(frozen=True)
class SelectionSpec:
    """What the user asked for."""

    task: str | None = None
    splits: tuple[str, ...] = SPLIT_NAMES
    original: bool = False
    classes: tuple[str, ...] | None = None
    limit: int | None = None
    seed: int = 0
    shard: tuple[int, int] | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping (for provenance)."""
        return {
            "task": self.task,
            "splits": list(self.splits),
            "original_splits": self.original,
            "classes": None if self.classes is None else list(self.classes),
            "limit_per_split": self.limit,
            "seed": self.seed,
            "shard": None if self.shard is None else f"{self.shard[0]}/{self.shard[1]}",
        }


@dataclass(frozen=True)
class SplitPart:
    """The selected images of one split, in ascending index order, with their labels."""

    split: str
    indices: npt.NDArray[np.int64]
    labels: npt.NDArray[Any]  # label keys (N,), or 0/1 rows (N, C) of the kept classes
    # Where each image stands in the split file (the official loader's numbering), when
    # the part was read from one; None for parts made up of picked images.
    positions: npt.NDArray[np.int64] | None = None
    # ``--task all``: per task name, the upstream labels of these images as task_labels/
    # holds them (keys (N,), or 0/1 rows (N, C) over all the task's labels); None otherwise.
    task_labels: Mapping[str, npt.NDArray[Any]] | None = None


@dataclass(frozen=True)
class Selection:
    """The images chosen from one task of one dataset."""

    dataset: Dataset
    task: Task
    classes: tuple[int, ...]  # label keys kept, ascending: the class index order
    parts: tuple[SplitPart, ...]
    spec: SelectionSpec
    # ``--task all``: every task of the dataset, in info.yaml order (``task`` is the first,
    # the one that orders, stratifies and names classes); empty for one task.
    every_task: tuple[Task, ...] = ()

    @property
    def tasks(self) -> tuple[Task, ...]:
        """The tasks whose labels an export holds: every task with ``--task all``, else
        the one task."""
        return self.every_task or (self.task,)

    def labels_of(self, part: SplitPart, task: Task) -> npt.NDArray[Any]:
        """The upstream labels of ``part``'s images for one of :attr:`tasks`: label keys
        (N,), or 0/1 rows (N, C) over all the task's labels (the kept classes' rows for
        the selected task when it is the only one, as :attr:`SplitPart.labels`)."""
        if part.task_labels is not None:
            return part.task_labels[task.name]
        if task.name != self.task.name:
            raise KeyError(task.name)
        return part.labels

    @property
    def multilabel(self) -> bool:
        """Whether labels are 0/1 rows rather than one key per image."""
        return self.task.target is TaskTarget.MULTILABEL

    @property
    def total(self) -> int:
        """Number of selected images over all splits."""
        return sum(len(part.indices) for part in self.parts)

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and class name (for multi-label tasks: positives per label)."""
        result: dict[str, dict[str, int]] = {}
        for part in self.parts:
            if self.multilabel:
                per = part.labels.sum(axis=0) if len(part.labels) else np.zeros(len(self.classes))
                result[part.split] = {
                    self.task.labels[key]: int(n) for key, n in zip(self.classes, per, strict=True)
                }
            else:
                keys, numbers = np.unique(part.labels, return_counts=True)
                found = dict(zip(keys.tolist(), numbers.tolist(), strict=True))
                result[part.split] = {
                    self.task.labels[key]: int(found.get(key, 0)) for key in self.classes
                }
        return result


#: Plain ASCII decimal digits, at most nine: what ``int()`` alone would not refuse
#: (``1_0``, ``+3``, non-ASCII digits, a thousand digits) is no shard number.
_DIGITS = re.compile(r"[0-9]{1,9}")


def cut_short(text: str, limit: int = 40) -> str:
    """A value from outside (a flag, a variable) cut short for an error message, so a
    huge value never floods the terminal or a log."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown(text: str, limit: int = 40) -> str:
    """:func:`cut_short`, quoted (control characters escaped)."""
    return repr(cut_short(text, limit))


def whole_number(text: str) -> int | None:
    """``text`` as a whole number of plain ASCII decimal digits (spaces around allowed),
    None when it is anything else."""
    stripped = text.strip(" \t")
    return int(stripped) if _DIGITS.fullmatch(stripped) else None


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` -> ``(2, 8)``; :class:`UsageError` unless 1 <= I <= N."""
    left, slash, right = text.partition("/")
    right = right.strip(" \t")
    # A negative count is told as such below (the count must be at least 1).
    negative = right.startswith("-")
    index, count = whole_number(left), whole_number(right[1:] if negative else right)
    if negative and count is not None:
        count = -count
    if not slash or index is None or count is None:
        raise UsageError(
            f"--shard takes I/N or auto, not {shown(text)}",
            hint="For example --shard 3/8 (shards 1 to 8), or --shard auto in a job array.",
        )
    if count < 1:
        raise UsageError(
            f"--shard {text}: the number of shards must be at least 1",
            hint="For example --shard 3/8 (shards 1 to 8).",
        )
    if index == 0:  # what `--shard $SLURM_ARRAY_TASK_ID/N` gives the first task of 0-(N-1)
        raise UsageError(
            f"shard 0/{count} does not exist: shards count from 1",
            hint="In a job array, use --shard auto: it numbers the tasks 1 to N whatever "
            f"index the array starts at (else 1/{count} to {count}/{count}).",
        )
    if not 1 <= index <= count:
        raise UsageError(
            f"shard {index}/{count} does not exist",
            hint=f"Use 1/{count} to {count}/{count}, or --shard auto in a job array.",
        )
    return index, count


def shard_bounds(length: int, shard: tuple[int, int]) -> tuple[int, int]:
    """The contiguous slice of ``length`` items that shard ``I/N`` exports."""
    index, count = shard
    return length * (index - 1) // count, length * index // count


#: ``--task all``: the labels of every task (a task of that very name wins).
ALL_TASKS = "all"


def wants_every_task(dataset: Dataset, name: str | None) -> bool:
    """Whether ``--task`` asks for every task (``all``, unless a task has that name)."""
    if name is None or name.strip().lower() != ALL_TASKS:
        return False
    return not any(t.name.lower() == ALL_TASKS for t in dataset.tasks)


def choose_task(dataset: Dataset, name: str | None) -> Task:
    """The named task; the only task when none is named; a usage error otherwise."""
    if name is not None:
        return dataset.task(name)
    if len(dataset.tasks) == 1:
        return dataset.tasks[0]
    raise UsageError(
        f"{dataset.id} has {len(dataset.tasks)} tasks; choose one with --task",
        hint="Tasks: " + ", ".join(repr(t.name) for t in dataset.tasks) + ".",
    )


def resolve_classes(task: Task, wanted: Sequence[str] | None) -> tuple[int, ...]:
    """Label keys for classes given by key, by name, by the abbreviation in a name's last
    parentheses (``ADI`` for ``adipose (ADI)``) or by a name's unique beginning; names are
    matched case-insensitively. Keys come back ascending: a class's position in them is its
    index in every export (for ordinal tasks, key order is the order of the grades)."""
    if not wanted:
        return tuple(sorted(task.labels))
    chosen: list[int] = []
    for item in wanted:
        key = _class_key(task, item.strip())
        starting = _classes_starting(task, item.strip())
        if key is None and len(starting) > 1:
            raise UnknownClassError.ambiguous(
                item,
                starting,
                context=f"in task {task.name!r}",
                hint=f"Give more of the name, or the label key, for example {starting[0]!r}.",
            )
        if key is None:
            raise UnknownClassError(
                item,
                [f"{k} ({n})" for k, n in task.labels.items()],
                suggestion=closest(item, list(task.labels.values())),
                context=f"in task {task.name!r}",
            )
        if key not in chosen:
            chosen.append(key)
    return tuple(sorted(chosen))


def _class_key(task: Task, text: str) -> int | None:
    folded = text.casefold()
    for key, name in task.labels.items():
        if text == str(key) or folded == name.casefold():
            return key
    for key, name in task.labels.items():
        abbreviation = re.search(r"\(([^()]+)\)\s*$", name)
        if abbreviation and abbreviation.group(1).casefold() == folded:
            return key
    starting = [key for key, name in task.labels.items() if name.casefold().startswith(folded)]
    return starting[0] if len(starting) == 1 and folded else None


def _classes_starting(task: Task, text: str) -> list[str]:
    """The label names that begin with ``text`` (case-insensitive)."""
    folded = text.casefold()
    return [name for name in task.labels.values() if folded and name.casefold().startswith(folded)]


def check_splits(splits: Sequence[str]) -> tuple[str, ...]:
    """Validate split names, keeping the canonical order train, val, test."""
    for split in splits:
        if split not in SPLIT_NAMES:
            raise UnknownSplitError(split, SPLIT_NAMES, suggestion=closest(split, SPLIT_NAMES))
    return tuple(name for name in SPLIT_NAMES if name in splits)


def stratified_subset(
    labels: npt.NDArray[Any], limit: int, seed: int, *, multilabel: bool
) -> npt.NDArray[np.int64]:
    """Positions (sorted) of at most ``limit`` items, keeping class proportions.

    Each class gets its share of ``limit`` by largest remainder; items are drawn
    with a seeded ``random.Random``, which is the same on every platform and
    Python version. Multi-label rows are drawn uniformly.
    """
    count = len(labels)
    if limit >= count:
        return np.arange(count, dtype=np.int64)
    rng = random.Random(seed)
    if multilabel:
        return np.array(sorted(rng.sample(range(count), limit)), dtype=np.int64)
    keys, inverse = np.unique(labels, return_inverse=True)
    members = [np.flatnonzero(inverse == i).tolist() for i in range(len(keys))]
    exact = [limit * len(m) / count for m in members]
    shares = [int(x) for x in exact]
    for i in sorted(range(len(keys)), key=lambda i: (shares[i] - exact[i], i))[
        : limit - sum(shares)
    ]:
        shares[i] += 1
    chosen: list[int] = []
    for share, group in zip(shares, members, strict=True):
        chosen.extend(rng.sample(group, share))
    return np.array(sorted(chosen), dtype=np.int64)


def select(
    reader: DatasetReader, spec: SelectionSpec, *, every_task_allowed: bool = False
) -> Selection:
    """Resolve a selection against an installed dataset. Where ``every_task_allowed``
    (exports), ``--task all`` selects the labels of every task, the first task ordering
    and naming the classes; elsewhere ``all`` is a task name like any other."""
    dataset = reader.dataset
    every_task = (
        dataset.tasks if every_task_allowed and wants_every_task(dataset, spec.task) else ()
    )
    task = every_task[0] if every_task else choose_task(dataset, spec.task)
    if every_task and spec.classes:
        raise UsageError(
            "--classes picks classes of one task, and --task all exports every task",
            hint="Drop --classes, or name one --task.",
        )
    classes = resolve_classes(task, spec.classes)
    splits = check_splits(spec.splits)
    labels = reader.labels(task)
    multilabel = task.target is TaskTarget.MULTILABEL
    columns = [list(task.labels).index(key) for key in classes]
    every_labels = {t.name: reader.labels(t) for t in every_task}
    parts = []
    for split in splits:
        # The official loader sorts a split's indices and numbers them from 0 in that
        # order (``MedIMeta.get_split_indices``): that number is an image's position.
        indices = np.sort(reader.split_indices(split, original=spec.original))
        positions = np.arange(len(indices), dtype=np.int64)
        if len(indices) == 0:
            kind = "original split" if spec.original else "split"
            raise UsageError(
                f"the {kind} {split!r} of {dataset.id} has no images",
                hint="Choose other splits with --split"
                + ("" if spec.original else ", or use --original-split"),
            )
        if multilabel:
            rows = labels[indices][:, columns].astype(np.uint8)
            keep = rows.any(axis=1) if spec.classes else np.ones(len(rows), dtype=bool)
            part_labels: npt.NDArray[Any] = rows[keep]
        else:
            keys = labels[indices].astype(np.int64)
            keep = np.isin(keys, np.array(classes, dtype=np.int64))
            part_labels = keys[keep]
        indices, positions = indices[keep], positions[keep]
        if spec.limit is not None:
            subset = stratified_subset(
                part_labels, spec.limit, spec.seed + SPLIT_NAMES.index(split), multilabel=multilabel
            )
            indices, part_labels = indices[subset], part_labels[subset]
            positions = positions[subset]
        if spec.shard is not None:
            start, stop = shard_bounds(len(indices), spec.shard)
            indices, part_labels = indices[start:stop], part_labels[start:stop]
            positions = positions[start:stop]
        every = {name: rows[indices] for name, rows in every_labels.items()} if every_task else None
        parts.append(SplitPart(split, indices, part_labels, positions, every))
    return Selection(dataset, task, classes, tuple(parts), spec, tuple(every_task))
