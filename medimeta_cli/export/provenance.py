"""``provenance.json``: where an export came from, and whether an existing one is current."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from medimeta_cli._version import __version__
from medimeta_cli.catalog.citation import bibtex_for
from medimeta_cli.catalog.datasets import DOI
from medimeta_cli.dataset.selection import ALL_TASKS, Selection
from medimeta_cli.export.formats import writer_for
from medimeta_cli.export.options import ExportOptions
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.records import read_install_record

#: Written last: an export without it is incomplete.
PROVENANCE = "provenance.json"
#: The layout of an export: 2 since class folders carry an index prefix, metadata.csv a
#: ``label`` column and NumPy exports ``label_indices``. An export of another layout is
#: never taken for up to date. 3 since provenance.json carries ``normalization``.
LAYOUT_VERSION = 3
# Differ between the shards of one export (and between tool versions) without
# changing a byte of the output.
# ``normalization`` is derived from the images the rest decides, and written only with
# the complete export (the provenance compared before writing has none yet).
_NOT_DECISIVE = frozenset({"command", "tool_version", "normalization"})


def build_provenance(root: Path, full: Selection, options: ExportOptions) -> dict[str, Any]:
    """Everything needed to tell where an export came from (and whether it is current).

    ``task`` is the exact upstream task name (the one the official loader needs), whatever
    spelling selected it; ``empty_class_folders`` lists, per split, the class folders of an
    image folder export that hold no image because the split lacks the class.
    """
    dataset = full.dataset
    record = read_install_record(RootLayout(root), dataset.id)
    writer = writer_for(options.format)
    return {
        "layout_version": LAYOUT_VERSION,
        "dataset": dataset.id,
        "dataset_name": dataset.name,
        "task": full.task.name,
        "task_type": full.task.target.value,
        "record_id": record.record_id if record else None,
        "record_version": record.record_version if record else None,
        "archive_md5": record.archive_md5 if record else None,
        "license": dataset.license.name,
        "non_commercial": dataset.license.non_commercial,
        # Every task's labels (``--task all``) or the one task's, by its exact name.
        "tasks": [task.name for task in full.tasks],
        "selection": replace(
            full.spec, task=ALL_TASKS if full.every_task else full.task.name
        ).to_json(),
        "format": {
            "format": options.format.value,
            "image_format": (
                options.image_format.value if writer.image_files or writer.encodes_images else None
            ),
            "color": options.color.value if options.color is not None else None,
            "npz": options.npz,
            "compressed": options.compress,
            **writer.format_settings(options),
        },
        "command": options.command,
        "tool_version": __version__,
        "counts": full.counts(),
        "empty_class_folders": writer.empty_class_folders(full),
        "sources": [source.to_json() for source in dataset.sources],
        "bibtex": bibtex_for(dataset),
        "doi": DOI,
    }


def same_export(path: Path, provenance: dict[str, Any]) -> bool:
    """Whether the provenance saved at ``path`` describes this very export.

    The command line and tool version may differ (the shards of one export have
    different command lines); everything that decides the output must not.
    """
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return {k: v for k, v in found.items() if k not in _NOT_DECISIVE} == {
        k: v for k, v in provenance.items() if k not in _NOT_DECISIVE
    }
