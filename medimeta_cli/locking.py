"""One inter-process lock per dataset, and file modes that follow the umask."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from medimeta_cli.errors import LockTimeoutError
from medimeta_cli.fsutil import utc_now
from medimeta_cli.layout import RootLayout
from medimeta_cli.ownership import owner_stamp

logger = logging.getLogger(__name__)


@dataclass
class DatasetLock:
    """An exclusive, inter-process lock on one dataset of one data root.

    Built on ``flock`` (via filelock), which the kernel releases when a process
    dies, so locks of killed jobs never go stale. The holder writes who it is
    next to the lock so that waiters can say whom they wait for. Correctness
    never depends on the lock: on file systems where locks do not work, jobs
    may download twice but still install atomically.
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
            owner = json.loads(self.owner_path.read_bytes())
            return f"pid {owner['pid']} on {owner['host']} since {owner['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for the duration of the ``with`` block."""
        if not self.enabled:
            yield
            return
        from filelock import FileLock, Timeout

        self.layout.locks_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path), mode=lock_file_mode())
        deadline = time.monotonic() + self.timeout
        announced = False
        locked = True
        while True:
            try:
                lock.acquire(timeout=self.poll_interval)
                break
            except Timeout:
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
            except OSError as exc:  # after Timeout, which is an OSError too
                # Some network file systems refuse flock outright. Going on unlocked is
                # safe (unique temporary names, atomic renames); it may only cost bandwidth.
                if self.on_wait is not None:
                    self.on_wait(
                        f"file locks do not work in {self.path.parent} ({exc}); "
                        "going on without a lock"
                    )
                locked = False
                break
        if not locked:
            yield
            return
        try:
            from medimeta_cli.fsutil import atomic_write_text

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

    filelock applies an explicit mode with ``fchmod`` (past the umask) and, in versions
    before 3.15, used ``0o644`` otherwise; passing the umask-filtered mode gives the same,
    group-usable result with every version.
    """
    return 0o666 & ~current_umask()
