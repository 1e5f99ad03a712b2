"""File-system helpers shared by the download, install and verify code.

Everything that other processes may read is written under a unique temporary
name and renamed into place, so a crash or a concurrent job never exposes a
half-written file.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import socket
import stat
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from medimeta_cli.errors import DiskSpaceError, LinkRefusedError, PermissionDeniedError

logger = logging.getLogger(__name__)


def utc_now() -> str:
    """The current time as an ISO 8601 string in UTC (seconds)."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def unique_suffix() -> str:
    """A name fragment no other process (on any host sharing the file system) will pick."""
    return f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


@contextmanager
def atomic_output(path: Path, *, durable: bool = True) -> Iterator[BinaryIO]:
    """Write ``path`` through the handle yielded, so readers see the old or the new content.

    The bytes go to ``.<name>.<unique>.tmp`` next to ``path``, which is renamed over
    ``path`` when the block ends without error and deleted when it fails. ``durable``
    also waits for the data to reach the disk before the rename: right for state
    files, too slow for the thousands of images of an export.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{unique_suffix()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            yield handle
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """A hidden folder to fill, which replaces ``target`` when the block ends without error.

    The folder is ``.<name>.partial-<unique>`` next to ``target``, so an interrupted
    write never looks complete; an existing ``target`` is moved aside first and deleted
    after the rename. On failure the hidden folder is deleted and ``target`` is untouched.
    """
    staging = target.parent / f".{target.name}.partial-{unique_suffix()}"
    old: Path | None = None
    try:
        staging.mkdir()
        yield staging
        if target.exists():
            old = target.parent / f".{target.name}.old-{unique_suffix()}"
            logger.debug("moving the previous %s aside to %s", target, old)
            os.rename(target, old)
        logger.debug("renaming %s to %s", staging, target)
        os.rename(staging, target)
    finally:
        remove_tree(staging)
        if old is not None:
            remove_tree(old)


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_output`."""
    with atomic_output(path, durable=durable) as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def read_regular_file(path: Path) -> bytes | None:
    """The bytes of ``path`` read without following a link at its end; None when it is
    missing, a link, not a regular file (a FIFO would block) or unreadable."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        with open(fd, "rb", closefd=False) as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            return handle.read()
    except OSError:
        return None
    finally:
        os.close(fd)


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object stored in ``path``; None when it is missing, unreadable, a link
    (state files are never links: a link there is not followed) or no object."""
    raw = read_regular_file(path)
    try:
        data = json.loads(raw) if raw is not None else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def free_bytes(path: Path) -> int:
    """Free space available to this user on the file system holding ``path`` (or its parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def human_bytes(count: float) -> str:
    """``1536 -> '1.5 KiB'``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def ensure_space(path: Path, needed: int, what: str) -> None:
    """Raise :class:`DiskSpaceError` with the numbers if ``needed`` bytes do not fit."""
    available = free_bytes(path)
    if needed > available:
        raise DiskSpaceError(
            f"not enough space for {what} in {path}: need {human_bytes(needed)}, "
            f"{human_bytes(available)} free"
        )


def ensure_writable_dir(path: Path) -> None:
    """Create ``path`` if needed and prove it can be written, with a clear error if not."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test.{unique_suffix()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise PermissionDeniedError(
                f"cannot write to {path}: {exc.strerror}",
            ) from exc
        if exc.errno == errno.ENOSPC:
            raise DiskSpaceError(f"no space left on the device holding {path}") from exc
        raise


def translate_os_error(exc: OSError, what: str) -> Exception:
    """Map disk-full and read-only errors to their own error classes; others pass through."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskSpaceError(f"disk full while writing {what}: {exc.strerror}")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return PermissionDeniedError(f"cannot write {what}: {exc.strerror}")
    return exc


@dataclass(frozen=True)
class TreeRemoval:
    """What :func:`remove_tree` deleted, and what it could not delete."""

    bytes: int
    files: int
    errors: tuple[OSError, ...] = ()

    @property
    def complete(self) -> bool:
        """Whether everything below the path is gone."""
        return not self.errors

    def first_error(self) -> str | None:
        """``"<reason>: <path>"`` of the first error, or None when there was none."""
        if not self.errors:
            return None
        error = self.errors[0]
        return f"{error.strerror or error}: {error.filename}"


def remove_tree(path: Path) -> TreeRemoval:
    """Delete a folder (bottom-up) or a file if it exists, never following links.

    A link, even to a folder, is deleted itself and not what it points to. Folders are
    opened with ``O_NOFOLLOW`` and emptied through their descriptors (``dir_fd``), so a
    folder swapped for a link meanwhile is refused, never entered. What vanished
    meanwhile is skipped; what cannot be deleted is collected in the result's ``errors``
    (and the walk goes on), so a caller decides whether a leftover matters.
    """
    errors: list[OSError] = []
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return TreeRemoval(0, 0)
    except OSError as exc:
        return TreeRemoval(0, 0, (exc,))
    if not stat.S_ISDIR(top.st_mode):
        size = _unlink_counted(str(path), errors)
        return TreeRemoval(size or 0, 0 if size is None else 1, tuple(errors))
    fd = _open_folder(str(path), None, top, errors)
    if fd is None:
        return TreeRemoval(0, 0, tuple(errors))
    freed, files = _empty_folder(fd, str(path), errors)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        errors.append(exc)
    if errors:
        logger.debug(
            "could not delete all of %s: %d error(s), first %s", path, len(errors), errors[0]
        )
    return TreeRemoval(freed, files, tuple(errors))


_FOLDER_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)


def _open_folder(
    name: str, dir_fd: int | None, seen: os.stat_result, errors: list[OSError], shown: str = ""
) -> int | None:
    """Open a folder without following a link; None (error noted) unless it is still the
    folder ``seen`` by ``lstat``."""
    try:
        fd = os.open(name, _FOLDER_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:  # ELOOP / ENOTDIR: swapped for a link or a file meanwhile
        exc.filename = shown or name
        errors.append(exc)
        return None
    if not os.path.samestat(os.fstat(fd), seen):
        os.close(fd)
        errors.append(OSError(errno.ESTALE, "replaced while being deleted", shown or name))
        return None
    return fd


def _empty_folder(fd: int, shown: str, errors: list[OSError]) -> tuple[int, int]:
    """Delete everything in the open folder ``fd`` (closed on return); ``(bytes, files)``.

    Iterative (a stack of open folders), so a deep tree cannot exhaust the recursion limit.
    """
    freed = files = 0
    stack: list[tuple[int, str, list[str]]] = [(fd, shown, _names(fd, shown, errors))]
    try:
        while stack:
            folder_fd, folder, names = stack[-1]
            if not names:
                stack.pop()
                os.close(folder_fd)
                if stack:
                    _rmdir_at(os.path.basename(folder), stack[-1][0], folder, errors)
                continue
            name = names.pop()
            shown_name = os.path.join(folder, name)
            try:
                entry = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            except OSError as exc:
                exc.filename = shown_name
                errors.append(exc)
                continue
            if stat.S_ISDIR(entry.st_mode):
                child = _open_folder(name, folder_fd, entry, errors, shown_name)
                if child is not None:
                    stack.append((child, shown_name, _names(child, shown_name, errors)))
                continue
            try:
                os.unlink(name, dir_fd=folder_fd)
            except FileNotFoundError:
                continue
            except OSError as exc:
                exc.filename = shown_name
                errors.append(exc)
                continue
            freed += entry.st_size
            files += 1
    finally:
        for folder_fd, _, _ in stack:
            os.close(folder_fd)
    return freed, files


def _names(fd: int, shown: str, errors: list[OSError]) -> list[str]:
    try:
        return os.listdir(fd)
    except OSError as exc:
        exc.filename = shown
        errors.append(exc)
        return []


def _rmdir_at(name: str, dir_fd: int, shown: str, errors: list[OSError]) -> None:
    try:
        os.rmdir(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        exc.filename = shown
        errors.append(exc)


def unsafe_folder(path: Path) -> str | None:
    """Why ``path`` may not be used as a folder of the tool's own (a link, not a folder);
    None when it is a real folder or missing. Decided by ``lstat``: links are never followed."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be examined ({exc.strerror or exc})"
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(mode):
        return "is not a folder"
    return None


def require_real_folders(paths: Iterable[Path]) -> None:
    """Raise :class:`LinkRefusedError` for the first of ``paths`` that exists but is a link
    or not a folder (missing ones are fine: they are created as real folders)."""
    for path in paths:
        why = unsafe_folder(path)
        if why is not None:
            raise LinkRefusedError(f"{path} {why}; it is never followed")


def _unlink_counted(target: str, errors: list[OSError]) -> int | None:
    """Delete one file or link; its size, or None when it was gone or could not be deleted."""
    try:
        size = os.lstat(target).st_size
        os.unlink(target)
    except FileNotFoundError:
        return None
    except OSError as exc:
        errors.append(exc)
        return None
    return size
