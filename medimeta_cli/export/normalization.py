"""The ``normalization`` of ``provenance.json``: the per-channel mean and std of what an
export holds, as torchvision's ``Normalize(mean, std)`` takes them.

Computed on the exported images after ``--rgb``/``--grayscale``: those of the exported
training split when the export has one, else every exported image. The sums are exact
integers (:class:`~medimeta_cli.dataset.stats.PixelSums`), so each shard of a sharded
export sums its own images, the job that completes the export adds the shards' sums, and
the result is byte for byte that of an export in one run.

Every writer sums the images as it reads them, so the normalization costs no second
read: a writer that converts a batch in this process hands it, with its upstream
indices, to :func:`observe` (NumPy arrays; summed in a thread while the batch is
written); one whose images are read and encoded in worker processes (class folders,
webdataset, Parquet) asks :func:`wanted` whether a unit's split counts, has the worker
sum that unit (:class:`UnitSums`, the exact integers, returned beside the encoded bytes)
and hands the sums over with :func:`observe_sums`. The images of the chosen splits that
no writer handed over (a webdataset job whose first tar began in the job before: that
job wrote them) are read afterwards, those alone, straight from ``images.hdf5`` in chunk
order; a writer that handed over an image twice, or one outside the selection, gets a
whole pass of its own instead (:func:`export_sums`). Either way the sums are the same
integers, byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
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
    """The sums of the images writers hand over during one write, and their indices."""

    splits: frozenset[str]
    sums: PixelSums
    seen: dict[str, list[npt.NDArray[np.int64]]] = field(default_factory=dict)
    #: The one thread that sums the batches handed to :func:`observe`, one after another.
    thread: ThreadPoolExecutor | None = None

    def finish(self) -> None:
        """Wait for the batches still being summed."""
        if self.thread is not None:
            self.thread.shutdown(wait=True)
            self.thread = None


_TALLY: ContextVar[_Tally | None] = ContextVar("medimeta_export_tally", default=None)


def wanted(split: str) -> bool:
    """Whether the images of ``split`` are being tallied (:func:`tallied`): a writer whose
    workers read the images asks them to sum a unit only then (:class:`UnitSums`)."""
    tally = _TALLY.get()
    return tally is not None and split in tally.splits


def observe(
    split: str, images: npt.NDArray[np.uint8], indices: npt.NDArray[np.int64]
) -> Callable[[], None]:
    """A writer's converted batch of ``split`` (the images of upstream ``indices``), as
    written; counted when a write is being tallied and the normalization is computed on
    that split. Summed in a thread of its own while the writer writes the batch (NumPy
    releases the interpreter's lock as it sums, the file system as it writes): the
    function returned waits until the sums are through with ``images``, which the writer
    calls before it changes them (a reused buffer)."""
    tally = _TALLY.get()
    if tally is None or split not in tally.splits:
        return _nothing
    tally.seen.setdefault(split, []).append(np.asarray(indices, dtype=np.int64))
    if tally.thread is None:
        tally.thread = ThreadPoolExecutor(1, thread_name_prefix="medimeta-sums")
    return tally.thread.submit(tally.sums.add, images).result


def _nothing() -> None:
    return None


class UnitSums:
    """The pixel sums of the batches of one unit of work, when asked for (else nothing is
    summed): what a worker process returns beside the images it encoded, as small
    picklable JSON-ready integers (:meth:`result`), for :func:`observe_sums`."""

    def __init__(self, wanted: bool) -> None:
        self.wanted = wanted
        self.sums: PixelSums | None = None

    def add(self, batch: npt.NDArray[np.uint8]) -> None:
        """Add a converted batch (when sums were asked for)."""
        if not self.wanted:
            return
        if self.sums is None:
            self.sums = PixelSums(1 if batch.ndim == 3 else int(batch.shape[-1]))
        self.sums.add(batch)

    def result(self) -> dict[str, Any] | None:
        """The sums (:meth:`PixelSums.to_json`), or None when none were asked for."""
        return self.sums.to_json() if self.sums is not None else None


def observe_sums(split: str, indices: npt.NDArray[np.int64], sums: dict[str, Any]) -> None:
    """The sums (:class:`UnitSums`) of the images of upstream ``indices`` of ``split``,
    read and summed elsewhere (a worker process)."""
    tally = _TALLY.get()
    found = PixelSums.from_json(sums)
    if tally is None or split not in tally.splits or found is None:
        return
    tally.sums = tally.sums.merged(found)
    tally.seen.setdefault(split, []).append(np.asarray(indices, dtype=np.int64))


def _chosen(selection: Selection, full: Selection) -> list[Any]:
    return [p for p in selection.parts if p.split == "train" or not _of_train(full)]


def _channels(selection: Selection, options: ExportOptions) -> int:
    size = selection.dataset.input_size
    return options.color.channels if options.color is not None else size.channels


def _missing(tally: _Tally, parts: list[Any]) -> npt.NDArray[np.int64] | None:
    """The chosen images no writer handed over (sorted upstream indices), or None when
    what was handed over cannot be completed: an image twice, or one not chosen."""
    by_split: dict[str, list[npt.NDArray[np.int64]]] = {}
    for part in parts:
        by_split.setdefault(part.split, []).append(np.asarray(part.indices, dtype=np.int64))
    missing = []
    for split, arrays in by_split.items():
        chosen = np.unique(np.concatenate(arrays))
        seen = tally.seen.get(split, [])
        got = np.sort(np.concatenate(seen)) if seen else np.empty(0, dtype=np.int64)
        if len(got) and (np.any(got[1:] == got[:-1]) or not np.isin(got, chosen).all()):
            return None
        missing.append(np.setdiff1d(chosen, got, assume_unique=True))
    if set(tally.seen) - set(by_split):
        return None
    return np.concatenate(missing) if missing else np.empty(0, dtype=np.int64)


@contextmanager
def tallied(
    folder: Path, selection: Selection, full: Selection, options: ExportOptions
) -> Iterator[Callable[[], PixelSums]]:
    """Around a writer's write of ``selection``: yields a function that gives the sums
    afterwards, from what the writer handed over (:func:`observe`, :func:`observe_sums`),
    completed by reading the chosen images it did not hand over; from a pass of their
    own (:func:`export_sums`) when what it handed over was not each image once."""
    parts = _chosen(selection, full)
    tally = _Tally(frozenset(p.split for p in parts), PixelSums(_channels(selection, options)))
    token = _TALLY.set(tally)

    def total() -> PixelSums:
        tally.finish()
        missing = _missing(tally, parts)
        if missing is None:
            return export_sums(folder, selection, full, options)
        if not len(missing):
            return tally.sums
        return tally.sums.merged(_sums_of(folder, selection, missing, options))

    try:
        yield total
    finally:
        _TALLY.reset(token)
        tally.finish()


def _sums_of(
    folder: Path, selection: Selection, indices: npt.NDArray[np.int64], options: ExportOptions
) -> PixelSums:
    """The sums over the images at ``indices``, read straight from the dataset's files."""
    with ImageReader(folder, selection.dataset) as reader:
        return pixel_sums(
            reader,
            indices,
            convert=lambda images: convert_color(images, options.color),
            channels=_channels(selection, options),
        )


def export_sums(
    folder: Path, selection: Selection, full: Selection, options: ExportOptions
) -> PixelSums:
    """The sums over the images of ``selection`` (the whole export, or one shard of
    ``full``) that the normalization is computed on, in a pass of their own."""
    parts = _chosen(selection, full)
    indices = np.concatenate([p.indices for p in parts]) if parts else np.empty(0, dtype=np.int64)
    return _sums_of(folder, selection, indices, options)


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
