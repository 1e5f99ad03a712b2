"""Safe inspection and extraction of a dataset archive (``<id>.zip``).

Upstream archives hold one top folder, ``<id>/``. Members that could escape the
extraction folder (absolute paths, ``..``), links, devices, and archives that
declare more bytes than the dataset can plausibly hold (in all, or in one member: each
member is bounded by what it is, see :func:`member_cap`) are refused before a single byte
is written.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import threading
import zipfile
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from medimeta_cli.catalog.datasets import Dataset
from medimeta_cli.dataset.gate import LABELS_FOLDER, MAX_INFO_BYTES
from medimeta_cli.dataset.upstream import HDF5_NAME
from medimeta_cli.errors import IntegrityError
from medimeta_cli.fsutil import translate_os_error
from medimeta_cli.store.records import HASH_BLOCK_SIZE, FileEntry

_COPY_CHUNK = 1024 * 1024

#: Upstream stores every image twice (HDF5 and TIFF); organ datasets add masks and
#: bounding-box images. Anything beyond this many copies of the pixels is suspicious.
_PIXEL_COPIES_ALLOWED = 5
_METADATA_ALLOWANCE = 256 * 1024 * 1024

#: Caps on single members, each derived from what that member can plausibly be: a
#: description's counts and image size (bounded by the gate's rules), never the archive's
#: own size nor a total that one member could take alone.
_SMALL_TEXT_CAP = 1 << 20  # LICENSE (info.yaml has the gate's own cap)
_HDF5_OVERHEAD = 16 << 20  # headers, chunk index, alignment
_TIFF_OVERHEAD = 64 << 10  # header and tags of one image file
_NPY_HEADER = 4 << 10
_ANNOTATION_ROW = 4 << 10  # one image's row of annotations.csv, generously
_SPLIT_LINE = 24  # "images/NNNNNN.tiff\n" is 19 bytes
#: Channels a TIFF may hold whatever the description says (a mask or an RGBA copy).
_TIFF_CHANNELS = 4
#: Members of no known kind (a README, a filler) share this allowance.
_OTHER_ALLOWANCE = _METADATA_ALLOWANCE
_IMAGE_FOLDERS = ("images/", "masks/", "images_bboxes/")
_SPLIT_FOLDERS = ("splits/", "original_splits/")

#: Longest file name and path Linux file systems accept (NAME_MAX, PATH_MAX).
_NAME_MAX = 255
_PATH_MAX = 4096

_CLASH = "is a file, but other members need a folder there"
_NOT_GENUINE = "The archive is not a genuine MedIMeta archive; delete it and download again."

#: What writing a member fails with when its name or place cannot exist on disk: the
#: archive is at fault, not the disk.
_MALFORMED_ERRNOS = frozenset(
    {errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EINVAL, errno.EILSEQ}
)


def max_extracted_bytes(dataset: Dataset, archive_size: int) -> int:
    """The most an archive of this dataset may unpack to in all before we call it a zip
    bomb (each member has its own cap too: :func:`member_cap`)."""
    size = dataset.input_size
    pixels = dataset.num_samples * size.channels * size.height * size.width
    return _PIXEL_COPIES_ALLOWED * pixels + archive_size + _METADATA_ALLOWANCE


def member_cap(relative: str, dataset: Dataset) -> int | None:
    """The most bytes the member ``relative`` (its path inside the dataset folder) can
    plausibly hold, from what it is: ``images.hdf5`` the described images plus overhead,
    each TIFF one image, a label file one number per image and class, split files and
    ``annotations.csv`` one line per image, ``info.yaml`` and ``LICENSE`` small caps.
    None for a member of no known kind (those share one allowance)."""
    size = dataset.input_size
    count = dataset.num_samples
    one_image = size.channels * size.height * size.width
    if relative == "info.yaml":
        return MAX_INFO_BYTES
    if relative == "LICENSE":
        return _SMALL_TEXT_CAP
    if relative == "annotations.csv":
        return _SMALL_TEXT_CAP + count * _ANNOTATION_ROW
    if relative == HDF5_NAME:
        pixels = count * one_image
        return pixels + pixels // 16 + _HDF5_OVERHEAD
    if relative.startswith(_IMAGE_FOLDERS) and relative.endswith((".tiff", ".tif")):
        return _TIFF_CHANNELS * size.height * size.width + _TIFF_OVERHEAD
    if relative.startswith(f"{LABELS_FOLDER}/") and relative.endswith(".npy"):
        classes = max((len(task.labels) for task in dataset.tasks), default=1)
        return count * 8 * max(classes, 1) + _NPY_HEADER
    if relative.startswith(_SPLIT_FOLDERS) and relative.endswith(".txt"):
        return count * _SPLIT_LINE + _NPY_HEADER
    return None


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
    return check_members(members, dataset, archive_size=archive_size, name=path.name)


def _malformed(name: str, member: str, problem: str) -> IntegrityError:
    return IntegrityError(
        f"refusing {name}: the archive is malformed: member {_shown(member)} {problem}",
        hint=_NOT_GENUINE,
    )


def _shown(member: str) -> str:
    """A member name for messages: long ones shortened."""
    return repr(member if len(member) <= 80 else member[:60] + "..." + member[-12:])


def _name_problem(parts: tuple[str, ...]) -> str | None:
    """Why a member's path cannot be created on a POSIX file system, or None."""
    for part in parts:
        if len(part.encode("utf-8", "surrogateescape")) > _NAME_MAX:
            return f"has a name part longer than {_NAME_MAX} bytes"
        if "\0" in part:
            return "has a NUL character in its name"
    if len("/".join(parts).encode("utf-8", "surrogateescape")) > _PATH_MAX:
        return f"has a path longer than {_PATH_MAX} bytes"
    return None


def check_members(
    members: Sequence[zipfile.ZipInfo], dataset: Dataset, *, archive_size: int, name: str
) -> ArchiveListing:
    """Refuse members that are unsafe (paths, links, devices, duplicates), malformed
    (names too long, a file where another member needs a folder) or too large."""
    seen: set[str] = set()
    files: dict[str, str] = {}  # path -> member name, for the files among the members
    folders: set[str] = set()  # every folder some member needs
    total = 0
    for info in members:
        problem = _member_problem(info, dataset.id)
        if problem is not None:
            raise IntegrityError(
                f"refusing {name}: member {info.filename!r} {problem}", hint=_NOT_GENUINE
            )
        parts = _member_parts(info.filename)
        problem = _name_problem(parts)
        if problem is not None:
            raise _malformed(name, info.filename, problem)
        key = "/".join(parts)
        if key in seen:
            if (key in folders) != info.is_dir():
                raise _malformed(name, info.filename, _CLASH)
            raise IntegrityError(f"refusing {name}: member {info.filename!r} appears twice")
        seen.add(key)
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
        if info.is_dir():
            folders.add(key)
        else:
            files[key] = info.filename
        total += info.file_size
    clash = sorted(folders & files.keys())
    if clash:
        raise _malformed(name, files[clash[0]], _CLASH)
    _check_member_sizes(members, dataset, name)
    limit = max_extracted_bytes(dataset, archive_size)
    if total > limit:
        raise IntegrityError(
            f"refusing {name}: it declares {total:,} bytes of content, more than "
            f"{dataset.id} can hold ({limit:,})",
            hint="The archive is not a genuine MedIMeta archive; delete it and download again.",
        )
    return ArchiveListing(tuple(members), total)


def _check_member_sizes(members: Sequence[zipfile.ZipInfo], dataset: Dataset, name: str) -> None:
    """Refuse a member larger than what it can plausibly be (:func:`member_cap`), and
    members of no known kind beyond their shared allowance."""
    others = 0
    for info in members:
        if info.is_dir():
            continue
        relative = member_path(info)
        cap = member_cap(relative, dataset)
        if cap is None:
            others += info.file_size
            cap, what = _OTHER_ALLOWANCE - (others - info.file_size), "the files of no known kind"
        else:
            what = f"{relative.rsplit('/', 1)[0] + '/*' if '/' in relative else relative}"
        if info.file_size > cap:
            raise IntegrityError(
                f"refusing {name}: member {_shown(info.filename)} declares "
                f"{info.file_size:,} bytes, more than {what} of {dataset.id} can hold "
                f"({max(cap, 0):,})",
                hint=_NOT_GENUINE,
            )


def member_path(info: zipfile.ZipInfo) -> str:
    """A member's path inside the dataset folder (``images.hdf5``), normalised so that
    ``<id>//a`` cannot become the absolute path ``/a``; empty for the top folder."""
    return "/".join(_member_parts(info.filename)[1:])


def extract_archive(
    path: Path,
    dataset: Dataset,
    listing: ArchiveListing,
    dest: Path,
    *,
    on_bytes: Callable[[int], None] | None = None,
    wanted: Callable[[str], bool] | None = None,
    should_stop: Callable[[], bool] | None = None,
    workers: int | None = None,
) -> tuple[FileEntry, ...]:
    """Extract the archive's ``<id>/`` folder into ``dest``, hashing every file as it is written.

    ``wanted`` limits extraction to some files (by path inside the dataset folder).
    Returns one :class:`FileEntry` per file, in the archive's order, with paths relative to
    ``dest``. Sizes and CRC-32 are checked against the archive's directory while streaming.
    ``should_stop`` is asked before each member; when it says so, KeyboardInterrupt is
    raised (the caller discards ``dest``).

    Members are written by ``workers`` threads (default: one per core, at most 4), largest
    first, each with its own handle on the archive: inflating, CRC-32, SHA-256 and writing
    all release the GIL, and on 2 cores two threads extract about 1.5x faster than one.
    """
    chosen = [
        (index, info, relative)
        for index, info in enumerate(listing.members)
        if (relative := member_path(info))
        and not info.is_dir()
        and (wanted is None or wanted(relative))
    ]
    # Largest last, for pop(): big members start first and small ones fill the gaps.
    pending = sorted(chosen, key=lambda item: item[1].file_size)
    entries: dict[int, FileEntry] = {}
    lock = threading.Lock()
    failed = threading.Event()

    def extract_some() -> None:
        try:
            extract_pending()
        except BaseException:
            failed.set()  # the other threads stop after their current member
            raise

    def extract_pending() -> None:
        with zipfile.ZipFile(path) as archive:
            while not failed.is_set():
                with lock:
                    if not pending:
                        return
                    index, info, relative = pending.pop()
                if should_stop is not None and should_stop():
                    raise KeyboardInterrupt
                try:
                    with archive.open(info) as source:
                        entry = copy_member(source, info, dest, relative, on_bytes=on_bytes)
                except OSError as exc:
                    if exc.errno in _MALFORMED_ERRNOS:
                        raise _malformed(
                            path.name, info.filename, f"cannot be written: {exc.strerror}"
                        ) from exc
                    raise
                with lock:
                    entries[index] = entry

    count = max(1, min(workers or min(4, os.cpu_count() or 1), len(chosen)))
    try:
        dest.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(count, thread_name_prefix="extract") as pool:
            running = [pool.submit(extract_some) for _ in range(count)]
            try:
                for future in running:
                    future.result()
            except BaseException:  # Ctrl-C while waiting, or a thread's error
                failed.set()
                raise
    except zipfile.BadZipFile as exc:
        raise IntegrityError(f"{path.name} is damaged: {exc}") from exc
    except OSError as exc:
        raise translate_os_error(exc, f"{dataset.id} into {dest}") from exc
    return tuple(entries[index] for index, _, _ in chosen)


class HashedWriter:
    """Writes a file and computes the SHA-256 of each block of it on the way.

    :meth:`write` is :meth:`store` (the file) plus :meth:`hash` (its CRC-32 and block
    hashes); a pipeline may run the two in different threads, each in the chunks' order."""

    def __init__(
        self,
        target: Path,
        relative: str,
        *,
        append: bool = False,
        open_now: bool = True,
        made_ahead: bool = False,
    ) -> None:
        self.target = target
        self.relative = relative
        self.written = 0
        self.crc = 0  # CRC-32 of what was written, as zip records it
        self._hashes: list[str] = []
        self._block = hashlib.sha256()
        self._in_block = 0
        self._append = append
        self._made_ahead = made_ahead  # the file is probably there already, made empty
        self._stamp = 0
        if open_now:
            self.open()

    def open(self) -> None:
        """Make (or, to append, open) the file; a link planted there is an error."""
        target = self.target
        # Never through a link: a link planted where a member goes is an error (ELOOP), not
        # a way to read or write a file outside the staging folder.
        if self._append and target.exists():
            # Hash what an earlier run wrote, once, before appending to it.
            with open(os.open(target, os.O_RDONLY | os.O_NOFOLLOW), "rb") as earlier:
                while chunk := earlier.read(_COPY_CHUNK):
                    self.hash(chunk)
        flags = os.O_WRONLY | os.O_NOFOLLOW | (os.O_APPEND if self._append else 0)
        descriptor = -1
        if self._made_ahead:
            # Without O_CREAT, opening takes no lock on the folder, where another thread
            # may be making the next files (on some file systems, slowly).
            with contextlib.suppress(FileNotFoundError):
                descriptor = os.open(target, flags)
        if descriptor < 0:
            try:
                descriptor = os.open(target, flags | os.O_CREAT, 0o666)
            except FileNotFoundError:  # its folder is not there yet (one lookup less per file)
                target.parent.mkdir(parents=True, exist_ok=True)
                descriptor = os.open(target, flags | os.O_CREAT, 0o666)
        if not self._append and os.fstat(descriptor).st_size:
            # Emptied only when not empty already: on ext4, truncating a file (O_TRUNC
            # included) makes its close start writing it back at once, a stall per file.
            os.ftruncate(descriptor, 0)
        self._sink = open(descriptor, "ab" if self._append else "wb")  # noqa: SIM115 (closed in finish)

    def hash(self, chunk: bytes) -> None:
        """Count a chunk into the size, CRC-32 and block hashes (after the ones before)."""
        self.written += len(chunk)
        self.crc = zlib.crc32(chunk, self.crc)
        view = memoryview(chunk)
        while view:
            take = min(len(view), HASH_BLOCK_SIZE - self._in_block)
            self._block.update(view[:take])
            self._in_block += take
            view = view[take:]
            if self._in_block == HASH_BLOCK_SIZE:
                self._hashes.append(self._block.hexdigest())
                self._block, self._in_block = hashlib.sha256(), 0

    def store(self, chunk: bytes) -> None:
        """Append a chunk to the file (after the ones before)."""
        self._sink.write(chunk)

    def write(self, chunk: bytes) -> None:
        """Append a chunk."""
        self.store(chunk)
        self.hash(chunk)

    def flush(self) -> None:
        """Hand what was written to the file system (a checkpoint counts on it)."""
        self._sink.flush()

    def close(self) -> None:
        """Close without producing an entry (the file stays, e.g. for a later resume)."""
        if not self._sink.closed:
            self._sink.flush()
            # The stamp of the open file: no second lookup of its path.
            self._stamp = os.fstat(self._sink.fileno()).st_mtime_ns
            self._sink.close()

    def finish(self) -> FileEntry:
        """Close the file and describe it for the install record."""
        self.close()
        stamp = self._stamp
        hashes = list(self._hashes)
        if self._in_block or not hashes:
            hashes.append(self._block.hexdigest())
        return FileEntry(self.relative, self.written, stamp, tuple(hashes))


def copy_member(
    source: IO[bytes],
    info: zipfile.ZipInfo,
    dest: Path,
    relative: str,
    *,
    on_bytes: Callable[[int], None] | None = None,
) -> FileEntry:
    """Copy one member's (decompressed) bytes from ``source`` to ``dest/relative``."""
    writer = HashedWriter(dest / relative, relative)
    try:
        while chunk := source.read(_COPY_CHUNK):
            if writer.written + len(chunk) > info.file_size:
                raise IntegrityError(f"member {info.filename!r} is longer than it declares")
            writer.write(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    finally:
        writer.close()
    # zipfile has checked the CRC-32 on reaching the end of the member.
    if writer.written != info.file_size:
        raise IntegrityError(f"member {info.filename!r} is shorter than it declares")
    return writer.finish()
