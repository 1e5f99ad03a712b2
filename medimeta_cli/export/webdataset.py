"""The ``webdataset`` format: tar shards of samples, and a manifest.

Layout (``<out>`` defaults to ``./<id>-<task>-webdataset``)::

    <out>/<id>-<split>-000000.tar, -000001.tar, ...   per split, in index order
    <out>/manifest.json                                every shard's samples and SHA-256
    <out>/classes.json, <out>/provenance.json          as in every export

Each sample is three members with the key ``<id>_<index>`` (the upstream index, six digits
at least): the image (``.png``, ``.jpg`` or ``.tiff``, encoded as the ``imagefolder``
format encodes it), ``.cls`` (the class index of ``classes.json``, decimal ASCII; not for
a multi-label first task) and ``.json`` (upstream index, split and the upstream label keys
of every exported task, under the names ``classes.json`` gives them).

Written with the standard library's :mod:`tarfile` (USTAR): a tar needs no dependency.
Byte-reproducible: samples in index order, members with mtime 0, uid and gid 0, no owner
names and mode 0644, so the same command writes the same bytes. Where a shard ends is a
pure function of the selection and the options (:func:`plan_shards`: a fixed number of
images per shard, from ``--shard-size`` and an upper bound of a sample's size), never of
the encoded sizes: the jobs of ``--shard I/N`` agree on it without talking to each other.
Each job writes the tar shards that begin in its slice of the selection (reading the few
images past its slice that those shards hold), so every tar is written whole by one job;
the job that completes the export writes the manifest from the jobs' notes.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import multiprocessing
import tarfile
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

import numpy as np
import numpy.typing as npt

from medimeta_cli.dataset.selection import Selection, SplitPart, shard_bounds
from medimeta_cli.export.imagefolder import (
    BATCH,
    close_worker,
    encode_images,
    image_name,
    init_worker,
)
from medimeta_cli.export.naming import task_column
from medimeta_cli.export.normalization import observe_sums, wanted
from medimeta_cli.export.options import ExportFormat, ExportOptions, ProgressCallback
from medimeta_cli.export.shardsize import DEFAULT_SHARD_SIZE
from medimeta_cli.export.writer import Writer
from medimeta_cli.fsutil import atomic_output, atomic_write_text

logger = logging.getLogger(__name__)

MANIFEST: Final = "manifest.json"
#: A job's notes on the tar shards it wrote (name -> samples, SHA-256), in its piece folder.
_NOTES: Final = "tars.json"
#: Besides the pixels, a sample's bound in a tar: three 512-byte headers, up to 511 bytes of
#: padding after each member, the JSON and the class index, an image file's own headers.
SAMPLE_OVERHEAD: Final = 4096
#: A tar's end: two zero blocks, then zeros up to a whole record (tarfile's 10240 bytes).
TAR_END: Final = 2 * tarfile.BLOCKSIZE + tarfile.RECORDSIZE


@dataclass(frozen=True)
class TarShard:
    """One tar file: images ``start`` to ``stop - 1`` of its split's part of the selection."""

    dataset: str
    split: str
    number: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        """``crc-train-000000.tar``."""
        return f"{self.dataset}-{self.split}-{self.number:06d}.tar"


def sample_bound(selection: Selection, options: ExportOptions) -> int:
    """An upper bound of one sample's bytes in a tar (PNG, TIFF): its uncompressed pixels,
    one PNG filter byte per row, zlib's stored blocks and PNG's chunks (under 0.1 %), and
    :data:`SAMPLE_OVERHEAD`. JPEG samples come out far smaller."""
    size = selection.dataset.input_size
    channels = options.color.channels if options.color is not None else size.channels
    raw = size.height * (size.width * channels + 1)
    return raw + raw // 1024 + SAMPLE_OVERHEAD


def images_per_shard(selection: Selection, options: ExportOptions) -> int:
    """Images in each tar shard: ``--shard-size`` in images, or as many samples of
    :func:`sample_bound` as fit in the size with the tar's end (:data:`TAR_END`)."""
    shard_size = options.shard_size or DEFAULT_SHARD_SIZE
    return shard_size.images_per_shard(sample_bound(selection, options), TAR_END)


def plan_shards(full: Selection, options: ExportOptions) -> list[TarShard]:
    """Every tar shard of the export, split by split in selection order."""
    per = images_per_shard(full, options)
    return [
        TarShard(full.dataset.id, part.split, number, start, min(start + per, len(part.indices)))
        for part in full.parts
        for number, start in enumerate(range(0, len(part.indices), per))
    ]


def shards_of_job(full: Selection, job: tuple[int, int], options: ExportOptions) -> list[TarShard]:
    """The tar shards job ``I/N`` writes: those whose first image lies in its slice (the
    slices of ``--shard I/N`` tile each split, so every tar shard has one writer)."""
    lengths = {part.split: len(part.indices) for part in full.parts}
    mine = []
    for shard in plan_shards(full, options):
        start, stop = shard_bounds(lengths[shard.split], job)
        if start <= shard.start < stop:
            mine.append(shard)
    return mine


# ----------------------------------------------------------------------------- samples


def _label_keys(selection: Selection, part: SplitPart) -> list[tuple[str, list[Any]]]:
    """Per exported task, its JSON name and each image's upstream label key (an int), or
    the keys of its positive labels (a list) for a multi-label task."""
    labelled = []
    for task in selection.tasks:
        labels = selection.labels_of(part, task)
        if labels.ndim == 2:
            # The rows' columns: every label of the task (--task all), or the kept classes.
            columns = list(task.labels) if part.task_labels is not None else selection.classes
            keys: list[Any] = [
                [int(columns[c]) for c in np.flatnonzero(row)] for row in labels.tolist()
            ]
        else:
            keys = [int(key) for key in labels.tolist()]
        labelled.append((task_column(task), keys))
    return labelled


def _samples_meta(
    selection: Selection, part: SplitPart, shard: TarShard, extension: str
) -> list[list[tuple[str, bytes | None]]]:
    """Each sample's members but the image's bytes (None): the image's name, ``.cls`` and
    ``.json``, in that order."""
    position = {key: n for n, key in enumerate(selection.classes)}
    labelled = _label_keys(selection, part)
    samples = []
    for n in range(shard.start, shard.stop):
        index = int(part.indices[n])
        key = image_name(selection.dataset.id, index, "")
        document: dict[str, Any] = {"key": key, "index": index, "split": part.split}
        document.update((name, keys[n]) for name, keys in labelled)
        members: list[tuple[str, bytes | None]] = [(f"{key}{extension}", None)]
        if not selection.multilabel:
            members.append((f"{key}.cls", str(position[int(part.labels[n])]).encode("ascii")))
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        members.append((f"{key}.json", text.encode("utf-8")))
        samples.append(members)
    return samples


class _Hashing:
    """A binary file that hashes what is written through it (tarfile writes, this hashes)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def tell(self) -> int:
        return self.size


def _member(name: str, size: int) -> tarfile.TarInfo:
    """A regular file's header with nothing that differs between runs or machines."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def _write_tar(
    path: Path,
    samples: list[list[tuple[str, bytes | None]]],
    images: Iterator[bytes],
    progress: ProgressCallback,
) -> dict[str, Any]:
    """One tar shard, atomically; its entry in the manifest."""
    with atomic_output(path, durable=False) as raw:
        hashing = _Hashing(raw)
        # A write-only file: typeshed asks for read and seek, which writing never calls.
        tar = tarfile.TarFile(fileobj=hashing, mode="w", format=tarfile.USTAR_FORMAT)  # type: ignore[arg-type]
        with tar:
            done = 0
            for members in samples:
                for name, data in members:
                    payload = next(images) if data is None else data
                    tar.addfile(_member(name, len(payload)), io.BytesIO(payload))
                done += 1
                if done == BATCH:
                    progress(done)
                    done = 0
            progress(done)
    return {"file": path.name, "samples": len(samples), "sha256": hashing.sha256.hexdigest()}


# ----------------------------------------------------------------------------- encoding


@dataclass(frozen=True)
class _Run:
    """Neighbouring images of one split that one worker reads and encodes; ``summed`` when
    their pixel sums go to the normalization (:func:`observe_sums`)."""

    split: str
    indices: npt.NDArray[np.int64]
    summed: bool


def _encoded(
    folder: Path, selection: Selection, runs: Sequence[_Run], options: ExportOptions
) -> Iterator[bytes]:
    """The encoded images of ``runs`` (sorted index runs), in order: in this process, or
    in ``options.jobs`` worker processes with a bounded number of runs in flight; the
    pixel sums of the runs that want them, summed where the images were read."""
    args = (options.image_format, options.color)

    def encoded(run: _Run, done: tuple[list[bytes], Any]) -> list[bytes]:
        images, sums = done
        if sums is not None:
            observe_sums(run.split, run.indices, sums)
        return images

    if options.jobs <= 1 or len(runs) <= 1:
        init_worker(str(folder), selection.dataset)
        try:
            for run in runs:
                yield from encoded(run, encode_images(run.indices, *args, run.summed))
        finally:
            close_worker()
        return
    # spawn: workers open the HDF5 file themselves; a forked copy of an open handle is unsafe.
    with ProcessPoolExecutor(
        max_workers=options.jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(str(folder), selection.dataset),
    ) as pool:
        pending: deque[tuple[_Run, Future[tuple[list[bytes], Any]]]] = deque()
        submitted = 0
        try:
            while submitted < len(runs) or pending:
                while submitted < len(runs) and len(pending) < 2 * options.jobs:
                    run = runs[submitted]
                    pending.append(
                        (run, pool.submit(encode_images, run.indices, *args, run.summed))
                    )
                    submitted += 1
                run, future = pending.popleft()
                yield from encoded(run, future.result())
        finally:
            for _, future in pending:
                future.cancel()


def _runs(
    full: Selection,
    shards: Sequence[TarShard],
    options: ExportOptions,
    slice_ends: Mapping[str, int] | None,
) -> list[_Run]:
    """The runs of ``shards``: small enough that every worker gets several, never crossing
    a shard, nor the end of a job's slice (``slice_ends``, per split: the images past it,
    which the job's last tar holds, are the next job's to sum)."""
    parts = {part.split: part for part in full.parts}
    total = sum(shard.stop - shard.start for shard in shards)
    unit = max(16, min(BATCH, total // max(1, options.jobs * 8)))
    runs: list[_Run] = []
    for shard in shards:
        end = shard.stop if slice_ends is None else slice_ends[shard.split]
        cuts = sorted(
            {
                *range(shard.start, shard.stop, unit),
                shard.stop,
                *([end] if shard.start < end < shard.stop else []),
            }
        )
        summed = wanted(shard.split)
        runs.extend(
            _Run(shard.split, parts[shard.split].indices[a:b], summed and b <= end)
            for a, b in itertools.pairwise(cuts)
        )
    return runs


def write_tars(
    folder: Path,
    full: Selection,
    shards: Sequence[TarShard],
    target: Path,
    options: ExportOptions,
    progress: ProgressCallback,
    *,
    slice_ends: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Write ``shards`` of ``full`` into ``target``; their manifest entries, in order. The
    pixel sums of what they hold go to the normalization, but for the images past
    ``slice_ends`` (per split: a job's tars hold some of the next job's slice)."""
    parts = {part.split: part for part in full.parts}
    images = _encoded(folder, full, _runs(full, shards, options, slice_ends), options)
    extension = options.image_format.extension
    entries = []
    try:
        for shard in shards:
            samples = _samples_meta(full, parts[shard.split], shard, extension)
            entries.append(_write_tar(target / shard.name, samples, images, progress))
    finally:
        close = getattr(images, "close", None)
        if close is not None:
            close()
    return entries


def manifest(full: Selection, options: ExportOptions, entries: Sequence[dict[str, Any]]) -> str:
    """``manifest.json``: per split its images, its shards (file, samples, SHA-256) and a
    brace pattern of their names for ``webdataset.WebDataset``."""
    by_name = {entry["file"]: entry for entry in entries}
    splits: dict[str, Any] = {}
    shards = plan_shards(full, options)
    for part in full.parts:
        mine = [shard for shard in shards if shard.split == part.split]
        names = [shard.name for shard in mine]
        pattern = (
            names[0]
            if len(names) == 1
            else f"{full.dataset.id}-{part.split}-{{000000..{len(names) - 1:06d}}}.tar"
        )
        splits[part.split] = {
            "images": len(part.indices),
            "urls": pattern,
            "shards": [by_name[name] for name in names],
        }
    document = {
        "format": "webdataset",
        "dataset": full.dataset.id,
        "images_per_shard": images_per_shard(full, options),
        "shard_size": str(options.shard_size or DEFAULT_SHARD_SIZE),
        "image_extension": options.image_format.extension.lstrip("."),
        "splits": splits,
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# ----------------------------------------------------------------------------- the writer


class WebDatasetWriter(Writer):
    """Tar shards of samples (image, ``.cls``, ``.json``) and manifest.json."""

    format = ExportFormat.WEBDATASET
    encodes_images = True
    every_task = True  # every task's label keys in each sample's .json
    sized_shards = True

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
        """Every tar shard of the selection, and the manifest."""
        entries = write_tars(
            folder, selection, plan_shards(selection, options), target, options, progress
        )
        atomic_write_text(target / MANIFEST, manifest(selection, options, entries))

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
        """The tar shards that begin in this job's slice (:func:`shards_of_job`), straight
        into ``out``, and notes on them in ``piece`` for the manifest."""
        assert selection.spec.shard is not None
        job = selection.spec.shard
        mine = shards_of_job(full, job, options)
        ends = {part.split: shard_bounds(len(part.indices), job)[1] for part in full.parts}
        # This job's progress counts its slice; the tars it writes may hold a few more.
        entries = write_tars(folder, full, mine, out, options, lambda count: None, slice_ends=ends)
        progress(selection.total)
        piece.mkdir(exist_ok=True)
        atomic_write_text(piece / _NOTES, json.dumps(entries, indent=2) + "\n")

    def join_shards(
        self, full: Selection, out: Path, pieces: Sequence[Path], options: ExportOptions
    ) -> None:
        """The manifest, from every job's notes."""
        entries = [
            entry
            for piece in pieces
            for entry in json.loads((piece / _NOTES).read_text(encoding="utf-8"))
        ]
        atomic_write_text(out / MANIFEST, manifest(full, options, entries))

    def format_settings(self, options: ExportOptions) -> dict[str, Any]:
        """The shard size decides where the tars are cut (the image encoding is recorded
        for every format that encodes images)."""
        return {"shard_size": str(options.shard_size or DEFAULT_SHARD_SIZE)}

    def labels_note(self, multilabel: bool) -> str:
        """Where a sample's class index and label keys are."""
        if multilabel:
            return (
                "Multi-label: no .cls; each sample's .json lists the upstream keys of its "
                "positive labels under the task's 'labels' name (index = position of the key)."
            )
        return (
            "<key>.cls holds the index; <key>.json the upstream key under the task's "
            "'labels' name, the upstream index and the split."
        )
