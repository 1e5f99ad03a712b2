"""Fetch members of a remote zip archive with HTTP range requests, checked as they stream.

Upstream archives store every image twice: in ``images.hdf5`` and as TIFF files.
The official loader reads the HDF5, so ``--layout hdf5`` fetches only what it
reads: each wanted member's bytes, with neighbouring members merged into one request
so that few requests are made (Zenodo allows about 60 a minute); the directory comes
first (:mod:`medimeta_cli.fetch.zipdir`). Every member's local header must agree with
its directory entry, and its data with the entry's size and CRC-32, checked while it
streams. A cut transfer resumes inside the member it cut (stored members, which is how
large files are kept), within a run and across runs.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from medimeta_cli.errors import IntegrityError
from medimeta_cli.fetch.answers import open_range
from medimeta_cli.fetch.retry import RetryRule
from medimeta_cli.fetch.zipdir import LOCAL_HEADER, Span, check_local_header, require_partial
from medimeta_cli.fsutil import atomic_write_text
from medimeta_cli.install.archive import HashedWriter, member_path
from medimeta_cli.store.ownership import owner_stamp
from medimeta_cli.store.partials import PROGRESS_FILE, own_regular, read_state_json
from medimeta_cli.store.records import FileEntry
from medimeta_cli.zenodo.client import RemoteClient
from medimeta_cli.zenodo.record import ArchiveInfo

logger = logging.getLogger(__name__)

#: Wanted members closer than this are fetched in one request (the gap is read and dropped).
MERGE_GAP = 1024 * 1024
#: Members larger than this record where their data starts, so a later run can resume them.
_RESUMABLE = 1024 * 1024


# ----------------------------------------------------------------------------- fetching


@dataclass
class ResponseBody:
    """A response body read from a known absolute offset."""

    chunks: Iterator[bytes]
    position: int
    buffer: bytearray = field(default_factory=bytearray)
    #: When set, told of every byte consumed (taken, skipped or streamed), in order.
    digest: Callable[[bytes | bytearray], None] | None = None

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
            self.digest(data)
        return data

    def skip_to(self, offset: int) -> None:
        while self.position < offset:
            if not self.buffer:
                self._more()
            drop = min(len(self.buffer), offset - self.position)
            if self.digest is not None:
                self.digest(self.buffer[:drop])
            del self.buffer[:drop]
            self.position += drop

    def stream(self, count: int) -> Iterator[bytes]:
        while count > 0:
            if self.buffer:
                # One copy (a slice of a bytearray, then bytes(), would be two).
                with memoryview(self.buffer) as view:
                    piece = bytes(view[:count])
                del self.buffer[: len(piece)]
            else:
                # A chunk the count covers whole is handed on as it came, not copied.
                chunk = next(self.chunks, None)
                if chunk is None:
                    raise httpx.RemoteProtocolError("the range ended early")
                if len(chunk) <= count:
                    piece = chunk
                else:
                    piece = chunk[:count]
                    self.buffer += memoryview(chunk)[count:]
            if self.digest is not None:
                self.digest(piece)
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
    inflater: zlib._Decompress | None = None


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
        for path, value in data.get("done", {}).items():
            self.take_over([path, *value])
        self.starts = {k: int(v) for k, v in data.get("starts", {}).items()}

    def take_over(self, item: Any) -> None:
        """Count a file as done with an earlier run's ``[path, size, stamp, hashes]`` if it
        is still the file that run wrote: a regular file of this user (never through a
        link) of that size and stamp. ValueError when ``item`` is not such an entry."""
        entry = FileEntry.from_json(item)
        try:
            found = os.lstat(self.data / entry.path)
        except OSError:
            return
        unchanged = (found.st_size, found.st_mtime_ns) == (entry.size, entry.mtime_ns)
        if own_regular(found) and unchanged:
            self.done[entry.path] = entry

    def fetch(self, spans: Sequence[Span]) -> list[FileEntry]:
        """Fetch every span not done yet; return the entries of all wanted files."""
        self.data.mkdir(parents=True, exist_ok=True)
        todo = [span for span in spans if member_path(span[0]) not in self.done]
        for run in _runs(todo):
            self._fetch_run(run)
        return [self.done[member_path(info)] for info, _, _ in spans]

    def _fetch_run(self, run: list[Span]) -> None:
        index = 0
        current: MemberWrite | None = None
        rule = RetryRule(self.client)
        while index < len(run):
            info, start, _ = run[index]
            current = current or self._resume(info)
            begin = current.data_start + current.consumed if current else start
            end = run[-1][2]
            before = sum(m.writer.written for m in [current] if m) + len(self.done)
            if current is not None and current.consumed:
                logger.info(
                    "resuming %s of %s at byte %d of its data",
                    current.writer.relative,
                    self.info.key,
                    current.consumed,
                )
            try:
                with open_range(self.client, self.info.url, begin, end) as answer:
                    require_partial(answer.kind, answer.status, self.info.url)
                    body = ResponseBody(answer.response.iter_raw(), begin)
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
                rule.retry(
                    f"range transfer of {self.info.key} cut ({exc})",
                    progressed=progressed > before,
                    error=exc,
                )

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

    def _discard(self, member: MemberWrite) -> None:
        """A member proven wrong: kept, a later run would resume it (it is complete) and
        fail again on every run, ``--force`` included. It starts afresh instead."""
        self._restart(member)
        if self.starts.pop(member.writer.relative, None) is not None:
            self.save_progress()

    def _open_member(self, body: ResponseBody, info: zipfile.ZipInfo, start: int) -> MemberWrite:
        """Read the member's local header (it must agree with the directory) and open the
        file its data goes to."""
        body.skip_to(start)
        fixed = body.take(LOCAL_HEADER.size)
        lengths = LOCAL_HEADER.unpack(fixed)[9:]
        check_local_header(fixed, body.take(lengths[0]), body.take(lengths[1]), info)
        relative = member_path(info)
        member = MemberWrite(info, self._writer(relative), body.position)
        if info.compress_type == zipfile.ZIP_DEFLATED:
            member.inflater = zlib.decompressobj(-15)
        elif info.compress_type != zipfile.ZIP_STORED:
            raise IntegrityError(f"{info.filename} uses an unsupported compression method")
        if info.compress_size >= _RESUMABLE and member.inflater is None:
            self.starts[relative] = member.data_start
            self.save_progress()
        return member

    def _writer(self, relative: str) -> HashedWriter:
        """The writer of a member's file, made afresh."""
        target = self.data / relative
        if target.is_symlink():
            target.unlink()  # the link itself: its target is never written
        return HashedWriter(target, relative)

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
            self._discard(member)
            raise IntegrityError(
                f"{info.filename} in {self.info.key} does not match its size or CRC-32; "
                "it was discarded",
                hint="Run the same command again to fetch it afresh; should the same error "
                "come back, the archive on the server is damaged.",
            )
        entry = member.writer.finish()
        self.done[entry.path] = entry
        self.starts.pop(entry.path, None)
        self.save_progress()


def _runs(spans: Sequence[Span]) -> list[list[Span]]:
    """Group spans whose gaps are small into runs fetched with one request each."""
    runs: list[list[Span]] = []
    for span in sorted(spans, key=lambda s: s[1]):
        if runs and span[1] - runs[-1][-1][2] <= MERGE_GAP:
            runs[-1].append(span)
        else:
            runs.append([span])
    return runs
