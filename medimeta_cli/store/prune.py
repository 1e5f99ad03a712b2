"""Pruning a data root: finding and deleting what killed or vanished jobs left behind.

Only ``<root>/.medimeta/`` is looked at. Whether a job is gone is decided by
:mod:`medimeta_cli.store.ownership`; a lock file counts as free only when it can be
``flock``-ed without waiting, and it stays locked while it is deleted.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from medimeta_cli.fsutil import read_json_object, remove_tree, unsafe_folder
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.locking import grab_free_lock
from medimeta_cli.store.ownership import owner_alive, owner_from_name
from medimeta_cli.store.remove import tree_size

logger = logging.getLogger(__name__)


class PruneKind(str, Enum):
    """What sort of leftover a :class:`PruneItem` is."""

    #: A partial download (with its sidecar as companion), or a folder of partly fetched
    #: archive members.
    PARTIAL = "partial"
    #: A partial download's sidecar whose partial file is gone.
    SIDECAR = "sidecar"
    #: An extraction, removal or replaced-copy folder in ``.medimeta/tmp/``.
    TMP = "tmp"
    #: A half-written state file (``.<name>.<uniq>.tmp``) or a write probe.
    TEMPFILE = "tempfile"
    #: The note naming a lock's holder (``<name>.owner.json``).
    OWNER = "owner"
    #: A lock file no process holds.
    LOCK = "lock"
    #: An archive kept by ``download --keep-archive``.
    ARCHIVE = "archive"


class PruneOutcome(str, Enum):
    """What happened to one item when :func:`apply_prune` tried to delete it."""

    REMOVED = "removed"
    #: Another job took it over (or it vanished) meanwhile: left alone.
    SKIPPED = "skipped"
    #: It could not be deleted.
    FAILED = "failed"


@dataclass(frozen=True)
class PruneItem:
    """One thing ``prune`` would delete, and why."""

    path: Path
    kind: PruneKind
    bytes: int
    reason: str
    companions: tuple[Path, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "kind": self.kind.value,
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


def _kept_alive(path: Path, host: object, pid: object) -> None:
    logger.debug("keeping %s: its job (pid %s on %s) may still use it", path, pid, host)


def _stale_partials(layout: RootLayout, now: float) -> list[PruneItem]:
    folder = layout.partial_dir
    if unsafe_folder(folder):
        return []
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
        has_part, has_sidecar = os.path.lexists(part), os.path.lexists(sidecar)
        data = read_json_object(sidecar) if has_sidecar else None
        if data is not None and "pid" in data:
            host, pid = data.get("host"), data.get("pid")
        else:
            host, pid = owner_from_name(stem) or (None, None)
        stamp = part if has_part else sidecar
        if owner_alive(host, pid, stamp, now=now):
            _kept_alive(stamp, host, pid)
            continue
        why = _gone(host, pid, stamp, now)
        try:
            if has_part:
                size = part.lstat().st_size + (sidecar.lstat().st_size if has_sidecar else 0)
                note = "" if has_sidecar else "no sidecar; "
                companions = (sidecar,) if has_sidecar else ()
                items.append(PruneItem(part, PruneKind.PARTIAL, size, note + why, companions))
            else:
                size = sidecar.lstat().st_size
                items.append(PruneItem(sidecar, PruneKind.SIDECAR, size, "no partial file; " + why))
        except OSError:  # taken over by a new job meanwhile
            logger.debug("skipping %s: it changed hands while being looked at", stamp)
            continue
    for path in entries:
        # Folders of archive members fetched with range requests (``<key>.members.<uniq>``):
        # renamed by whoever takes them over, so the name tells the current owner.
        if not path.is_dir() or path.is_symlink():
            continue
        host, pid = owner_from_name(path.name) or (None, None)
        if owner_alive(host, pid, path, now=now):
            _kept_alive(path, host, pid)
            continue
        why = f"partly fetched members; {_gone(host, pid, path, now)}"
        items.append(PruneItem(path, PruneKind.PARTIAL, tree_size(path)[0], why))
    return items


def _stale_tmp(layout: RootLayout, now: float) -> list[PruneItem]:
    items: list[PruneItem] = []
    if unsafe_folder(layout.tmp_dir):
        return items
    for path in _entries(layout.tmp_dir):
        host, pid = owner_from_name(path.name) or (None, None)
        if owner_alive(host, pid, path, now=now):
            _kept_alive(path, host, pid)
            continue
        what = (
            "removal"
            if ".removing." in path.name
            else "replaced copy"
            if ".old." in path.name
            else "extraction"
        )
        reason = f"{what}; {_gone(host, pid, path, now)}"
        items.append(PruneItem(path, PruneKind.TMP, tree_size(path)[0], reason))
    return items


def _stale_temp_files(layout: RootLayout, now: float) -> list[PruneItem]:
    """Half-written state files (``.<name>.<uniq>.tmp``) and write probes of killed jobs."""
    folders = [layout.state_dir] + [
        path
        for path in _entries(layout.state_dir)
        if path != layout.tmp_dir and unsafe_folder(path) is None and path.is_dir()
    ]
    items = []
    for folder in folders:
        for path in _entries(folder):
            owner = owner_from_name(path.name) if path.name.startswith(".") else None
            if owner is None or path.is_dir():
                continue
            if owner_alive(*owner, path, now=now):
                _kept_alive(path, *owner)
                continue
            reason = f"left half-written; {_gone(*owner, path, now)}"
            items.append(PruneItem(path, PruneKind.TEMPFILE, path.lstat().st_size, reason))
    return items


def _stale_locks(layout: RootLayout, now: float) -> list[PruneItem]:
    folder = layout.locks_dir
    if unsafe_folder(folder):
        return []
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
            fd = grab_free_lock(lock)
            if fd is None:
                logger.debug("keeping %s: a process holds it (or that cannot be told)", lock)
                continue  # held (or cannot tell): never touched
            os.close(fd)
        if owner.exists():
            data = read_json_object(owner) or {}
            host, pid = data.get("host"), data.get("pid")
            if owner_alive(host, pid, owner, now=now):
                _kept_alive(owner, host, pid)
                continue  # a live holder's note: leave the pair alone
            items.append(
                PruneItem(
                    owner,
                    PruneKind.OWNER,
                    owner.stat().st_size,
                    f"holder note; {_gone(host, pid, owner, now)}",
                )
            )
        if os.path.lexists(lock):
            items.append(
                PruneItem(lock, PruneKind.LOCK, lock.lstat().st_size, "no process holds it")
            )
    return items


def kept_archives(layout: RootLayout) -> list[PruneItem]:
    """Archives kept by ``download --keep-archive`` (deleted by ``prune`` only on request)."""
    if unsafe_folder(layout.archives_dir):
        return []
    return [
        PruneItem(path, PruneKind.ARCHIVE, path.lstat().st_size, "kept by download --keep-archive")
        for path in _entries(layout.archives_dir)
        if path.is_file() and not path.is_symlink()
    ]


def unsafe_state_entries(layout: RootLayout) -> list[tuple[Path, str]]:
    """State folders and lock files that are links (or not what they should be), with why:
    never followed, never scanned, never deleted.

    Such an entry may point out of the root (in a group-writable shared root, at another
    member's files), so ``prune`` reports it instead of touching what it leads to.
    """
    why = unsafe_folder(layout.state_dir)
    if why is not None:
        return [(layout.state_dir, why)]
    found = []
    for path in _entries(layout.state_dir):
        why = unsafe_folder(path)
        if why == "is a symbolic link" or (why is not None and path in _state_folders(layout)):
            found.append((path, why))
    if unsafe_folder(layout.locks_dir) is None:
        found.extend(
            (path, "is a symbolic link")
            for path in _entries(layout.locks_dir)
            if path.name.endswith(".lock") and path.is_symlink()
        )
    return found


def _state_folders(layout: RootLayout) -> tuple[Path, ...]:
    return (
        layout.partial_dir,
        layout.tmp_dir,
        layout.locks_dir,
        layout.archives_dir,
        layout.installed_dir,
        layout.records_dir,
    )


def plan_prune(
    layout: RootLayout, *, now: float | None = None, archives: bool = False
) -> list[PruneItem]:
    """What ``prune`` deletes in one data root: what killed or vanished jobs left behind.

    Partial downloads (and sidecars) whose process is gone, extraction and removal folders
    in ``.medimeta/tmp/`` whose process is gone, half-written state files, notes of lock
    holders that are gone, and lock files no process holds. A job on this host is gone
    when its pid no longer exists; a job on another host when its file has not changed for
    :data:`~medimeta_cli.store.ownership.STALE_SECONDS`. With ``archives``, kept archives too.
    Dataset folders and anything outside ``.medimeta/`` are never listed. Nothing is
    deleted here.
    """
    moment = time.time() if now is None else now
    if unsafe_folder(layout.state_dir) is not None:
        logger.debug("not scanning %s: it is a link or not a folder", layout.state_dir)
        return []
    items = [
        *_stale_partials(layout, moment),
        *_stale_tmp(layout, moment),
        *_stale_temp_files(layout, moment),
        *_stale_locks(layout, moment),
    ]
    if archives:
        items.extend(kept_archives(layout))
    for item in items:
        logger.debug("stale %s %s: %s", item.kind.value, item.path, item.reason)
    return items


def _prune_lock_file(item: PruneItem) -> tuple[PruneOutcome, str]:
    """Delete a lock file or a holder note while holding the lock (taken without waiting),
    so a lock some process took meanwhile is left alone."""
    is_lock = item.kind is PruneKind.LOCK
    lock = (
        item.path
        if is_lock
        else item.path.with_name(item.path.name.removesuffix(".owner.json") + ".lock")
    )
    fd = None
    if os.path.lexists(lock):
        fd = grab_free_lock(lock)
        if fd is None:
            return PruneOutcome.SKIPPED, "a process holds the lock now"
    elif is_lock:
        return PruneOutcome.SKIPPED, "gone meanwhile"
    try:
        same = fd is not None and os.path.samestat(os.fstat(fd), lock.lstat())
        if is_lock and not same:
            return PruneOutcome.SKIPPED, "replaced meanwhile"
        item.path.unlink()
    except FileNotFoundError:
        return PruneOutcome.SKIPPED, "gone meanwhile"
    except OSError as exc:
        return PruneOutcome.FAILED, exc.strerror or str(exc)
    finally:
        if fd is not None:
            os.close(fd)
    return PruneOutcome.REMOVED, ""


def _prune_one(item: PruneItem) -> tuple[PruneOutcome, str]:
    """Delete one item: removed, skipped (with why) when it changed hands meanwhile, or
    failed (with why) when it could not be deleted."""
    # Every item lies in .medimeta/ or one folder below it. A folder swapped for a link
    # since the plan was made is not followed: deleting through it reaches its target.
    parent = item.path.parent
    for folder in (parent,) if parent.name == ".medimeta" else (parent, parent.parent):
        why = unsafe_folder(folder)
        if why is not None:
            return PruneOutcome.FAILED, f"{folder} {why} now; not followed"
    if item.kind in (PruneKind.LOCK, PruneKind.OWNER):
        return _prune_lock_file(item)
    if item.path.is_dir() and not item.path.is_symlink():
        errors = remove_tree(item.path).errors
        if errors:
            return PruneOutcome.FAILED, errors[0].strerror or str(errors[0])
        return PruneOutcome.REMOVED, ""
    try:
        item.path.unlink()
    except FileNotFoundError:
        return PruneOutcome.SKIPPED, "gone meanwhile (taken over by another job)"
    except OSError as exc:
        return PruneOutcome.FAILED, exc.strerror or str(exc)
    for companion in item.companions:
        try:
            companion.unlink()
        except OSError:
            continue
    return PruneOutcome.REMOVED, ""


def apply_prune(items: Iterable[PruneItem]) -> PruneResult:
    """Delete what :func:`plan_prune` listed. Locks are taken (without waiting) while their
    files are deleted, so a lock some process holds by now is left alone."""
    removed: list[PruneItem] = []
    skipped: list[tuple[PruneItem, str]] = []
    failed: list[tuple[PruneItem, str]] = []
    for item in items:
        outcome, why = _prune_one(item)
        if outcome is PruneOutcome.REMOVED:
            logger.debug("deleted %s %s", item.kind.value, item.path)
            removed.append(item)
        elif outcome is PruneOutcome.SKIPPED:
            logger.debug("left %s %s: %s", item.kind.value, item.path, why)
            skipped.append((item, why))
        else:
            logger.debug("could not delete %s %s: %s", item.kind.value, item.path, why)
            failed.append((item, why))
    return PruneResult(tuple(removed), tuple(skipped), tuple(failed))


@dataclass(frozen=True)
class PruneReport:
    """What ``prune`` found in a data root and what it deleted (nothing on a dry run)."""

    root: Path
    items: tuple[PruneItem, ...]
    kept_archives: tuple[PruneItem, ...]
    result: PruneResult | None
    #: State folders and lock files that are links (or not folders): not followed.
    refused: tuple[tuple[Path, str], ...] = ()

    @property
    def bytes(self) -> int:
        """Bytes of everything found."""
        return sum(item.bytes for item in self.items)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        result = self.result
        return {
            "root": str(self.root),
            "dry_run": result is None,
            "items": [item.to_json() for item in self.items],
            "bytes": self.bytes,
            "freed_bytes": result.bytes_freed if result else 0,
            "skipped": [{**i.to_json(), "why": why} for i, why in result.skipped] if result else [],
            "failed": [{**i.to_json(), "why": why} for i, why in result.failed] if result else [],
            "kept_archives": [item.to_json() for item in self.kept_archives],
            "refused": [{"path": str(path), "why": why} for path, why in self.refused],
        }

    def rows(self) -> list[list[str]]:
        """Table rows: kind, path relative to the root, size, reason."""
        from medimeta_cli.fsutil import human_bytes

        return [
            [item.kind.value, _shown(item.path, self.root), human_bytes(item.bytes), item.reason]
            for item in self.items
        ]

    def summary(self) -> str:
        """One line: what was (or would be) freed."""
        from medimeta_cli.fsutil import human_bytes

        if not self.items:
            return f"nothing to prune in {self.root}"
        if self.result is None:
            return (
                f"would free {human_bytes(self.bytes)} in {self.root} ({len(self.items)} items); "
                "dry run: nothing was deleted"
            )
        return (
            f"freed {human_bytes(self.result.bytes_freed)} in {self.root} "
            f"({len(self.result.removed)} of {len(self.items)} items)"
        )


def prune(layout: RootLayout, *, archives: bool = False, dry_run: bool = False) -> PruneReport:
    """Find what killed jobs left in a data root (and kept archives, with ``archives``), and
    delete it unless ``dry_run``."""
    refused = tuple(unsafe_state_entries(layout))
    for path, why in refused:
        logger.debug("not following %s: it %s", path, why)
    items = tuple(plan_prune(layout, archives=archives))
    kept = () if archives else tuple(kept_archives(layout))
    result = None if dry_run else apply_prune(items)
    return PruneReport(layout.root, items, kept, result, refused)


def _shown(path: Path, root: Path) -> str:
    """A path relative to the data root (named in the summary line)."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
