"""Removing an installed dataset from a data root, and measuring what it takes on disk.

Kept apart from :mod:`medimeta_cli.store.status`, which ``list`` imports on every start,
because only ``remove`` (and ``prune``, for sizes) needs it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medimeta_cli.errors import NotInstalledError
from medimeta_cli.fsutil import (
    ensure_writable_dir,
    remove_tree,
    require_real_folders,
    translate_os_error,
    unique_suffix,
)
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.locking import DatasetLock
from medimeta_cli.store.partials import drop_idle_partials
from medimeta_cli.store.records import forget_install, read_install_record

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiskUsage:
    """Bytes and files of a dataset folder; ``recorded`` when taken from its install record."""

    bytes: int
    files: int
    recorded: bool


def tree_size(path: Path) -> tuple[int, int]:
    """``(bytes, files)`` below a folder, not following links; a file or link counts itself."""
    try:
        if path.is_symlink() or not path.is_dir():
            return path.lstat().st_size, 1
    except OSError:
        return 0, 0
    total = files = 0
    stack = [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        else:
                            total += entry.stat(follow_symlinks=False).st_size
                            files += 1
                    except OSError:
                        continue
        except OSError:
            continue
    return total, files


def dataset_usage(layout: RootLayout, dataset_id: str) -> DiskUsage:
    """Size of an installed dataset: from its install record (cheap), else by walking it."""
    record = read_install_record(layout, dataset_id)
    if record is not None:
        return DiskUsage(record.total_bytes, record.file_count, recorded=True)
    size, files = tree_size(layout.dataset_dir(dataset_id))
    return DiskUsage(size, files, recorded=False)


@dataclass(frozen=True)
class RemovedInfo:
    """What :func:`remove_dataset` deleted."""

    dataset_id: str
    path: Path
    bytes_freed: int
    files: int
    partial_bytes: int = 0
    kept_archive: Path | None = None
    leftover: Path | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "id": self.dataset_id,
            "path": str(self.path),
            "bytes_freed": self.bytes_freed,
            "files": self.files,
            "partial_bytes": self.partial_bytes,
            "kept_archive": str(self.kept_archive) if self.kept_archive else None,
            "leftover": str(self.leftover) if self.leftover else None,
            "error": self.error,
        }


def _not_installed(layout: RootLayout, dataset_id: str) -> Exception:
    error = NotInstalledError(dataset_id, str(layout.root))
    error.hint = "There is nothing to remove; `medimeta list --installed` shows what is installed."
    return error


def _drop_partials(layout: RootLayout, key: str) -> int:
    """Delete the partial downloads of an archive that no live job writes; return bytes."""
    return drop_idle_partials(layout, key)


def remove_dataset(
    layout: RootLayout,
    dataset_id: str,
    *,
    archive_key: str | None = None,
    lock_timeout: float = 60.0,
    locks: bool = True,
    on_wait: Callable[[str], None] | None = None,
) -> RemovedInfo:
    """Remove an installed dataset from a data root.

    Under the dataset's lock (so no download of it runs meanwhile) the folder is renamed
    into ``.medimeta/tmp/<id>.removing.<uniq>`` (the loader sees it vanish at once), its
    install record and the partial downloads of its archive that no live job writes are
    dropped; then, with the lock released, the renamed folder is deleted. A kept archive
    (``download --keep-archive``) stays. If the deletion is cut short, ``prune`` finishes it.
    A dataset folder that is a link is removed as a link: what it points to stays.
    Raises :class:`NotInstalledError` when the folder holds no ``info.yaml``, and
    :class:`LinkRefusedError` when a state folder is a link (nothing is changed then).
    """
    folder = layout.dataset_dir(dataset_id)
    if not (folder / "info.yaml").is_file():
        raise _not_installed(layout, dataset_id)
    # Every state folder this touches must be a real folder: through a link, the rename,
    # the record and partial deletions would land outside the root.
    require_real_folders(
        [
            layout.state_dir,
            layout.tmp_dir,
            layout.partial_dir,
            layout.locks_dir,
            layout.installed_dir,
        ]
    )
    ensure_writable_dir(layout.tmp_dir)
    key = archive_key or f"{dataset_id}.zip"
    aside = layout.tmp_dir / f"{dataset_id}.removing.{unique_suffix()}"
    lock = DatasetLock(layout, dataset_id, timeout=lock_timeout, on_wait=on_wait, enabled=locks)
    with lock.hold():
        logger.debug("holding the lock of %s (locks %s)", dataset_id, "on" if locks else "off")
        if not (folder / "info.yaml").is_file():  # another job removed it while we waited
            logger.debug("%s was removed by another job while this one waited", dataset_id)
            raise _not_installed(layout, dataset_id)
        try:
            os.rename(folder, aside)
            forget_install(layout, dataset_id)
        except OSError as exc:
            raise translate_os_error(exc, f"{folder} (removing it)") from exc
        logger.debug("renamed %s to %s and dropped its install record", folder, aside)
        partial_bytes = _drop_partials(layout, key)
    removal = remove_tree(aside)
    logger.debug(
        "deleted %s: %d bytes in %d files, %d error(s)",
        aside,
        removal.bytes,
        removal.files,
        len(removal.errors),
    )
    kept = layout.archives_dir / key
    return RemovedInfo(
        dataset_id,
        folder,
        bytes_freed=removal.bytes,
        files=removal.files,
        partial_bytes=partial_bytes,
        kept_archive=kept if kept.is_file() else None,
        leftover=aside if removal.errors and os.path.lexists(aside) else None,
        error=removal.first_error(),
    )
