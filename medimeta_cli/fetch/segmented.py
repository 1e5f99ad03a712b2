"""Segmented transfers: one archive over several HTTP range requests at once.

The archive is cut into a few large contiguous slices, one per connection; when a
connection finishes its slice it takes the largest slice still running and splits it
in two, if that is large enough, so that connections stay busy with few requests (a
1 GB archive takes at most about 16). Bytes go with ``os.pwrite`` to their offsets in
the partial file, which has the archive's size from the start; the state of every
slice is kept in the partial's sidecar (see :mod:`medimeta_cli.store.partials`) every few
MiB or seconds, so that a killed run resumes every slice where it stopped.

The md5 is computed in archive order while slices arrive: whenever the contiguous
prefix of done bytes grows, the new bytes are read back (``os.pread``; the page cache
serves them) and hashed.

Connections are a budget of the whole run (:class:`ConnectionBudget`), shared by every
dataset being fetched and never exceeded. A slice answered with 429, 403 or a broken
connection halves the connections of its transfer, honours ``Retry-After`` and grows
back by one after a quiet while. A server that answers a slice without honouring its
range raises :class:`RangesDropped`: the transfer goes on with a single stream from
the contiguous prefix (:func:`medimeta_cli.fetch.whole.stream_archive`), as it does when
the archive is too small for slices or a single stream left it half done.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from medimeta_cli.catalog.datasets import Dataset
from medimeta_cli.errors import IntegrityError, MedimetaError, NetworkError
from medimeta_cli.events import (
    BytesTransferred,
    Notice,
    Phase,
    PhaseChanged,
    TransferStarted,
)
from medimeta_cli.fetch.answers import Kind, check_zip_start, open_range
from medimeta_cli.fetch.connections import ConnectionBudget, one_connection
from medimeta_cli.fetch.politeness import Politeness, Trouble
from medimeta_cli.fetch.result import ArchiveFile, Fetched, TransferContext
from medimeta_cli.fetch.slices import Slice, SliceTable
from medimeta_cli.fetch.whole import COVERS, StreamStart, resume_stream, stream_archive, verified
from medimeta_cli.fsutil import human_bytes, translate_os_error
from medimeta_cli.hashing import Digest, new_md5
from medimeta_cli.install.commit import Proof
from medimeta_cli.store.partials import Partial, claim_partial, slice_list
from medimeta_cli.zenodo.client import RemoteClient
from medimeta_cli.zenodo.record import ArchiveInfo

logger = logging.getLogger(__name__)

#: The slices' state is saved after this many bytes or seconds.
SAVE_BYTES = 8 * 1024 * 1024
SAVE_SECONDS = 1.0
_HASH_STEP = 1024 * 1024


class RangesDropped(Exception):
    """The server answered a slice without honouring its range: go on in one stream."""


@dataclass
class SegmentedFetch:
    """Fetches the slices of one archive into its partial file, ``budget`` permitting."""

    client: RemoteClient
    info: ArchiveInfo
    partial: Partial
    table: SliceTable
    budget: ConnectionBudget
    on_bytes: Callable[[int], None]
    on_notice: Callable[[str], None]
    should_stop: Callable[[], bool]
    state: dict[str, Any]
    digest: Digest = field(default_factory=new_md5)
    hashed: int = 0
    fd: int = -1
    fetched: int = 0
    requests: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _active: int = 0
    _threads: list[threading.Thread] = field(default_factory=list)
    _error: BaseException | None = None
    _abort: bool = False
    _polite: Politeness | None = None
    _max_requests: int = 0

    def run(self, fd: int) -> None:
        """Fetch every slice; return once all bytes are written (the md5 has caught up
        with what it could while they arrived: :class:`TailHasher` does the rest). Raises
        :class:`RangesDropped` (the caller goes on in one stream), a :class:`MedimetaError`,
        an :class:`OSError` or KeyboardInterrupt, after every worker has stopped and the
        slices' state is saved."""
        self.fd = fd
        self._polite = Politeness(
            self.client, self.info.key, self.budget, "slice", started=time.monotonic()
        )
        # Splits are bounded: the first slices, then at most as many again (a 1 GB archive
        # over 8 connections: at most 16 requests in a run without trouble).
        self._max_requests = len(self.table.slices) + max(4, self.budget.share)
        saved_at, saved_bytes = time.monotonic(), self.fetched
        try:
            while True:
                wait = self._step()
                if wait is None:
                    break
                if wait > 0:
                    self.client.sleep(wait)  # nothing running: wait as the server asked
                self._hash_forward(64 * _HASH_STEP)
                if self.should_stop():
                    raise KeyboardInterrupt
                now = time.monotonic()
                if now - saved_at >= SAVE_SECONDS or self.fetched - saved_bytes >= SAVE_BYTES:
                    self._save()
                    saved_at, saved_bytes = now, self.fetched
        finally:
            with self._cond:
                self._abort = True
            for thread in self._threads:
                thread.join()
            self._save()

    # ---- the manager (the calling thread)

    def _step(self) -> float | None:
        """Start workers as allowed and wait a little; the seconds to sleep when nothing
        runs and the server asked to wait, None once complete. Raises a worker's error."""
        with self._cond:
            if self._error is not None:
                raise self._error
            if self.table.complete() and self._active == 0:
                return None
            now = time.monotonic()
            polite = self._politeness()
            polite.update(now, self.fetched)
            if now < polite.hold_until:
                if self._active == 0:
                    return polite.hold_until - now
            else:
                self._start_workers()
            # Hashing keeps up with the prefix; otherwise wake up for workers or a while.
            self._cond.wait(0.0 if self.table.prefix() > self.hashed else 0.2)
            return 0.0

    def _start_workers(self) -> None:
        while self._active < self._politeness().limit:
            may_split = self.requests < self._max_requests
            if not self.budget.try_acquire():
                return
            piece = self.table.take(self.budget.split_at, may_split)
            if piece is None:
                self.budget.release()
                return
            self._active += 1
            self.requests += 1
            thread = threading.Thread(
                target=self._work, args=(piece,), name=f"slice-{piece.start}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _politeness(self) -> Politeness:
        assert self._polite is not None, "run() sets the politeness up"
        return self._polite

    def _trouble(self, trouble: Trouble) -> None:
        """Fewer connections, a pause as the server asked; give up after the retries when
        nothing moves. Called with the lock held."""
        try:
            message = self._politeness().trouble(trouble, time.monotonic(), self.fetched)
        except NetworkError as error:
            self._error = error
            return
        self.on_notice(message)

    def _hash_forward(self, at_most: int) -> None:
        """Hash the done bytes that follow the hashed ones, in archive order."""
        with self._cond:
            prefix = self.table.prefix()
        stop = min(prefix, self.hashed + at_most)
        while self.hashed < stop:
            chunk = os.pread(self.fd, min(_HASH_STEP, stop - self.hashed), self.hashed)
            if not chunk:
                raise IntegrityError(f"the partial download of {self.info.key} shrank")
            self.digest.update(chunk)
            self.hashed += len(chunk)

    def _save(self) -> None:
        with self._cond:
            slices = self.table.to_json()
        self.partial.save_slices(self.state, slices)

    # ---- the workers

    def _work(self, piece: Slice | None) -> None:
        try:
            while piece is not None:
                self._fetch(piece)
                with self._cond:
                    piece.busy = False
                    piece = None
                    if (
                        self._abort
                        or self._error is not None
                        or self._active > self._politeness().limit
                    ):
                        break
                    if time.monotonic() < self._politeness().hold_until:
                        break
                    may_split = self.requests < self._max_requests
                    piece = self.table.take(self.budget.split_at, may_split)
                    if piece is not None:
                        self.requests += 1
        except Trouble as trouble:
            with self._cond:
                if piece is not None:
                    piece.busy = False
                if self._error is None and not self._abort:
                    self._trouble(trouble)
        except BaseException as exc:  # handed to the manager, which raises it
            with self._cond:
                if piece is not None:
                    piece.busy = False
                if self._error is None:
                    self._error = exc
        finally:
            self.budget.release()
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def _fetch(self, piece: Slice) -> None:
        info = self.info
        try:
            with open_range(
                self.client, info.url, piece.pos, piece.end, total=info.size, retry=False
            ) as answer:
                kind = answer.kind
                if kind is Kind.THROTTLED:
                    if answer.status == 403 and self._alone():
                        raise NetworkError(f"HTTP 403 for {info.url}")
                    raise Trouble(f"HTTP {answer.status}", answer.retry_after)
                if kind in (Kind.WHOLE, Kind.UNSATISFIABLE):
                    raise RangesDropped(f"HTTP {answer.status} for the range from {piece.pos}")
                if kind is Kind.WRONG_RANGE or (kind is Kind.PARTIAL and answer.total is None):
                    got = answer.response.headers.get("content-range")
                    raise RangesDropped(f"unexpected Content-Range {got!r} for bytes {piece.pos}-")
                if kind is not Kind.PARTIAL:
                    raise answer.refuse(info.key, info.url)
                self._receive(answer.response, piece)
        except httpx.TransportError as exc:
            raise Trouble(f"{type(exc).__name__} ({exc})") from exc
        if piece.left:
            raise Trouble("the server closed a slice early")

    def _alone(self) -> bool:
        with self._cond:
            return self._active <= 1

    def _receive(self, response: httpx.Response, piece: Slice) -> None:
        head = piece.pos == 0
        for chunk in response.iter_raw():
            with self._cond:
                if self._abort or self._error is not None:
                    return
                pos, end = piece.pos, piece.end
            if head:
                check_zip_start(chunk, self.info.key)
                head = False
            data = memoryview(chunk)[: max(0, end - pos)]
            written = 0
            while written < len(data):
                written += os.pwrite(self.fd, data[written:], pos + written)
            with self._cond:
                # A split may have moved the end meanwhile: the bytes past it are the
                # archive's bytes all the same, written again by the next slice.
                piece.pos = min(piece.end, pos + written)
                self.fetched += written
            if written:
                self.on_bytes(written)
            if self.should_stop():
                raise KeyboardInterrupt
            if piece.pos >= piece.end:
                return


@dataclass(frozen=True)
class SlicePlan:
    """Where a segmented transfer starts: the sidecar's state, and the slices it recorded
    (None: ``count`` fresh ones)."""

    state: dict[str, Any]
    saved: list[tuple[int, int, int]] | None
    count: int


def fetch_in_slices(
    context: TransferContext,
    dataset_id: str,
    info: ArchiveInfo,
    partial: Partial,
    plan: SlicePlan,
) -> Fetched:
    """Fetch an archive in slices into its partial. Once every slice is done the md5 of the
    last bytes may still be being computed (read back by a :class:`TailHasher`): the
    result's proof is pending and the install's commit waits for it. When the server stops
    honouring ranges, the file is cut at the contiguous prefix, the state dropped, and a
    single stream goes on from there."""
    assert context.budget is not None  # slices are planned only within a budget
    table = (
        SliceTable.restored(info.size, plan.saved)
        if plan.saved
        else SliceTable.fresh(info.size, plan.count)
    )
    resumed_from = table.done()
    try:
        # The state first: a file of the archive's size never lacks the state saying
        # which of its bytes are real.
        partial.save_slices(plan.state, table.to_json())
        fd = partial.open_slices(info.size)
    except OSError as exc:
        raise translate_os_error(exc, f"{info.key} into {partial.folder}") from exc

    def notice(message: str) -> None:
        context.on_event(Notice(dataset_id, message))

    def count(n: int) -> None:
        context.on_event(BytesTransferred(dataset_id, n))

    engine = SegmentedFetch(
        client=context.client,
        info=info,
        partial=partial,
        table=table,
        budget=context.budget,
        on_bytes=count,
        on_notice=notice,
        should_stop=context.should_stop,
        state=plan.state,
    )
    start: StreamStart | None = None
    try:
        engine.fd = fd
        if resumed_from:
            context.on_event(PhaseChanged(dataset_id, Phase.CHECKING_PARTIAL))
            engine._hash_forward(info.size)
            logger.info(
                "resuming %s: %d bytes done in %d slices",
                info.key,
                resumed_from,
                len(table.slices),
            )
            notice(
                f"resuming {info.key} at {human_bytes(resumed_from)} ({len(table.slices)} slices)",
            )
        context.on_event(TransferStarted(dataset_id, total=info.size, done=resumed_from))
        try:
            engine.run(fd)
        except RangesDropped as exc:
            engine._hash_forward(info.size)
            prefix = engine.hashed
            notice(fallback_notice(info.key, prefix, str(exc)))
            logger.info("%s: %s; one stream from byte %d", info.key, exc, prefix)
            partial.keep_prefix(fd, prefix, plan.state)
            start = StreamStart(engine.digest, prefix, resumed_from, engine.fetched)
    except OSError as exc:
        raise translate_os_error(exc, f"{info.key} into {partial.folder}") from exc
    except MedimetaError:
        if table.done() == 0:  # refused before a byte was kept: leave no "partial 0%"
            partial.discard()
        raise
    finally:
        os.close(fd)
    if start is not None:
        with one_connection(context.budget, context.should_stop):
            return stream_archive(context, dataset_id, info, partial, start)
    logger.debug("%s: %d request(s) for %d slices", info.key, engine.requests, len(table.slices))
    tail = partial.hash_tail(engine.digest, engine.hashed, info.size)
    # The md5 of the last bytes is still being computed: extraction may start meanwhile,
    # the install's commit waits for it.
    pending = functools.partial(verified, context, dataset_id, info, partial, tail.hexdigest)
    return Fetched(
        ArchiveFile(partial, info.key), Proof.md5(COVERS, pending), resumed_from, engine.fetched
    )


@dataclass(frozen=True)
class SegmentedTransfer:
    """Downloads a whole archive over several connections of the run's budget; in one
    stream when it is too small for slices, when a single stream left it half done, or
    when the server stops honouring ranges."""

    context: TransferContext

    def fetch(self, dataset: Dataset, info: ArchiveInfo) -> Fetched:
        """Download the archive, resuming what earlier runs left; verify size and md5."""
        context, dataset_id = self.context, dataset.id
        budget = context.budget
        partial = claim_partial(
            context.layout, info, lambda m: context.on_event(Notice(dataset_id, m))
        )
        state = partial.state() or {}
        saved = slice_list(state)
        if "slices" in state and (saved is None or partial.size() != info.size):
            saved = None  # a state that makes no sense, or not its file's: not trusted
            partial.save_slices(state, None)
            partial.restart()
        count = budget.plan(info.size) if budget is not None else 1
        if saved is not None or (count > 1 and partial.resume_offset(info.size) == 0):
            return fetch_in_slices(
                context, dataset_id, info, partial, SlicePlan(state, saved, count)
            )
        with one_connection(budget, context.should_stop):
            return resume_stream(context, dataset_id, info, partial)


def fallback_notice(key: str, prefix: int, reason: str) -> str:
    """What a user is told when a segmented transfer goes on in one stream."""
    return (
        f"the server stopped honouring byte ranges for {key} ({reason}); going on in one "
        f"stream from {human_bytes(prefix)}"
    )
