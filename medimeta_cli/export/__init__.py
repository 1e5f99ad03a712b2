"""Export a selection of an installed dataset to class folders, NumPy arrays or tar shards.

Layouts (``<out>`` defaults to ``./<id>-<task>``)::

    imagefolder  <out>/<split>/<NN>_<class>/<id>_<index>.png  single-label tasks
                 <out>/<split>/<id>_<index>.png               multi-label tasks
                 <out>/<split>/metadata.csv                   Hugging Face ``imagefolder``
    numpy        <out>/<split>/images.npy, labels.npy, label_indices.npy, indices.npy
                 (or <out>/<split>.npz; no label_indices for multi-label tasks)
    webdataset   <out>/<id>-<split>-000000.tar, ... (samples <id>_<index>.png, .cls, .json)
                 <out>/manifest.json (each shard's samples and SHA-256)
    parquet      <out>/data/<split>-00000-of-0000N.parquet, <out>/README.md
    every format <out>/classes.json, <out>/provenance.json

Class indices are the positions in ``classes.json``, whose classes are in label key
order. Class folders carry the zero-padded index (``00_adipose (ADI)``) so that loaders
that number classes by sorting folder names (torchvision, Keras) get these indices, and
every split holds every class folder (empty where the split lacks the class) so that
they get the same indices in every split. ``metadata.csv`` has the index as ``label``
and NumPy exports have it as ``label_indices``, next to the upstream keys.

An export is written into a hidden folder next to ``<out>`` and renamed into place
when complete, so an interrupted export never looks complete. ``provenance.json``
is written last; an existing export with the same provenance is left as it is.
With ``--shard I/N`` every job writes its own slice of the selection straight into
``<out>`` (one file at a time, atomically) and the job that completes the last
slice writes the shared files; the result is byte-identical to one unsharded run.

Modules::

    options      ExportOptions, ExportResult and the vocabularies (no numpy: the
                 command line types its options from them)
    pixels       colour conversion
    imagefolder  file and folder names, image files, metadata.csv (a Writer)
    npy          streamed .npy and .npz files, joining the arrays of shards (a Writer)
    webdataset   reproducible tar shards and their manifest (a Writer)
    shardsize    --shard-size: bytes or images per tar shard (no numpy)
    parquet      data/<split>-*.parquet for Hugging Face datasets, a dataset card (a Writer;
                 needs pyarrow, the parquet extra)
    writer       the Writer interface: what a format writes, whole or in shards
    formats      the table of formats (one Writer each), classes.json, JSON files
    provenance   provenance.json: building it, and telling whether an export is current
    shards       --shard I/N
    run          export_dataset, export_folder, export_selection: whole exports and shards
    usecase      the export use case the command line and the Python API share

Importing this package stays light: the names below that need numpy are loaded
on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from medimeta_cli.export.options import (
    Color,
    ExportFormat,
    ExportOptions,
    ExportResult,
    ExportStatus,
    ImageFormat,
    ProgressCallback,
)

if TYPE_CHECKING:
    from medimeta_cli.export.imagefolder import class_folder_names, image_name, safe_folder_names
    from medimeta_cli.export.pixels import convert_color
    from medimeta_cli.export.run import export_dataset, export_selection

# Public name -> module that defines it; loaded on first access (they import numpy).
_LAZY = {
    "export_dataset": "medimeta_cli.export.run",
    "export_selection": "medimeta_cli.export.run",
    "safe_folder_names": "medimeta_cli.export.imagefolder",
    "class_folder_names": "medimeta_cli.export.imagefolder",
    "image_name": "medimeta_cli.export.imagefolder",
    "convert_color": "medimeta_cli.export.pixels",
}

__all__ = [
    "Color",
    "ExportFormat",
    "ExportOptions",
    "ExportResult",
    "ExportStatus",
    "ImageFormat",
    "ProgressCallback",
    "class_folder_names",
    "convert_color",
    "export_dataset",
    "export_selection",
    "image_name",
    "safe_folder_names",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
