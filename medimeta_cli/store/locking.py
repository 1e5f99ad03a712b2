"""One inter-process lock per dataset, and file modes that follow the umask."""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from medimeta_cli.errors import LinkRefusedError, LockTimeoutError
from medimeta_cli.fsutil import (
    atomic_write_text,
    read_regular_file,
    require_real_folders,
    utc_now,
)
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.ownership import owner_stamp

logger = logging.getLogger(__name__)


#: How often a waiting job tries the lock again (seconds).
_RETRY_SECONDS = 0.05
_OPEN_FLAGS = (
    os.O_CREAT
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NONBLOCK", 0)  # a planted FIFO must not block the open
)


class LockFile:
    """One lock file, opened without following a link and locked with ``flock``.

    The file is created with :func:`lock_file_mode` and never truncated or re-moded, so
    nothing but an empty regular file of this tool's is ever touched: a link in its place
    (which could point at anyone's file) raises :class:`LinkRefusedError`, as does anything
    that is not a regular file. The kernel releases the lock when the process dies.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def _open(self) -> int:
        try:
            try:
                fd = os.open(self.path, os.O_RDWR | _OPEN_FLAGS, lock_file_mode())
            except PermissionError:  # another member's lock file in a shared root
                fd = os.open(self.path, os.O_RDONLY | _OPEN_FLAGS)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise LinkRefusedError(
                    f"the lock file {self.path} is a symbolic link; it is never followed"
                ) from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise LinkRefusedError(f"the lock file {self.path} is not a regular file")
        return fd

    def try_acquire(self) -> bool:
        """Take the lock if no process holds it: True when taken, False when it is held.

        Raises :class:`OSError` where ``flock`` does not work, :class:`LinkRefusedError`
        for a link or a non-regular file in the lock file's place.
        """
        if self._fd is not None:
            return True
        import fcntl

        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            # `prune` deletes a free lock file while holding it: a lock taken on a file
            # that is no longer the one at the path locks nothing. Take the new one.
            try:
                current = os.lstat(self.path)
            except FileNotFoundError:
                current = None
            if current is not None and os.path.samestat(os.fstat(fd), current):
                self._fd = fd
                return True
            os.close(fd)

    def acquire(self, timeout: float) -> None:
        """Take the lock, waiting at most ``timeout`` seconds (:class:`LockTimeoutError`)."""
        deadline = time.monotonic() + timeout
        while not self.try_acquire():
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockTimeoutError(f"the lock {self.path} is held by another process")
            time.sleep(min(_RETRY_SECONDS, left))

    def release(self) -> None:
        """Give the lock back (closing the file releases it)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def grab_free_lock(path: Path) -> int | None:
    """Open a lock file without following a link and ``flock`` it without waiting: the
    descriptor when no process holds it, None when one does or when that cannot be told
    (a link, a non-regular file, no flock here), so such a lock is never deleted."""
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
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


@dataclass
class DatasetLock:
    """An exclusive, inter-process lock on one dataset of one data root.

    Built on ``flock`` (:class:`LockFile`), which the kernel releases when a process
    dies, so locks of killed jobs never go stale. The holder writes who it is
    next to the lock so that waiters can say whom they wait for. Correctness
    never depends on the lock: on file systems where locks do not work, jobs
    may download twice but still install atomically. A lock file, or a state folder on
    the way to it, that is a link is refused (:class:`LinkRefusedError`), never followed.
    """

    layout: RootLayout
    name: str
    timeout: float
    on_wait: Callable[[str], None] | None = None
    enabled: bool = True
    poll_interval: float = 0.5
    should_stop: Callable[[], bool] | None = None

    @property
    def path(self) -> Path:
        """The lock file."""
        return self.layout.locks_dir / f"{self.name}.lock"

    @property
    def owner_path(self) -> Path:
        """Who holds the lock: pid, host and since when."""
        return self.layout.locks_dir / f"{self.name}.owner.json"

    def holder(self) -> str:
        """A description of the current holder, for messages."""
        try:
            owner = json.loads(read_regular_file(self.owner_path) or b"")
            return f"pid {owner['pid']} on {owner['host']} since {owner['since']}"
        except (ValueError, KeyError, TypeError):
            return "another process"

    def _acquire(self, lock: LockFile) -> bool:
        """Wait for the lock as configured: True when held, False when locks do not work."""
        deadline = time.monotonic() + self.timeout
        announced = False
        while True:
            try:
                lock.acquire(timeout=self.poll_interval)
                return True
            except LockTimeoutError:
                if self.should_stop is not None and self.should_stop():
                    raise KeyboardInterrupt from None
                if not announced:
                    logger.info("waiting for the lock %s, held by %s", self.path, self.holder())
                    if self.on_wait is not None:
                        self.on_wait(f"waiting for {self.name}: locked by {self.holder()}")
                    announced = True
                if time.monotonic() >= deadline:
                    raise LockTimeoutError(
                        f"gave up after {self.timeout:.0f} s waiting for the lock on "
                        f"{self.name}, held by {self.holder()}"
                    ) from None
            except (OSError, ImportError) as exc:
                # Some network file systems refuse flock outright (and some systems have
                # none). Going on unlocked is safe (unique temporary names, atomic renames);
                # it may only cost bandwidth.
                if self.on_wait is not None:
                    self.on_wait(
                        f"file locks do not work in {self.path.parent} ({exc}); "
                        "going on without a lock"
                    )
                return False

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for the duration of the ``with`` block."""
        if not self.enabled:
            yield
            return
        require_real_folders([self.layout.state_dir, self.layout.locks_dir])
        self.layout.locks_dir.mkdir(parents=True, exist_ok=True)
        lock = LockFile(self.path)
        if not self._acquire(lock):
            yield
            return
        try:
            # Written under a unique name and renamed over the note: a link planted in
            # its place is replaced, never written through.
            atomic_write_text(
                self.owner_path,
                json.dumps({**owner_stamp(), "since": utc_now()}),
            )
            yield
        finally:
            self.owner_path.unlink(missing_ok=True)
            lock.release()


def current_umask() -> int:
    """The umask of this process, read without changing it where ``/proc`` tells it.

    Elsewhere it is swapped out and back for a moment, through the stricter ``077`` so
    that a file another thread creates meanwhile is never more open than it should be.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def lock_file_mode() -> int:
    """The mode for lock files: ``0o666`` less the umask, as ``open`` would create them.

    :class:`LockFile` creates lock files with it and never changes the mode of an
    existing one, so lock files in a group-writable root stay usable by the group.
    """
    return 0o666 & ~current_umask()
