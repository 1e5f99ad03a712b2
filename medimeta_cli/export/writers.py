"""What each layout writes, chosen by the export format: images, shared files, JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medimeta_cli.dataset.selection import Selection
from medimeta_cli.export.imagefolder import classes_json, metadata_csv, write_image_files
from medimeta_cli.export.npy import write_arrays
from medimeta_cli.export.options import ExportFormat, ExportOptions, ProgressCallback
from medimeta_cli.fsutil import atomic_write_text


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented UTF-8 JSON, atomically and durably."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_selection(
    folder: Path,
    selection: Selection,
    target: Path,
    options: ExportOptions,
    progress: ProgressCallback,
    *,
    atomic: bool,
) -> None:
    """Write the selected images (files or arrays) of the dataset in ``folder`` under ``target``."""
    if options.format is ExportFormat.IMAGEFOLDER:
        write_image_files(folder, selection, target, options, progress, atomic=atomic)
    else:
        write_arrays(folder, selection, target, options, progress)


def write_shared(selection: Selection, target: Path, options: ExportOptions) -> None:
    """metadata.csv per split (image folders) and classes.json."""
    if options.format is ExportFormat.IMAGEFOLDER:
        for part in selection.parts:
            split_dir = target / part.split
            split_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(
                split_dir / "metadata.csv",
                metadata_csv(selection, options.image_format, part.split),
            )
    write_json(target / "classes.json", classes_json(selection, options.format))


def estimated_bytes(selection: Selection, options: ExportOptions) -> int:
    """Uncompressed pixels: an upper bound for PNG and TIFF, generous for JPEG."""
    size = selection.dataset.input_size
    channels = options.color.channels if options.color is not None else size.channels
    return selection.total * (size.height * size.width * channels + 1024)
