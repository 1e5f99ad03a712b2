"""Install while downloading: every member of a whole archive straight into a staging folder.

For ``--layout full`` the archive's central directory is read first (as for the hdf5
layout), then the whole archive is requested in archive order, from byte 0 to its end,
and each member is written into the members folder as it arrives, checked against its
size and CRC-32. Every byte that passes (local headers, data, descriptors, gaps, the
central directory) goes into the archive's md5 in order, so the md5 is checked as for a
downloaded archive, but the archive itself never exists on disk: peak disk is the
installed size plus bounded buffers.

A cut connection resumes at the byte where the md5 stopped (inside a stored member).
Where that is not possible (a deflated member, or a cut inside a local header) the pass
starts again from byte 0 in this run; members written by an earlier run are never
trusted for the md5, so a later run starts afresh too.
"""

from __future__ import annotations

import logging
import os
import threading
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from medimeta_cli.catalog.datasets import Dataset
from medimeta_cli.errors import IntegrityError
from medimeta_cli.events import BytesTransferred, EventSink, Phase, PhaseChanged, TransferStarted
from medimeta_cli.fetch.ranged import (
    MemberFetcher,
    MemberWrite,
    ResponseBody,
    check_partial,
    read_listing,
)
from medimeta_cli.fetch.transfer import FetchedMembers, remember_sizes
from medimeta_cli.fsutil import ensure_space, remove_tree, translate_os_error
from medimeta_cli.hashing import BackgroundHasher, new_md5
from medimeta_cli.install.archive import member_path
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.partials import claim_members_folder
from medimeta_cli.store.records import FileEntry
from medimeta_cli.zenodo.client import RemoteClient
from medimeta_cli.zenodo.record import ArchiveInfo
from medimeta_cli.zenodo.transport import stalled

logger = logging.getLogger(__name__)

Span = tuple[zipfile.ZipInfo, int, int]


class _OrderedMd5:
    """The archive's md5, fed in order, computed in a second thread: hashing overlaps
    receiving and writing members (hashlib releases the GIL for large buffers)."""

    def __init__(self) -> None:
        self._hasher = BackgroundHasher(new_md5())
        self._hasher.__enter__()
        self._running = True

    def update(self, data: bytes) -> None:
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
        return str(self._hasher.digest.hexdigest())


@dataclass
class _Pass:
    """How far one ordered pass over the archive got: bytes hashed, members done."""

    digest: _OrderedMd5
    hashed: int = 0
    index: int = 0
    current: MemberWrite | None = None


class _FileMaker:
    """Creates the members' empty files a little ahead of the pass, in a second thread.

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
        for relative in paths:
            self._room.acquire()
            if self._stopped.is_set():
                return
            target = data / relative
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
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

    def fetch_all(self, spans: Sequence[Span]) -> list[FileEntry]:
        """Write every member into :attr:`data`; raise :class:`IntegrityError` unless every
        size, CRC-32 and the md5 over all the archive's bytes match."""
        # Files of an earlier run were not part of this pass's md5: start afresh.
        remove_tree(self.data)
        self.done.clear()
        self.starts.clear()
        self.data.mkdir(parents=True)
        ordered = sorted(spans, key=lambda span: span[1])
        state = _Pass(_OrderedMd5())
        maker = _FileMaker(self.data, [member_path(info) for info, _, _ in ordered])
        try:
            attempt = 0
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
                    attempt = 1 if state.hashed > before and not stalled(exc) else attempt + 1
                    self.client.retry_wait(attempt, f"transfer of {self.info.key} cut ({exc})")
        finally:
            maker.stop()
            state.digest.close()
        if state.hashed != self.info.size or state.digest.hexdigest() != self.info.md5:
            raise IntegrityError(
                f"{self.info.key} does not match the md5 the record lists",
                hint="Run the same command again to fetch it afresh.",
            )
        return [self.done[member_path(info)] for info, _, _ in spans]

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
        headers = {"Range": f"bytes={begin}-{self.info.size - 1}", "Accept-Encoding": "identity"}
        with self.client.stream(self.info.url, headers) as response:
            check_partial(response, begin)
            body = ResponseBody(response.iter_raw(), begin, digest=state.digest)
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
                body.skip_to(self.info.size)  # the central directory and end records
            finally:
                state.hashed = body.position


@dataclass
class StreamedTransfer:
    """Installs while downloading: a whole archive's members, md5 checked, no archive file."""

    client: RemoteClient
    layout: RootLayout
    on_event: EventSink
    should_stop: Callable[[], bool] = lambda: False

    def fetch(self, dataset: Dataset, info: ArchiveInfo) -> FetchedMembers:
        """Read the directory, then stream every member into a members folder.

        Raises ``RangesUnsupported`` (:mod:`medimeta_cli.fetch.ranged`) when the server sends whole
        files only (nothing is left behind then), :class:`IntegrityError` on any mismatch
        (the members folder is removed).
        """
        self.on_event(PhaseChanged(dataset.id, Phase.READING_DIRECTORY))
        listing, _ = read_listing(self.client, info, dataset)
        remember_sizes(self.layout, info, listing)
        spans = listing.spans(lambda path: True)
        ensure_space(self.layout.root, listing.listing.total_bytes, f"installing {info.key}")
        folder = claim_members_folder(self.layout, info)
        fetched = [0]

        def count(n: int) -> None:
            fetched[0] += n
            self.on_event(BytesTransferred(dataset.id, n))

        fetcher = StreamedFetcher(
            self.client, info, folder, on_bytes=count, should_stop=self.should_stop
        )
        total = sum(info.compress_size for info, _, _ in spans)
        self.on_event(TransferStarted(dataset.id, total=total, done=0))
        try:
            entries = fetcher.fetch_all(spans)
        except BaseException as exc:
            # Nothing of a stopped pass can be used by a later one (its md5 cannot go on):
            # a full disk, a mismatch or a stop leaves no members behind.
            remove_tree(folder)
            if isinstance(exc, OSError):
                raise translate_os_error(exc, f"{info.key} into {folder}") from exc
            raise
        return FetchedMembers(folder, fetcher.data, entries, 0, fetched[0])
