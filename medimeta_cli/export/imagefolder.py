"""The ``imagefolder`` format: class folders of image files and metadata.csv.

Single-label tasks get ``<split>/<class>/<id>_<index>.<ext>``, multi-label tasks
``<split>/<id>_<index>.<ext>`` with their labels as 0/1 columns in
``<split>/metadata.csv``, which Hugging Face ``imagefolder`` reads. A single-label
export also gets a dataset card (``README.md``) that declares ``label`` a ``ClassLabel``
with the class names in ``classes.json`` order, which ``datasets.load_dataset(folder)``
reads. Images are encoded in worker processes when ``jobs`` > 1.
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

from medimeta_cli.catalog.datasets import Dataset, Task
from medimeta_cli.dataset.images import ImageReader
from medimeta_cli.dataset.selection import Selection
from medimeta_cli.export.hf_card import imagefolder_card
from medimeta_cli.export.naming import task_column
from medimeta_cli.export.normalization import UnitSums, observe_sums, wanted
from medimeta_cli.export.options import (
    Color,
    ExportFormat,
    ExportOptions,
    ImageFormat,
    ProgressCallback,
)
from medimeta_cli.export.pixels import convert_color
from medimeta_cli.export.writer import Writer
from medimeta_cli.fsutil import atomic_write_bytes, atomic_write_text

logger = logging.getLogger(__name__)

#: Images read, converted and encoded per reader call.
BATCH = 128

# ----------------------------------------------------------------------------- naming


def _safe_name(name: str, key: int) -> str:
    """``name`` made acceptable to every file system (``class_<key>`` if nothing is left)."""
    name = re.sub(r'[\x00-\x1f/\\:*?"<>|]', "_", name).strip()
    return name.lstrip(".").rstrip(". ")[:100] or f"class_{key}"


def safe_folder_names(task: Task, keys: Sequence[int]) -> dict[int, str]:
    """Label names that every file system accepts and that stay distinct.

    Path separators and characters Windows refuses become ``_``; leading dots and
    trailing dots or spaces are dropped; names that collide (also when case is
    ignored, as on macOS and Windows) get their label key appended.
    """
    names = {key: _safe_name(task.labels[key], key) for key in keys}
    folded: dict[str, list[int]] = {}
    for key, name in names.items():
        folded.setdefault(name.casefold(), []).append(key)
    for clashing in folded.values():
        if len(clashing) > 1:
            for key in clashing:
                names[key] = f"{names[key]}_{key}"
    return names


def class_folder_names(task: Task, keys: Sequence[int]) -> dict[int, str]:
    """Class folders that sort in class index order: ``00_adipose (ADI)``, ``01_...``.

    ``keys`` are the exported classes in index order (the order of ``classes.json``).
    torchvision's ``ImageFolder``, Keras' ``image_dataset_from_directory`` and Hugging
    Face ``imagefolder`` number classes by sorting folder names; a zero-padded index
    prefix (two digits at least, more for 100 classes or more) makes that order the
    index order whatever the label names are, and keeps the folders distinct.
    """
    width = max(2, len(str(len(keys) - 1)))
    return {
        key: f"{position:0{width}d}_{_safe_name(task.labels[key], key)}"
        for position, key in enumerate(keys)
    }


def empty_class_folders(selection: Selection) -> dict[str, list[str]]:
    """Per split, the class folders that hold no image (single-label tasks; else empty).

    Every split of an image folder export holds every class folder, so that loaders
    that number classes by sorting folder names give each class the same index in
    every split; a split that lacks a class has an empty folder for it.
    """
    if selection.multilabel:
        return {}
    folders = class_folder_names(selection.task, selection.classes)
    empty: dict[str, list[str]] = {}
    for part in selection.parts:
        present = set(np.unique(part.labels).tolist())
        missing = [folders[key] for key in selection.classes if key not in present]
        if missing:
            empty[part.split] = missing
    return empty


def image_name(dataset_id: str, index: int, extension: str) -> str:
    """``crc_000123.png``: the upstream index, zero-padded as upstream pads it."""
    return f"{dataset_id}_{index:06d}{extension}"


def image_paths(selection: Selection, image_format: ImageFormat) -> dict[str, list[str]]:
    """Relative path of every selected image, per split."""
    folders = class_folder_names(selection.task, selection.classes)
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


def split_folders(selection: Selection) -> list[str]:
    """Every folder of the export's splits: each split, and every class folder in each.

    A class folder exists in every split even when the split lacks the class, so that
    sorting the folders gives the same class index in every split.
    """
    if selection.multilabel:
        return [part.split for part in selection.parts]
    folders = class_folder_names(selection.task, selection.classes)
    return [f"{part.split}/{folders[key]}" for part in selection.parts for key in selection.classes]


# ----------------------------------------------------------------------------- image files


def encode_image(image: npt.NDArray[np.uint8], image_format: ImageFormat) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(
        buffer, format=image_format.pillow_format, **image_format.save_parameters
    )
    return buffer.getvalue()


# The reader of this process: opened once per worker (or once in-process), not per unit.
_WORKER: dict[str, Any] = {}


def init_worker(folder: str, dataset: Dataset) -> None:
    """Open this process's image reader (a worker's initializer, or in-process)."""
    _WORKER["reader"] = ImageReader(Path(folder), dataset)


def close_worker() -> None:
    """Close the reader :func:`init_worker` opened in this process."""
    _WORKER.pop("reader").close()


def encode_images(
    indices: npt.NDArray[np.int64], image_format: ImageFormat, color: Color | None, summed: bool
) -> tuple[list[bytes], dict[str, Any] | None]:
    """Read, convert and encode one run of images with this process's reader, keeping the
    encoded bytes (for formats that pack image files into bigger ones: webdataset), and
    if ``summed`` their pixel sums (:class:`~medimeta_cli.export.normalization.UnitSums`)."""
    reader: ImageReader = _WORKER["reader"]
    encoded: list[bytes] = []
    sums = UnitSums(summed)
    for position in range(0, len(indices), BATCH):
        batch = convert_color(reader.read_images(indices[position : position + BATCH]), color)
        sums.add(batch)
        encoded.extend(encode_image(image, image_format) for image in batch)
    return encoded, sums.result()


def _write_images(
    indices: npt.NDArray[np.int64],
    targets: Sequence[str],
    image_format: ImageFormat,
    color: Color | None,
    atomic: bool,
    summed: bool,
) -> tuple[int, dict[str, Any] | None]:
    """Read, convert, encode and write one run of images (in a worker or in-process); the
    count, and if ``summed`` the images' pixel sums."""
    reader: ImageReader = _WORKER["reader"]
    written = 0
    sums = UnitSums(summed)
    for position in range(0, len(indices), BATCH):
        batch = convert_color(reader.read_images(indices[position : position + BATCH]), color)
        sums.add(batch)
        for image, target in zip(batch, targets[position : position + BATCH], strict=True):
            data = encode_image(image, image_format)
            if atomic:
                atomic_write_bytes(Path(target), data, durable=False)
            else:
                Path(target).write_bytes(data)
            written += 1
    return written, sums.result()


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
    units: list[tuple[str, npt.NDArray[np.int64], list[str]]] = []
    for folder_name in split_folders(selection):
        os.makedirs(target / folder_name, exist_ok=True)
    for part in selection.parts:
        absolute = [str(target / rel) for rel in paths[part.split]]
        for start in range(0, len(part.indices), unit):
            units.append(
                (part.split, part.indices[start : start + unit], absolute[start : start + unit])
            )
    args = (options.image_format, options.color, atomic)

    def written(split: str, indices: npt.NDArray[np.int64], done: Any) -> None:
        # The mean and std of provenance.json, summed where the images were read.
        count, sums = done
        if sums is not None:
            observe_sums(split, indices, sums)
        progress(count)

    if options.jobs <= 1 or len(units) <= 1:
        logger.debug("encoding %d images in this process", selection.total)
        init_worker(str(folder), selection.dataset)
        try:
            for split, indices, targets in units:
                written(split, indices, _write_images(indices, targets, *args, wanted(split)))
        finally:
            close_worker()
        return
    import multiprocessing

    logger.debug(
        "encoding %d images in %d units on %d processes", selection.total, len(units), options.jobs
    )
    # spawn: workers open the HDF5 file themselves; a forked copy of an open handle is unsafe.
    with ProcessPoolExecutor(
        max_workers=options.jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(str(folder), selection.dataset),
    ) as pool:
        futures = {
            pool.submit(_write_images, indices, targets, *args, wanted(split)): (split, indices)
            for split, indices, targets in units
        }
        try:
            for future in as_completed(futures):
                written(*futures[future], future.result())
        except BaseException:
            for future in futures:
                future.cancel()
            raise


# ----------------------------------------------------------------------------- tables


def metadata_csv(selection: Selection, image_format: ImageFormat, split: str) -> str:
    """Rows for Hugging Face ``imagefolder``: ``file_name`` relative to the split folder.

    For single-label tasks the ``label`` column is the class index of ``classes.json``:
    when a metadata file is present, ``imagefolder`` takes its columns as they are and
    infers no labels from folder names, so ``label`` is what a training loop sees.
    """
    part = next(p for p in selection.parts if p.split == split)
    rel_paths = image_paths(selection, image_format)[split]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    task = selection.task
    # --task all: one column per task, its class index in classes.json's "tasks" (for a
    # multi-label task the indices of its positive labels, space-separated).
    every = [_task_cells(selection.labels_of(part, t), t) for t in selection.every_task]
    extra_names = [task_column(t) for t in selection.every_task]
    if selection.multilabel:
        names = [task.labels[key] for key in selection.classes]
        writer.writerow(
            ["file_name", "split", "upstream_index", "label_keys", *names, *extra_names]
        )
        for n, (path, index, row) in enumerate(
            zip(rel_paths, part.indices, part.labels, strict=True)
        ):
            keys = " ".join(str(k) for k, on in zip(selection.classes, row, strict=True) if on)
            writer.writerow(
                [
                    path.split("/", 1)[1],
                    split,
                    int(index),
                    keys,
                    *(int(v) for v in row),
                    *(cells[n] for cells in every),
                ]
            )
    else:
        position = {key: i for i, key in enumerate(selection.classes)}
        writer.writerow(
            [
                "file_name",
                "label",
                "split",
                "label_key",
                "label_name",
                "upstream_index",
                *extra_names,
            ]
        )
        for n, (path, index, key) in enumerate(
            zip(rel_paths, part.indices, part.labels, strict=True)
        ):
            writer.writerow(
                [
                    path.split("/", 1)[1],
                    position[int(key)],
                    split,
                    int(key),
                    task.labels[int(key)],
                    int(index),
                    *(cells[n] for cells in every),
                ]
            )
    return buffer.getvalue()


def _task_cells(labels: npt.NDArray[Any], task: Task) -> list[str]:
    """A task's metadata.csv cells: the class index of each label key (its position in
    ascending key order), or the space-separated indices of a 0/1 row's positive labels."""
    if labels.ndim == 2:
        return [" ".join(str(c) for c in np.flatnonzero(row)) for row in labels]
    order = {key: position for position, key in enumerate(sorted(task.labels))}
    return [str(order[int(key)]) for key in labels]


# ----------------------------------------------------------------------------- the writer


class ImageFolderWriter(Writer):
    """Image files in class folders, and a metadata.csv per split."""

    format = ExportFormat.IMAGEFOLDER
    image_files = True
    every_task = True  # class folders of the first task, every task in metadata.csv

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
        """Encode the selected images as files (see :func:`write_image_files`)."""
        write_image_files(folder, selection, target, options, progress, atomic=atomic)

    def write_split_files(self, selection: Selection, target: Path, options: ExportOptions) -> None:
        """``<split>/metadata.csv``, which Hugging Face ``imagefolder`` reads, and for a
        single-label task the dataset card
        (:func:`~medimeta_cli.export.hf_card.imagefolder_card`)."""
        if not selection.multilabel:
            atomic_write_text(target / "README.md", imagefolder_card(selection))
        for part in selection.parts:
            split_dir = target / part.split
            split_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(
                split_dir / "metadata.csv",
                metadata_csv(selection, options.image_format, part.split),
            )

    def empty_class_folders(self, full: Selection) -> dict[str, list[str]]:
        """See :func:`empty_class_folders`."""
        return empty_class_folders(full)

    def labels_note(self, multilabel: bool) -> str:
        """Folders sort in index order; metadata.csv has the index (or 0/1 columns)."""
        if multilabel:
            return "Multi-label: metadata.csv has one 0/1 column per class, in index order."
        return (
            "Class folders sort in index order (every split has every folder; a class a split "
            "lacks has an empty folder); metadata.csv: label = index, label_key = upstream key."
        )
