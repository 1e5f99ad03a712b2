"""One export run: select, then write the whole export (staged, renamed) or one shard."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from medimeta_cli.catalog.datasets import Dataset
from medimeta_cli.dataset.gate import DatasetFolder
from medimeta_cli.dataset.reader import DatasetReader
from medimeta_cli.dataset.selection import Selection, SelectionSpec, select
from medimeta_cli.errors import OutputExistsError, UsageError
from medimeta_cli.export.formats import estimated_bytes, write_json, write_shared, writer_for
from medimeta_cli.export.normalization import (
    NORMALIZATION,
    merge_sums,
    normalization_entry,
    tallied,
)
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
    atomic_write_text,
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
    if options.shard_size is not None and not writer_for(options.format).sized_shards:
        raise UsageError(
            f"--shard-size sets the size of tar shards, and the {options.format.value} format "
            "writes none",
            hint="Drop --shard-size, or use --format webdataset.",
        )
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
            status = _export_whole(folder, [("", selection)], provenance, out, options, progress)
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
    pieces: Sequence[tuple[str, Selection]],
    provenance: dict[str, Any],
    out: Path,
    options: ExportOptions,
    progress: ProgressCallback,
    files: Mapping[str, str] | None = None,
) -> ExportStatus:
    """Write everything into a hidden folder and rename it to ``out`` when complete: each
    piece (a selection) into its folder (``""``: the export's own), then ``files``
    (name -> text), then the provenance."""
    if out.exists() and not options.overwrite:
        if same_export(out / PROVENANCE, provenance):
            return ExportStatus.UP_TO_DATE
        raise OutputExistsError(f"{out} already exists")
    ensure_writable_dir(out.parent)
    clean_dead_staging(out)
    needed = sum(estimated_bytes(piece, options) for _, piece in pieces)
    ensure_space(out.parent, needed, f"exporting to {out}")
    writer = writer_for(options.format)
    with atomic_directory(out) as staging:
        tallies = []
        for name, piece in pieces:
            with tallied(folder, piece, piece, options) as sums:
                writer.write_images(folder, piece, staging / name, options, progress, atomic=False)
            tallies.append(sums())
            write_shared(piece, staging / name, options)
        for name, text in (files or {}).items():
            atomic_write_text(staging / name, text)
        # Over every piece's images (few-shot episodes: every support and query image).
        normalization = normalization_entry(merge_sums(tallies), pieces[0][1])
        write_json(staging / PROVENANCE, {**provenance, NORMALIZATION: normalization})
    return ExportStatus.EXPORTED


def export_pieces(
    root: Path,
    full: Selection,
    pieces: Sequence[tuple[str, Selection]],
    out: Path,
    options: ExportOptions,
    *,
    files: Mapping[str, str] | None = None,
    roots: Iterable[Path] = (),
) -> ExportResult:
    """Export several selections of one task, each into its own folder of ``out`` as a
    whole export of its own (``<folder>/<split>/...``, ``<folder>/classes.json``), plus
    the text ``files`` (name -> content) beside them, in one commit: staged together and
    renamed into place only when every piece and file is written (few-shot episodes,
    ``episode-000/support/...``). ``full`` is what the pieces were drawn from; the
    provenance holds it, every piece's counts and the files' SHA-256, so an export of
    other pieces is never taken for up to date.
    """
    refuse_root_overlap(out, (root, *roots))
    started = time.monotonic()
    folder = RootLayout(root).dataset_dir(full.dataset.id)
    files = dict(files or {})
    provenance = build_provenance(root, full, options)
    provenance["pieces"] = {name: piece.counts() for name, piece in pieces}
    provenance["files"] = {
        name: hashlib.sha256(text.encode("utf-8")).hexdigest() for name, text in files.items()
    }
    total = sum(piece.total for _, piece in pieces)
    logger.info("exporting %d images in %d pieces into %s", total, len(pieces), out)
    try:
        status = _export_whole(folder, pieces, provenance, out, options, lambda count: None, files)
    except OSError as exc:
        raise translate_os_error(exc, f"the export into {out}") from exc
    counts = {
        f"{name}/{split}": numbers
        for name, piece in pieces
        for split, numbers in piece.counts().items()
    }
    return ExportResult(out, status, counts, total, time.monotonic() - started, True)
