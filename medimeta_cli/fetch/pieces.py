"""A sliding window of pieces: several connections fetch consecutive pieces of one archive,
and the archive's bytes come out in order, as the contiguous front advances.

The archive is cut on a fixed grid of pieces
(:func:`~medimeta_cli.fetch.window.piece_size`: about 50 MiB in whole rounds over the
connections, so at most 20 requests per GB). Connections take the next pieces in
archive order, never more than the window ahead of the front (the piece being read): one
piece per connection plus one; with several connections, one that ends its piece starts
the next at once.

The front piece goes from its connection to the pass through memory: at most
:data:`FRONT_MEMORY` bytes of it wait there, and its connection waits for the pass beyond
that (it cannot go faster than the pass reads anyway). A piece ahead of the front is
written to a spill file of its own in the transfer's folder as it arrives, and read back
(from the page cache) when the front reaches it; once it is the front, its later bytes
come through memory too. The piece right behind a front that has arrived waits to become
the front instead (the pass reaches it within :data:`FRONT_MEMORY` bytes). A spill file
therefore always holds its piece's bytes from the piece's start (or the pass's), so a
later run can take it over; it is deleted once the pass's next checkpoint is past it.
So the disk holds at most the window's pieces, ``(connections + 2) * piece`` bytes
(:func:`~medimeta_cli.fetch.window.window_bytes`), the buffer the install's disk check
counts, and a kill loses at most the front's bytes in memory besides what the last
checkpoint did not cover.

Pieces left by a killed run are taken over (their spill files hold the archive's bytes
from the piece's start; the md5 over the whole pass says whether they are right).

Politeness is :mod:`medimeta_cli.fetch.segmented`'s: the run's connection budget, the
first connection measured alone (a fast one stays alone), half the connections on 429,
403 or a cut, as long as the server asks, and one more after a quiet while. A piece
answered without its range (200, 416, a wrong ``Content-Range``) is asked again; when
that goes on, :class:`~medimeta_cli.fetch.answers.RangesUnsupported` ends the window (the
job falls back to fetching the archive).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from medimeta_cli.errors import NetworkError
from medimeta_cli.fetch.answers import Kind, RangesUnsupported, open_range
from medimeta_cli.fetch.connections import ConnectionBudget
from medimeta_cli.fetch.politeness import Politeness, Trouble
from medimeta_cli.zenodo.client import RemoteClient
from medimeta_cli.zenodo.record import ArchiveInfo

logger = logging.getLogger(__name__)

#: The pass takes the front's bytes in steps of this size.
_READ_STEP = 1024 * 1024
#: Pieces answered without their range this many times in a row: the server has none.
_DROPS_ALLOWED = 3
#: Bytes of the front piece waiting in memory for the pass, at most (then its connection
#: waits): what a kill loses besides the bytes after the last checkpoint.
FRONT_MEMORY = 8 * 1024 * 1024


@dataclass
class _Piece:
    """Bytes ``start`` to ``end`` of the archive; fetched up to ``pos``, read up to ``read``.
    Its spill file holds the archive's bytes from ``start`` to ``spilled`` (a hole before
    ``read`` when the pass began inside it); ``memory`` holds those from ``spilled`` (or
    ``read``, once the pass is past ``spilled``) to ``pos``, ``in_memory`` bytes."""

    start: int
    end: int
    pos: int
    read: int
    path: Path
    spilled: int = 0
    memory: deque[bytes] = field(default_factory=deque)
    in_memory: int = 0
    fd: int = -1
    busy: bool = False


class PieceWindow:
    """The archive's bytes from ``begin`` on, in order, fetched in pieces over several
    connections of ``budget`` (see the module's docstring). Use :meth:`chunks` once, then
    :meth:`close`."""

    def __init__(
        self,
        client: RemoteClient,
        info: ArchiveInfo,
        spill: Path,
        begin: int,
        piece: int,
        budget: ConnectionBudget,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        on_bytes: Callable[[int], None] = lambda n: None,
        on_notice: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.client, self.info, self.budget = client, info, budget
        self.should_stop, self.on_bytes, self.on_notice = should_stop, on_bytes, on_notice
        spill.mkdir(parents=True, exist_ok=True)
        self.spill = spill
        self.pieces: list[_Piece] = []
        for start in range(begin - begin % piece, info.size, piece):
            end = min(info.size, start + piece)
            first = max(start, begin)
            self.pieces.append(_Piece(start, end, first, first, spill / f"{start}", first))
        self._take_over(spill)
        #: Bytes this window fetched, those it wrote to spill files, and requests it made.
        self.fetched = 0
        self.spilled = 0
        self.requests = 0
        self.front = 0
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._active = 0
        self._error: BaseException | None = None
        self._abort = False
        self._polite = Politeness(client, info.key, budget, "piece", started=time.monotonic())
        self._drops = 0

    def _take_over(self, spill: Path) -> None:
        """Go on with the spill files of an earlier run: each holds its piece's bytes from
        the piece's start (checked by the md5 like every other byte)."""
        known = {piece.path.name for piece in self.pieces}
        for found in spill.iterdir():
            if found.name not in known or found.is_symlink() or not found.is_file():
                found.unlink(missing_ok=True)  # not a piece of this pass
        for piece in self.pieces:
            try:
                length = os.lstat(piece.path).st_size
            except FileNotFoundError:
                continue
            if piece.start + length > piece.end:
                piece.path.unlink()
                continue
            if piece.start + length > piece.pos:
                piece.pos = piece.spilled = piece.start + length
            self._open(piece)

    @property
    def kept(self) -> int:
        """Bytes ahead of the pass that earlier runs left in spill files."""
        return sum(piece.pos - piece.read for piece in self.pieces)

    def _open(self, piece: _Piece) -> None:
        if piece.fd < 0:
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
            piece.fd = os.open(piece.path, flags, 0o600)

    # ---- the pass's side

    def chunks(self) -> Iterator[bytes]:
        """The archive's bytes from ``begin`` to its end, in order. Raises a worker's error,
        :class:`RangesUnsupported`, or KeyboardInterrupt when the run stops."""
        while self.front < len(self.pieces):
            piece = self.pieces[self.front]
            with self._cond:
                while piece.pos <= piece.read:
                    if self._error is not None:
                        raise self._error
                    if self.should_stop():
                        raise KeyboardInterrupt
                    self._schedule()
                    self._cond.wait(0.2)
            if piece.read < piece.spilled:
                step = min(_READ_STEP, piece.spilled - piece.read)
                data = os.pread(piece.fd, step, piece.read - piece.start)
                if not data:  # pragma: no cover - the file holds what spilled says
                    raise OSError(f"spill file {piece.path} shrank")
            else:
                with self._cond:
                    data = piece.memory.popleft()
                    piece.in_memory -= len(data)
                    self._cond.notify_all()  # room for the front's connection
            piece.read += len(data)
            if piece.read >= piece.end:
                with self._cond:
                    if piece.fd >= 0:
                        os.close(piece.fd)
                        piece.fd = -1
                    self.front += 1
                    self._schedule()
                    self._cond.notify_all()  # the next piece's connection waits for this
            yield data

    def release(self, upto: int) -> None:
        """Delete the spill files of pieces read before ``upto``: a checkpoint there was
        saved, so a later run no longer needs them (until then a kill costs none of them).
        Called from the thread that saves checkpoints, while the pass reads on (pieces
        before the front are closed)."""
        with self._cond:
            read = self.pieces[: self.front]
        for piece in read:
            if piece.end <= upto:
                piece.path.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop every connection and close the spill files (they stay, for a later run)."""
        with self._cond:
            self._abort = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()
        logger.debug(
            "%s: %d bytes fetched in %d requests, %d of them through spill files",
            self.info.key,
            self.fetched,
            self.requests,
            self.spilled,
        )
        for piece in self.pieces:
            if piece.fd >= 0:
                os.close(piece.fd)
                piece.fd = -1

    # ---- scheduling (with the lock held)

    def _schedule(self, *, wait: bool = True) -> None:
        """Start connections on the next pieces of the window the politeness rule allows;
        ``wait`` for the budget when none is running (the front must move)."""
        if self._abort or self._error is not None:
            return
        now = time.monotonic()
        self._polite.update(now, self.fetched)
        if now < self._polite.hold_until:
            return
        window_end = self.front + self._polite.limit + 1
        for piece in self.pieces[self.front : window_end]:
            if self._active >= self._polite.limit:
                return
            if piece.busy or piece.pos >= piece.end:
                continue
            if self._active == 0 and wait:
                # The front must move: wait for a connection of the run's budget.
                self._cond.release()
                try:
                    self.budget.acquire(self.should_stop)
                finally:
                    self._cond.acquire()
            elif not self.budget.try_acquire():
                return
            piece.busy = True
            self._active += 1
            self.requests += 1
            thread = threading.Thread(
                target=self._work, args=(piece,), name=f"piece-{piece.start}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _trouble(self, trouble: Trouble) -> None:
        try:
            message = self._polite.trouble(trouble, time.monotonic(), self.fetched)
        except NetworkError as error:
            self._error = error
            return
        self.on_notice(message)

    # ---- the connections

    def _work(self, piece: _Piece) -> None:
        try:
            self._fetch(piece)
        except Trouble as trouble:
            with self._cond:
                if self._error is None and not self._abort:
                    self._trouble(trouble)
        except BaseException as exc:  # handed to the pass, which raises it
            with self._cond:
                if self._error is None:
                    self._error = exc
        finally:
            self.budget.release()
            with self._cond:
                piece.busy = False
                self._active -= 1
                # With several connections, the next piece at once, not when the pass next
                # looks: it may be reading finished pieces from their spill files for a
                # while. One connection waits for the pass (starting early measured slower).
                if self._polite.limit > 1:
                    self._schedule(wait=False)
                self._cond.notify_all()

    def _fetch(self, piece: _Piece) -> None:
        info = self.info
        try:
            with open_range(
                self.client, info.url, piece.pos, piece.end, total=info.size, retry=False
            ) as answer:
                kind = answer.kind
                if kind is Kind.THROTTLED:
                    raise Trouble(f"HTTP {answer.status}", answer.retry_after)
                if kind in (Kind.WHOLE, Kind.UNSATISFIABLE, Kind.WRONG_RANGE) or (
                    kind is Kind.PARTIAL and answer.total is None
                ):
                    with self._cond:
                        self._drops += 1
                        if self._drops >= _DROPS_ALLOWED:
                            raise RangesUnsupported(
                                f"the server stopped honouring byte ranges for {info.key}"
                            )
                    raise Trouble(f"HTTP {answer.status} without the range from {piece.pos}")
                if kind is not Kind.PARTIAL:
                    raise answer.refuse(info.key, info.url)
                self._receive(answer.response, piece)
        except httpx.TransportError as exc:
            raise Trouble(f"{type(exc).__name__} ({exc})") from exc
        if piece.pos < piece.end and not self._abort:
            raise Trouble("the server closed a piece early")

    def _receive(self, response: httpx.Response, piece: _Piece) -> None:
        for chunk in response.iter_raw():
            if self._abort:
                return
            data = chunk if len(chunk) <= piece.end - piece.pos else chunk[: piece.end - piece.pos]
            with self._cond:
                in_memory = self._to_memory(piece, data)
            if not in_memory:
                self._spill(piece, data)
                with self._cond:
                    self._received(piece, len(data))
                    piece.spilled = piece.pos
            self.on_bytes(len(data))
            if piece.pos >= piece.end:
                return

    def _received(self, piece: _Piece, count: int) -> None:
        piece.pos += count
        self.fetched += count
        self._drops = 0
        self._cond.notify_all()

    def _to_memory(self, piece: _Piece, data: bytes) -> bool:
        """With the lock held: hand ``data`` to the pass through memory if ``piece`` is the
        front, waiting while :data:`FRONT_MEMORY` bytes of it wait there (or, right behind
        a front about to end, until it is the front); False when it is further ahead (its
        bytes are spilled) or the window closes."""
        while not self._abort:
            if piece is self.pieces[self.front]:
                if piece.in_memory < FRONT_MEMORY:
                    piece.memory.append(data)
                    piece.in_memory += len(data)
                    self._received(piece, len(data))
                    return True
            elif not self._next_soon(piece):
                return False
            self._cond.wait(0.2)
        return False

    def _next_soon(self, piece: _Piece) -> bool:
        """Whether ``piece`` comes right after a front that has arrived and that the pass
        is at most :data:`FRONT_MEMORY` bytes from finishing: it is about to be the front,
        so its connection waits for that rather than spilling what the pass reads next."""
        front = self.pieces[self.front]
        return (
            self.front + 1 < len(self.pieces)
            and piece is self.pieces[self.front + 1]
            and front.pos >= front.end
            and front.end - front.read <= FRONT_MEMORY
        )

    def _spill(self, piece: _Piece, data: bytes) -> None:
        """Write ``data`` to the piece's spill file, after the bytes it holds."""
        self.spilled += len(data)
        self._open(piece)
        view = memoryview(data)
        written = 0
        while written < len(view):
            at = piece.pos - piece.start + written
            written += os.pwrite(piece.fd, view[written:], at)
