"""Care of a data root: removing datasets, pruning what killed jobs left, disk usage.

Kept apart from :mod:`medimeta_cli.status`, which ``list`` imports on every start,
because only ``remove``, ``prune``, ``doctor`` and the download engine need it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medimeta_cli.errors import NotInstalledError
from medimeta_cli.fsutil import unique_suffix
from medimeta_cli.layout import RootLayout
from medimeta_cli.locking import DatasetLock
from medimeta_cli.ownership import (
    owner_alive,
    owner_from_name,
    partial_in_use,
)
from medimeta_cli.partials import partial_sidecars
from medimeta_cli.records import forget_install, read_install_record


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


def _delete_tree(path: Path) -> tuple[int, int, list[OSError]]:
    """Delete a folder bottom-up, never following links; return bytes, files and errors."""
    freed = files = 0
    errors: list[OSError] = []
    if path.is_symlink() or not path.is_dir():
        try:
            size = path.lstat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0, 0, errors
        except OSError as exc:
            return 0, 0, [exc]
        return size, 1, errors
    for folder, dirs, names in os.walk(path, topdown=False, onerror=errors.append):
        for name in names:
            target = os.path.join(folder, name)
            try:
                size = os.lstat(target).st_size
                os.unlink(target)
            except FileNotFoundError:
                continue
            except OSError as exc:
                errors.append(exc)
                continue
            freed += size
            files += 1
        for name in dirs:
            target = os.path.join(folder, name)
            try:
                if os.path.islink(target):
                    size = os.lstat(target).st_size
                    os.unlink(target)
                    freed += size
                    files += 1
                else:
                    os.rmdir(target)
            except FileNotFoundError:
                continue
            except OSError as exc:
                errors.append(exc)
    try:
        path.rmdir()
    except FileNotFoundError:
        pass
    except OSError as exc:
        errors.append(exc)
    return freed, files, errors


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
    freed = 0
    for sidecar in partial_sidecars(layout, key):
        part = sidecar.with_suffix(".part")
        data = _read_json(sidecar)
        if data is None or partial_in_use(data, part):
            continue
        freed += tree_size(part)[0] if part.exists() else 0
        part.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
    for folder in layout.partial_dir.glob(f"{key}.members.*"):
        host, pid = owner_from_name(folder.name) or (None, None)
        if folder.is_dir() and not partial_in_use({"host": host, "pid": pid}, folder):
            freed += _delete_tree(folder)[0]
    return freed


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
    Raises :class:`NotInstalledError` when the folder holds no ``info.yaml``.
    """
    from medimeta_cli.fsutil import ensure_writable_dir, translate_os_error

    folder = layout.dataset_dir(dataset_id)
    if not (folder / "info.yaml").is_file():
        raise _not_installed(layout, dataset_id)
    ensure_writable_dir(layout.tmp_dir)
    key = archive_key or f"{dataset_id}.zip"
    aside = layout.tmp_dir / f"{dataset_id}.removing.{unique_suffix()}"
    lock = DatasetLock(layout, dataset_id, timeout=lock_timeout, on_wait=on_wait, enabled=locks)
    with lock.hold():
        if not (folder / "info.yaml").is_file():  # another job removed it while we waited
            raise _not_installed(layout, dataset_id)
        try:
            os.rename(folder, aside)
            forget_install(layout, dataset_id)
        except OSError as exc:
            raise translate_os_error(exc, f"{folder} (removing it)") from exc
        partial_bytes = _drop_partials(layout, key)
    freed, files, errors = _delete_tree(aside)
    kept = layout.archives_dir / key
    return RemovedInfo(
        dataset_id,
        folder,
        bytes_freed=freed,
        files=files,
        partial_bytes=partial_bytes,
        kept_archive=kept if kept.is_file() else None,
        leftover=aside if errors and os.path.lexists(aside) else None,
        error=f"{errors[0].strerror or errors[0]}: {errors[0].filename}" if errors else None,
    )


@dataclass(frozen=True)
class PruneItem:
    """One thing ``prune`` would delete, and why.

    ``kind`` is ``partial`` (a partial download, with its sidecar as companion),
    ``sidecar`` (one whose partial file is gone), ``tmp`` (an extraction or removal
    folder), ``tempfile`` (a half-written state file), ``owner`` (a lock's holder note),
    ``lock`` (a lock file no process holds) or ``archive`` (kept by ``--keep-archive``).
    """

    path: Path
    kind: str
    bytes: int
    reason: str
    companions: tuple[Path, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "kind": self.kind,
            "path": str(self.path),
            "bytes": self.bytes,
            "reason": self.reason,
            "companions": [str(path) for path in self.companions],
        }


@dataclass(frozen=True)
class PruneResult:
    """What :func:`apply_prune` deleted; what it left because another job took it over
    meanwhile (``skipped``) or because it could not be deleted (``failed``), with why."""

    removed: tuple[PruneItem, ...]
    skipped: tuple[tuple[PruneItem, str], ...] = ()
    failed: tuple[tuple[PruneItem, str], ...] = ()

    @property
    def bytes_freed(self) -> int:
        """Bytes deleted in all."""
        return sum(item.bytes for item in self.removed)


def _age(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    return f"{seconds / 3600:.0f} h"


def _gone(host: object, pid: object, path: Path, now: float) -> str:
    """Why the owner of ``path`` counts as gone (call only when it does)."""
    if host == socket.gethostname():
        return f"process {pid} on this host is gone"
    try:
        age = _age(now - path.lstat().st_mtime)
    except OSError:
        age = "long"
    where = f"a job on {host}" if isinstance(host, str) and host else "a job on another host"
    return f"untouched for {age} (by {where})"


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _grab_lock(path: Path) -> int | None:
    """Open a lock file and ``flock`` it without waiting: the descriptor when no process
    holds it, None when one does or when that cannot be told (then it is never deleted)."""
    try:
        import fcntl
    except ImportError:  # no flock here: every lock counts as held
        return None
    flags = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, os.O_RDWR | flags)
    except PermissionError:
        try:
            fd = os.open(path, os.O_RDONLY | flags)
        except OSError:
            return None
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _stale_partials(layout: RootLayout, now: float) -> list[PruneItem]:
    folder = layout.partial_dir
    entries = [path for path in _entries(folder) if not path.name.startswith(".")]
    stems = sorted(
        {
            path.name[: -len(path.suffix)]
            for path in entries
            if path.suffix in (".part", ".json") and not path.is_dir()
        }
    )
    items = []
    for stem in stems:
        part, sidecar = folder / f"{stem}.part", folder / f"{stem}.json"
        has_part, has_sidecar = part.exists(), sidecar.exists()
        data = _read_json(sidecar) if has_sidecar else None
        if data is not None and "pid" in data:
            host, pid = data.get("host"), data.get("pid")
        else:
            host, pid = owner_from_name(stem) or (None, None)
        stamp = part if has_part else sidecar
        if owner_alive(host, pid, stamp, now=now):
            continue
        why = _gone(host, pid, stamp, now)
        try:
            if has_part:
                size = part.stat().st_size + (sidecar.stat().st_size if has_sidecar else 0)
                note = "" if has_sidecar else "no sidecar; "
                companions = (sidecar,) if has_sidecar else ()
                items.append(PruneItem(part, "partial", size, note + why, companions))
            else:
                size = sidecar.stat().st_size
                items.append(PruneItem(sidecar, "sidecar", size, "no partial file; " + why))
        except OSError:  # taken over by a new job meanwhile
            continue
    for path in entries:
        # Folders of archive members fetched with range requests (``<key>.members.<uniq>``):
        # renamed by whoever takes them over, so the name tells the current owner.
        if not path.is_dir() or path.is_symlink():
            continue
        host, pid = owner_from_name(path.name) or (None, None)
        if owner_alive(host, pid, path, now=now):
            continue
        why = f"partly fetched members; {_gone(host, pid, path, now)}"
        items.append(PruneItem(path, "partial", tree_size(path)[0], why))
    return items


def _stale_tmp(layout: RootLayout, now: float) -> list[PruneItem]:
    items = []
    for path in _entries(layout.tmp_dir):
        host, pid = owner_from_name(path.name) or (None, None)
        if owner_alive(host, pid, path, now=now):
            continue
        what = (
            "removal"
            if ".removing." in path.name
            else "replaced copy"
            if ".old." in path.name
            else "extraction"
        )
        items.append(
            PruneItem(path, "tmp", tree_size(path)[0], f"{what}; {_gone(host, pid, path, now)}")
        )
    return items


def _stale_temp_files(layout: RootLayout, now: float) -> list[PruneItem]:
    """Half-written state files (``.<name>.<uniq>.tmp``) and write probes of killed jobs."""
    folders = [layout.state_dir] + [
        path for path in _entries(layout.state_dir) if path.is_dir() and path != layout.tmp_dir
    ]
    items = []
    for folder in folders:
        for path in _entries(folder):
            owner = owner_from_name(path.name) if path.name.startswith(".") else None
            if owner is None or path.is_dir() or owner_alive(*owner, path, now=now):
                continue
            reason = f"left half-written; {_gone(*owner, path, now)}"
            items.append(PruneItem(path, "tempfile", path.lstat().st_size, reason))
    return items


def _stale_locks(layout: RootLayout, now: float) -> list[PruneItem]:
    folder = layout.locks_dir
    names = sorted(
        {
            path.name.removesuffix(".lock").removesuffix(".owner.json")
            for path in _entries(folder)
            if path.name.endswith((".lock", ".owner.json")) and not path.name.startswith(".")
        }
    )
    items = []
    for name in names:
        lock, owner = folder / f"{name}.lock", folder / f"{name}.owner.json"
        if os.path.lexists(lock):
            fd = _grab_lock(lock)
            if fd is None:
                continue  # held (or cannot tell): never touched
            os.close(fd)
        if owner.exists():
            data = _read_json(owner) or {}
            host, pid = data.get("host"), data.get("pid")
            if owner_alive(host, pid, owner, now=now):
                continue  # a live holder's note: leave the pair alone
            items.append(
                PruneItem(
                    owner,
                    "owner",
                    owner.stat().st_size,
                    f"holder note; {_gone(host, pid, owner, now)}",
                )
            )
        if os.path.lexists(lock):
            items.append(PruneItem(lock, "lock", lock.lstat().st_size, "no process holds it"))
    return items


def kept_archives(layout: RootLayout) -> list[PruneItem]:
    """Archives kept by ``download --keep-archive`` (deleted by ``prune`` only on request)."""
    return [
        PruneItem(path, "archive", path.lstat().st_size, "kept by download --keep-archive")
        for path in _entries(layout.archives_dir)
        if path.is_file()
    ]


def plan_prune(
    layout: RootLayout, *, now: float | None = None, archives: bool = False
) -> list[PruneItem]:
    """What ``prune`` deletes in one data root: what killed or vanished jobs left behind.

    Partial downloads (and sidecars) whose process is gone, extraction and removal folders
    in ``.medimeta/tmp/`` whose process is gone, half-written state files, notes of lock
    holders that are gone, and lock files no process holds. A job on this host is gone
    when its pid no longer exists; a job on another host when its file has not changed for
    :data:`STALE_SECONDS`. With ``archives``, kept archives too. Dataset folders and
    anything outside ``.medimeta/`` are never listed. Nothing is deleted here.
    """
    moment = time.time() if now is None else now
    items = [
        *_stale_partials(layout, moment),
        *_stale_tmp(layout, moment),
        *_stale_temp_files(layout, moment),
        *_stale_locks(layout, moment),
    ]
    if archives:
        items.extend(kept_archives(layout))
    return items


def _prune_one(item: PruneItem) -> tuple[str, str]:
    """Delete one item: ``("removed", "")``, ``("skipped", why)`` when it changed hands
    meanwhile, or ``("failed", why)`` when it could not be deleted."""
    if item.kind in ("lock", "owner"):
        lock = (
            item.path
            if item.kind == "lock"
            else item.path.with_name(item.path.name.removesuffix(".owner.json") + ".lock")
        )
        fd = None
        if os.path.lexists(lock):
            fd = _grab_lock(lock)
            if fd is None:
                return "skipped", "a process holds the lock now"
        elif item.kind == "lock":
            return "skipped", "gone meanwhile"
        try:
            same = fd is not None and os.path.samestat(os.fstat(fd), lock.lstat())
            if item.kind == "lock" and not same:
                return "skipped", "replaced meanwhile"
            item.path.unlink()
        except FileNotFoundError:
            return "skipped", "gone meanwhile"
        except OSError as exc:
            return "failed", exc.strerror or str(exc)
        finally:
            if fd is not None:
                os.close(fd)
        return "removed", ""
    if item.path.is_dir() and not item.path.is_symlink():
        _freed, _files, errors = _delete_tree(item.path)
        return ("failed", errors[0].strerror or str(errors[0])) if errors else ("removed", "")
    try:
        item.path.unlink()
    except FileNotFoundError:
        return "skipped", "gone meanwhile (taken over by another job)"
    except OSError as exc:
        return "failed", exc.strerror or str(exc)
    for companion in item.companions:
        try:
            companion.unlink()
        except OSError:
            continue
    return "removed", ""


def apply_prune(items: Iterable[PruneItem]) -> PruneResult:
    """Delete what :func:`plan_prune` listed. Locks are taken (without waiting) while their
    files are deleted, so a lock some process holds by now is left alone."""
    removed: list[PruneItem] = []
    skipped: list[tuple[PruneItem, str]] = []
    failed: list[tuple[PruneItem, str]] = []
    for item in items:
        outcome, why = _prune_one(item)
        if outcome == "removed":
            removed.append(item)
        else:
            (skipped if outcome == "skipped" else failed).append((item, why))
    return PruneResult(tuple(removed), tuple(skipped), tuple(failed))
