"""Where an export may write: never into a data root, and no dead job's staging left beside it.

An ``--out`` that is, contains or lies inside a data root (or a dataset folder) is
refused before anything is written: ``--overwrite`` would otherwise replace the root,
and shards would write into an installed dataset. Paths are compared after resolving
links and ``..`` (:func:`os.path.realpath`) and, since bind mounts show one folder under
two names, also by device and inode of every existing folder on the way.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from medimeta_cli.errors import UsageError
from medimeta_cli.export.formats import writer_for
from medimeta_cli.export.naming import task_folder_part
from medimeta_cli.export.options import ExportFormat
from medimeta_cli.fsutil import remove_tree
from medimeta_cli.store.ownership import owner_alive, owner_from_name

logger = logging.getLogger(__name__)


def default_out(
    dataset_id: str, task: str, export_format: ExportFormat = ExportFormat.IMAGEFOLDER
) -> Path:
    """``./<id>-<task>``, the default export folder of an ``imagefolder`` export, and
    ``./<id>-<task><suffix>`` of another format (its writer's ``folder_suffix``:
    ``crc-tissue_class-numpy``), so that exports of one task in two formats never share
    a folder. The task part is
    :func:`task_folder_part`; ids hold no ``-``, so no two (id, task, format) share one.
    """
    suffix = writer_for(export_format).folder_suffix
    return Path(f"{dataset_id}-{task_folder_part(task)}{suffix}")


def _chain(path: str) -> Iterator[str]:
    """``path`` and each of its parents, up to ``/``."""
    while True:
        yield path
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


def _identity(path: str) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _same_or_inside(inner: str, outer: str, outer_id: tuple[int, int] | None) -> bool:
    """Whether the folder ``inner`` is ``outer`` or lies below it (real paths given)."""
    if inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep):
        return True
    if outer_id is None:
        return False
    return any(_identity(step) == outer_id for step in _chain(inner))


def _protected(roots: Iterable[Path]) -> list[tuple[Path, str]]:
    """Every root, and every folder a root links to (a dataset folder kept elsewhere)."""
    found: list[tuple[Path, str]] = []
    for root in roots:
        found.append((root, os.path.realpath(root)))
        try:
            with os.scandir(root) as entries:
                links = [Path(entry.path) for entry in entries if entry.is_symlink()]
        except OSError:
            continue
        found.extend((link, os.path.realpath(link)) for link in links if link.is_dir())
    return found


def refuse_root_overlap(out: Path, roots: Iterable[Path]) -> None:
    """Raise :class:`UsageError` when ``out`` is, contains or lies inside one of ``roots``
    (data roots and dataset folders), however it is spelled."""
    real_out = os.path.realpath(out)
    out_id = _identity(real_out)
    for protected, real in _protected(roots):
        real_id = _identity(real)
        if _same_or_inside(real_out, real, real_id):
            how = "is" if real_out == real or out_id == real_id else "lies inside"
        elif _same_or_inside(real, real_out, out_id):
            how = "contains"
        else:
            continue
        logger.debug("refusing --out %s (%s): it %s %s (%s)", out, real_out, how, protected, real)
        raise UsageError(
            f"--out {out} {how} the data folder {protected}; an export never writes there",
            hint="Choose an --out outside every data root (MEDIMETA_HOME and MEDIMETA_PATH).",
        )


def clean_dead_staging(out: Path) -> None:
    """Delete the hidden staging folders that killed exports into ``out`` left beside it.

    They are ``.<name>.partial-<unique>`` (and ``.<name>.old-<unique>``, the previous
    export moved aside, deleted only when ``out`` exists again); a live job's are left
    alone. Only folders are deleted, never through a link.
    """
    prefix = f".{out.name}."
    try:
        with os.scandir(out.parent) as entries:
            names = [e.name for e in entries if e.name.startswith(prefix)]
    except OSError:
        return
    for name in names:
        kind, _, suffix = name[len(prefix) :].partition("-")
        owner = owner_from_name(suffix) if kind in ("partial", "old") else None
        path = out.parent / name
        if owner is None or not path.is_dir() or path.is_symlink():
            continue
        if owner_alive(*owner, path):
            logger.debug("keeping %s: its export (pid %s on %s) may still run", path, *owner[::-1])
            continue
        if kind == "old" and not out.exists():
            logger.debug("keeping %s: it is the only copy of the previous export", path)
            continue
        logger.debug("deleting %s, left by a killed export", path)
        remove_tree(path)
