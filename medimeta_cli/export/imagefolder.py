"""The ``imagefolder`` layout: class folders of image files, metadata.csv and classes.json.

Single-label tasks get ``<split>/<class>/<id>_<index>.<ext>``, multi-label tasks
``<split>/<id>_<index>.<ext>`` with their labels as 0/1 columns in
``<split>/metadata.csv``, which Hugging Face ``imagefolder`` reads. Images are
encoded in worker processes when ``jobs`` > 1.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from medimeta_cli.catalog import Dataset, Task
from medimeta_cli.export.options import (
    Color,
    ExportFormat,
    ExportOptions,
    ImageFormat,
    ProgressCallback,
)
from medimeta_cli.export.pixels import convert_color
from medimeta_cli.fsutil import atomic_write_bytes
from medimeta_cli.reader import DatasetReader
from medimeta_cli.selection import Selection

logger = logging.getLogger(__name__)

#: Images read, converted and encoded per reader call.
BATCH = 128

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


def image_paths(selection: Selection, image_format: ImageFormat) -> dict[str, list[str]]:
    """Relative path of every selected image, per split."""
    folders = safe_folder_names(selection.task, selection.classes)
    paths: dict[str, list[str]] = {}
    for part in selection.parts:
        names = [
            image_name(selection.dataset.id, int(i), image_format.extension) for i in part.indices
        ]
        if selection.multilabel:
            paths[part.split] = [f"{part.split}/{name}" for name in names]
        else:
            paths[part.split] = [
                f"{part.split}/{folders[int(key)]}/{name}"
                for key, name in zip(part.labels, names, strict=True)
            ]
    return paths


# ----------------------------------------------------------------------------- image files


def _encode(image: npt.NDArray[np.uint8], image_format: ImageFormat) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(
        buffer, format=image_format.pillow_format, **image_format.save_parameters
    )
    return buffer.getvalue()


# The reader of this process: opened once per worker (or once in-process), not per unit.
_WORKER: dict[str, Any] = {}


def _init_worker(folder: str, dataset: Dataset) -> None:
    _WORKER["reader"] = DatasetReader(Path(folder), dataset)


def _write_images(
    indices: npt.NDArray[np.int64],
    targets: Sequence[str],
    image_format: ImageFormat,
    color: Color | None,
    atomic: bool,
) -> int:
    """Read, convert, encode and write one run of images (in a worker or in-process)."""
    reader: DatasetReader = _WORKER["reader"]
    written = 0
    for position in range(0, len(indices), BATCH):
        batch = convert_color(reader.read_images(indices[position : position + BATCH]), color)
        for image, target in zip(batch, targets[position : position + BATCH], strict=True):
            data = _encode(image, image_format)
            if atomic:
                atomic_write_bytes(Path(target), data, durable=False)
            else:
                Path(target).write_bytes(data)
            written += 1
    return written


def write_image_files(
    folder: Path,
    selection: Selection,
    target: Path,
    options: ExportOptions,
    progress: ProgressCallback,
    *,
    atomic: bool,
) -> None:
    """Write the selected images as files under ``target`` (each atomically if ``atomic``)."""
    paths = image_paths(selection, options.image_format)
    # About eight units per worker, so that no worker idles long at the end and small
    # splits are shared too; never so small that hand-offs dominate.
    unit = max(16, min(2 * BATCH, selection.total // max(1, options.jobs * 8)))
    units: list[tuple[npt.NDArray[np.int64], list[str]]] = []
    for part in selection.parts:
        absolute = [str(target / rel) for rel in paths[part.split]]
        for parent in sorted({os.path.dirname(p) for p in absolute}):
            os.makedirs(parent, exist_ok=True)
        for start in range(0, len(part.indices), unit):
            units.append((part.indices[start : start + unit], absolute[start : start + unit]))
    args = (options.image_format, options.color, atomic)
    if options.jobs <= 1 or len(units) <= 1:
        logger.debug("encoding %d images in this process", selection.total)
        _init_worker(str(folder), selection.dataset)
        try:
            for indices, targets in units:
                progress(_write_images(indices, targets, *args))
        finally:
            _WORKER.pop("reader").close()
        return
    import multiprocessing

    logger.debug(
        "encoding %d images in %d units on %d processes", selection.total, len(units), options.jobs
    )
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


# ----------------------------------------------------------------------------- tables


def metadata_csv(selection: Selection, image_format: ImageFormat, split: str) -> str:
    """Rows for Hugging Face ``imagefolder``: ``file_name`` relative to the split folder."""
    part = next(p for p in selection.parts if p.split == split)
    rel_paths = image_paths(selection, image_format)[split]
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


def classes_json(selection: Selection, export_format: ExportFormat) -> dict[str, Any]:
    """The kept classes in label order, with their folder in single-label image folders."""
    folders = safe_folder_names(selection.task, selection.classes)
    with_folders = not selection.multilabel and export_format is ExportFormat.IMAGEFOLDER
    return {
        "dataset": selection.dataset.id,
        "task": selection.task.name,
        "task_type": selection.task.target.value,
        "classes": [
            {
                "index": position,
                "key": key,
                "name": selection.task.labels[key],
                "folder": folders[key] if with_folders else None,
            }
            for position, key in enumerate(selection.classes)
        ],
    }
