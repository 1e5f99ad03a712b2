"""Install while downloading: every member of a whole archive straight into a staging folder.

For ``--layout full`` the archive's central directory is read first (as for the hdf5
layout), then the whole archive is requested in archive order, from byte 0 to its end,
and each member is written into the members folder as it arrives, checked against its
size and CRC-32. Every byte that passes (local headers, data, descriptors, gaps, the
central directory) goes into the archive's md5 in order, so the md5 is checked as for a
downloaded archive, but the archive itself never exists on disk: peak disk is the
installed size plus bounded buffers.

The directory that said where members are and what they are named was read ahead, by
range requests outside the hashed stream: it is trusted only once the same bytes came in
the stream (compared when the stream reaches them), and each member's local header in
the stream must agree with its directory entry. Otherwise nothing is installed.

A cut connection resumes at the byte where the md5 stopped (inside a stored member).
Where that is not possible (a deflated member, or a cut inside a local header) the pass
starts again from byte 0 in this run; members written by an earlier run are never
trusted for the md5, so a later run starts afresh too.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from medimeta_cli.catalog.datasets import Dataset
from medimeta_cli.errors import IntegrityError
from medimeta_cli.events import BytesTransferred, Notice, Phase, PhaseChanged, TransferStarted
from medimeta_cli.fetch.answers import RangesUnsupported, open_range
from medimeta_cli.fetch.connections import one_connection
from medimeta_cli.fetch.members import NO_RANGES
from medimeta_cli.fetch.ranged import MemberFetcher, MemberWrite, ResponseBody
from medimeta_cli.fetch.result import Fetched, MembersFolder, TransferContext, TransferUnavailable
from medimeta_cli.fetch.retry import RetryRule
from medimeta_cli.fetch.zipdir import Span, read_listing, remember_sizes, require_partial
from medimeta_cli.fsutil import ensure_space, remove_tree, translate_os_error
from medimeta_cli.hashing import BackgroundHasher, new_md5
from medimeta_cli.install.archive import member_path
from medimeta_cli.install.commit import Proof
from medimeta_cli.store.partials import claim_members_folder, partial_bytes
from medimeta_cli.store.records import FileEntry
from medimeta_cli.zenodo.record import ArchiveInfo

logger = logging.getLogger(__name__)

#: What the check of an install while downloading covers.
COVERS = (
    "the archive's md5 over the stream every member came from, the directory read ahead "
    "equal to the stream's, and each local header equal to its directory entry"
)


class _OrderedMd5:
    """The archive's md5, fed in order, computed in a second thread: hashing overlaps
    receiving and writing members (hashlib releases the GIL for large buffers)."""

    def __init__(self) -> None:
        self._hasher = BackgroundHasher(new_md5())
        self._hasher.__enter__()
        self._running = True

    def update(self, data: bytes | bytearray) -> None:
        """Hash these bytes after those fed before."""
        self._hasher.feed(data)

    def close(self) -> None:
        """Wait for every byte fed to be hashed, and end the thread (once)."""
        if self._running:
            self._running = False
            self._hasher.__exit__(None, None, None)

    def hexdigest(self) -> str:
        """The md5 of every byte fed."""
        self.close()
        return self._hasher.digest.hexdigest()


@dataclass
class _Pass:
    """How far one ordered pass over the archive got: bytes hashed, members done."""

    digest: _OrderedMd5
    hashed: int = 0
    index: int = 0
    current: MemberWrite | None = None
    #: The stream's bytes from the directory's offset on, as they passed (a cut inside the
    #: directory resumes there, so they may come in several requests).
    directory: bytearray = field(default_factory=bytearray)


class _FileMaker:
    """Creates the members' empty files ahead of the pass (``ahead`` of them), in a second
    thread.

    Creating a file is the slowest step of writing a small member (about 0.5 ms each here,
    a third of a pass over an archive of TIFFs); made ahead, the pass only opens it.
    Files it could not make are made by the pass itself, which reports any error."""

    def __init__(self, data: Path, paths: Sequence[str], ahead: int = 64) -> None:
        self._room = threading.Semaphore(ahead)
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(data, paths), name="members", daemon=True
        )
        self._thread.start()

    def _run(self, data: Path, paths: Sequence[str]) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        made: Path | None = None  # the last folder made (members come folder by folder)
        for relative in paths:
            self._room.acquire()
            if self._stopped.is_set():
                return
            target = data / relative
            try:
                if target.parent != made:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    made = target.parent
                os.close(os.open(target, flags, 0o666))
            except OSError:
                continue  # already there, or not possible: left to the pass

    def advance(self) -> None:
        """The pass reached the next member: make room for one more file ahead."""
        self._room.release()

    def stop(self) -> None:
        """End the thread (the files it made stay, for the pass or its clean-up)."""
        self._stopped.set()
        self._room.release()
        self._thread.join()


@dataclass
class StreamedFetcher(MemberFetcher):
    """Fetches all members of an archive in one ordered pass and checks the archive's md5."""

    #: The directory's offset and bytes as read ahead (they must be the stream's).
    directory_offset: int = 0
    directory: bytes = b""

    def fetch_all(self, spans: Sequence[Span]) -> list[FileEntry]:
        """Write every member into :attr:`data`; raise :class:`IntegrityError` unless every
        size, CRC-32, local header, the directory read ahead and the md5 over all the
        archive's bytes match."""
        # Files of an earlier run were not part of this pass's md5: start afresh.
        remove_tree(self.data)
        self.done.clear()
        self.starts.clear()
        self.data.mkdir(parents=True)
        ordered = sorted(spans, key=lambda span: span[1])
        state = _Pass(_OrderedMd5())
        maker = _FileMaker(self.data, [member_path(info) for info, _, _ in ordered])
        try:
            rule = RetryRule(self.client)
            while True:
                before = state.hashed
                try:
                    self._pass(state, ordered, maker)
                    break
                except httpx.TransportError as exc:
                    if not self._can_continue(state, ordered):
                        logger.info(
                            "%s: cut where the md5 cannot continue; again from 0", self.info.key
                        )
                        if state.current is not None:
                            self._restart(state.current)
                        state.digest.close()
                        state = _Pass(_OrderedMd5())
                        self.done.clear()
                    rule.retry(
                        f"transfer of {self.info.key} cut ({exc})",
                        progressed=state.hashed > before,
                        error=exc,
                    )
        finally:
            maker.stop()
            state.digest.close()
        self.check_pass(state)
        return [self.done[member_path(info)] for info, _, _ in spans]

    def check_pass(self, state: _Pass) -> None:
        """The check of a finished pass, before anything is committed: every byte of the
        archive went into the md5, which is the one the record lists, and the directory
        read ahead is the one in those bytes. :class:`IntegrityError` otherwise."""
        if state.hashed != self.info.size or state.digest.hexdigest() != self.info.md5:
            raise IntegrityError(
                f"{self.info.key} does not match the md5 the record lists",
                hint="Run the same command again to fetch it afresh.",
            )
        if state.directory != self.directory:
            raise IntegrityError(
                f"the central directory of {self.info.key} read ahead is not the one in the "
                "archive's md5-checked bytes; nothing was installed",
                hint="The server's answers are not consistent; run the command again, "
                "and report it should it come back.",
            )

    def save_progress(self) -> None:
        """Nothing to record: a later run never takes over a streamed pass (its md5 cannot
        go on), and the folder's name tells its owner (``prune``). Saving after every
        member cost half the time of a pass over an archive of many small files."""

    def _can_continue(self, state: _Pass, ordered: Sequence[Span]) -> bool:
        """Whether the next request can start where the md5 stopped."""
        if state.current is not None:
            return state.current.inflater is None  # deflate state cannot be resumed
        # Between members: fine unless the cut fell inside the next member's local header.
        return state.index >= len(ordered) or state.hashed <= ordered[state.index][1]

    def _pass(self, state: _Pass, ordered: Sequence[Span], maker: _FileMaker) -> None:
        begin = state.hashed
        with open_range(self.client, self.info.url, begin, self.info.size) as answer:
            require_partial(answer.kind, answer.status, self.info.url)
            body = ResponseBody(answer.response.iter_raw(), begin, digest=state.digest.update)
            try:
                while state.index < len(ordered):
                    info, start, _ = ordered[state.index]
                    if state.current is None:
                        state.current = self._open_member(body, info, start)
                        maker.advance()
                    self._copy(body, state.current)
                    self._finish(state.current)
                    state.current = None
                    state.index += 1
                # The central directory and end records: they must be the ones read ahead
                # (told after the md5, which says first whether the stream is the record's).
                body.skip_to(self.directory_offset)
                for piece in body.stream(self.info.size - body.position):
                    state.directory += piece
            finally:
                state.hashed = body.position


@dataclass(frozen=True)
class StreamedTransfer:
    """Installs while downloading: a whole archive's members, md5 checked, no archive file."""

    context: TransferContext

    def fetch(self, dataset: Dataset, info: ArchiveInfo) -> Fetched:
        """Read the directory, then stream every member into a members folder.

        :class:`TransferUnavailable` when a partial archive of an earlier run is worth
        resuming, or the server sends whole files only (nothing is left behind then);
        :class:`IntegrityError` on any mismatch (the members folder is removed).
        """
        context = self.context
        if partial_bytes(context.layout, info.key, info.md5):
            # Bytes an earlier run left are worth more than the disk the archive needs.
            logger.info("%s: a partial archive exists; not installing while downloading", info.key)
            context.on_event(
                Notice(dataset.id, f"resuming the partial {info.key} of an earlier run")
            )
            raise TransferUnavailable(f"resuming the partial {info.key} of an earlier run")
        try:
            with one_connection(context.budget, context.should_stop):
                return self._fetch(dataset, info)
        except RangesUnsupported:
            logger.info("%s: no byte ranges; falling back to the whole archive", info.key)
            raise TransferUnavailable(NO_RANGES, warning=True) from None

    def _fetch(self, dataset: Dataset, info: ArchiveInfo) -> Fetched:
        context = self.context
        context.on_event(PhaseChanged(dataset.id, Phase.READING_DIRECTORY))
        listing, _ = read_listing(context.client, info, dataset)
        remember_sizes(context.layout, info, listing)
        spans = listing.spans(lambda path: True)
        ensure_space(context.layout.root, listing.listing.total_bytes, f"installing {info.key}")
        folder = claim_members_folder(context.layout, info)
        fetched = [0]

        def count(n: int) -> None:
            fetched[0] += n
            context.on_event(BytesTransferred(dataset.id, n))

        fetcher = StreamedFetcher(
            context.client,
            info,
            folder,
            on_bytes=count,
            should_stop=context.should_stop,
            directory_offset=listing.directory_offset,
            directory=listing.directory,
        )
        total = sum(info.compress_size for info, _, _ in spans)
        context.on_event(TransferStarted(dataset.id, total=total, done=0))
        try:
            entries = fetcher.fetch_all(spans)
        except BaseException as exc:
            # Nothing of a stopped pass can be used by a later one (its md5 cannot go on):
            # a full disk, a mismatch or a stop leaves no members behind.
            remove_tree(folder)
            if isinstance(exc, OSError):
                raise translate_os_error(exc, f"{info.key} into {folder}") from exc
            raise
        members = MembersFolder(folder, fetcher.data, entries, resumable=False)
        return Fetched(members, Proof.md5(COVERS), 0, fetched[0])
