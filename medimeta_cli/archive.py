"""Safe inspection and extraction of a dataset archive (``<id>.zip``).

Upstream archives hold one top folder, ``<id>/``. Members that could escape the
extraction folder (absolute paths, ``..``), links, devices, and archives that
declare more bytes than the dataset can plausibly hold are refused before a
single byte is written.
"""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from medimeta_cli.cache import HASH_BLOCK_SIZE, FileEntry
from medimeta_cli.catalog import Dataset
from medimeta_cli.errors import IntegrityError
from medimeta_cli.fsutil import translate_os_error

_COPY_CHUNK = 1024 * 1024

#: Upstream stores every image twice (HDF5 and TIFF); organ datasets add masks and
#: bounding-box images. Anything beyond this many copies of the pixels is suspicious.
_PIXEL_COPIES_ALLOWED = 5
_METADATA_ALLOWANCE = 256 * 1024 * 1024


def max_extracted_bytes(dataset: Dataset, archive_size: int) -> int:
    """The most an archive of this dataset may unpack to before we call it a zip bomb."""
    size = dataset.input_size
    pixels = dataset.num_samples * size.channels * size.height * size.width
    return _PIXEL_COPIES_ALLOWED * pixels + archive_size + _METADATA_ALLOWANCE


@dataclass(frozen=True)
class ArchiveListing:
    """The validated members of an archive."""

    members: tuple[zipfile.ZipInfo, ...]
    total_bytes: int


def _member_parts(name: str) -> tuple[str, ...]:
    """Components of a member name, without empty and ``.`` ones (``a//./b/`` is ``a/b``)."""
    return PurePosixPath(name.replace("\\", "/")).parts


def _member_problem(info: zipfile.ZipInfo, prefix: str) -> str | None:
    name = info.filename
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "has an absolute path"
    parts = _member_parts(name)
    if ".." in parts:
        return "points outside the dataset folder"
    if not parts or parts[0] != prefix:
        return f"is not inside the {prefix}/ folder"
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        return "is a symbolic link"
    if kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
        return "is a device or special file"
    return None


def inspect_archive(path: Path, dataset: Dataset, *, archive_size: int) -> ArchiveListing:
    """Read the archive's directory and refuse anything unsafe or implausible."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise IntegrityError(f"{path.name} is not a readable zip archive: {exc}") from exc
    seen: set[str] = set()
    total = 0
    for info in members:
        problem = _member_problem(info, dataset.id)
        if problem is not None:
            raise IntegrityError(
                f"refusing {path.name}: member {info.filename!r} {problem}",
                hint="The archive is not a genuine MedIMeta archive; delete it and download again.",
            )
        key = "/".join(_member_parts(info.filename))
        if key in seen:
            raise IntegrityError(f"refusing {path.name}: member {info.filename!r} appears twice")
        seen.add(key)
        total += info.file_size
    limit = max_extracted_bytes(dataset, archive_size)
    if total > limit:
        raise IntegrityError(
            f"refusing {path.name}: it declares {total:,} bytes of content, more than "
            f"{dataset.id} can hold ({limit:,})",
            hint="The archive is not a genuine MedIMeta archive; delete it and download again.",
        )
    return ArchiveListing(tuple(members), total)


def extract_archive(
    path: Path,
    dataset: Dataset,
    listing: ArchiveListing,
    dest: Path,
    *,
    on_bytes: Callable[[int], None] | None = None,
) -> tuple[FileEntry, ...]:
    """Extract the archive's ``<id>/`` folder into ``dest``, hashing every file as it is written.

    Returns one :class:`FileEntry` per file, with paths relative to ``dest``.
    Sizes and CRC-32 are checked against the archive's directory while streaming.
    """
    entries: list[FileEntry] = []
    try:
        dest.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path) as archive:
            for info in listing.members:
                # Normalised, so that "<id>//a" cannot become the absolute path "/a".
                relative = "/".join(_member_parts(info.filename)[1:])
                if not relative:
                    continue
                target = dest / relative
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                entries.append(
                    _extract_member(archive, info, target, relative.rstrip("/"), on_bytes)
                )
    except zipfile.BadZipFile as exc:
        raise IntegrityError(f"{path.name} is damaged: {exc}") from exc
    except OSError as exc:
        raise translate_os_error(exc, f"{dataset.id} into {dest}") from exc
    return tuple(entries)


def _extract_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    target: Path,
    relative: str,
    on_bytes: Callable[[int], None] | None,
) -> FileEntry:
    hashes: list[str] = []
    block = hashlib.sha256()
    in_block = 0
    written = 0
    with archive.open(info) as source, open(target, "wb") as sink:
        while chunk := source.read(_COPY_CHUNK):
            written += len(chunk)
            if written > info.file_size:
                raise IntegrityError(f"member {info.filename!r} is longer than it declares")
            sink.write(chunk)
            view = memoryview(chunk)
            while view:
                take = min(len(view), HASH_BLOCK_SIZE - in_block)
                block.update(view[:take])
                in_block += take
                view = view[take:]
                if in_block == HASH_BLOCK_SIZE:
                    hashes.append(block.hexdigest())
                    block, in_block = hashlib.sha256(), 0
            if on_bytes is not None:
                on_bytes(len(chunk))
    # zipfile has checked the CRC-32 on reaching the end of the member.
    if written != info.file_size:
        raise IntegrityError(f"member {info.filename!r} is shorter than it declares")
    if in_block or not hashes:
        hashes.append(block.hexdigest())
    return FileEntry(relative, written, os.stat(target).st_mtime_ns, tuple(hashes))
