"""The md5 of archives, checked against the record: an integrity check, not security.

Three ways to hash without a second full read where it can be avoided: chunks fed in
order to a second thread while they arrive (:class:`BackgroundHasher`), a local file read
in steps (:func:`hash_file`), and the last bytes of a complete partial file read back in
a thread of its own while extraction starts (:class:`TailHasher`).
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from medimeta_cli.errors import IntegrityError

#: Local files are read in steps of this size (for hashing).
READ_CHUNK = 1024 * 1024


class Digest(Protocol):
    """What the engines need of a hash (hashlib's objects are one)."""

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        """Hash these bytes after those fed before."""

    def hexdigest(self) -> str:
        """The hash of every byte fed."""

    def copy(self) -> Digest:
        """An independent hash of the same bytes so far."""


def new_md5() -> Digest:
    """An md5 for checking archives against the record: an integrity check, not security,
    which lets it run on FIPS systems."""
    return hashlib.md5(usedforsecurity=False)


def hash_file(path: Path, digest: Digest, on_bytes: Callable[[int], None] | None = None) -> int:
    """Feed a file into ``digest``; return its length."""
    done = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return done


class BackgroundHasher:
    """Feeds chunks to a hash in a second thread, so hashing overlaps receiving.

    hashlib releases the GIL for large buffers, so on two cores the md5 costs
    almost no wall time as long as the network is not faster than md5 itself.
    """

    def __init__(self, digest: Digest, depth: int = 32) -> None:
        self.digest = digest
        self._queue: queue.Queue[bytes | bytearray | None] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name="md5", daemon=True)

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self.digest.update(chunk)

    def feed(self, chunk: bytes | bytearray) -> None:
        """Hash this chunk after the ones fed before it."""
        self._queue.put(chunk)

    def __enter__(self) -> BackgroundHasher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # Always drain: the caller reads the digest of exactly what was written.
        self._queue.put(None)
        self._thread.join()


class TailHasher:
    """The md5 of a complete partial file, its last bytes read back and hashed in a thread
    of its own: extraction into staging starts meanwhile, and only the commit waits for
    :meth:`hexdigest` (nothing is visible before the md5 matches).

    With several connections the md5 lags behind the bytes (it needs them in order and
    runs at about 650 MB/s); this hides that lag behind the extraction."""

    def __init__(self, path: Path, digest: Digest, start: int, end: int) -> None:
        self._digest = digest
        self._error: BaseException | None = None
        # Opened here: the thread reads this file even if its name goes meanwhile.
        self._fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        self._thread = threading.Thread(
            target=self._run, args=(start, end), name="md5-tail", daemon=True
        )
        self._thread.start()

    def _run(self, position: int, end: int) -> None:
        try:
            while position < end:
                chunk = os.pread(self._fd, min(READ_CHUNK, end - position), position)
                if not chunk:
                    raise IntegrityError("the partial download shrank while it was hashed")
                self._digest.update(chunk)
                position += len(chunk)
        except BaseException as exc:  # raised by hexdigest()
            self._error = exc
        finally:
            os.close(self._fd)

    def hexdigest(self) -> str:
        """The md5 of the whole file, once hashed."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._digest.hexdigest()
