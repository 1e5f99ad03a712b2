"""Fetch only some members of a remote zip archive, with HTTP range requests.

Upstream archives store every image twice: in ``images.hdf5`` and as TIFF files.
The official loader reads the HDF5, so ``--layout hdf5`` fetches only what it
reads. The zip's end records and central directory come first (one or two
ranged reads); then each wanted member's bytes, with neighbouring members merged
into one request so that few requests are made (Zenodo allows about 60 a minute).
Every member is checked against the size and CRC-32 of the central directory
while it streams. A cut transfer resumes inside the member it cut (stored
members, which is how large files are kept), within a run and across runs.
"""

from __future__ import annotations

import io
import json
import logging
import os
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from medimeta_cli.catalog.datasets import Dataset
from medimeta_cli.errors import IntegrityError, RemoteDataError
from medimeta_cli.fsutil import atomic_write_text
from medimeta_cli.install.archive import (
    ArchiveListing,
    HashedWriter,
    check_members,
    member_path,
)
from medimeta_cli.store.ownership import owner_stamp
from medimeta_cli.store.partials import PROGRESS_FILE, own_regular, read_state_json
from medimeta_cli.store.records import FileEntry
from medimeta_cli.zenodo.client import RemoteClient, content_range
from medimeta_cli.zenodo.record import ArchiveInfo
from medimeta_cli.zenodo.transport import stalled

logger = logging.getLogger(__name__)

#: Wanted members closer than this are fetched in one request (the gap is read and dropped).
MERGE_GAP = 1024 * 1024
#: Enough for the end-of-central-directory records, zip64 ones included, and a short comment.
_TAIL = 64 * 1024 + 22 + 20 + 56
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
#: Members larger than this record where their data starts, so a later run can resume them.
_RESUMABLE = 1024 * 1024


class RangesUnsupported(RemoteDataError):
    """The server answered a range request with the whole file."""


class _MissingRange(Exception):
    def __init__(self, start: int, end: int) -> None:
        super().__init__(start, end)
        self.start, self.end = start, end


class _SparseArchive(io.RawIOBase):
    """A zip file of which only some byte ranges are known; reading elsewhere raises
    :class:`_MissingRange`, so the caller can fetch that range and try again."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.position = 0
        self.pieces: list[tuple[int, bytes]] = []

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def read(self, size: int | None = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self.position + size)
        for start, data in self.pieces:
            if start <= self.position and end <= start + len(data):
                chunk = data[self.position - start : end - start]
                self.position = end
                return chunk
        raise _MissingRange(self.position, end)


@dataclass(frozen=True)
class RemoteListing:
    """The validated central directory of a remote archive."""

    listing: ArchiveListing
    directory_offset: int

    def spans(self, wanted: Callable[[str], bool]) -> list[tuple[zipfile.ZipInfo, int, int]]:
        """Wanted file members with the byte range each occupies (local header to next member)."""
        members = sorted(self.listing.members, key=lambda info: info.header_offset)
        ends = [info.header_offset for info in members[1:]] + [self.directory_offset]
        return [
            (info, info.header_offset, end)
            for info, end in zip(members, ends, strict=True)
            if not info.is_dir() and member_path(info) and wanted(member_path(info))
        ]

    def wanted_bytes(self, wanted: Callable[[str], bool]) -> int:
        """How many bytes of the archive the wanted members take."""
        return sum(end - start for _, start, end in self.spans(wanted))


def fetch_range(client: RemoteClient, url: str, start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` of a remote file; :class:`RangesUnsupported` if the server
    sends the whole file instead."""
    headers = {"Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity"}
    attempt = 0
    while True:
        try:
            with client.stream(url, headers) as response:
                check_partial(response, start)
                return response.read()
        except httpx.TransportError as exc:
            attempt += 1
            logger.debug("range %d-%d of %s failed: %s", start, end - 1, url, exc)
            client.retry_wait(attempt, f"range request to {url} failed ({exc})")


def check_partial(response: httpx.Response, start: int) -> None:
    """Refuse an answer that is not the 206 for a range starting at ``start``."""
    if response.status_code == 200:
        raise RangesUnsupported("the server does not honour byte ranges")
    if response.status_code != 206:
        raise RemoteDataError(f"HTTP {response.status_code} for a range of {response.url}")
    found = content_range(response)
    if found is None or found[0] != start:
        raise RemoteDataError(f"the server sent the wrong range of {response.url}")


def read_listing(
    client: RemoteClient, info: ArchiveInfo, dataset: Dataset
) -> tuple[RemoteListing, int]:
    """Read and validate the central directory of a remote archive; return it and the
    number of requests that took."""
    sparse = _SparseArchive(info.size)
    start = max(0, info.size - _TAIL)
    sparse.pieces.append((start, fetch_range(client, info.url, start, info.size)))
    requests = 1
    while True:
        try:
            with zipfile.ZipFile(sparse) as archive:
                members = archive.infolist()
                directory_offset = archive.start_dir
            break
        except _MissingRange as missing:
            if requests >= 4:
                raise IntegrityError(f"{info.key} has an unreadable central directory") from None
            sparse.pieces.append(
                (missing.start, fetch_range(client, info.url, missing.start, missing.end))
            )
            requests += 1
        except zipfile.BadZipFile as exc:
            raise IntegrityError(f"{info.key} is not a readable zip archive: {exc}") from exc
    listing = check_members(members, dataset, archive_size=info.size, name=info.key)
    return RemoteListing(listing, directory_offset), requests


# ----------------------------------------------------------------------------- fetching


@dataclass
class ResponseBody:
    """A response body read from a known absolute offset."""

    chunks: Iterator[bytes]
    position: int
    buffer: bytearray = field(default_factory=bytearray)
    #: When set, every byte consumed (taken, skipped or streamed) goes into it, in order.
    digest: Any = None

    def _more(self) -> None:
        chunk = next(self.chunks, None)
        if chunk is None:
            raise httpx.RemoteProtocolError("the range ended early")
        self.buffer += chunk

    def take(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self._more()
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        self.position += count
        if self.digest is not None:
            self.digest.update(data)
        return data

    def skip_to(self, offset: int) -> None:
        while self.position < offset:
            if not self.buffer:
                self._more()
            drop = min(len(self.buffer), offset - self.position)
            if self.digest is not None:
                self.digest.update(self.buffer[:drop])
            del self.buffer[:drop]
            self.position += drop

    def stream(self, count: int) -> Iterator[bytes]:
        while count > 0:
            if not self.buffer:
                self._more()
            piece = bytes(self.buffer[:count])
            if self.digest is not None:
                self.digest.update(piece)
            del self.buffer[: len(piece)]
            self.position += len(piece)
            count -= len(piece)
            yield piece


@dataclass
class MemberWrite:
    """A member being written: where its data starts and how much of it has arrived."""

    info: zipfile.ZipInfo
    writer: HashedWriter
    data_start: int
    consumed: int = 0
    inflater: Any = None


@dataclass
class MemberFetcher:
    """Fetches wanted members of one archive into a staging folder (resumable)."""

    client: RemoteClient
    info: ArchiveInfo
    folder: Path  # <partial>/<key>.members.<uniq>; files go to folder/"data"
    on_bytes: Callable[[int], None] = lambda count: None
    should_stop: Callable[[], bool] = lambda: False
    done: dict[str, FileEntry] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        """The folder that becomes ``<root>/<id>``."""
        return self.folder / "data"

    @property
    def progress_path(self) -> Path:
        """What finished, and where large members' data starts (for a later run)."""
        return self.folder / PROGRESS_FILE

    def save_progress(self) -> None:
        """Record progress so that another run can pick up where this one stopped."""
        atomic_write_text(
            self.progress_path,
            json.dumps(
                {
                    "key": self.info.key,
                    "md5": self.info.md5,
                    "size": self.info.size,
                    **owner_stamp(),
                    "done": {
                        path: [e.size, e.mtime_ns, list(e.sha256)] for path, e in self.done.items()
                    },
                    "starts": self.starts,
                }
            ),
        )

    def load_progress(self) -> None:
        """Take over what an earlier run finished, dropping files that changed since.

        Nothing is followed through a link: only regular files of this user count as done.
        """
        data = read_state_json(self.progress_path)
        if data is None:
            return
        for path, (size, mtime, hashes) in data.get("done", {}).items():
            try:
                found = os.lstat(self.data / path)
            except OSError:
                continue
            if own_regular(found) and (found.st_size, found.st_mtime_ns) == (size, mtime):
                self.done[path] = FileEntry(path, size, mtime, tuple(hashes))
        self.starts = {k: int(v) for k, v in data.get("starts", {}).items()}

    def fetch(self, spans: Sequence[tuple[zipfile.ZipInfo, int, int]]) -> list[FileEntry]:
        """Fetch every span not done yet; return the entries of all wanted files."""
        self.data.mkdir(parents=True, exist_ok=True)
        todo = [span for span in spans if member_path(span[0]) not in self.done]
        for run in _runs(todo):
            self._fetch_run(run)
        return [self.done[member_path(info)] for info, _, _ in spans]

    def _fetch_run(self, run: list[tuple[zipfile.ZipInfo, int, int]]) -> None:
        index = 0
        current: MemberWrite | None = None
        attempt = 0
        while index < len(run):
            info, start, _ = run[index]
            current = current or self._resume(info)
            begin = current.data_start + current.consumed if current else start
            end = run[-1][2]
            headers = {"Range": f"bytes={begin}-{end - 1}", "Accept-Encoding": "identity"}
            before = sum(m.writer.written for m in [current] if m) + len(self.done)
            if current is not None and current.consumed:
                logger.info(
                    "resuming %s of %s at byte %d of its data",
                    current.writer.relative,
                    self.info.key,
                    current.consumed,
                )
            try:
                with self.client.stream(self.info.url, headers) as response:
                    check_partial(response, begin)
                    body = ResponseBody(response.iter_raw(), begin)
                    while index < len(run):
                        info, start, _ = run[index]
                        if current is None:
                            current = self._open_member(body, info, start)
                        self._copy(body, current)
                        self._finish(current)
                        current = None
                        index += 1
            except httpx.TransportError as exc:
                if current is not None and current.inflater is not None:
                    self._restart(current)  # deflate state cannot be resumed
                    current = None
                progressed = sum(m.writer.written for m in [current] if m) + len(self.done)
                attempt = 1 if progressed > before and not stalled(exc) else attempt + 1
                self.client.retry_wait(attempt, f"range transfer of {self.info.key} cut ({exc})")

    def _resume(self, info: zipfile.ZipInfo) -> MemberWrite | None:
        """A stored member that an earlier run left half-written, ready to continue."""
        relative = member_path(info)
        target = self.data / relative
        if relative not in self.starts or info.compress_type != zipfile.ZIP_STORED:
            return None
        try:
            found = os.lstat(target)
        except OSError:
            return None
        if not own_regular(found) or found.st_size > info.file_size:
            return None  # never appended to through a link: the member starts afresh
        writer = HashedWriter(target, relative, append=True)
        return MemberWrite(info, writer, self.starts[relative], consumed=writer.written)

    def _restart(self, member: MemberWrite) -> None:
        member.writer.close()
        (self.data / member.writer.relative).unlink(missing_ok=True)

    def _open_member(self, body: ResponseBody, info: zipfile.ZipInfo, start: int) -> MemberWrite:
        body.skip_to(start)
        header = _LOCAL_HEADER.unpack(body.take(_LOCAL_HEADER.size))
        if header[0] != b"PK\x03\x04":
            raise IntegrityError(f"{self.info.key}: no local header where {info.filename} starts")
        body.take(header[9] + header[10])  # name and extra field
        relative = member_path(info)
        target = self.data / relative
        if target.is_symlink():
            target.unlink()  # the link itself: its target is never written
        member = MemberWrite(info, HashedWriter(target, relative), body.position)
        if info.compress_type == zipfile.ZIP_DEFLATED:
            member.inflater = zlib.decompressobj(-15)
        elif info.compress_type != zipfile.ZIP_STORED:
            raise IntegrityError(f"{info.filename} uses an unsupported compression method")
        if info.compress_size >= _RESUMABLE and member.inflater is None:
            self.starts[relative] = member.data_start
            self.save_progress()
        return member

    def _copy(self, body: ResponseBody, member: MemberWrite) -> None:
        for chunk in body.stream(member.info.compress_size - member.consumed):
            member.consumed += len(chunk)
            data = member.inflater.decompress(chunk) if member.inflater else chunk
            member.writer.write(data)
            self.on_bytes(len(chunk))
            if self.should_stop():
                member.writer.close()
                raise KeyboardInterrupt
        if member.inflater is not None:
            member.writer.write(member.inflater.flush())

    def _finish(self, member: MemberWrite) -> None:
        info = member.info
        if member.writer.written != info.file_size or member.writer.crc != info.CRC:
            member.writer.close()
            raise IntegrityError(
                f"{info.filename} in {self.info.key} does not match its size or CRC-32",
                hint="Run the same command again to fetch it afresh.",
            )
        entry = member.writer.finish()
        self.done[entry.path] = entry
        self.starts.pop(entry.path, None)
        self.save_progress()


def _runs(
    spans: Sequence[tuple[zipfile.ZipInfo, int, int]],
) -> list[list[tuple[zipfile.ZipInfo, int, int]]]:
    """Group spans whose gaps are small into runs fetched with one request each."""
    runs: list[list[tuple[zipfile.ZipInfo, int, int]]] = []
    for span in sorted(spans, key=lambda s: s[1]):
        if runs and span[1] - runs[-1][-1][2] <= MERGE_GAP:
            runs[-1].append(span)
        else:
            runs.append([span])
    return runs
