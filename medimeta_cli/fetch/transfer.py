"""Resumable, verified HTTP transfers: a whole archive, or the hdf5 layout's members.

A whole archive streams into a partial file this process owns (see
:mod:`medimeta_cli.store.partials`), hashed (md5) while it streams, in a second thread
so that hashing overlaps receiving. A cut transfer goes on with ``Range`` from
where it stopped, within a run and across runs; the server's answer is checked
before a byte is written (resume, restart, an HTML page instead of a zip...), and
size and md5 are checked against the record at the end. The hdf5 layout fetches
only the members the loader reads, with range requests (see
:mod:`medimeta_cli.fetch.ranged`), into a members folder.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from medimeta_cli.catalog.datasets import Dataset
from medimeta_cli.dataset.layouts import ArchiveLayout, sizes_key, wanted_in_layout
from medimeta_cli.errors import IntegrityError, MedimetaError, NetworkError, RemoteDataError
from medimeta_cli.events import (
    BytesTransferred,
    EventSink,
    Notice,
    Phase,
    PhaseChanged,
    TransferStarted,
    ignore,
)
from medimeta_cli.fetch.connections import ConnectionBudget
from medimeta_cli.fetch.ranged import MemberFetcher, RangesUnsupported, RemoteListing, read_listing
from medimeta_cli.fetch.segmented import SliceSink, fetch_in_slices
from medimeta_cli.fsutil import ensure_space, human_bytes, translate_os_error
from medimeta_cli.hashing import BackgroundHasher, new_md5
from medimeta_cli.install.archive import member_path
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.partials import Partial, claim_members_folder, claim_partial, slice_list
from medimeta_cli.store.records import FileEntry, save_archive_sizes
from medimeta_cli.zenodo.client import RemoteClient, content_range
from medimeta_cli.zenodo.record import ArchiveInfo
from medimeta_cli.zenodo.transport import stalled

logger = logging.getLogger(__name__)

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def _once(check: Callable[[], object]) -> Callable[[], None]:
    """``check`` run at most once (from any thread); later calls raise what it raised."""
    outcome: list[BaseException | None] = []
    lock = threading.Lock()

    def run() -> None:
        with lock:
            if not outcome:
                try:
                    check()
                    outcome.append(None)
                except BaseException as exc:  # raised again to every caller
                    outcome.append(exc)
        if outcome[0] is not None:
            raise outcome[0]

    return run


class RangeRefused(httpx.RemoteProtocolError):
    """The server answered a range request with 416: the partial was dropped, start over."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


@dataclass(frozen=True)
class FetchedArchive:
    """A complete archive in a partial file of this process: verified, or with its md5
    still being computed (:meth:`confirm` waits for it)."""

    partial: Partial
    key: str  # the archive's name in the record
    resumed_from: int  # bytes earlier runs had left
    fetched: int  # bytes transferred by this run
    #: Checks size and md5 (discarding the download on a mismatch) when the md5 was still
    #: being computed on return; None when it was checked before.
    check: Callable[[], None] | None = None

    def confirm(self) -> None:
        """Return once the archive is verified; :class:`IntegrityError` (the download
        discarded) if its size or md5 does not match the record. Nothing made of it may
        become visible before this returns."""
        if self.check is not None:
            self.check()

    @property
    def path(self) -> Path:
        """The archive file."""
        return self.partial.part

    def refused(self, error: IntegrityError) -> IntegrityError:
        """Discard an archive the installer refused, and say so without naming the internal
        partial file: kept, it would be refused again from the local copy on every run."""
        self.partial.discard()
        message = error.message.replace(self.path.name, self.key)
        return type(error)(
            f"{message}; the download was discarded",
            hint="Run the same command again to download it afresh; should the same error "
            "come back, the archive on the server is damaged.",
        )


@dataclass
class ArchiveTransfer:
    """Downloads whole archives into the partial folder of one data root."""

    client: RemoteClient
    layout: RootLayout
    on_event: EventSink = ignore
    should_stop: Callable[[], bool] = lambda: False
    #: The run's connections; None: one stream, outside any budget.
    budget: ConnectionBudget | None = None

    def _notice(self, dataset_id: str, message: str) -> None:
        self.on_event(Notice(dataset_id, message))

    def fetch(self, dataset_id: str, info: ArchiveInfo) -> FetchedArchive:
        """Download one archive, resuming what earlier runs left; verify size and md5.

        With a connection budget, an archive large enough goes over several range
        requests at once (:mod:`medimeta_cli.fetch.segmented`); otherwise, and when the server
        stops honouring ranges, in one stream."""
        partial = claim_partial(self.layout, info, lambda m: self._notice(dataset_id, m))
        if self.budget is not None:
            state = partial.state() or {}
            saved = slice_list(state)
            if "slices" in state and (saved is None or partial.size() != info.size):
                saved = None  # a state that makes no sense, or not its file's: not trusted
                partial.save_slices(state, None)
                partial.restart()
            count = self.budget.plan(info.size)
            if saved is not None or (count > 1 and partial.resume_offset(info.size) == 0):
                sink = SliceSink(dataset_id, self.on_event, self.should_stop)
                digest, offset, resumed_from, fetched = fetch_in_slices(
                    self.client, self.budget, info, partial, state, saved, count, sink
                )
                if offset == info.size:
                    # The md5 of the last bytes is still being computed: extraction may
                    # start meanwhile, the install's commit waits for confirm().
                    check = functools.partial(
                        self._verified, dataset_id, info, partial, digest, resumed_from, fetched
                    )
                    return FetchedArchive(
                        partial, info.key, resumed_from, fetched, check=_once(check)
                    )
                with self._connection():
                    return self._stream(
                        dataset_id, info, partial, digest, offset, resumed_from, fetched
                    )
        with self._connection():
            digest = new_md5()
            offset = partial.resume_offset(info.size)
            if offset:
                self.on_event(PhaseChanged(dataset_id, Phase.CHECKING_PARTIAL))
                offset = partial.hash_into(digest)
                logger.info("resuming %s at byte %d (%s)", info.key, offset, partial.part)
                self._notice(dataset_id, f"resuming {info.key} at {human_bytes(offset)}")
            self.on_event(TransferStarted(dataset_id, total=info.size, done=offset))
            return self._stream(dataset_id, info, partial, digest, offset, offset, 0)

    @contextmanager
    def _connection(self) -> Iterator[None]:
        """One connection of the run's budget for as long as a single stream runs."""
        if self.budget is None:
            yield
            return
        self.budget.acquire(self.should_stop)
        try:
            yield
        finally:
            self.budget.release()

    def _stream(
        self,
        dataset_id: str,
        info: ArchiveInfo,
        partial: Partial,
        digest: Any,
        offset: int,
        resumed_from: int,
        fetched: int,
    ) -> FetchedArchive:
        """One stream from ``offset`` (the bytes before it hashed into ``digest``)."""
        part = partial.part
        attempt = 0
        # Every byte received counts, those of attempts cut short included.
        received = [fetched]

        def count(n: int) -> None:
            received[0] += n
            self.on_event(BytesTransferred(dataset_id, n))

        try:
            while offset < info.size or (info.size == 0 and not part.exists()):
                # identity: the bytes hashed must be the archive's, never a proxy's gzip of it.
                headers = {"Accept-Encoding": "identity"}
                if offset:
                    headers["Range"] = f"bytes={offset}-"
                gained = 0
                try:
                    with self.client.stream(info.url, headers) as response:
                        offset, digest = self._check_response(
                            dataset_id, response, info, offset, digest, partial
                        )
                        if offset >= info.size:
                            break
                        gained = self._receive(response, info, partial, offset, digest, count)
                        offset += gained
                    if offset < info.size:
                        raise httpx.RemoteProtocolError("the server closed the transfer early")
                except httpx.TransportError as exc:
                    offset = partial.size()
                    if offset == 0:  # the partial file was dropped: so is what was hashed of it
                        digest = new_md5()
                    # A flaky link that still makes progress should not run out of retries;
                    # a trickle that keeps stalling is no progress.
                    attempt = 1 if gained and not stalled(exc) else attempt + 1
                    self.client.retry_wait(
                        attempt,
                        f"transfer of {info.key} interrupted at {human_bytes(offset)} ({exc})",
                    )
                except OSError as exc:
                    raise translate_os_error(exc, f"{info.key} into {part.parent}") from exc
        except MedimetaError:
            if partial.size() == 0:  # refused before a byte was kept: leave no "partial 0%"
                partial.discard()
            raise
        return self._verified(dataset_id, info, partial, digest, resumed_from, received[0])

    def _verified(
        self,
        dataset_id: str,
        info: ArchiveInfo,
        partial: Partial,
        digest: Any,
        resumed_from: int,
        fetched: int,
    ) -> FetchedArchive:
        """The archive, once its size and md5 match the record (else discarded)."""
        part = partial.part
        self.on_event(PhaseChanged(dataset_id, Phase.VERIFYING))
        actual = digest.hexdigest()
        size = partial.size()
        if size != info.size or actual != info.md5:
            partial.discard()
            raise IntegrityError(
                f"{info.key} does not match the record (md5 {actual}, {size:,} bytes; "
                f"expected md5 {info.md5}, {info.size:,} bytes); the download was discarded",
                hint="Run the same command again to download it afresh.",
            )
        logger.debug("%s verified: %d bytes, md5 %s", part, size, actual)
        return FetchedArchive(partial, info.key, resumed_from, fetched)

    def _check_response(
        self,
        dataset_id: str,
        response: httpx.Response,
        info: ArchiveInfo,
        offset: int,
        digest: Any,
        partial: Partial,
    ) -> tuple[int, Any]:
        """Make sense of the status: resume (206), restart (200) or done (416)."""
        status = response.status_code
        logger.debug("HTTP %d for %s at offset %d", status, info.key, offset)
        if status == 416:
            if offset == info.size:
                return offset, digest
            # The partial cannot be a prefix of the file the server has: start over.
            self._notice(
                dataset_id,
                f"the server refused the byte range of {info.key} (HTTP 416); starting over",
            )
            partial.restart()
            raise RangeRefused(f"the server refused the byte range from {offset} (HTTP 416)")
        if status == 206:
            start, total = content_range(response) or (-1, None)
            if start != offset or (total is not None and total != info.size):
                self._notice(dataset_id, f"unexpected Content-Range for {info.key}; starting over")
                partial.part.unlink(missing_ok=True)
                raise httpx.RemoteProtocolError("mismatched Content-Range")
        elif status == 200:
            if offset:
                self._notice(dataset_id, "the server ignored the range request; starting over")
                offset, digest = partial.restart(), new_md5()
        elif status == 404:
            raise RemoteDataError(
                f"{info.key} was not found at {info.url} (HTTP 404)",
                hint="The record may have changed; check MEDIMETA_BASE_URL and MEDIMETA_RECORD.",
            )
        else:
            raise NetworkError(f"HTTP {status} for {info.url}")
        refuse_non_archive(response, info)
        return offset, digest

    def _receive(
        self,
        response: httpx.Response,
        info: ArchiveInfo,
        partial: Partial,
        offset: int,
        digest: Any,
        count: Callable[[int], None],
    ) -> int:
        """Append the body to the partial file, hashing it as it streams (``count`` told of
        each chunk written); return bytes written."""
        written = 0
        head = b""
        with partial.open_append() as sink, BackgroundHasher(digest) as hasher:
            for chunk in response.iter_raw():
                if offset == 0 and len(head) < 4:
                    head += chunk[:4]
                    if len(head) >= 4 and head[:4] not in _ZIP_MAGIC:
                        raise RemoteDataError(
                            f"the server sent something that is not a zip archive for {info.key} "
                            f"(it starts with {head[:16]!r})"
                        )
                if offset + written + len(chunk) > info.size:
                    raise IntegrityError(
                        f"the server sent more than the {info.size:,} bytes the record lists for "
                        f"{info.key}"
                    )
                sink.write(chunk)
                hasher.feed(chunk)
                written += len(chunk)
                count(len(chunk))
                if self.should_stop():
                    raise KeyboardInterrupt
        return written


def refuse_non_archive(response: httpx.Response, info: ArchiveInfo) -> None:
    """An HTML page or a JSON error instead of a zip is reported as such, not as a bad md5."""
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("text/html", "application/xhtml+xml"):
        raise RemoteDataError(
            f"the server sent an HTML page instead of {info.key} ({info.url})",
            hint="Zenodo may be in maintenance, or a proxy is intercepting; try again later.",
        )
    if content_type in ("application/json", "application/problem+json"):
        body = response.read()[:500].decode("utf-8", "replace")
        raise RemoteDataError(
            f"the server sent a JSON message instead of {info.key}: {body.strip()}",
        )


# ----------------------------------------------------------------------------- the hdf5 layout


def _hdf5_members(with_masks: bool) -> Callable[[str], bool]:
    return functools.partial(wanted_in_layout, layout=ArchiveLayout.HDF5, with_masks=with_masks)


def remember_sizes(layout: RootLayout, info: ArchiveInfo, listing: RemoteListing) -> None:
    """Save both layouts' sizes of this archive version, so ``info`` can show them offline."""
    save_archive_sizes(
        layout,
        info.key,
        info.md5,
        {
            sizes_key(ArchiveLayout.FULL): info.size,
            sizes_key(ArchiveLayout.HDF5): listing.wanted_bytes(_hdf5_members(False)),
            sizes_key(ArchiveLayout.HDF5, with_masks=True): listing.wanted_bytes(
                _hdf5_members(True)
            ),
        },
    )


def listed_hdf5_size(
    client: RemoteClient, layout: RootLayout, dataset: Dataset, info: ArchiveInfo, with_masks: bool
) -> int | None:
    """The hdf5 layout's size, read from the archive's directory (and saved); None when the
    server does not honour byte ranges."""
    try:
        listing, _ = read_listing(client, info, dataset)
    except RangesUnsupported:
        return None
    remember_sizes(layout, info, listing)
    return listing.wanted_bytes(_hdf5_members(with_masks))


@dataclass(frozen=True)
class FetchedMembers:
    """The hdf5 layout's files of one archive, complete and checked, in a members folder."""

    folder: Path  # the claimed members folder; remove it once installed
    data: Path  # the folder that becomes ``<root>/<id>``
    entries: list[FileEntry]
    resumed_from: int  # bytes earlier runs had fetched
    fetched: int  # bytes transferred by this run


@dataclass
class MembersTransfer:
    """Fetches the members the loader reads, with range requests (resumable)."""

    client: RemoteClient
    layout: RootLayout
    on_event: EventSink = ignore
    should_stop: Callable[[], bool] = lambda: False

    def fetch(self, dataset: Dataset, info: ArchiveInfo, *, with_masks: bool) -> FetchedMembers:
        """Read the archive's directory, then fetch every wanted member not fetched yet.

        Raises :class:`RangesUnsupported` when the server sends whole files only.
        """
        self.on_event(PhaseChanged(dataset.id, Phase.READING_DIRECTORY))
        listing, _ = read_listing(self.client, info, dataset)
        spans = listing.spans(_hdf5_members(with_masks))
        remember_sizes(self.layout, info, listing)
        total = sum(end - start for _, start, end in spans)
        ensure_space(self.layout.root, total, f"the hdf5 layout of {info.key}")
        folder = claim_members_folder(self.layout, info)
        fetched = [0]

        def count(n: int) -> None:
            fetched[0] += n
            self.on_event(BytesTransferred(dataset.id, n))

        fetcher = MemberFetcher(
            self.client, info, folder, on_bytes=count, should_stop=self.should_stop
        )
        fetcher.load_progress()
        resumed = sum(end - start for i, start, end in spans if member_path(i) in fetcher.done)
        if resumed:
            logger.info("resuming the members of %s: %d of %d bytes done", info.key, resumed, total)
        self.on_event(TransferStarted(dataset.id, total=total, done=resumed))
        try:
            entries = fetcher.fetch(spans)
        except OSError as exc:
            raise translate_os_error(exc, f"{info.key} into {folder}") from exc
        return FetchedMembers(folder, fetcher.data, entries, resumed, fetched[0])
