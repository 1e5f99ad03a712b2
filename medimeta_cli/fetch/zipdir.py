"""A remote zip archive's directory, read with range requests, and its local headers checked.

The zip's end records and central directory come first (one or two ranged reads) and are
validated as for a local archive; the bytes they were parsed from are kept
(:attr:`RemoteListing.directory`), so that a transfer that later sees the same bytes in a
hashed stream can tell whether the directory it used is the one the md5 covered. Each
member's local header, wherever it is read, must agree with its directory entry (name,
compression method, sizes and CRC-32, the latter three may be zero when the data
descriptor flag is set), as a careful zip reader checks: :func:`check_local_header`.
"""

from __future__ import annotations

import functools
import io
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from medimeta_cli.catalog.datasets import Dataset
from medimeta_cli.dataset.layouts import ArchiveLayout, sizes_key, wanted_in_layout
from medimeta_cli.errors import IntegrityError, RemoteDataError
from medimeta_cli.fetch.answers import Kind, RangesUnsupported, open_range
from medimeta_cli.fetch.retry import RetryRule
from medimeta_cli.install.archive import ArchiveListing, check_members, member_path
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.records import save_archive_sizes
from medimeta_cli.zenodo.client import RemoteClient
from medimeta_cli.zenodo.record import ArchiveInfo

#: Enough for the end-of-central-directory records, zip64 ones included, and a short comment.
_TAIL = 64 * 1024 + 22 + 20 + 56
#: signature, version, flags, method, time, date, CRC-32, sizes, name and extra lengths.
LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_DATA_DESCRIPTOR_FLAG = 0x08
_UTF8_FLAG = 0x800
_ZIP64_EXTRA = 0x0001
_ZIP64_MARK = 0xFFFFFFFF

Span = tuple[zipfile.ZipInfo, int, int]


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

    def between(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``, from the pieces read (which must cover them)."""
        out = bytearray()
        position = start
        while position < end:
            for piece_start, data in self.pieces:
                if piece_start <= position < piece_start + len(data):
                    take = data[position - piece_start : end - piece_start]
                    out += take
                    position += len(take)
                    break
            else:
                raise _MissingRange(position, end)
        return bytes(out)


@dataclass(frozen=True)
class RemoteListing:
    """The validated central directory of a remote archive."""

    listing: ArchiveListing
    directory_offset: int
    #: The bytes from :attr:`directory_offset` to the archive's end (central directory and
    #: end records) the listing was parsed from.
    directory: bytes

    def spans(self, wanted: Callable[[str], bool]) -> list[Span]:
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
    rule = RetryRule(client)
    while True:
        try:
            with open_range(client, url, start, end) as answer:
                require_partial(answer.kind, answer.status, url)
                return answer.response.read()
        except httpx.TransportError as exc:
            rule.retry(f"range request to {url} failed ({exc})", error=exc)


def require_partial(kind: Kind, status: int, url: str) -> None:
    """Refuse an answer that is not the bytes asked for."""
    if kind is Kind.WHOLE:
        raise RangesUnsupported("the server does not honour byte ranges")
    if kind is Kind.WRONG_RANGE:
        raise RemoteDataError(f"the server sent the wrong range of {url}")
    if kind is not Kind.PARTIAL:
        raise RemoteDataError(f"HTTP {status} for a range of {url}")


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
                directory = sparse.between(directory_offset, info.size)
            break
        except _MissingRange as missing:
            if not 0 <= missing.start < missing.end <= info.size:
                # Bytes outside the archive: its end records point past its end.
                raise malformed(info.key, "its central directory lies outside it") from None
            if requests >= 4:
                raise IntegrityError(f"{info.key} has an unreadable central directory") from None
            sparse.pieces.append(
                (missing.start, fetch_range(client, info.url, missing.start, missing.end))
            )
            requests += 1
        except zipfile.BadZipFile as exc:
            raise IntegrityError(f"{info.key} is not a readable zip archive: {exc}") from exc
    check_offsets(members, directory_offset, info.key)
    listing = check_members(members, dataset, archive_size=info.size, name=info.key)
    return RemoteListing(listing, directory_offset, directory), requests


def malformed(key: str, problem: str) -> IntegrityError:
    """A directory that cannot describe the archive it is in: the archive is malformed,
    whichever server sent it, and asking again cannot help (no retry, exit 4)."""
    return IntegrityError(
        f"refusing {key}: the archive is malformed: {problem}; nothing was installed",
        hint="The archive on the server is damaged; report it to whoever publishes it.",
    )


def check_offsets(members: list[zipfile.ZipInfo], directory_offset: int, key: str) -> None:
    """Refuse a directory whose members do not lie before it: a member's local header and
    data past the directory (or the archive's end) would be asked for with range requests
    the server cannot answer, which looks like a cut transfer and would be retried."""
    for info in members:
        end = info.header_offset + LOCAL_HEADER.size + info.compress_size
        if info.header_offset < 0 or end > directory_offset:
            raise malformed(key, f"member {info.filename[:80]!r} lies outside its data")


def _zip64_sizes(extra: bytes, size: int, compressed: int) -> tuple[int, int]:
    """The sizes a local header's zip64 extra field gives for those marked 0xFFFFFFFF."""
    position = 0
    while position + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, position)
        body = extra[position + 4 : position + 4 + length]
        if tag == _ZIP64_EXTRA:
            values = [v for (v,) in struct.iter_unpack("<Q", body[: len(body) // 8 * 8])]
            if size == _ZIP64_MARK and values:
                size = values.pop(0)
            if compressed == _ZIP64_MARK and values:
                compressed = values.pop(0)
            break
        position += 4 + length
    return size, compressed


def check_local_header(header: bytes, name: bytes, extra: bytes, entry: zipfile.ZipInfo) -> None:
    """Refuse a local header (its fixed part, name and extra field) that disagrees with the
    central directory entry it belongs to: :class:`IntegrityError`."""
    fields = LOCAL_HEADER.unpack(header)
    signature, _, flags, method, _, _, crc, compressed, size = fields[:9]
    problem = ""
    if signature != b"PK\x03\x04":
        problem = "no local header where it starts"
    else:
        encoding = "utf-8" if flags & _UTF8_FLAG else "cp437"
        local_name = name.decode(encoding, "replace")
        size, compressed = _zip64_sizes(extra, size, compressed)
        # With a data descriptor the local header may leave CRC-32 and sizes at zero.
        deferred = bool(flags & _DATA_DESCRIPTOR_FLAG)
        if local_name != entry.orig_filename:
            problem = f"its local header names {local_name!r}"
        elif method != entry.compress_type:
            problem = "its local header gives another compression method"
        elif not (deferred and crc == 0) and crc != entry.CRC:
            problem = "its local header gives another CRC-32"
        elif not (deferred and size == 0) and size != entry.file_size:
            problem = "its local header gives another size"
        elif not (deferred and compressed == 0) and compressed != entry.compress_size:
            problem = "its local header gives another compressed size"
    if problem:
        raise IntegrityError(
            f"{entry.filename} disagrees with the archive's central directory: {problem}; "
            "nothing was installed",
            hint="The archive or the server's answers are not genuine; run the command again, "
            "and report it should it come back.",
        )


# ----------------------------------------------------------------------------- the hdf5 layout


def hdf5_members(with_masks: bool) -> Callable[[str], bool]:
    """Which members the hdf5 layout installs."""
    return functools.partial(wanted_in_layout, layout=ArchiveLayout.HDF5, with_masks=with_masks)


def remember_sizes(layout: RootLayout, info: ArchiveInfo, listing: RemoteListing) -> None:
    """Save both layouts' sizes of this archive version, so ``info`` can show them offline."""
    save_archive_sizes(
        layout,
        info.key,
        info.md5,
        {
            sizes_key(ArchiveLayout.FULL): info.size,
            sizes_key(ArchiveLayout.HDF5): listing.wanted_bytes(hdf5_members(False)),
            sizes_key(ArchiveLayout.HDF5, with_masks=True): listing.wanted_bytes(
                hdf5_members(True)
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
    return listing.wanted_bytes(hdf5_members(with_masks))
