"""The ``normalization`` of ``provenance.json``: the per-channel mean and std of what an
export holds, as torchvision's ``Normalize(mean, std)`` takes them.

Computed on the exported images after ``--rgb``/``--grayscale``: those of the exported
training split when the export has one, else every exported image. The sums are exact
integers (:class:`~medimeta_cli.dataset.stats.PixelSums`), so each shard of a sharded
export sums its own images, the job that completes the export adds the shards' sums, and
the result is byte for byte that of an export in one run.

A writer that streams the images it writes through this process hands each converted
batch to :func:`observe` (the NumPy writer does: its export is bound by reading, and a
second pass would cost as much again); for a writer that does not (class folders, whose
images are encoded in worker processes), the images are read once more after writing,
straight from ``images.hdf5`` in chunk order: cheap beside encoding them. Either way the
sums are the same integers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from medimeta_cli.dataset.images import ImageReader
from medimeta_cli.dataset.selection import Selection
from medimeta_cli.dataset.stats import PixelSums, pixel_sums
from medimeta_cli.export.options import ExportOptions
from medimeta_cli.export.pixels import convert_color

#: The key of the entry in provenance.json.
NORMALIZATION = "normalization"


def _of_train(full: Selection) -> bool:
    """Whether the whole export (not just one shard) has training images."""
    return any(part.split == "train" and len(part.indices) for part in full.parts)


@dataclass
class _Tally:
    """The sums of the batches writers hand to :func:`observe` during one write."""

    splits: frozenset[str]
    sums: PixelSums


_TALLY: ContextVar[_Tally | None] = ContextVar("medimeta_export_tally", default=None)


def observe(split: str, images: npt.NDArray[np.uint8]) -> None:
    """A writer's converted batch of ``split``, as written; counted when a write is being
    tallied (:func:`tallied`) and the normalization is computed on that split."""
    tally = _TALLY.get()
    if tally is not None and split in tally.splits:
        tally.sums.add(images)


def _chosen(selection: Selection, full: Selection) -> list[Any]:
    train = _of_train(full)
    return [p for p in selection.parts if p.split == "train" or not train]


def _channels(selection: Selection, options: ExportOptions) -> int:
    size = selection.dataset.input_size
    return options.color.channels if options.color is not None else size.channels


@contextmanager
def tallied(
    folder: Path, selection: Selection, full: Selection, options: ExportOptions
) -> Iterator[Callable[[], PixelSums]]:
    """Around a writer's write of ``selection``: yields a function that gives the sums
    afterwards, from what the writer handed to :func:`observe` when that was every image
    of the chosen splits exactly once, else from a pass of their own (:func:`export_sums`)."""
    parts = _chosen(selection, full)
    tally = _Tally(frozenset(p.split for p in parts), PixelSums(_channels(selection, options)))
    token = _TALLY.set(tally)
    try:
        yield (
            lambda: (
                tally.sums
                if tally.sums.images == sum(len(p.indices) for p in parts)
                else export_sums(folder, selection, full, options)
            )
        )
    finally:
        _TALLY.reset(token)


def export_sums(
    folder: Path, selection: Selection, full: Selection, options: ExportOptions
) -> PixelSums:
    """The sums over the images of ``selection`` (the whole export, or one shard of
    ``full``) that the normalization is computed on."""
    train = _of_train(full)
    parts = [p for p in selection.parts if p.split == "train" or not train]
    indices = np.concatenate([p.indices for p in parts]) if parts else np.empty(0, dtype=np.int64)
    size = selection.dataset.input_size
    channels = options.color.channels if options.color is not None else size.channels
    with ImageReader(folder, selection.dataset) as reader:
        return pixel_sums(
            reader,
            indices,
            convert=lambda images: convert_color(images, options.color),
            channels=channels,
        )


def merge_sums(parts: Iterable[PixelSums]) -> PixelSums:
    """The sums of several shards, added in order."""
    found = list(parts)
    total = found[0]
    for more in found[1:]:
        total = total.merged(more)
    return total


def normalization_entry(sums: PixelSums, full: Selection) -> dict[str, Any]:
    """What ``provenance.json`` says under ``normalization``."""
    of = "the exported train split" if _of_train(full) else "all exported images"
    return {
        "mean": sums.mean(),
        "std": sums.std(),
        "of": of,
        "images": sums.images,
        "channels": sums.channels,
        "scale": "pixel values / 255 (0-1), population std",
    }
