"""One export run: select, then write the whole export (staged, renamed) or one shard."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from medimeta_cli.catalog.datasets import Dataset
from medimeta_cli.dataset.gate import DatasetFolder
from medimeta_cli.dataset.reader import DatasetReader
from medimeta_cli.dataset.selection import Selection, SelectionSpec, select
from medimeta_cli.errors import OutputExistsError
from medimeta_cli.export.formats import estimated_bytes, write_json, write_shared, writer_for
from medimeta_cli.export.normalization import NORMALIZATION, normalization_entry, tallied
from medimeta_cli.export.options import (
    ExportOptions,
    ExportResult,
    ExportStatus,
    ProgressCallback,
)
from medimeta_cli.export.provenance import PROVENANCE, build_provenance, same_export
from medimeta_cli.export.shards import export_shard
from medimeta_cli.export.target import clean_dead_staging, refuse_root_overlap
from medimeta_cli.fsutil import (
    atomic_directory,
    ensure_space,
    ensure_writable_dir,
    translate_os_error,
)
from medimeta_cli.store.layout import RootLayout

logger = logging.getLogger(__name__)


def export_dataset(
    root: Path,
    dataset: Dataset,
    spec: SelectionSpec,
    out: Path,
    options: ExportOptions,
    *,
    on_start: Callable[[int], None] | None = None,
    on_progress: ProgressCallback | None = None,
    roots: Iterable[Path] = (),
) -> ExportResult:
    """Select images of the dataset installed in ``root`` and export them (whole, or one
    shard); its folder is read through the gate (:meth:`DatasetReader.open`).

    ``roots`` are the other data roots (personal and shared) that ``out`` must keep out
    of, besides ``root``; see :func:`export_selection`.
    """
    data = DatasetReader.open(root, dataset).data
    return export_folder(
        data, spec, out, options, on_start=on_start, on_progress=on_progress, roots=roots
    )


def export_folder(
    data: DatasetFolder,
    spec: SelectionSpec,
    out: Path,
    options: ExportOptions,
    *,
    on_start: Callable[[int], None] | None = None,
    on_progress: ProgressCallback | None = None,
    roots: Iterable[Path] = (),
) -> ExportResult:
    """Select images of a dataset folder the gate handed out and export them (whole, or
    one shard); see :func:`export_dataset`."""
    reader = DatasetReader(data)
    try:
        selection = select(reader, spec, every_task_allowed=True)
        full = (
            selection
            if spec.shard is None
            else select(reader, replace(spec, shard=None), every_task_allowed=True)
        )
    finally:
        reader.close()
    return export_selection(
        data.folder.parent,
        selection,
        out,
        options,
        full=full,
        on_start=on_start,
        on_progress=on_progress,
        roots=roots,
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
    roots: Iterable[Path] = (),
) -> ExportResult:
    """Export a resolved selection; ``full`` is the whole selection when this is a shard.

    Raises :class:`~medimeta_cli.errors.UsageError` before writing anything when ``out``
    is, contains or lies inside ``root`` or one of ``roots`` (or a dataset folder they
    link to), however it is spelled.
    """
    refuse_root_overlap(out, (root, *roots))
    started = time.monotonic()
    folder = RootLayout(root).dataset_dir(selection.dataset.id)
    full = full or selection
    provenance = build_provenance(root, full, options)
    logger.info(
        "exporting %d images of %s (task %r) as %s into %s",
        selection.total,
        selection.dataset.id,
        selection.task.name,
        options.format.value,
        out,
    )
    if on_start is not None:
        on_start(selection.total)
    progress = on_progress or (lambda count: None)
    try:
        if selection.spec.shard is None:
            status = _export_whole(folder, selection, provenance, out, options, progress)
            complete = True
        else:
            status, complete = export_shard(
                folder, selection, full, provenance, out, options, progress
            )
    except OSError as exc:
        raise translate_os_error(exc, f"the export into {out}") from exc
    seconds = time.monotonic() - started
    logger.info("export into %s: %s in %.1f s", out, status.value, seconds)
    return ExportResult(
        out,
        status,
        selection.counts(),
        selection.total,
        seconds,
        complete,
        empty_class_folders=provenance["empty_class_folders"],
    )


def _export_whole(
    folder: Path,
    selection: Selection,
    provenance: dict[str, Any],
    out: Path,
    options: ExportOptions,
    progress: ProgressCallback,
) -> ExportStatus:
    """Write everything into a hidden folder and rename it to ``out`` when complete."""
    if out.exists() and not options.overwrite:
        if same_export(out / PROVENANCE, provenance):
            return ExportStatus.UP_TO_DATE
        raise OutputExistsError(f"{out} already exists")
    ensure_writable_dir(out.parent)
    clean_dead_staging(out)
    ensure_space(out.parent, estimated_bytes(selection, options), f"exporting to {out}")
    with atomic_directory(out) as staging:
        with tallied(folder, selection, selection, options) as sums:
            writer_for(options.format).write_images(
                folder, selection, staging, options, progress, atomic=False
            )
        write_shared(selection, staging, options)
        normalization = normalization_entry(sums(), selection)
        write_json(staging / PROVENANCE, {**provenance, NORMALIZATION: normalization})
    return ExportStatus.EXPORTED
