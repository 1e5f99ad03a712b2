"""``--shard I/N``: each job writes its own slice straight into ``<out>``.

Bookkeeping lives in ``<out>/.medimeta-shards``: ``export.json`` (the provenance
every shard must share), one ``<I>-of-<N>.json`` marker per finished shard and,
for NumPy exports, each shard's arrays in ``<I>-of-<N>/``. The job that finds every
marker present merges the arrays, writes the shared files and ``provenance.json``,
and removes the bookkeeping; any job may get there, and since every write is
atomic and every job writes the same bytes, two jobs getting there at once is harmless.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from medimeta_cli.errors import OutputExistsError
from medimeta_cli.export.npy import merge_numpy_shards
from medimeta_cli.export.options import (
    ExportFormat,
    ExportOptions,
    ExportStatus,
    ProgressCallback,
)
from medimeta_cli.export.provenance import PROVENANCE, same_export
from medimeta_cli.export.writers import estimated_bytes, write_json, write_selection, write_shared
from medimeta_cli.fsutil import ensure_space, ensure_writable_dir, remove_tree
from medimeta_cli.selection import Selection

logger = logging.getLogger(__name__)

SHARDS_DIR = ".medimeta-shards"


def export_shard(
    folder: Path,
    selection: Selection,
    full: Selection,
    provenance: dict[str, Any],
    out: Path,
    options: ExportOptions,
    progress: ProgressCallback,
) -> tuple[ExportStatus, bool]:
    """Write one shard of ``full``; return what happened and whether the export is complete."""
    assert selection.spec.shard is not None
    index, count = selection.spec.shard
    shards = out / SHARDS_DIR
    marker = shards / f"{index}-of-{count}.json"
    fingerprint = shards / "export.json"
    if (out / PROVENANCE).exists():
        if same_export(out / PROVENANCE, provenance):
            return ExportStatus.SHARD_UP_TO_DATE, True
        raise OutputExistsError(f"{out} holds another export")
    ensure_writable_dir(shards)
    if not fingerprint.exists():
        logger.debug("claiming %s for this export: writing %s", out, fingerprint)
        write_json(fingerprint, provenance)
    elif not same_export(fingerprint, provenance):
        raise OutputExistsError(
            f"{out} holds shards of another export",
            hint="Give every shard the same selection, or choose another --out.",
        )
    if not marker.exists():
        logger.debug("writing shard %d/%d (%d images) into %s", index, count, selection.total, out)
        ensure_space(out, estimated_bytes(selection, options), f"exporting to {out}")
        if options.format is ExportFormat.IMAGEFOLDER:
            write_selection(folder, selection, out, options, progress, atomic=True)
        else:  # slices as plain .npy files; the merge writes the format asked for
            piece = shards / f"{index}-of-{count}"
            piece.mkdir(exist_ok=True)
            write_selection(
                folder, selection, piece, replace(options, npz=False), progress, atomic=True
            )
        write_json(marker, {"shard": f"{index}/{count}", "images": selection.total})
        status = ExportStatus.SHARD_WRITTEN
    else:
        logger.debug("shard %d/%d of %s was written before", index, count, out)
        status = ExportStatus.SHARD_UP_TO_DATE
    done = all((shards / f"{i}-of-{count}.json").exists() for i in range(1, count + 1))
    if done:
        logger.debug("all %d shards of %s are written; completing the export", count, out)
        # Any job may get here; what it writes is the same, and every write is atomic.
        if options.format is ExportFormat.NUMPY:
            pieces = [shards / f"{i}-of-{count}" for i in range(1, count + 1)]
            merge_numpy_shards(full, out, pieces, options)
        write_shared(full, out, options)
        write_json(out / PROVENANCE, provenance)
        remove_tree(shards)
    return status, done
