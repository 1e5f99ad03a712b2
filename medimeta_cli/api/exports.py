"""Exports and statistics: ``export`` and ``stats``, through the use cases of the command line."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medimeta_cli.dataset.stats import DatasetStats
    from medimeta_cli.export.options import ExportResult

from medimeta_cli.api._arguments import (
    PathLike,
    _check,
    _count,
    _flag,
    _ids,
    _misuse,
    _root,
    _settings,
)

logger = logging.getLogger(__name__)


def export(
    dataset_id: str,
    out: PathLike | None = None,
    *,
    root: PathLike | None = None,
    task: str | None = None,
    splits: Sequence[str] = ("train", "val", "test"),
    original_split: bool = False,
    classes: Sequence[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    format: str = "imagefolder",
    image_format: str = "png",
    color: str | None = None,
    npz: bool = False,
    compress: bool = False,
    jobs: int | None = None,
    overwrite: bool = False,
    shard: tuple[int, int] | None = None,
    force: bool = False,
    shard_size: str | None = None,
) -> ExportResult:
    """``medimeta export``: a selection of an installed dataset as class folders
    (``format="imagefolder"``), NumPy arrays (``"numpy"``), WebDataset tar shards
    (``"webdataset"``, ``shard_size`` as ``--shard-size``: ``"1GB"``, ``"5000images"``) or
    Parquet files that Hugging Face ``datasets`` loads (``"parquet"``, needs the ``parquet``
    extra), into
    ``out`` (default ``./<id>-<task>``); returns the :class:`~medimeta_cli.export.ExportResult`.

    Deterministic and idempotent like the command; a dataset that ``verify`` found
    damaged raises :class:`~medimeta_cli.errors.IntegrityError` unless ``force``.
    """
    from medimeta_cli.dataset.selection import parse_shard
    from medimeta_cli.export import ExportFormat, ExportOptions
    from medimeta_cli.export.shardsize import parse_shard_size
    from medimeta_cli.export.usecase import ExportRequest, plan_export, run_export

    _check("dataset_id", dataset_id, (str,), "a dataset id (str)")
    _root(root)
    if out is not None:
        _check("out", out, (str, os.PathLike), "a path (str or os.PathLike) or None")
    for name, text in (("task", task), ("color", color), ("shard_size", shard_size)):
        if text is not None:
            _check(name, text, (str,), "a str or None")
    for name, text in (("format", format), ("image_format", image_format)):
        _check(name, text, (str,), "a str")
    chosen_splits = _ids(splits, "splits")
    chosen_classes = None if classes is None else _ids(classes, "classes")
    _count("limit", limit, optional=True)
    _count("jobs", jobs, optional=True)
    _check("seed", seed, (int,), "a whole number")
    for name, value in (
        ("original_split", original_split),
        ("npz", npz),
        ("compress", compress),
        ("overwrite", overwrite),
        ("force", force),
    ):
        _flag(name, value)
    if shard is not None and not (
        isinstance(shard, tuple | list)
        and len(shard) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) for n in shard)
    ):
        raise _misuse("shard", shard, "(I, N), two whole numbers, or None")
    settings, catalog = _settings(root)
    request = ExportRequest(
        dataset_id=dataset_id,
        task=task,
        splits=tuple(chosen_splits),
        original=original_split,
        classes=None if chosen_classes is None else tuple(chosen_classes),
        limit=limit,
        seed=seed,
        shard=None if shard is None else parse_shard(f"{shard[0]}/{shard[1]}"),
        out=None if out is None else Path(out),
        force=force,
        # Names the default folder only; a wrong name is refused with a hint below.
        export_format=next(
            (f for f in ExportFormat if f.value == format), ExportFormat.IMAGEFOLDER
        ),
    )
    plan = plan_export(settings, catalog, request)
    if plan.damaged is not None:
        logger.warning("%s; exporting it anyway (force=True)", plan.damaged)
    options = ExportOptions(
        format=format,  # type: ignore[arg-type]  # validated (with a hint) by ExportOptions
        image_format=image_format,  # type: ignore[arg-type]
        color=color,  # type: ignore[arg-type]
        npz=npz,
        compress=compress,
        jobs=jobs or os.cpu_count() or 1,
        overwrite=overwrite,
        command=f"medimeta_cli.export({plan.dataset.id!r}, task={plan.task.name!r})",
        shard_size=None if shard_size is None else parse_shard_size(shard_size),
    )
    return run_export(plan, options)


def stats(
    dataset_id: str,
    *,
    root: PathLike | None = None,
    task: str | None = None,
    split: str = "train",
) -> DatasetStats:
    """``medimeta stats``: the class counts of every task (or ``task``) in every split,
    and the per-channel mean and std (0-1 scale) of ``split``'s pixels; returns the
    :class:`~medimeta_cli.dataset.stats.DatasetStats` (``.pixels.mean``, ``.pixels.std``,
    ``to_json()``).

    The pixels are read in one pass and cached beside the install record until the data
    changes; a dataset in a shared root is read, never cached in.
    """
    from medimeta_cli.dataset.stats import dataset_stats

    _check("dataset_id", dataset_id, (str,), "a dataset id (str)")
    _root(root)
    if task is not None:
        _check("task", task, (str,), "a str or None")
    _check("split", split, (str,), "a split name (train, val or test)")
    settings, catalog = _settings(root)
    return dataset_stats(
        catalog, settings.root, settings.shared_roots, dataset_id, task=task, split=split
    )
