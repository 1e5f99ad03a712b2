"""Export a selection of an installed dataset to class folders or NumPy arrays.

Layouts (``<out>`` defaults to ``./<id>-<task>``)::

    imagefolder  <out>/<split>/<class>/<id>_<index>.png      single-label tasks
                 <out>/<split>/<id>_<index>.png               multi-label tasks
                 <out>/<split>/metadata.csv                   Hugging Face ``imagefolder``
    numpy        <out>/<split>/images.npy, labels.npy, indices.npy   (or <out>/<split>.npz)
    both         <out>/classes.json, <out>/provenance.json

An export is written into a hidden folder next to ``<out>`` and renamed into place
when complete, so an interrupted export never looks complete. ``provenance.json``
is written last; an existing export with the same provenance is left as it is.
With ``--shard I/N`` every job writes its own slice of the selection straight into
``<out>`` (one file at a time, atomically) and the job that completes the last
slice writes the shared files; the result is byte-identical to one unsharded run.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from medimeta_cli import __version__
from medimeta_cli.catalog import Dataset, Task
from medimeta_cli.citation import bibtex_for
from medimeta_cli.errors import OutputExistsError, UsageError
from medimeta_cli.fsutil import (
    atomic_write_bytes,
    atomic_write_text,
    ensure_space,
    ensure_writable_dir,
    remove_tree,
    translate_os_error,
    unique_suffix,
)
from medimeta_cli.layout import RootLayout
from medimeta_cli.reader import DatasetReader
from medimeta_cli.records import read_install_record
from medimeta_cli.selection import Selection, SelectionSpec, select

FORMATS = ("imagefolder", "numpy")
IMAGE_FORMATS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "png": ("PNG", ".png", {}),
    "jpeg": ("JPEG", ".jpg", {"quality": 95}),
    "tiff": ("TIFF", ".tiff", {}),
}
COLORS = ("rgb", "grayscale")
SHARDS_DIR = ".medimeta-shards"
PROVENANCE = "provenance.json"
_BATCH = 128
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class ExportOptions:
    """How to write an export."""

    format: str = "imagefolder"
    image_format: str = "png"
    color: str | None = None
    npz: bool = False
    compress: bool = False
    jobs: int = 1
    overwrite: bool = False
    command: str = ""

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise UsageError(f"unknown format {self.format!r}", hint=f"Use {' or '.join(FORMATS)}.")
        if self.image_format not in IMAGE_FORMATS:
            raise UsageError(
                f"unknown image format {self.image_format!r}",
                hint=f"Use {', '.join(IMAGE_FORMATS)}.",
            )
        if self.color not in (None, *COLORS):
            raise UsageError(f"unknown colour mode {self.color!r}", hint="Use rgb or grayscale.")


@dataclass(frozen=True)
class ExportResult:
    """What an export did."""

    out: Path
    status: str  # "exported", "up to date", "shard written", "shard up to date"
    counts: dict[str, dict[str, int]]
    images: int
    seconds: float
    complete: bool

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "out": str(self.out),
            "status": self.status,
            "complete": self.complete,
            "images": self.images,
            "counts": self.counts,
            "seconds": round(self.seconds, 3),
        }


ProgressCallback = Callable[[int], None]


# ----------------------------------------------------------------------------- naming


def safe_folder_names(task: Task, keys: Sequence[int]) -> dict[int, str]:
    """Class folder names that every file system accepts and that stay distinct.

    Path separators and characters Windows refuses become ``_``; leading dots and
    trailing dots or spaces are dropped; names that collide (also when case is
    ignored, as on macOS and Windows) get their label key appended.
    """
    names: dict[int, str] = {}
    for key in keys:
        name = re.sub(r'[\x00-\x1f/\\:*?"<>|]', "_", task.labels[key]).strip()
        name = name.lstrip(".").rstrip(". ")[:100] or f"class_{key}"
        names[key] = name
    folded: dict[str, list[int]] = {}
    for key, name in names.items():
        folded.setdefault(name.casefold(), []).append(key)
    for clashing in folded.values():
        if len(clashing) > 1:
            for key in clashing:
                names[key] = f"{names[key]}_{key}"
    return names


def image_name(dataset_id: str, index: int, extension: str) -> str:
    """``crc_000123.png``: the upstream index, zero-padded as upstream pads it."""
    return f"{dataset_id}_{index:06d}{extension}"


# ----------------------------------------------------------------------------- pixels


def convert_color(images: npt.NDArray[np.uint8], color: str | None) -> npt.NDArray[np.uint8]:
    """Convert a batch to RGB or grayscale (Pillow's ITU-R 601-2 luma, exactly)."""
    if color == "rgb" and images.ndim == 3:
        return np.repeat(images[..., None], 3, axis=-1)
    if color == "grayscale" and images.ndim == 4:
        weights = np.array([19595, 38470, 7471], dtype=np.uint32)
        luma = (images.astype(np.uint32) @ weights + 0x8000) >> 16
        return luma.astype(np.uint8)
    return images


def _encode(image: npt.NDArray[np.uint8], image_format: str) -> bytes:
    from PIL import Image

    pil_format, _, params = IMAGE_FORMATS[image_format]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=pil_format, **params)
    return buffer.getvalue()


# ----------------------------------------------------------------------------- workers

_WORKER: dict[str, Any] = {}


def _init_worker(folder: str, dataset: Dataset) -> None:
    _WORKER["reader"] = DatasetReader(Path(folder), dataset)


def _write_images(
    indices: npt.NDArray[np.int64],
    targets: Sequence[str],
    image_format: str,
    color: str | None,
    atomic: bool,
) -> int:
    """Read, convert, encode and write one run of images (in a worker or in-process)."""
    reader: DatasetReader = _WORKER["reader"]
    written = 0
    for position in range(0, len(indices), _BATCH):
        batch = convert_color(reader.read_images(indices[position : position + _BATCH]), color)
        for image, target in zip(batch, targets[position : position + _BATCH], strict=True):
            data = _encode(image, image_format)
            if atomic:
                atomic_write_bytes(Path(target), data, durable=False)
            else:
                Path(target).write_bytes(data)
            written += 1
    return written


# ----------------------------------------------------------------------------- export


def export_dataset(
    root: Path,
    dataset: Dataset,
    spec: SelectionSpec,
    out: Path,
    options: ExportOptions,
    *,
    on_start: Callable[[int], None] | None = None,
    on_progress: ProgressCallback | None = None,
) -> ExportResult:
    """Select images of an installed dataset and export them (whole, or one shard)."""
    reader = DatasetReader.open(root, dataset)
    try:
        selection = select(reader, spec)
        full = selection if spec.shard is None else select(reader, replace(spec, shard=None))
    finally:
        reader.close()
    return export_selection(
        root, selection, out, options, full=full, on_start=on_start, on_progress=on_progress
    )


def export_selection(
    root: Path,
    selection: Selection,
    out: Path,
    options: ExportOptions,
    *,
    full: Selection | None = None,
    on_start: Callable[[int], None] | None = None,
    on_progress: ProgressCallback | None = None,
) -> ExportResult:
    """Export a resolved selection; ``full`` is the whole selection when this is a shard."""
    started = time.monotonic()
    folder = RootLayout(root).dataset_dir(selection.dataset.id)
    full = full or selection
    provenance = _provenance(root, full, options)
    if on_start is not None:
        on_start(selection.total)
    progress = on_progress or (lambda count: None)
    try:
        if selection.spec.shard is None:
            status = _export_whole(folder, selection, provenance, out, options, progress)
            complete = True
        else:
            status, complete = _export_shard(
                folder, selection, full, provenance, out, options, progress
            )
    except OSError as exc:
        raise translate_os_error(exc, f"the export into {out}") from exc
    return ExportResult(
        out, status, selection.counts(), selection.total, time.monotonic() - started, complete
    )


def _provenance(root: Path, full: Selection, options: ExportOptions) -> dict[str, Any]:
    """Everything needed to tell where an export came from (and whether it is current)."""
    dataset = full.dataset
    record = read_install_record(RootLayout(root), dataset.id)
    return {
        "dataset": dataset.id,
        "dataset_name": dataset.name,
        "task": full.task.name,
        "task_type": full.task.target.value,
        "record_id": record.record_id if record else None,
        "record_version": record.record_version if record else None,
        "archive_md5": record.archive_md5 if record else None,
        "license": dataset.license.name,
        "non_commercial": dataset.license.non_commercial,
        "selection": replace(full.spec, task=full.task.name).to_json(),
        "format": {
            "format": options.format,
            "image_format": options.image_format if options.format == "imagefolder" else None,
            "color": options.color,
            "npz": options.npz,
            "compressed": options.compress,
        },
        "command": options.command,
        "tool_version": __version__,
        "counts": full.counts(),
        "sources": [source.to_json() for source in dataset.sources],
        "bibtex": bibtex_for(dataset),
        "doi": "10.5281/zenodo.7884735",
    }


def _same_export(path: Path, provenance: dict[str, Any]) -> bool:
    """Whether the provenance saved at ``path`` describes this very export.

    The command line and tool version may differ (the shards of one export have
    different command lines); everything that decides the output must not.
    """
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    ignore = {"command", "tool_version"}
    return {k: v for k, v in found.items() if k not in ignore} == {
        k: v for k, v in provenance.items() if k not in ignore
    }


def _export_whole(
    folder: Path,
    selection: Selection,
    provenance: dict[str, Any],
    out: Path,
    options: ExportOptions,
    progress: ProgressCallback,
) -> str:
    if out.exists() and not options.overwrite:
        if _same_export(out / PROVENANCE, provenance):
            return "up to date"
        raise OutputExistsError(f"{out} already exists")
    ensure_writable_dir(out.parent)
    ensure_space(out.parent, _estimated_bytes(selection, options), f"exporting to {out}")
    staging = out.parent / f".{out.name}.partial-{unique_suffix()}"
    old: Path | None = None
    try:
        staging.mkdir()
        _write_selection(folder, selection, staging, options, progress, atomic=False)
        _write_shared(selection, staging, options)
        _write_json(staging / PROVENANCE, provenance)
        if out.exists():
            old = out.parent / f".{out.name}.old-{unique_suffix()}"
            os.rename(out, old)
        os.rename(staging, out)
    finally:
        remove_tree(staging)
        if old is not None:
            remove_tree(old)
    return "exported"


def _export_shard(
    folder: Path,
    selection: Selection,
    full: Selection,
    provenance: dict[str, Any],
    out: Path,
    options: ExportOptions,
    progress: ProgressCallback,
) -> tuple[str, bool]:
    assert selection.spec.shard is not None
    index, count = selection.spec.shard
    shards = out / SHARDS_DIR
    marker = shards / f"{index}-of-{count}.json"
    fingerprint = shards / "export.json"
    if (out / PROVENANCE).exists():
        if _same_export(out / PROVENANCE, provenance):
            return "shard up to date", True
        raise OutputExistsError(f"{out} holds another export")
    ensure_writable_dir(shards)
    if not fingerprint.exists():
        _write_json(fingerprint, provenance)
    elif not _same_export(fingerprint, provenance):
        raise OutputExistsError(
            f"{out} holds shards of another export",
            hint="Give every shard the same selection, or choose another --out.",
        )
    if not marker.exists():
        ensure_space(out, _estimated_bytes(selection, options), f"exporting to {out}")
        if options.format == "imagefolder":
            _write_selection(folder, selection, out, options, progress, atomic=True)
        else:  # slices as plain .npy files; the merge writes the format asked for
            piece = shards / f"{index}-of-{count}"
            piece.mkdir(exist_ok=True)
            _write_selection(
                folder, selection, piece, replace(options, npz=False), progress, atomic=True
            )
        _write_json(marker, {"shard": f"{index}/{count}", "images": selection.total})
        status = "shard written"
    else:
        status = "shard up to date"
    done = all((shards / f"{i}-of-{count}.json").exists() for i in range(1, count + 1))
    if done:
        # Any job may get here; what it writes is the same, and every write is atomic.
        if options.format == "numpy":
            _merge_numpy_shards(full, out, shards, count, options)
        _write_shared(full, out, options)
        _write_json(out / PROVENANCE, provenance)
        shutil.rmtree(shards, ignore_errors=True)
    return status, done


def _estimated_bytes(selection: Selection, options: ExportOptions) -> int:
    """Uncompressed pixels: an upper bound for PNG and TIFF, generous for JPEG."""
    size = selection.dataset.input_size
    channels = {"rgb": 3, "grayscale": 1}.get(options.color or "", size.channels)
    return selection.total * (size.height * size.width * channels + 1024)


def _write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _write_selection(
    folder: Path,
    selection: Selection,
    target: Path,
    options: ExportOptions,
    progress: ProgressCallback,
    *,
    atomic: bool,
) -> None:
    if options.format == "imagefolder":
        _write_image_files(folder, selection, target, options, progress, atomic=atomic)
    else:
        _write_arrays(folder, selection, target, options, progress)


# ----------------------------------------------------------------------------- imagefolder


def _image_paths(selection: Selection, options: ExportOptions) -> dict[str, list[str]]:
    """Relative path of every selected image, per split."""
    extension = IMAGE_FORMATS[options.image_format][1]
    folders = safe_folder_names(selection.task, selection.classes)
    paths: dict[str, list[str]] = {}
    for part in selection.parts:
        names = [image_name(selection.dataset.id, int(i), extension) for i in part.indices]
        if selection.multilabel:
            paths[part.split] = [f"{part.split}/{name}" for name in names]
        else:
            paths[part.split] = [
                f"{part.split}/{folders[int(key)]}/{name}"
                for key, name in zip(part.labels, names, strict=True)
            ]
    return paths


def _write_image_files(
    folder: Path,
    selection: Selection,
    target: Path,
    options: ExportOptions,
    progress: ProgressCallback,
    *,
    atomic: bool,
) -> None:
    paths = _image_paths(selection, options)
    # About eight units per worker, so that no worker idles long at the end and small
    # splits are shared too; never so small that hand-offs dominate.
    unit = max(16, min(2 * _BATCH, selection.total // max(1, options.jobs * 8)))
    units: list[tuple[npt.NDArray[np.int64], list[str]]] = []
    for part in selection.parts:
        absolute = [str(target / rel) for rel in paths[part.split]]
        for parent in sorted({os.path.dirname(p) for p in absolute}):
            os.makedirs(parent, exist_ok=True)
        for start in range(0, len(part.indices), unit):
            units.append((part.indices[start : start + unit], absolute[start : start + unit]))
    args = (options.image_format, options.color, atomic)
    if options.jobs <= 1 or len(units) <= 1:
        _init_worker(str(folder), selection.dataset)
        try:
            for indices, targets in units:
                progress(_write_images(indices, targets, *args))
        finally:
            _WORKER.pop("reader").close()
        return
    import multiprocessing

    # spawn: workers open the HDF5 file themselves; a forked copy of an open handle is unsafe.
    with ProcessPoolExecutor(
        max_workers=options.jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(str(folder), selection.dataset),
    ) as pool:
        futures = [
            pool.submit(_write_images, indices, targets, *args) for indices, targets in units
        ]
        try:
            for future in as_completed(futures):
                progress(future.result())
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _metadata_csv(selection: Selection, options: ExportOptions, split: str) -> str:
    """Rows for Hugging Face ``imagefolder``: ``file_name`` relative to the split folder."""
    part = next(p for p in selection.parts if p.split == split)
    rel_paths = _image_paths(selection, options)[split]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    task = selection.task
    if selection.multilabel:
        names = [task.labels[key] for key in selection.classes]
        writer.writerow(["file_name", "split", "upstream_index", "label_keys", *names])
        for path, index, row in zip(rel_paths, part.indices, part.labels, strict=True):
            keys = " ".join(str(k) for k, on in zip(selection.classes, row, strict=True) if on)
            writer.writerow(
                [path.split("/", 1)[1], split, int(index), keys, *(int(v) for v in row)]
            )
    else:
        writer.writerow(["file_name", "split", "label_key", "label_name", "upstream_index"])
        for path, index, key in zip(rel_paths, part.indices, part.labels, strict=True):
            writer.writerow(
                [path.split("/", 1)[1], split, int(key), task.labels[int(key)], int(index)]
            )
    return buffer.getvalue()


def _classes_json(selection: Selection, options: ExportOptions) -> dict[str, Any]:
    folders = safe_folder_names(selection.task, selection.classes)
    return {
        "dataset": selection.dataset.id,
        "task": selection.task.name,
        "task_type": selection.task.target.value,
        "classes": [
            {
                "index": position,
                "key": key,
                "name": selection.task.labels[key],
                "folder": None
                if selection.multilabel or options.format != "imagefolder"
                else folders[key],
            }
            for position, key in enumerate(selection.classes)
        ],
    }


def _write_shared(selection: Selection, target: Path, options: ExportOptions) -> None:
    """metadata.csv per split (image folders) and classes.json."""
    if options.format == "imagefolder":
        for part in selection.parts:
            split_dir = target / part.split
            split_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(
                split_dir / "metadata.csv", _metadata_csv(selection, options, part.split)
            )
    _write_json(target / "classes.json", _classes_json(selection, options))


# ----------------------------------------------------------------------------- numpy


def _write_npy(handle: Any, shape: tuple[int, ...], dtype: Any, batches: Iterable[Any]) -> None:
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
    color: str | None,
    progress: ProgressCallback,
) -> Iterator[npt.NDArray[np.uint8]]:
    for batch_indices, images in reader.iter_batches(indices, batch_size=256, reuse_buffer=True):
        yield convert_color(images, color)
        progress(len(batch_indices))


def _write_arrays(
    folder: Path,
    selection: Selection,
    target: Path,
    options: ExportOptions,
    progress: ProgressCallback,
) -> None:
    reader = DatasetReader(folder, selection.dataset)
    try:
        shape = convert_color(np.zeros((1, *reader.image_shape), np.uint8), options.color).shape[1:]
        for part in selection.parts:
            members: dict[str, tuple[tuple[int, ...], Any, Iterable[Any]]] = {
                "images": (
                    (len(part.indices), *shape),
                    np.uint8,
                    _image_batches(reader, part.indices, options.color, progress),
                ),
                "labels": (part.labels.shape, part.labels.dtype, [part.labels]),
                "indices": (part.indices.shape, np.int64, [part.indices]),
            }
            if options.npz:
                _write_npz(target / f"{part.split}.npz", members, options.compress)
            else:
                split_dir = target / part.split
                split_dir.mkdir(parents=True, exist_ok=True)
                for name, (array_shape, dtype, batches) in members.items():
                    _atomic_stream(split_dir / f"{name}.npy", array_shape, dtype, batches)
    finally:
        reader.close()


def _atomic_stream(path: Path, shape: tuple[int, ...], dtype: Any, batches: Iterable[Any]) -> None:
    tmp = path.with_name(f".{path.name}.{unique_suffix()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            _write_npy(handle, shape, dtype, batches)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_npz(
    path: Path, members: dict[str, tuple[tuple[int, ...], Any, Iterable[Any]]], compress: bool
) -> None:
    """One ``.npz`` per split, streamed member by member, with fixed time stamps."""
    tmp = path.with_name(f".{path.name}.{unique_suffix()}.tmp")
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    try:
        with zipfile.ZipFile(tmp, "w", compression=method, allowZip64=True) as archive:
            for name, (shape, dtype, batches) in members.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
                info.compress_type = method
                with archive.open(info, "w", force_zip64=True) as handle:
                    _write_npy(handle, shape, dtype, batches)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _merge_numpy_shards(
    full: Selection, out: Path, shards: Path, count: int, options: ExportOptions
) -> None:
    """Concatenate the shards' arrays, in shard order, into the final arrays."""
    pieces = [shards / f"{i}-of-{count}" for i in range(1, count + 1)]
    for part in full.parts:
        members: dict[str, tuple[tuple[int, ...], Any, Iterable[Any]]] = {}
        for name in ("images", "labels", "indices"):
            arrays = [np.load(p / part.split / f"{name}.npy", mmap_mode="r") for p in pieces]
            shape = (sum(len(a) for a in arrays), *arrays[0].shape[1:])
            members[name] = (shape, arrays[0].dtype, _rows(arrays))
        if options.npz:
            _write_npz(out / f"{part.split}.npz", members, options.compress)
            continue
        split_dir = out / part.split
        split_dir.mkdir(parents=True, exist_ok=True)
        for name, (shape, dtype, batches) in members.items():
            _atomic_stream(split_dir / f"{name}.npy", shape, dtype, batches)


def _rows(arrays: Sequence[Any], step: int = 256) -> Iterator[Any]:
    for array in arrays:
        for start in range(0, len(array), step):
            yield np.asarray(array[start : start + step])
