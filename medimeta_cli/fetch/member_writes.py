"""The members' writes of an ordered pass, in two threads of their own: one hashes each
member's data (its size, CRC-32 and block SHA-256s), the next writes it to the member's
file and runs the steps that end a member and save checkpoints.

The pass only reads the front and hands data on. hashlib and zlib release the GIL for
large buffers, and so do the file writes, so on two cores the hashes, the writes and the
pass's own md5 overlap instead of waiting for one another.

Every item goes through both threads in the order the pass gave it, so a step (making a
member's file, the checks that end it, a checkpoint) sees exactly the writes and hashes
given before it. The first error stops every later step; :meth:`MemberWrites.drain` waits
for every step and raises it.

The queue is bounded by the bytes it holds, not by its steps: an archive of small
members queues three steps per member, and a bound of a few steps would make the pass
wait for every few files.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from medimeta_cli.install.archive import HashedWriter

#: Members' bytes queued for the two threads at most.
WRITES_QUEUED = 32 * 1024 * 1024

_Step = Callable[[Any], object]
#: The hashing thread's step, the writing thread's step, their argument, its bytes.
_Item = tuple[_Step | None, _Step | None, Any, int]


def _nothing(argument: object) -> None:
    """A step with nothing to do in one of the threads."""


class MemberWrites:
    """Hashes, then writes, the members' data in order, in two threads (see the module)."""

    def __init__(self, depth: int = WRITES_QUEUED) -> None:
        self._hashing: deque[_Item | None] = deque()
        self._writing: deque[_Item | None] = deque()
        self._depth = depth
        self._held = 0  # bytes queued, being hashed or being written
        self._cond = threading.Condition()
        self._error: BaseException | None = None
        self._threads = [
            threading.Thread(target=self._run_hashes, name="members-hash", daemon=True),
            threading.Thread(target=self._run_writes, name="members-write", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _run_step(self, step: _Step | None, argument: object) -> None:
        try:
            if step is not None and self._error is None:
                step(argument)
        except BaseException as exc:  # raised by the pass at its next write or drain
            with self._cond:
                if self._error is None:
                    self._error = exc

    def _first(self, steps: deque[_Item | None]) -> _Item | None:
        """The first item of ``steps``, once there is one (it stays there until done)."""
        with self._cond:
            while not steps:
                self._cond.wait()
            return steps[0]

    def _run_hashes(self) -> None:
        while True:
            item = self._first(self._hashing)
            if item is not None:
                self._run_step(item[0], item[2])
            with self._cond:
                self._hashing.popleft()
                self._writing.append(item)
                self._cond.notify_all()
            if item is None:
                return

    def _run_writes(self) -> None:
        while True:
            item = self._first(self._writing)
            if item is None:
                return
            self._run_step(item[1], item[2])
            with self._cond:
                self._writing.popleft()
                self._held -= item[3]
                self._cond.notify_all()

    def _put(self, item: _Item | None) -> None:
        with self._cond:
            size = item[3] if item is not None else 0
            while self._held and self._held + size > self._depth and self._error is None:
                self._cond.wait()
            self._hashing.append(item)
            self._held += size
            self._cond.notify_all()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, writer: HashedWriter, data: bytes) -> None:
        """Append ``data`` to ``writer`` (hashed, then stored) after what was given before."""
        self._raise_error()
        self._put((writer.hash, writer.store, data, len(data)))

    def call(self, step: Callable[[], object]) -> None:
        """Run ``step`` in the writing thread after every write and step given before."""
        self._raise_error()
        self._put((_nothing, lambda _: step(), None, 0))

    def drain(self) -> None:
        """Wait for every write given so far; raise the first one's error."""
        with self._cond:
            while self._hashing or self._writing:
                self._cond.wait()
        self._raise_error()

    def stop(self) -> None:
        """End the threads once every write is done (errors are left to :meth:`drain`)."""
        self._put(None)
        for thread in self._threads:
            thread.join()
