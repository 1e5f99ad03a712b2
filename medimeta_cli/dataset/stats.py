"""Statistics of an installed dataset: class counts per split and task, and the per-channel
mean and standard deviation of a split's pixels (``medimeta stats``, ``api.stats``).

The pixels are read in one streaming pass in the order of the HDF5 chunks, a bounded
batch at a time, and summed exactly: integer sums of the values and of their squares per
channel, in uint64 within a batch and in Python's integers across batches, without
overflow or rounding, so the sums of several passes (the shards of an export) merge into
exactly the sums of one pass. Mean and standard deviation (of the population, ddof 0) on
the 0-1 scale come from them at the end, the variance as the exact integer
``n * sum(x^2) - sum(x)^2`` before the one division: no cancellation. The sums of a split
are cached beside the install record (:mod:`medimeta_cli.store.stats_cache`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from medimeta_cli.catalog.datasets import SPLIT_NAMES, Catalog, Task, TaskTarget
from medimeta_cli.dataset.contents import load_labels, load_split
from medimeta_cli.dataset.gate import DatasetFolder
from medimeta_cli.dataset.images import ImageReader
from medimeta_cli.dataset.installed import open_installed
from medimeta_cli.dataset.selection import choose_task, wants_every_task
from medimeta_cli.dataset.upstream import HDF5_NAME, split_relpath
from medimeta_cli.errors import UsageError
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.records import read_install_record
from medimeta_cli.store.stats_cache import file_key, load_cached, save_cached

__all__ = ["ClassCount", "DatasetStats", "PixelStats", "PixelSums", "dataset_stats", "pixel_sums"]

logger = logging.getLogger(__name__)

#: Pixel values run from 0 to this; mean and std are given on the 0-1 scale.
PIXEL_MAX: Final = 255
#: Bytes of images read at once: bounds the memory of a pass whatever the dataset's size.
_BATCH_BYTES: Final = 16 * 1024 * 1024
#: Image rows widened to uint16 at once (a few MB whatever the batch).
_LINES: Final = 2048


@dataclass
class PixelSums:
    """Exact per-channel sums of pixel values (0-255) and of their squares over ``count``
    pixels of ``images`` images; merged by adding, so partial sums of any split of the
    images give the same result as one pass."""

    channels: int
    images: int = 0
    count: int = 0
    sums: list[int] = field(default_factory=list)
    squares: list[int] = field(default_factory=list)
    # Scratch rows widened to uint16, reused from batch to batch (not part of the sums).
    _wide: npt.NDArray[np.uint16] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.sums = self.sums or [0] * self.channels
        self.squares = self.squares or [0] * self.channels

    def add(self, batch: npt.NDArray[np.uint8]) -> None:
        """Add a batch of images, ``(B, H, W)`` for one channel or ``(B, H, W, C)``."""
        channels = 1 if batch.ndim == 3 else int(batch.shape[-1])
        if channels != self.channels:
            raise ValueError(f"images of {channels} channels added to sums of {self.channels}")
        if len(batch) == 0:
            return
        # One image row per line: summing down the lines adds wide contiguous rows (fast),
        # and column j holds channel j % C. Squares of uint8 fit uint16 (255^2 = 65025);
        # _LINES of them fit uint32 (2048 * 65025 < 2^32); the sums of a batch then uint64,
        # and Python's integers the sums across batches.
        lines = batch.reshape(-1, math.prod(batch.shape[2:]))
        sums = np.zeros(lines.shape[1], dtype=np.uint64)
        squares = np.zeros(lines.shape[1], dtype=np.uint64)
        if self._wide is None or self._wide.shape[1] != lines.shape[1]:
            self._wide = np.empty((_LINES, lines.shape[1]), dtype=np.uint16)
        for start in range(0, len(lines), _LINES):
            block = lines[start : start + _LINES]
            wide = self._wide[: len(block)]
            np.copyto(wide, block, casting="unsafe")
            sums += np.add.reduce(wide, axis=0, dtype=np.uint32)
            np.multiply(wide, wide, out=wide)
            squares += np.add.reduce(wide, axis=0, dtype=np.uint32)
        for channel in range(channels):
            self.sums[channel] += int(sums[channel::channels].sum())
            self.squares[channel] += int(squares[channel::channels].sum())
        self.images += len(batch)
        self.count += batch[..., 0].size if batch.ndim == 4 else batch.size

    def merged(self, other: PixelSums) -> PixelSums:
        """The sums of both sets of images."""
        if other.channels != self.channels:
            raise ValueError("sums of a different number of channels")
        return PixelSums(
            self.channels,
            self.images + other.images,
            self.count + other.count,
            [a + b for a, b in zip(self.sums, other.sums, strict=True)],
            [a + b for a, b in zip(self.squares, other.squares, strict=True)],
        )

    def mean(self) -> list[float]:
        """Per-channel mean on the 0-1 scale (0.0 when no pixel was added)."""
        if not self.count:
            return [0.0] * self.channels
        return [total / (self.count * PIXEL_MAX) for total in self.sums]

    def std(self) -> list[float]:
        """Per-channel standard deviation (population, ddof 0) on the 0-1 scale."""
        n = self.count
        if not n:
            return [0.0] * self.channels
        # n^2 * variance, an exact integer: nothing cancels before the one division.
        return [
            math.sqrt(n * squares - total * total) / (n * PIXEL_MAX)
            for total, squares in zip(self.sums, self.squares, strict=True)
        ]

    def to_json(self) -> dict[str, Any]:
        """The exact sums, JSON-ready (integers of any size)."""
        return {
            "channels": self.channels,
            "images": self.images,
            "count": self.count,
            "sums": list(self.sums),
            "squares": list(self.squares),
        }

    @classmethod
    def from_json(cls, data: Any) -> PixelSums | None:
        """Sums saved by :meth:`to_json`; None when ``data`` is not such sums."""
        if not isinstance(data, dict):
            return None
        channels = data.get("channels")
        numbers = [data.get("images"), data.get("count")]
        lists = [data.get("sums"), data.get("squares")]
        if not isinstance(channels, int) or channels not in (1, 3, 4):
            return None
        if not all(
            isinstance(v, list) and len(v) == channels and all(_natural(n) for n in v)
            for v in lists
        ):
            return None
        if not all(_natural(n) for n in numbers):
            return None
        return cls(channels, int(numbers[0]), int(numbers[1]), list(lists[0]), list(lists[1]))  # type: ignore[arg-type]


def _natural(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def pixel_sums(
    reader: ImageReader,
    indices: npt.NDArray[np.int64],
    *,
    convert: Callable[[npt.NDArray[np.uint8]], npt.NDArray[np.uint8]] | None = None,
    channels: int | None = None,
) -> PixelSums:
    """The sums over the images at ``indices`` (any order: they are read ascending, in the
    order of the HDF5 chunks, a bounded batch at a time). ``convert`` changes each batch
    first (an export's ``--rgb``/``--grayscale``), giving ``channels`` channels."""
    shape = reader.image_shape
    own = 1 if len(shape) == 2 else shape[-1]
    sums = PixelSums(channels or own)
    rows = np.unique(np.asarray(indices, dtype=np.int64))
    batch = max(1, _BATCH_BYTES // max(1, math.prod(shape)))
    for _, images in reader.iter_batches(rows, batch, reuse_buffer=True):
        sums.add(convert(images) if convert is not None else images)
    return sums


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ClassCount:
    """How many images of one split carry one label of one task (positives for a
    multi-label task)."""

    key: int
    name: str
    counts: dict[str, int]
    """Per split (train, val, test)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {"key": self.key, "name": self.name, "counts": dict(self.counts)}


@dataclass(frozen=True)
class TaskCounts:
    """The class counts of one task in every split."""

    task: Task
    classes: tuple[ClassCount, ...]
    images: dict[str, int]
    """Images per split."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "task": self.task.name,
            "task_type": self.task.target.value,
            "images": dict(self.images),
            "classes": [c.to_json() for c in self.classes],
        }


@dataclass(frozen=True)
class PixelStats:
    """The per-channel mean and standard deviation (0-1 scale) of one split's pixels."""

    split: str
    sums: PixelSums
    cached: bool
    """Whether the sums came from the cache (no image was read)."""

    @property
    def mean(self) -> list[float]:
        """Per-channel mean."""
        return self.sums.mean()

    @property
    def std(self) -> list[float]:
        """Per-channel standard deviation (population)."""
        return self.sums.std()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "split": self.split,
            "images": self.sums.images,
            "channels": self.sums.channels,
            "mean": self.mean,
            "std": self.std,
            "cached": self.cached,
        }


@dataclass(frozen=True)
class DatasetStats:
    """What ``medimeta stats`` reports of one installed dataset."""

    dataset_id: str
    tasks: tuple[TaskCounts, ...]
    pixels: PixelStats

    def to_json(self) -> dict[str, Any]:
        """The ``stats --json`` object."""
        return {
            "id": self.dataset_id,
            "pixels": self.pixels.to_json(),
            "tasks": [t.to_json() for t in self.tasks],
        }

    def pixel_lines(self) -> list[str]:
        """The mean and std for people, with the ``Normalize`` to paste."""
        p = self.pixels
        mean = ", ".join(f"{v:.4f}" for v in p.mean)
        std = ", ".join(f"{v:.4f}" for v in p.std)
        return [
            f"{self.dataset_id}: {p.split} split, {p.sums.images:,} images, "
            f"{p.sums.channels} channel{'s' if p.sums.channels > 1 else ''}"
            + (" (cached)" if p.cached else ""),
            f"  mean  {mean}",
            f"  std   {std}",
            f"  transforms.Normalize(mean=[{mean}], std=[{std}])",
        ]

    def count_rows(self, task: TaskCounts) -> list[list[str]]:
        """One row per class: key, name and the count of every split."""
        return [
            [str(c.key), c.name, *(f"{c.counts[s]:,}" for s in SPLIT_NAMES)] for c in task.classes
        ]


# --------------------------------------------------------------------------- the use case


def class_counts(data: DatasetFolder, task: Task) -> TaskCounts:
    """The class counts of a task in every split, from the label and split files (through
    the gate's checks)."""
    labels = load_labels(data, task)
    keys = list(task.labels)
    per_split: dict[str, list[int]] = {}
    images: dict[str, int] = {}
    for split in SPLIT_NAMES:
        indices = load_split(data, split)
        images[split] = len(indices)
        chosen = labels[indices]
        if task.target is TaskTarget.MULTILABEL:
            # Columns follow the task's labels in info.yaml order.
            positives = chosen.astype(np.int64).sum(axis=0) if len(chosen) else [0] * len(keys)
            per_split[split] = [int(n) for n in positives]
        else:
            found, counts = np.unique(chosen.astype(np.int64), return_counts=True)
            by_key = dict(zip(found.tolist(), counts.tolist(), strict=True))
            per_split[split] = [int(by_key.get(key, 0)) for key in keys]
    classes = tuple(
        ClassCount(key, task.labels[key], {s: per_split[s][i] for s in SPLIT_NAMES})
        for i, key in enumerate(keys)
    )
    return TaskCounts(task, classes, images)


def _cache_key(root: Path, data: DatasetFolder, split: str) -> dict[str, Any] | None:
    """What the sums of a split depend on, or None when nothing safe identifies it (no
    install record, or images in TIFF files, whose many stamps are not followed)."""
    dataset_id = data.dataset.id
    record = read_install_record(RootLayout(root), dataset_id)
    images = file_key(data.folder / HDF5_NAME)
    if record is None or images is None:
        return None
    return {
        "split": split,
        "archive_md5": record.source_md5,
        "installed_at": record.installed_at,
        "images": images,
        "split_file": file_key(data.folder / split_relpath(split)),
    }


def split_pixel_stats(
    data: DatasetFolder, split: str, *, cache_root: Path | None = None
) -> PixelStats:
    """The mean and std of a split's pixels, from the cache in ``cache_root`` (the data
    root holding the dataset, when its state may be written) when it matches the data as
    it is now, else in one pass (then cached)."""
    if split not in SPLIT_NAMES:
        raise UsageError(
            f"unknown split {split!r}", hint=f"Valid splits: {', '.join(SPLIT_NAMES)}."
        )
    dataset = data.dataset
    key = _cache_key(cache_root, data, split) if cache_root is not None else None
    if key is not None and cache_root is not None:
        found = PixelSums.from_json(load_cached(RootLayout(cache_root), dataset.id, split, key))
        if found is not None:
            logger.debug("stats of the %s split of %s: cached", split, dataset.id)
            return PixelStats(split, found, cached=True)
    indices = load_split(data, split)
    if len(indices) == 0:
        raise UsageError(
            f"the {split} split of {dataset.id} has no images",
            hint="Choose another split with --split (train, val or test).",
        )
    with ImageReader(data.folder, dataset) as reader:
        sums = pixel_sums(reader, indices)
    # The key is taken again: data that changed during the pass is not cached.
    if key is not None and cache_root is not None and _cache_key(cache_root, data, split) == key:
        save_cached(RootLayout(cache_root), dataset.id, split, key, sums.to_json())
    return PixelStats(split, sums, cached=False)


def dataset_stats(
    catalog: Catalog,
    root: Path,
    shared_roots: Sequence[Path],
    dataset_id: str,
    *,
    task: str | None = None,
    split: str = "train",
) -> DatasetStats:
    """Class counts of one task (or every task: None or ``all``) in every split, and the
    pixel mean and std of ``split``, of a dataset installed in ``root`` or a shared root
    (read through the gate; cached only in ``root``, never in a shared root).

    :class:`~medimeta_cli.errors.NotInstalledError` when no root holds it; the gate's
    errors when its files are damaged; :class:`UsageError` for an unknown task or split.
    """
    installed = open_installed(catalog, root, shared_roots, dataset_id)
    data = installed.folder()
    dataset = data.dataset
    every = task is None or wants_every_task(dataset, task)
    tasks = dataset.tasks if every else (choose_task(dataset, task),)
    counts = tuple(class_counts(data, t) for t in tasks)
    mine = data.folder.parent.resolve() == Path(root).resolve()
    pixels = split_pixel_stats(data, split, cache_root=data.folder.parent if mine else None)
    return DatasetStats(dataset.id, counts, pixels)
