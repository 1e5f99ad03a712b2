"""The export formats, in one table, and the files every format shares.

A new format is one module with one :class:`~medimeta_cli.export.writer.Writer`, and one
row in :data:`WRITERS` (plus its name in :class:`~medimeta_cli.export.options.ExportFormat`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medimeta_cli.catalog.datasets import Task
from medimeta_cli.dataset.selection import Selection
from medimeta_cli.export.imagefolder import ImageFolderWriter, class_folder_names
from medimeta_cli.export.naming import task_column
from medimeta_cli.export.npy import NumpyWriter
from medimeta_cli.export.options import ExportFormat, ExportOptions
from medimeta_cli.export.parquet import ParquetWriter
from medimeta_cli.export.webdataset import WebDatasetWriter
from medimeta_cli.export.writer import Writer
from medimeta_cli.fsutil import atomic_write_text

#: Every format's writer, by format.
WRITERS: dict[ExportFormat, Writer] = {
    writer.format: writer
    for writer in (ImageFolderWriter(), NumpyWriter(), WebDatasetWriter(), ParquetWriter())
}


def writer_for(export_format: ExportFormat) -> Writer:
    """The writer of a format."""
    return WRITERS[export_format]


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented UTF-8 JSON, atomically and durably."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_shared(selection: Selection, target: Path, options: ExportOptions) -> None:
    """The format's per-split files and classes.json."""
    writer = writer_for(options.format)
    writer.write_split_files(selection, target, options)
    write_json(target / "classes.json", classes_json(selection, writer))


def classes_json(selection: Selection, writer: Writer) -> dict[str, Any]:
    """The kept classes in index order (label key order), with how keys map to indices.

    ``index`` is what a training loop uses (0..K-1): the ``label`` column of
    metadata.csv, the sorted position of the class folder, ``label_indices.npy``; the
    upstream ``key`` is what ``task_labels`` and ``labels.npy`` hold. For multi-label
    tasks ``index`` is the column of the 0/1 matrix (labels.npy, metadata.csv).
    """
    multilabel = selection.multilabel
    folders = class_folder_names(selection.task, selection.classes)
    with_folders = not multilabel and writer.image_files
    document = {
        "dataset": selection.dataset.id,
        "task": selection.task.name,
        "task_type": selection.task.target.value,
        "index_by_key": {str(key): position for position, key in enumerate(selection.classes)},
        "labels": writer.labels_note(multilabel),
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
    if selection.every_task:
        document["tasks"] = [task_entry(task, writer) for task in selection.every_task]
    return document


def task_entry(task: Task, writer: Writer) -> dict[str, Any]:
    """What classes.json says of one task of an export of every task: where its labels
    are (``labels``: the array or column :func:`task_column` names) and its classes, whose
    ``index`` is the position of the key in ascending key order (the order a ``label``
    vector of a multi-label task, and a class index, follow)."""
    return {
        "task": task.name,
        "task_type": task.target.value,
        "labels": task_column(task),
        "classes": [
            {"index": position, "key": key, "name": task.labels[key]}
            for position, key in enumerate(sorted(task.labels))
        ],
    }


def estimated_bytes(selection: Selection, options: ExportOptions) -> int:
    """Uncompressed pixels: an upper bound for PNG and TIFF, generous for JPEG."""
    size = selection.dataset.input_size
    channels = options.color.channels if options.color is not None else size.channels
    return selection.total * (size.height * size.width * channels + 1024)
