"""``--shard I/N``: each job writes its own slice straight into ``<out>``.

Bookkeeping lives in ``<out>/.medimeta-shards``: ``export.json`` (the provenance
every shard must share), one ``<I>-of-<N>.json`` marker per finished shard and,
for NumPy exports, each shard's arrays in ``<I>-of-<N>/``. The job that finds every
marker present merges the arrays, writes the shared files and ``provenance.json``,
and removes the bookkeeping; any job may get there, and since every write is
atomic and every job writes the same bytes, two jobs getting there at once is harmless.

``--shard auto`` takes I and N from the job array the task runs in (:func:`resolve_shard`):
SLURM tells a task everything needed; LSF and PBS tell less, hence their limits below.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medimeta_cli.dataset.selection import Selection, parse_shard, shown, whole_number
from medimeta_cli.dataset.stats import PixelSums
from medimeta_cli.errors import IntegrityError, OutputExistsError, UsageError
from medimeta_cli.export.formats import estimated_bytes, write_json, write_shared, writer_for
from medimeta_cli.export.normalization import (
    NORMALIZATION,
    merge_sums,
    normalization_entry,
    tallied,
)
from medimeta_cli.export.options import ExportOptions, ExportStatus, ProgressCallback
from medimeta_cli.export.provenance import PROVENANCE, same_export
from medimeta_cli.fsutil import ensure_space, ensure_writable_dir, remove_tree

logger = logging.getLogger(__name__)

SHARDS_DIR = ".medimeta-shards"
AUTO = "auto"
_AUTO_HINT = (
    "Run it as a task of a job array (sbatch --array=0-7, bsub -J 'name[1-8]', "
    "qsub -J 0-7 with --shard auto/8), or give --shard I/N."
)


def resolve_shard(text: str, env: Mapping[str, str]) -> tuple[int, int]:
    """``--shard`` as given: ``I/N``, or ``auto`` / ``auto/N`` read from the job array in ``env``.

    SLURM (``SLURM_ARRAY_TASK_ID``, ``_MIN``, ``_MAX``, ``_COUNT``, ``_STEP``): shard
    ``(ID - MIN) / STEP + 1`` of ``COUNT``, for any evenly spaced array (``0-7``, ``1-8``,
    ``0-14:2``); a list with gaps (``1,2,5``) is refused. LSF (``LSB_JOBINDEX``,
    ``LSB_JOBINDEX_END``, ``LSB_JOBINDEX_STEP``): LSF does not say where the array starts, so
    it must start at 1, LSF's default (``name[1-8]``, ``name[1-15:2]``). PBS
    (``PBS_ARRAY_INDEX``; Torque's ``PBS_ARRAYID``): PBS does not say the array's size, so
    ``auto/N`` is needed, and N consecutive indices (``-J 0-7`` or ``-J 1-8``, step 1) map one
    to one onto the N shards as ``index mod N + 1``. A count given as ``auto/N`` must agree
    with the scheduler's where the scheduler tells one.
    """
    head, _, tail = text.partition("/")
    if head.strip().lower() != AUTO:
        return parse_shard(text)
    flag = f"--shard {shown(text)}"
    given: int | None = None
    if tail:
        given = _number(tail, flag)
        if given < 1:
            raise UsageError(f"{flag}: the number of shards must be at least 1", hint=_AUTO_HINT)
    index, count = _from_scheduler(env, given)
    if given is not None and given != count:
        raise UsageError(
            f"{flag}: this job array has {count} tasks, not {given}",
            hint=f"Use --shard auto (or auto/{count}), or submit an array of {given} tasks.",
        )
    logger.debug("--shard %s is shard %d/%d of this job array", text, index, count)
    return index, count


def _from_scheduler(env: Mapping[str, str], given: int | None) -> tuple[int, int]:
    if env.get("SLURM_ARRAY_TASK_ID"):
        return _slurm(env)
    if env.get("LSB_JOBINDEX", "0") not in ("", "0"):  # LSF sets 0 outside arrays
        return _lsf(env)
    pbs = env.get("PBS_ARRAY_INDEX") or env.get("PBS_ARRAYID")
    if pbs:
        if given is None:
            raise UsageError(
                "--shard auto: PBS tells a task its index (PBS_ARRAY_INDEX) but not how many "
                "tasks the array has",
                hint="Give the count: --shard auto/8 with qsub -J 0-7 or -J 1-8 (step 1).",
            )
        name = "PBS_ARRAY_INDEX" if env.get("PBS_ARRAY_INDEX") else "PBS_ARRAYID"
        index = _number(pbs, name)
        # N consecutive indices from 0 or 1 (-J 0-7, -J 1-8): none is above N.
        if index > given:
            raise UsageError(
                f"--shard auto/{given}: PBS array index {index} is not one of {given} "
                "consecutive indices from 0 or 1",
                hint=f"Submit the array as qsub -J 0-{given - 1} or -J 1-{given} (step 1), "
                "or give --shard I/N.",
            )
        return index % given + 1, given
    raise UsageError(
        "--shard auto: this is not a task of a job array (no SLURM_ARRAY_TASK_ID, "
        "LSB_JOBINDEX or PBS_ARRAY_INDEX is set)",
        hint=_AUTO_HINT,
    )


def _slurm(env: Mapping[str, str]) -> tuple[int, int]:
    task = _number(env["SLURM_ARRAY_TASK_ID"], "SLURM_ARRAY_TASK_ID")
    first = _number(_required(env, "SLURM_ARRAY_TASK_MIN"), "SLURM_ARRAY_TASK_MIN")
    count = _number(_required(env, "SLURM_ARRAY_TASK_COUNT"), "SLURM_ARRAY_TASK_COUNT")
    step = _number(env.get("SLURM_ARRAY_TASK_STEP") or "1", "SLURM_ARRAY_TASK_STEP")
    last = _number(env.get("SLURM_ARRAY_TASK_MAX") or str(task), "SLURM_ARRAY_TASK_MAX")
    # An evenly spaced array spans exactly (COUNT - 1) steps; a list with gaps does not, and
    # its tasks cannot be numbered 1..COUNT from their IDs alone.
    spaced = step >= 1 and count >= 1 and last - first == (count - 1) * step
    if not spaced or (task - first) % step or not first <= task <= last:
        raise UsageError(
            f"--shard auto: SLURM array task {task} (tasks {first} to {last}, {count} in all, "
            f"step {step}) cannot be numbered as one of {count} shards",
            hint="Submit an evenly spaced array (--array=0-7 or --array=0-14:2), "
            "not a list with gaps, or give --shard I/N.",
        )
    return (task - first) // step + 1, count


def _lsf(env: Mapping[str, str]) -> tuple[int, int]:
    task = _number(env["LSB_JOBINDEX"], "LSB_JOBINDEX")
    last = _number(_required(env, "LSB_JOBINDEX_END"), "LSB_JOBINDEX_END")
    step = _number(env.get("LSB_JOBINDEX_STEP") or "1", "LSB_JOBINDEX_STEP")
    # LSF does not tell a task where its array starts: assume its default, 1.
    if step < 1 or not 1 <= task <= last or (task - 1) % step:
        raise UsageError(
            f"--shard auto: LSF array task {task} (up to {last}, step {step}) is not one of "
            "an array that starts at 1",
            hint="Submit the array as name[1-N] (or name[1-M:S]), or give --shard I/N.",
        )
    return (task - 1) // step + 1, (last - 1) // step + 1


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name)
    if not value:
        raise UsageError(
            f"--shard auto: {name} is not set, so this task's shard is unknown",
            hint="Give --shard I/N instead.",
        )
    return value


def _number(value: str, what: str) -> int:
    """A scheduler's number (or the N of ``auto/N``): plain ASCII digits only."""
    number = whole_number(value)
    if number is None:
        raise UsageError(
            f"{what} is {shown(value)}, not a whole number (plain digits 0-9)",
            hint="For example --shard auto/8.",
        )
    return number


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
    writer = writer_for(options.format)
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
        piece = shards / f"{index}-of-{count}"
        with tallied(folder, selection, full, options) as shard_sums:
            writer.write_shard(folder, selection, out, piece, options, progress, full=full)
        # This shard's exact pixel sums: the last job adds them up for provenance.json.
        write_json(
            marker,
            {
                "shard": f"{index}/{count}",
                "images": selection.total,
                "pixel_sums": shard_sums().to_json(),
            },
        )
        status = ExportStatus.SHARD_WRITTEN
    else:
        logger.debug("shard %d/%d of %s was written before", index, count, out)
        status = ExportStatus.SHARD_UP_TO_DATE
    done = all((shards / f"{i}-of-{count}.json").exists() for i in range(1, count + 1))
    if done:
        logger.debug("all %d shards of %s are written; completing the export", count, out)
        # Any job may get here; what it writes is the same, and every write is atomic.
        pieces = [shards / f"{i}-of-{count}" for i in range(1, count + 1)]
        writer.join_shards(full, out, pieces, options)
        write_shared(full, out, options)
        markers = [shards / f"{i}-of-{count}.json" for i in range(1, count + 1)]
        sums = merge_sums(_shard_sums(marker) for marker in markers)
        normalization = normalization_entry(sums, full)
        write_json(out / PROVENANCE, {**provenance, NORMALIZATION: normalization})
        remove_tree(shards)
    return status, done


def _shard_sums(marker: Path) -> PixelSums:
    """The pixel sums a shard saved in its marker."""
    try:
        saved = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = None
    sums = PixelSums.from_json(saved.get("pixel_sums") if isinstance(saved, dict) else None)
    if sums is None:
        raise IntegrityError(
            f"{marker} holds no pixel sums of its shard",
            hint=f"Delete {marker.parent.parent} and run every shard again.",
        )
    return sums
