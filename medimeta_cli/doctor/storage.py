"""Checks of the data root: free space, write permission, file locks and shared roots."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from medimeta_cli.doctor.checks import Check, CheckStatus, timed
from medimeta_cli.errors import (
    DiskSpaceError,
    LinkRefusedError,
    LockTimeoutError,
    MedimetaError,
    PermissionDeniedError,
)
from medimeta_cli.fsutil import free_bytes, human_bytes, unique_suffix, unsafe_folder
from medimeta_cli.settings import Settings
from medimeta_cli.store.layout import RootLayout

if TYPE_CHECKING:
    from medimeta_cli.catalog.datasets import Catalog
    from medimeta_cli.zenodo.record import Manifest

#: Free space below this multiple of what ``download --all`` needs earns a warning: other
#: programs write to the same disk while a download of many hours runs.
SPACE_MARGIN = 1.2
#: Parallel downloads assumed for ``download --all`` (its ``--jobs`` default).
DEFAULT_JOBS = 2
#: Seconds allowed for the second process of the lock check (start-up included).
LOCK_CHILD_TIMEOUT = 15.0

_LOCKS_HINT = (
    "Set MEDIMETA_LOCKS=0 (or use a data root on a local disk): installs stay safe without "
    "locks, but two jobs may download the same dataset twice."
)


class FileLockLike(Protocol):
    """The part of :class:`medimeta_cli.store.locking.LockFile` the lock check uses."""

    def acquire(self, timeout: float) -> object:
        """Take the lock, waiting at most ``timeout`` seconds (:class:`LockTimeoutError`)."""

    def release(self) -> object:
        """Give the lock back."""


LockFactory = Callable[[str], FileLockLike]


# ----------------------------------------------------------------------------- disk space


@timed
def check_disk_space(
    settings: Settings,
    catalog: Catalog | None,
    fetched: Manifest | None,
    *,
    jobs: int = DEFAULT_JOBS,
    catalog_error: MedimetaError | None = None,
) -> Check:
    """Free space on the data root against what ``download --all`` would ask for.

    Sizes come from the record just fetched or, failing that, the saved copy;
    the need is computed exactly as ``download`` computes it (archives plus
    extraction, resumed downloads counted).
    """
    from medimeta_cli.download.plan import plan_download
    from medimeta_cli.zenodo.record import load_saved_record

    name = "disk space"
    root = settings.root
    free = free_bytes(root)
    if catalog is None:
        why = f": {catalog_error.message}" if catalog_error else ""
        return Check(
            name,
            CheckStatus.WARN,
            f"{human_bytes(free)} free in {root}; the catalog could not be read{why}",
            catalog_error.hint if catalog_error else None,
        )
    manifest, source = fetched, "the record fetched now"
    if manifest is None:
        manifest = load_saved_record(RootLayout(root), settings.record_id, settings.base_url)
        source = f"the saved record ({manifest.fetched_at or 'undated'})" if manifest else ""
    if manifest is None:
        return Check(
            name,
            CheckStatus.WARN,
            f"{human_bytes(free)} free in {root}; space needed unknown "
            "(no record fetched and none saved)",
            "Run `medimeta doctor` (or `medimeta download --dry-run --all`) with network access "
            "to learn the archive sizes.",
        )
    # Planned exactly as `download --all` plans: what is installed here or in a shared root
    # (MEDIMETA_PATH) is skipped, resumed downloads count what is left.
    plan = plan_download(settings, catalog.datasets, manifest, jobs=jobs)
    items = [item for item in plan.pending if item.size is not None]
    unknown = sum(1 for item in plan.pending if item.size is None)
    missing = f"; {unknown} dataset(s) of the catalog missing from the record" if unknown else ""
    # `download` refuses datasets the record lacks: a catalog and record that do not match.
    mismatch_hint = "Check MEDIMETA_RECORD, MEDIMETA_BASE_URL and MEDIMETA_CATALOG."
    if not items:
        return Check(
            name,
            CheckStatus.WARN if unknown else CheckStatus.OK,
            f"nothing left to download{missing}; {human_bytes(free)} free in {root}",
            mismatch_hint if unknown else None,
        )
    needed = plan.needed_bytes
    detail = (
        f"`download --all` needs {human_bytes(needed)} for {len(items)} dataset(s) "
        f"(archives plus extraction), {human_bytes(free)} free in {root} "
        f"(sizes from {source}){missing}"
    )
    if needed > free:
        return Check(
            name,
            CheckStatus.FAIL,
            f"not enough space: {detail}",
            "Free some space, point --root / MEDIMETA_HOME at a larger file system, or "
            "download fewer datasets.",
        )
    if needed * SPACE_MARGIN > free:
        return Check(
            name,
            CheckStatus.WARN,
            f"little room to spare: {detail}",
            DiskSpaceError.default_hint,
        )
    if unknown:
        return Check(name, CheckStatus.WARN, detail, mismatch_hint)
    return Check(name, CheckStatus.OK, detail)


# ----------------------------------------------------------------------------- write permission


@contextmanager
def _created_dirs(path: Path) -> Iterator[Path]:
    """Create ``path`` (and missing parents) for the block, then remove what was created,
    so probing a data root that does not exist yet leaves no empty folders behind."""
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    created: list[Path] = []
    try:
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:  # another process made it meanwhile: not ours to remove
                continue
            created.append(folder)
        yield path
    finally:
        for folder in reversed(created):
            with suppress(OSError):  # not empty: someone else now uses it
                folder.rmdir()


def _linked_state_folder(name: str, *folders: Path) -> Check | None:
    """A failed check ``name`` for the first of ``folders`` that is a link or not a folder."""
    for folder in folders:
        why = unsafe_folder(folder)
        if why is not None:
            return Check(
                name,
                CheckStatus.FAIL,
                f"{folder} {why}; it is never followed",
                LinkRefusedError.default_hint,
            )
    return None


@timed
def check_write_permission(root: Path) -> Check:
    """Create (and remove) a file in the state folder ``<root>/.medimeta/``."""
    name = "write permission"
    state_dir = RootLayout(root).state_dir
    linked = _linked_state_folder(name, state_dir)
    if linked is not None:
        return linked
    existed = root.exists()
    try:
        with _created_dirs(state_dir):
            probe = state_dir / f".doctor-write.{unique_suffix()}"
            probe.write_bytes(b"")
            probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return Check(
                name,
                CheckStatus.FAIL,
                f"cannot write in {state_dir}: {reason}",
                PermissionDeniedError.default_hint,
            )
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return Check(
                name,
                CheckStatus.FAIL,
                f"cannot write in {state_dir}: {reason}",
                DiskSpaceError.default_hint,
            )
        return Check(
            name,
            CheckStatus.FAIL,
            f"cannot write in {state_dir}: {reason}",
            "Check the path and its permissions.",
        )
    later = "" if existed else " (the data root does not exist yet; downloads will create it)"
    return Check(name, CheckStatus.OK, f"can write in {state_dir}{later}")


# ----------------------------------------------------------------------------- file locks

#: Run by the second process: try the lock once, without waiting, and say what happened.
_CHILD_SCRIPT = r"""
import sys
from medimeta_cli.store.locking import LockFile
lock = LockFile(sys.argv[1])
try:
    taken = lock.try_acquire()
except Exception as exc:
    sys.stdout.write(f"error {exc}\n")
else:
    if taken:
        lock.release()
    sys.stdout.write("acquired\n" if taken else "busy\n")
"""


def _default_lock_factory(path: str) -> FileLockLike:
    from medimeta_cli.store.locking import LockFile

    return LockFile(path)


class ChildLock(str, Enum):
    """What the second process of the lock check got (the words ``_CHILD_SCRIPT`` prints)."""

    BUSY = "busy"
    ACQUIRED = "acquired"
    ERROR = "error"
    #: It did not answer within :data:`LOCK_CHILD_TIMEOUT`.
    HUNG = "hung"
    #: Not asked (the lock was not refused to it while held, so asking again tells nothing).
    NOT_TRIED = "not tried"


def _try_in_child(path: Path) -> tuple[ChildLock, str]:
    """What a second process got when it tried the lock, and the error message if any."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD_SCRIPT, str(path)],
            capture_output=True,
            text=True,
            timeout=LOCK_CHILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return ChildLock.HUNG, ""
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        last = proc.stderr.strip().splitlines()
        return ChildLock.ERROR, last[-1] if last else f"exit code {proc.returncode}"
    word, _, message = lines[-1].partition(" ")
    try:
        return ChildLock(word), message.strip()
    except ValueError:  # an answer the script never gives: report it as it came
        return ChildLock.ERROR, lines[-1]


@timed
def check_file_locks(
    root: Path, *, lock_factory: LockFactory | None = None, enabled: bool = True
) -> Check:
    """Take a lock in ``<root>/.medimeta/locks/`` and have a second process contend for it:
    it must be refused while we hold the lock and succeed once we let go. A state folder
    that is a link fails the check and is not followed."""
    name = "file locks"
    factory = lock_factory or _default_lock_factory
    layout = RootLayout(root)
    locks_dir = layout.locks_dir
    off = " (MEDIMETA_LOCKS=0 turns them off anyway)" if not enabled else ""
    linked = _linked_state_folder(name, layout.state_dir, locks_dir)
    if linked is not None:
        return linked
    # Broken locks only matter while they are in use; with MEDIMETA_LOCKS=0 they are not.
    bad: CheckStatus = CheckStatus.FAIL if enabled else CheckStatus.OK
    try:
        with _created_dirs(locks_dir):
            path = locks_dir / f".doctor.{unique_suffix()}.lock"
            try:
                lock = factory(str(path))
                try:
                    lock.acquire(timeout=5.0)
                except LockTimeoutError:
                    return Check(
                        name,
                        CheckStatus.WARN,
                        f"could not take a fresh lock in {locks_dir} within 5 s",
                        _LOCKS_HINT,
                    )
                except OSError as exc:
                    return Check(
                        name,
                        CheckStatus.WARN if enabled else CheckStatus.OK,
                        f"flock is refused in {locks_dir}: {exc}{off}",
                        _LOCKS_HINT if enabled else None,
                    )
                try:
                    while_held, held_error = _try_in_child(path)
                finally:
                    lock.release()
                after, after_error = (
                    _try_in_child(path)
                    if while_held is ChildLock.BUSY
                    else (ChildLock.NOT_TRIED, "")
                )
            finally:
                path.unlink(missing_ok=True)
    except OSError as exc:
        return Check(
            name,
            CheckStatus.SKIP,
            f"cannot create {locks_dir}: {exc.strerror or exc} (see write permission)",
        )
    if while_held is ChildLock.BUSY and after is ChildLock.ACQUIRED:
        return Check(
            name,
            CheckStatus.OK,
            f"a second process waits while the lock is held in {locks_dir}{off}",
        )
    if while_held is ChildLock.ACQUIRED:
        return Check(
            name,
            bad,
            f"a second process took the lock this one holds: locks do not work in {locks_dir}{off}",
            _LOCKS_HINT if enabled else None,
        )
    if ChildLock.HUNG in (while_held, after):
        return Check(
            name,
            bad,
            f"trying the lock hung for {LOCK_CHILD_TIMEOUT:.0f} s in {locks_dir}{off}",
            _LOCKS_HINT if enabled else None,
        )
    if ChildLock.ERROR in (while_held, after):
        problem = held_error if while_held is ChildLock.ERROR else after_error
        return Check(
            name,
            CheckStatus.WARN if enabled else CheckStatus.OK,
            f"flock fails in {locks_dir}: {problem}{off}",
            _LOCKS_HINT if enabled else None,
        )
    return Check(
        name,
        bad,
        f"a released lock stayed taken for a second process in {locks_dir}{off}",
        _LOCKS_HINT if enabled else None,
    )


# ----------------------------------------------------------------------------- shared roots


@timed
def check_shared_roots(shared_roots: Sequence[Path]) -> Check:
    """Each ``MEDIMETA_PATH`` entry: there, readable, and how many datasets it holds."""
    name = "shared roots"
    if not shared_roots:
        return Check(name, CheckStatus.SKIP, "MEDIMETA_PATH is not set")
    parts = []
    problems = []
    for shared in shared_roots:
        if not shared.is_dir():
            parts.append(f"{shared}: missing")
            problems.append(str(shared))
        elif not os.access(shared, os.R_OK | os.X_OK):
            parts.append(f"{shared}: not readable")
            problems.append(str(shared))
        else:
            try:
                count = sum(1 for _ in shared.glob("*/info.yaml"))
            except OSError as exc:
                parts.append(f"{shared}: unreadable ({exc.strerror or exc})")
                problems.append(str(shared))
                continue
            parts.append(f"{shared}: {count} dataset(s)")
    if problems:
        return Check(
            name,
            CheckStatus.WARN,
            "; ".join(parts),
            f"Fix or drop {', '.join(problems)} in MEDIMETA_PATH (entries are separated by "
            f"{os.pathsep!r}).",
        )
    return Check(name, CheckStatus.OK, "; ".join(parts))
