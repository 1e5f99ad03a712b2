"""File-system helpers shared by the download, install and verify code.

Everything that other processes may read is written under a unique temporary
name and renamed into place, so a crash or a concurrent job never exposes a
half-written file.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from medimeta_cli.errors import DiskSpaceError, PermissionDeniedError

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


def remove_tree(path: Path) -> None:
    """Delete a folder or file if it exists, ignoring what vanished meanwhile."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
