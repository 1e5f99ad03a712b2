"""The default install of a whole archive: fetched in pieces over several connections and
installed while it downloads, the archive never on disk, and a killed run resumed.

The archive's directory is read first; then a :class:`~medimeta_cli.fetch.pieces.PieceWindow`
fetches consecutive pieces over the run's connections, and the ordered pass of
:mod:`medimeta_cli.fetch.streamed` (its member writer and every check: sizes, CRC-32s,
local headers against the directory, the directory read ahead against the stream's, the
md5 over every byte) consumes the contiguous front as it advances. Peak disk is the
installed size plus the window's spill files (:func:`~medimeta_cli.fetch.window.window_bytes`).

Resume. An md5 cannot be saved, but the bytes it covered can be found again: a stored
member's data is the installed file itself, and every other byte the pass consumed (local
headers, deflated data, descriptors, gaps) is appended to a journal beside the members.
Every 16 MiB or second, at a member boundary or inside a stored member, the pass records
its checkpoint (offset, member, journal length, where each stored member's data lies).
A later run re-hashes the journal and the stored files up to the checkpoint from the local
disk (about a second per GB), truncates what came after it, and goes on fetching from
there, taking over the pieces the killed run left in spill files. A kill costs at most the
bytes between the last checkpoint and the front, plus the pieces in flight not yet
written. Nothing becomes visible before the md5 over every byte matches (the commit rule:
:mod:`medimeta_cli.install.commit`); a resumed pass that does not match installs nothing,
and its folder is removed.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from io import BufferedWriter
from itertools import islice
from pathlib import Path
from typing import Any

import httpx

from medimeta_cli.catalog.datasets import Dataset
from medimeta_cli.errors import NetworkError, RemoteDataError
from medimeta_cli.events import BytesTransferred, Notice, Phase, PhaseChanged, TransferStarted
from medimeta_cli.fetch.answers import RangesUnsupported
from medimeta_cli.fetch.connections import ConnectionBudget, one_connection
from medimeta_cli.fetch.member_writes import MemberWrites
from medimeta_cli.fetch.members import NO_RANGES
from medimeta_cli.fetch.pieces import PieceWindow
from medimeta_cli.fetch.ranged import MemberWrite, ResponseBody
from medimeta_cli.fetch.result import Fetched, MembersFolder, TransferContext, TransferUnavailable
from medimeta_cli.fetch.streamed import COVERS, StreamedFetcher, _FileMaker, _OrderedMd5, _Pass
from medimeta_cli.fetch.window import WINDOW_FROM, piece_size, window_bytes
from medimeta_cli.fetch.zipdir import Span, read_listing, remember_sizes
from medimeta_cli.fsutil import (
    atomic_write_bytes,
    ensure_space,
    human_bytes,
    read_regular_file,
    remove_tree,
    translate_os_error,
)
from medimeta_cli.hashing import READ_CHUNK
from medimeta_cli.install.archive import HashedWriter, member_path
from medimeta_cli.install.commit import Proof
from medimeta_cli.store.ownership import owner_stamp
from medimeta_cli.store.partials import (
    SPILL_FOLDER,
    claim_members_folder,
    own_regular,
    partial_bytes,
    read_state_json,
    spill_ahead,
)
from medimeta_cli.zenodo.record import ArchiveInfo

logger = logging.getLogger(__name__)

#: A checkpoint after this many bytes of the pass, or seconds, whichever comes first.
CHECKPOINT_BYTES = 16 * 1024 * 1024
CHECKPOINT_SECONDS = 1.0
JOURNAL = "stream.journal"
DONE_LOG = "stream.done"
SPILL = SPILL_FOLDER

#: A hole in the journal: a stored member's data, ``length`` bytes at ``offset`` of the
#: archive, which are the first bytes of the file ``path``.
Hole = tuple[int, int, str]


def _hashed(chunks: Iterator[bytes], digest: _OrderedMd5) -> Iterator[bytes]:
    """The window's chunks, each into the md5 as it comes out: the archive's bytes from the
    pass's start in order, as the pass consumes them. The pass succeeds only once it has
    consumed the last chunk, so the md5 then covers every byte, as when it was fed the
    pieces the pass parsed (headers of a few bytes, a member's data); whole chunks of a
    MiB are fewer steps and hash without holding the GIL."""
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


class _OpenedLater(HashedWriter):
    """A member's writer whose file is made in the writing thread (:meth:`open`, queued
    before its first write): making a file is the slowest step of a small member, and
    the pass only reads headers and hands data on meanwhile."""

    def __init__(self, target: Path, relative: str) -> None:
        super().__init__(target, relative, open_now=False, made_ahead=True)

    def open(self) -> None:
        """Make the file (a link planted there is removed, never followed)."""
        try:
            super().open()
        except OSError as exc:
            if exc.errno != errno.ELOOP or not self.target.is_symlink():
                raise
            self.target.unlink()
            super().open()


@dataclass
class WindowedFetcher(StreamedFetcher):
    """The ordered pass of :class:`StreamedFetcher` over a window of pieces, with
    checkpoints a later run resumes from."""

    budget: ConnectionBudget | None = None
    piece: int = 0
    #: Told what the window does about throttling (fewer connections, a pause).
    on_notice: Callable[[str], None] = lambda message: None
    #: Bytes fetched over the network by this run.
    fetched: int = 0
    #: Where the pass resumed (bytes re-hashed from disk), and the bytes earlier runs left
    #: ahead of it in spill files.
    resumed: int = 0
    _holes: list[Hole] = field(default_factory=list)
    _journal: BufferedWriter | None = None
    _done_log: BufferedWriter | None = None
    _logged: int = 0  # members of :attr:`done` in the done log
    _journal_length: int = 0
    _raw: bool = True
    _checked_at: tuple[int, float] = (0, 0.0)
    _window: PieceWindow | None = None
    _state: _Pass | None = None
    _writes: MemberWrites | None = None

    @property
    def journal_path(self) -> Path:
        """Every byte of the pass that no stored member's file holds, in order."""
        return self.folder / JOURNAL

    @property
    def done_log_path(self) -> Path:
        """The members done, a JSON line each, appended at every checkpoint (a checkpoint
        names the length it counts on): an archive of 100,000 files is not listed again
        every 16 MiB."""
        return self.folder / DONE_LOG

    def prepare(self, spans: Sequence[Span]) -> _Pass:
        """The state to start from: a fresh pass, or an earlier run's checkpoint with the
        md5 of its bytes re-hashed from disk."""
        ordered = sorted(spans, key=lambda span: span[1])
        state = None
        try:
            state = self._from_checkpoint(ordered)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.info(
                "%s: the checkpoint cannot be used (%s); starting afresh", self.info.key, exc
            )
        if state is None:
            remove_tree(self.data)
            remove_tree(self.folder / SPILL)
            self.done.clear()
            self._holes.clear()
            self.data.mkdir(parents=True)
            self.journal_path.unlink(missing_ok=True)
            self.done_log_path.unlink(missing_ok=True)
            state = _Pass(_OrderedMd5())
        # Never through a link (the claimed folder was checked for none; this stays so).
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
        self._journal = open(os.open(self.journal_path, flags, 0o600), "ab")  # noqa: SIM115
        self._journal_length = self._journal.tell()
        self._done_log = open(os.open(self.done_log_path, flags, 0o600), "ab")  # noqa: SIM115
        self._logged = len(self.done)
        self._state = state
        self.resumed = state.hashed
        self._checkpoint(state, state.hashed, state.current, force=True)
        return state

    def fetch_all(self, spans: Sequence[Span]) -> list[Any]:
        """Write every member into :attr:`data` from where :meth:`prepare` left off; raise
        :class:`IntegrityError` unless every check of the streamed pass passes."""
        state = self._state if self._state is not None else self.prepare(spans)
        ordered = sorted(spans, key=lambda span: span[1])
        paths = [member_path(i) for i, _, _ in ordered[state.index :]]
        maker = _FileMaker(self.data, paths, ahead=len(paths))
        self._writes = MemberWrites()
        try:
            self._pass(state, ordered, maker)
        finally:
            self._writes.stop()
            maker.stop()
            state.digest.close()
            if self._window is not None:
                self._window.close()
            for log in (self._journal, self._done_log):
                if log is not None:
                    log.close()
        self.check_pass(state)
        return [self.done[member_path(info)] for info, _, _ in spans]

    # ---- the pass

    def _consume(self, data: bytes | bytearray) -> None:
        """Every byte of the pass, in order: into the journal unless it is a stored
        member's data (its file holds it)."""
        assert self._journal is not None
        if self._raw:
            self._journal.write(data)
            self._journal_length += len(data)

    def _pass(self, state: _Pass, ordered: Sequence[Span], maker: _FileMaker) -> None:
        assert self.budget is not None
        self._window = window = PieceWindow(
            self.client,
            self.info,
            self.folder / SPILL,
            state.hashed,
            self.piece,
            self.budget,
            should_stop=self.should_stop,
            on_bytes=self.on_bytes,
            on_notice=self.on_notice,
        )
        body = ResponseBody(
            _hashed(window.chunks(), state.digest), state.hashed, digest=self._consume
        )
        try:
            while state.index < len(ordered):
                info, start, _ = ordered[state.index]
                if state.current is None:
                    state.current = self._open_member(body, info, start)
                    maker.advance()
                self._copy(body, state.current)
                self._later(partial(self._finish, state.current))
                if state.current.inflater is None:
                    self._holes.append(
                        (state.current.data_start, info.compress_size, member_path(info))
                    )
                state.current = None
                state.index += 1
                self._checkpoint(state, body.position)
            self._drained()  # every member's size and CRC-32 checked
            body.skip_to(self.directory_offset)
            for piece in body.stream(self.info.size - body.position):
                state.directory += piece
            # Every byte passed: the spill files go before the install's commit (a kill
            # from here on costs the bytes after the last checkpoint).
            window.release(self.info.size)
        finally:
            state.hashed = body.position
            self.fetched = window.fetched

    def _copy(self, body: ResponseBody, member: MemberWrite) -> None:
        stored = member.inflater is None
        self._raw = not stored
        try:
            for chunk in body.stream(member.info.compress_size - member.consumed):
                member.consumed += len(chunk)
                data = member.inflater.decompress(chunk) if member.inflater else chunk
                self._write(member, data)
                if self.should_stop():
                    self._drained()
                    member.writer.close()
                    raise KeyboardInterrupt
                if stored and self._state is not None:
                    self._checkpoint(self._state, body.position, member)
            if member.inflater is not None:
                self._write(member, member.inflater.flush())
        finally:
            self._raw = True

    def _write(self, member: MemberWrite, data: bytes) -> None:
        if self._writes is None:
            member.writer.write(data)
        else:
            self._writes.write(member.writer, data)

    def _drained(self) -> None:
        if self._writes is not None:
            self._writes.drain()

    def _later(self, step: Callable[[], object]) -> None:
        """Run ``step`` in the writes' thread after the writes given so far."""
        if self._writes is None:
            step()
        else:
            self._writes.call(step)

    def _writer(self, relative: str) -> HashedWriter:
        if self._writes is None:
            return super()._writer(relative)
        writer = _OpenedLater(self.data / relative, relative)
        self._writes.call(writer.open)
        return writer

    def _open_member(self, body: ResponseBody, info: zipfile.ZipInfo, start: int) -> MemberWrite:
        member = super()._open_member(body, info, start)
        self.starts.pop(member.writer.relative, None)  # resumed from the checkpoint instead
        return member

    # ---- checkpoints

    def _checkpoint(
        self, state: _Pass, position: int, member: MemberWrite | None = None, *, force: bool = False
    ) -> None:
        """Record where a later run can go on: at a member boundary (``member`` None) or
        inside a stored member, every byte before ``position`` in the journal or a file."""
        now = time.monotonic()
        at, when = self._checked_at
        if not force and position - at < CHECKPOINT_BYTES and now - when < CHECKPOINT_SECONDS:
            return
        self._checked_at = (position, now)
        assert self._journal is not None
        self._journal.flush()
        holes = list(self._holes)
        current = None
        if member is not None:
            holes.append((member.data_start, member.consumed, member.writer.relative))
            current = member.writer.relative
        window = {
            "hashed": position,
            "index": state.index,
            "journal": self._journal_length,
            "holes": holes,
            "current": current,
            "piece": self.piece,
        }
        # Saved once the writes before it are done: the files hold what it counts on.
        self._later(partial(self._save_checkpoint, window, member))

    def _save_checkpoint(self, window: dict[str, Any], member: MemberWrite | None) -> None:
        if member is not None:
            member.writer.flush()
        window = {**window, "done": self._log_done()}
        text = json.dumps(
            {
                "key": self.info.key,
                "md5": self.info.md5,
                "size": self.info.size,
                **owner_stamp(),
                "window": window,
            }
        )
        # Renamed into place but not synced: a kill leaves the page cache, which holds the
        # members' bytes it counts on (not synced either); after a power loss, the md5 of
        # the bytes re-hashed from disk, or a checkpoint that cannot be read, starts the
        # pass afresh, never wrong. Syncing it took dozens of fsyncs per GB.
        atomic_write_bytes(self.progress_path, text.encode(), durable=False)
        if self._window is not None:
            self._window.release(int(window["hashed"]))

    def _log_done(self) -> int:
        """Append the members done since the last checkpoint to the done log; its length."""
        assert self._done_log is not None
        # The newest entries, from the end: not a copy of every entry at each checkpoint.
        new = len(self.done) - self._logged
        entries = list(islice(reversed(self.done.values()), new))[::-1]
        for entry in entries:
            line = [entry.path, entry.size, entry.mtime_ns, list(entry.sha256)]
            self._done_log.write(json.dumps(line).encode() + b"\n")
        self._logged += len(entries)
        self._done_log.flush()
        return self._done_log.tell()

    def _load_done_log(self, length: int) -> None:
        """Take over the members the done log lists in its first ``length`` bytes (those a
        checkpoint counts on; what a killed run appended after it is cut off)."""
        os.truncate(self.done_log_path, length)
        raw = read_regular_file(self.done_log_path)
        if raw is None or len(raw) != length:
            raise ValueError("the done log is not the one of the checkpoint")
        for line in raw.splitlines():
            self.take_over(json.loads(line))

    def _from_checkpoint(self, ordered: Sequence[Span]) -> _Pass | None:
        """The pass an earlier run's checkpoint describes, its md5 re-hashed from the
        journal and the stored members' files; None when there is none to go on with."""
        saved = read_state_json(self.progress_path)
        if saved is None or "window" not in saved or not self.data.is_dir():
            return None
        window = saved["window"]
        if int(window["piece"]) != self.piece:
            return None
        hashed, index, journal = int(window["hashed"]), int(window["index"]), int(window["journal"])
        holes: list[Hole] = [(int(a), int(n), str(p)) for a, n, p in window["holes"]]
        current = window["current"]
        self._load_done_log(int(window["done"]))
        paths = [member_path(info) for info, _, _ in ordered]
        if index > len(paths) or any(p not in self.done for p in paths[:index]):
            return None  # a member the checkpoint counts on changed since
        if current is not None and (
            index >= len(paths)
            or current != paths[index]
            or ordered[index][0].compress_type != zipfile.ZIP_STORED
        ):
            return None
        os.truncate(self.journal_path, journal)
        self._clear_after(set(paths[:index]) | ({current} if current else set()))
        state = _Pass(_OrderedMd5())
        try:
            self._rehash(state, holes, hashed)
        except BaseException:
            state.digest.close()
            raise
        state.hashed, state.index = hashed, index
        if current is not None:
            info = ordered[index][0]
            target = self.data / current
            start, consumed, _ = holes[-1]
            os.truncate(target, consumed)
            writer = HashedWriter(target, current, append=True)
            state.current = MemberWrite(info, writer, start, consumed=writer.written)
            holes = holes[:-1]
        self._holes = holes
        logger.info("%s: resuming the pass at byte %d (re-hashed from disk)", self.info.key, hashed)
        return state

    def _rehash(self, state: _Pass, holes: list[Hole], hashed: int) -> None:
        """Feed the md5 every byte before ``hashed``: from the journal, and from the stored
        members' files where their data lies."""
        position = 0
        with open(os.open(self.journal_path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as journal:

            def from_journal(count: int) -> None:
                while count > 0:
                    chunk = journal.read(min(READ_CHUNK, count))
                    if not chunk:
                        raise ValueError("the journal is shorter than its checkpoint")
                    state.digest.update(chunk)
                    count -= len(chunk)

            for offset, length, path in holes:
                from_journal(offset - position)
                fd = os.open(self.data / path, os.O_RDONLY | os.O_NOFOLLOW)
                with open(fd, "rb") as handle:
                    if not own_regular(os.fstat(handle.fileno())):
                        raise ValueError(f"{path} is not a file of this run")
                    left = length
                    while left > 0:
                        chunk = handle.read(min(READ_CHUNK, left))
                        if not chunk:
                            raise ValueError(f"{path} is shorter than its checkpoint")
                        state.digest.update(chunk)
                        left -= len(chunk)
                position = offset + length
            from_journal(hashed - position)
            if journal.read(1):
                raise ValueError("the journal is longer than its checkpoint")

    def _clear_after(self, keep: set[str]) -> None:
        """Remove what the pass wrote after the checkpoint (and anything else in the members
        folder): the pass writes those members again."""
        for dirpath, dirnames, filenames in os.walk(self.data, topdown=False):
            base = Path(dirpath)
            for name in filenames + [d for d in dirnames if (base / d).is_symlink()]:
                relative = (base / name).relative_to(self.data).as_posix()
                if relative not in keep:
                    (base / name).unlink()


@dataclass(frozen=True)
class WindowedTransfer:
    """Installs while downloading over several connections: the default for whole archives."""

    context: TransferContext
    #: Archives smaller than this are left to the archive transfers.
    window_from: int = WINDOW_FROM

    def fetch(self, dataset: Dataset, info: ArchiveInfo) -> Fetched:
        """Read the directory, then install every member from a window of pieces, resuming
        an earlier run's pass.

        :class:`TransferUnavailable` without a connection budget, when a partial archive of
        an earlier run is worth resuming, or when the server sends whole files only;
        :class:`IntegrityError` on any mismatch (the members folder is removed).
        """
        context = self.context
        if context.budget is None:
            raise TransferUnavailable("no connection budget: one stream")
        if info.size < self.window_from:
            raise TransferUnavailable(f"{info.key} is small: fetched as an archive")
        if partial_bytes(context.layout, info.key, info.md5):
            context.on_event(
                Notice(dataset.id, f"resuming the partial {info.key} of an earlier run")
            )
            raise TransferUnavailable(f"resuming the partial {info.key} of an earlier run")
        try:
            return self._fetch(dataset, info, context.budget)
        except RangesUnsupported:
            logger.info("%s: no byte ranges; falling back to the whole archive", info.key)
            raise TransferUnavailable(NO_RANGES, warning=True) from None

    def _fetch(self, dataset: Dataset, info: ArchiveInfo, budget: ConnectionBudget) -> Fetched:
        context = self.context
        context.on_event(PhaseChanged(dataset.id, Phase.READING_DIRECTORY))
        with one_connection(budget, context.should_stop):
            listing, _ = read_listing(context.client, info, dataset)
        remember_sizes(context.layout, info, listing)
        spans = listing.spans(lambda path: True)
        folder = claim_members_folder(context.layout, info)

        def count(n: int) -> None:
            context.on_event(BytesTransferred(dataset.id, n))

        fetcher = WindowedFetcher(
            context.client,
            info,
            folder,
            on_bytes=count,
            should_stop=context.should_stop,
            directory_offset=listing.directory_offset,
            directory=listing.directory,
            budget=budget,
            piece=piece_size(info.size, budget),
            on_notice=lambda message: context.on_event(Notice(dataset.id, message)),
        )
        try:
            if fetcher.progress_path.exists():
                context.on_event(PhaseChanged(dataset.id, Phase.CHECKING_PARTIAL))
            fetcher.prepare(spans)
            # The bar starts at the checkpoint plus the pieces an earlier run left ahead of
            # it: the pass reads those from disk, and no byte of them is counted again.
            done = fetcher.resumed + spill_ahead(folder / SPILL, fetcher.resumed)
            # Room for the members still to come and the window's spill files.
            left = max(0, listing.listing.total_bytes - sum(e.size for e in fetcher.done.values()))
            ensure_space(
                context.layout.root,
                left + window_bytes(info.size, budget),
                f"installing {info.key}",
            )
            if done:
                context.on_event(Notice(dataset.id, f"resuming {info.key} at {human_bytes(done)}"))
            context.on_event(TransferStarted(dataset.id, total=info.size, done=done))
            entries = fetcher.fetch_all(spans)
        except BaseException as exc:
            # A stop or a network fault keeps the checkpoint for a later run; a mismatch, a
            # full disk or anything else leaves nothing behind.
            kept = isinstance(exc, (KeyboardInterrupt, NetworkError, httpx.HTTPError))
            if not kept or isinstance(exc, RemoteDataError):
                remove_tree(folder)
            if isinstance(exc, OSError):
                raise translate_os_error(exc, f"{info.key} into {folder}") from exc
            raise
        members = MembersFolder(folder, fetcher.data, entries, resumable=False)
        return Fetched(members, Proof.md5(COVERS), fetcher.resumed, fetcher.fetched)
