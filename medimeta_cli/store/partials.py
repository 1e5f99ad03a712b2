"""Partial downloads: the only code that names, claims, measures and finishes them.

A whole-archive download streams into ``<root>/.medimeta/partial/<key>.<uniq>.part``
next to a sidecar ``<key>.<uniq>.json`` naming the archive version (url, size, md5)
and the job writing it (host, pid). A download in several slices at once (see
:mod:`medimeta_cli.fetch.segmented`) keeps the state of each slice in the sidecar too
(``"slices": [[start, end, next byte], ...]``): its partial file has the archive's size
from the start, and the bytes done are the slices' sum, not the file's size. An
hdf5-layout download fills a folder ``<key>.members.<uniq>/`` whose ``progress.json``
plays the sidecar's part; so does an install while downloading in pieces
(:mod:`medimeta_cli.fetch.windowed`), whose checkpoint says how far its pass got and whose
``pieces/`` folder holds what arrived ahead of it.

Every name is unique to the process that made it, and a job takes over an earlier
run's partial by renaming it to a name of its own: of two racing jobs, one wins.
A partial that a live job is still writing is left alone.

Nothing here follows a link: partial files, sidecars and members folders are opened
with ``O_NOFOLLOW`` and must be regular files (or folders) of the current user, with
no second hard link. Anything else found under a partial's name (a symlink planted
by another user, a hard link to a file elsewhere...) is never written, read or
deleted through: it is renamed aside (``<key>.set-aside.<uniq>``, for ``prune``) and
a fresh partial is started.

Only the standard library is imported here: ``list`` reads partial sizes too. No module
outside this one opens, measures, cuts, renames or deletes a partial's files: transfers
go through :class:`Partial`'s methods, ``remove`` through :func:`drop_idle_partials`.
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from medimeta_cli.errors import PermissionDeniedError
from medimeta_cli.fsutil import (
    atomic_write_bytes,
    atomic_write_text,
    remove_tree,
    unique_suffix,
    utc_now,
)
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.ownership import owner_stamp, partial_in_use

if TYPE_CHECKING:
    from medimeta_cli.hashing import Digest, TailHasher
    from medimeta_cli.zenodo.record import ArchiveInfo

logger = logging.getLogger(__name__)

#: The file a members folder records its progress (and owner) in.
PROGRESS_FILE = "progress.json"
#: The folder in a members folder holding the pieces received ahead of the pass
#: (:mod:`medimeta_cli.fetch.pieces`), one file per piece named by its first byte.
SPILL_FOLDER = "pieces"


#: Flags of every open of a partial's files: never through a link, never blocking on a FIFO.
_SAFE_OPEN = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_READ_CHUNK = 1024 * 1024


def own_regular(found: os.stat_result) -> bool:
    """Whether a file's status (from ``lstat`` or ``fstat``) is that of a regular file of
    the current user with a single name: one it is safe to append to or take over."""
    return stat.S_ISREG(found.st_mode) and found.st_uid == os.geteuid() and found.st_nlink == 1


def _own_regular_path(path: Path) -> bool:
    try:
        return own_regular(os.lstat(path))
    except OSError:
        return False


def own_tree(folder: Path) -> bool:
    """Whether ``folder`` is a real folder of the current user (not a link) holding only
    folders of the current user and regular files :func:`own_regular` accepts."""
    try:
        found = os.lstat(folder)
        if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid():
            return False
        with os.scandir(folder) as entries:
            for entry in entries:
                inner = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(inner.st_mode):
                    if not own_tree(Path(entry.path)):
                        return False
                elif not own_regular(inner):
                    return False
    except OSError:
        return False
    return True


def read_state_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in a sidecar or progress file, read without following a link; None
    when it is missing, not a regular file, unreadable or not an object."""
    try:
        fd = os.open(path, os.O_RDONLY | _SAFE_OPEN)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return None
            data = json.loads(handle.read(1024 * 1024))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def regular_size(path: Path) -> int | None:
    """Size of a regular file (a link is not followed); None for anything else."""
    try:
        found = os.lstat(path)
    except OSError:
        return None
    return found.st_size if stat.S_ISREG(found.st_mode) else None


def partial_sidecars(layout: RootLayout, key: str) -> list[Path]:
    """Sidecars of partial downloads of an archive, largest download first."""
    sidecars = list(layout.partial_dir.glob(f"{key}.*.json"))

    def done(sidecar: Path) -> int:
        size = regular_size(sidecar.with_suffix(".part"))
        return -1 if size is None else size

    return sorted(sidecars, key=done, reverse=True)


def slice_list(data: dict[str, Any] | None) -> list[tuple[int, int, int]] | None:
    """The slices ``(start, end, next byte)`` a sidecar records, in archive order; None when
    it records none (a single-stream download) or they make no sense (then not trusted)."""
    raw = data.get("slices") if data is not None else None
    if not isinstance(raw, list) or not raw:
        return None
    slices: list[tuple[int, int, int]] = []
    size = data.get("size") if data is not None else None
    for item in raw:
        if not (isinstance(item, list) and len(item) == 3):
            return None
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in item):
            return None
        start, end, pos = item
        if not 0 <= start <= pos <= end:
            return None
        slices.append((start, end, pos))
    slices.sort()
    # They must tile the archive exactly: no gap, no overlap.
    if slices[0][0] != 0 or slices[-1][1] != size:
        return None
    if any(a[1] != b[0] for a, b in itertools.pairwise(slices)):
        return None
    return slices


def done_bytes(data: dict[str, Any] | None, part: Path) -> int | None:
    """Bytes of the archive downloaded in a partial: the slices' sum when the sidecar
    records slices, else the partial file's size; None when the file is not a regular file."""
    size = regular_size(part)
    if size is None:
        return None
    slices = slice_list(data)
    if slices is None:
        # Slices that make no sense are not trusted: none of the bytes count.
        return 0 if data is not None and "slices" in data else size
    return sum(pos - start for start, _, pos in slices)


def part_of(sidecar: Path) -> Path:
    """The partial file a sidecar describes."""
    return sidecar.with_suffix(".part")


def drop_idle_partials(layout: RootLayout, key: str) -> int:
    """Delete the partial downloads of an archive that no live job writes; return the
    bytes freed."""
    freed = 0
    for sidecar in partial_sidecars(layout, key):
        part = part_of(sidecar)
        data = read_state_json(sidecar)
        if data is None or partial_in_use(data, part):
            logger.debug(
                "keeping partial %s: its sidecar is unreadable or a live job owns it", part
            )
            continue
        freed += regular_size(part) or 0
        part.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
        logger.debug("deleted partial %s and its sidecar", part)
    return freed


def partial_bytes(layout: RootLayout, key: str, md5: str | None) -> int:
    """Bytes already downloaded of this archive version (0 when none)."""
    for sidecar in partial_sidecars(layout, key):
        data = read_state_json(sidecar)
        done = done_bytes(data, sidecar.with_suffix(".part"))
        if data is not None and done is not None and (md5 is None or data.get("md5") == md5):
            return done
    return 0


def _members_done(folder: Path, data: dict[str, Any]) -> int | None:
    """Bytes of the archive a members folder that installs while downloading holds: those
    its checkpoint covers, and those its spill files hold ahead of it (a later run goes on
    from both). None for a members folder without a checkpoint (``--layout hdf5``)."""
    window = data.get("window")
    if not isinstance(window, dict):
        return None
    try:
        hashed = int(window["hashed"])
    except (KeyError, TypeError, ValueError):
        return None
    return hashed + spill_ahead(folder / SPILL_FOLDER, hashed)


def spill_ahead(spill: Path, hashed: int) -> int:
    """Bytes the spill files of a pass hold beyond byte ``hashed`` of the archive (each
    file holds its piece's bytes from the byte its name says); 0 when there are none."""
    ahead = 0
    try:
        if not stat.S_ISDIR(os.lstat(spill).st_mode):
            return 0  # a link is not followed
        with os.scandir(spill) as pieces:
            for piece in pieces:
                found = piece.stat(follow_symlinks=False)
                if piece.name.isdigit() and stat.S_ISREG(found.st_mode):
                    start = int(piece.name)
                    ahead += max(0, start + found.st_size - max(start, hashed))
    except OSError:
        pass  # no spill files (or not a folder of ours): nothing ahead
    return ahead


def partial_progress(layout: RootLayout, key: str) -> tuple[int, int] | None:
    """``(bytes done, archive size)`` of a partial download of an archive: a partial file
    (the largest), else the members folder that installs while downloading furthest on;
    None when there is neither. Nothing is followed through a link."""
    for sidecar in partial_sidecars(layout, key):
        data = read_state_json(sidecar)
        # A download in slices has the archive's size from the start: count the slices.
        done = done_bytes(data, part_of(sidecar))
        try:
            expected = int(data["size"]) if data is not None else -1
        except (ValueError, KeyError, TypeError):
            continue
        if expected >= 0 and done is not None:
            return done, expected
    best: tuple[int, int] | None = None
    for folder in layout.partial_dir.glob(f"{key}.members.*"):
        if folder.is_symlink():
            continue
        data = read_state_json(folder / PROGRESS_FILE)
        if data is None:
            continue
        done = _members_done(folder, data)
        try:
            expected = int(data["size"])
        except (ValueError, KeyError, TypeError):
            continue
        if done is not None and expected >= 0 and (best is None or done > best[0]):
            best = (min(done, expected), expected)
    return best


def set_aside(path: Path, key: str) -> Path | None:
    """Rename a suspicious entry out of the way, inside the partial folder, without touching
    what it points to; ``prune`` removes it (the name, never a link's target) later. None
    when it cannot be renamed (a sticky folder...): it is then only ignored."""
    suffix = ".part" if path.name.endswith(".part") else ""
    aside = path.with_name(f"{key}.set-aside.{unique_suffix()}{suffix}")
    try:
        os.rename(path, aside)
    except OSError as exc:
        logger.warning("ignoring %s (not a regular file or folder of this user): %s", path, exc)
        return None
    logger.warning("set aside %s as %s: not a regular file or folder of this user", path, aside)
    return aside


@dataclass(frozen=True)
class Partial:
    """A partial download this process owns: the ``.part`` file and its sidecar."""

    part: Path

    @property
    def sidecar(self) -> Path:
        """The ``.json`` next to the partial file."""
        return self.part.with_suffix(".json")

    def size(self) -> int:
        """Bytes in the partial file now (0 when it does not exist or is not a regular file)."""
        return regular_size(self.part) or 0

    def exists(self) -> bool:
        """Whether the partial file exists (an empty one included)."""
        return os.path.lexists(self.part)

    @property
    def folder(self) -> Path:
        """The folder the partial lives in (for messages about its file system)."""
        return self.part.parent

    @property
    def archive_path(self) -> Path:
        """The file, to be read as the archive once it is complete (extraction)."""
        return self.part

    def hash_tail(self, digest: Digest, start: int, end: int) -> TailHasher:
        """Bytes ``start`` to ``end`` of the file hashed into ``digest`` in a thread of its
        own (the bytes before ``start`` already are); see :class:`TailHasher`."""
        # Imported here: ``list`` reads partial sizes and must not pay for hashlib.
        from medimeta_cli.hashing import TailHasher

        return TailHasher(self.part, digest, start, end)

    def _open(self, flags: int, mode: str) -> IO[bytes]:
        try:
            fd = os.open(self.part, flags | _SAFE_OPEN, 0o666)  # the umask decides
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            fd = -1  # a symbolic link: O_NOFOLLOW refused it
        handle = os.fdopen(fd, mode) if fd >= 0 else None
        # Checked on the open file itself: a link swapped in after the claim is caught here.
        if handle is None or not own_regular(os.fstat(fd)):
            if handle is not None:
                handle.close()
            raise PermissionDeniedError(
                f"refusing to use {self.part}: it is not a regular file of this user",
                hint="Another user or program replaced it; run `medimeta prune` and try again.",
            )
        return handle

    def open_slices(self, size: int) -> int:
        """The partial file opened for reading and writing at offsets (created if missing,
        given ``size`` bytes), never through a link: a file descriptor for
        ``os.pread``/``os.pwrite``, which the caller closes."""
        handle = self._open(os.O_RDWR | os.O_CREAT, "r+b")
        fd = os.dup(handle.fileno())
        handle.close()
        try:
            os.set_blocking(fd, True)
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, size)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def keep_prefix(self, fd: int, prefix: int, data: dict[str, Any]) -> None:
        """Keep only the first ``prefix`` bytes (of the file open as ``fd``) and drop the
        slices' state: a single stream goes on from there."""
        os.ftruncate(fd, prefix)
        self.save_slices(data, None)

    def state(self) -> dict[str, Any] | None:
        """The sidecar's contents (read without following a link)."""
        return read_state_json(self.sidecar)

    def save_slices(self, data: dict[str, Any], slices: list[list[int]] | None) -> None:
        """Record the slices' state in the sidecar (atomically: a new file renamed over it,
        never written through a link); None drops it (single stream from now on)."""
        if slices is None:
            data.pop("slices", None)
        else:
            data["slices"] = slices
        # No fsync: the state only has to survive the process, and lags the data it describes.
        atomic_write_bytes(self.sidecar, json.dumps(data).encode(), durable=False)

    def open_append(self) -> IO[bytes]:
        """The partial file opened for appending (created if missing), never through a link."""
        return self._open(os.O_WRONLY | os.O_APPEND | os.O_CREAT, "ab")

    def hash_into(self, digest: Digest) -> int:
        """Feed the bytes already downloaded into ``digest``; return how many there are."""
        done = 0
        with self._open(os.O_RDONLY, "rb") as handle:
            while chunk := handle.read(_READ_CHUNK):
                digest.update(chunk)
                done += len(chunk)
        return done

    def resume_offset(self, archive_size: int) -> int:
        """Where the transfer goes on: the bytes already there, or 0 after dropping a file
        larger than the archive (it cannot be a prefix of it)."""
        offset = self.size()
        if offset > archive_size:
            logger.debug("%s is larger than the archive; starting over", self.part)
            self.part.unlink()
            return 0
        return offset

    def restart(self) -> int:
        """Drop the bytes (keep the claim); the offset to go on from, 0."""
        logger.debug("truncating %s to start over", self.part)
        self.part.unlink(missing_ok=True)
        return 0

    def discard(self) -> None:
        """Drop the partial download altogether (bytes and sidecar)."""
        logger.debug("discarding %s", self.part)
        self.part.unlink(missing_ok=True)
        self.sidecar.unlink(missing_ok=True)

    def finish(self, keep_as: Path | None) -> None:
        """The download was installed: keep the archive at ``keep_as``, or delete it."""
        self.sidecar.unlink(missing_ok=True)
        if keep_as is None:
            self.part.unlink(missing_ok=True)
            return
        keep_as.parent.mkdir(parents=True, exist_ok=True)
        logger.debug("keeping the archive: renaming %s to %s", self.part, keep_as)
        os.replace(self.part, keep_as)


def claim_partial(
    layout: RootLayout, info: ArchiveInfo, on_notice: Callable[[str], None]
) -> Partial:
    """Take over the largest partial download of this archive version, or start one.

    Partials of other versions of the archive are deleted (``on_notice`` says so);
    partials a live job is writing are left alone.
    """
    partial_dir = layout.partial_dir
    partial_dir.mkdir(parents=True, exist_ok=True)
    mine = partial_dir / f"{info.key}.{unique_suffix()}.part"
    for sidecar in partial_sidecars(layout, info.key):
        data = read_state_json(sidecar)
        if data is None:
            continue
        earlier = sidecar.with_suffix(".part")
        if partial_in_use(data, earlier):
            logger.debug("%s is being written by %s; leaving it", earlier, _owner(data))
            continue  # another live job is writing it (locks are off or do not work)
        if (data.get("md5"), data.get("size")) != (info.md5, info.size):
            on_notice(f"discarding a partial download of another version of {info.key}")
            Partial(earlier).discard()
            continue
        try:
            # Renaming is atomic: if two jobs race for one partial file, one wins.
            os.rename(earlier, mine)
        except FileNotFoundError:
            continue
        if not _own_regular_path(mine):
            # A link (or another user's file) under a partial's name: never resumed.
            set_aside(mine, info.key)
            mine = partial_dir / f"{info.key}.{unique_suffix()}.part"  # never reuse that name
            sidecar.unlink(missing_ok=True)
            on_notice(
                f"set aside a partial download of {info.key} that is not a regular file of "
                "this user; starting afresh"
            )
            continue
        logger.debug("claimed %s (left by %s) as %s", earlier, _owner(data), mine)
        data.update(owner_stamp())
        atomic_write_text(mine.with_suffix(".json"), json.dumps(data))
        sidecar.unlink(missing_ok=True)
        return Partial(mine)
    logger.debug("starting a new partial download %s", mine)
    atomic_write_text(
        mine.with_suffix(".json"),
        json.dumps(
            {
                "key": info.key,
                "url": info.url,
                "size": info.size,
                "md5": info.md5,
                "started_at": utc_now(),
                **owner_stamp(),
            }
        ),
    )
    return Partial(mine)


def claim_members_folder(layout: RootLayout, info: ArchiveInfo) -> Path:
    """Take over an earlier run's members folder for this archive version, or name a new one
    (created by the code that fills it)."""
    partial_dir = layout.partial_dir
    partial_dir.mkdir(parents=True, exist_ok=True)
    mine = partial_dir / f"{info.key}.members.{unique_suffix()}"
    for folder in sorted(partial_dir.glob(f"{info.key}.members.*")):
        if folder.is_symlink():
            set_aside(folder, info.key)  # never read, filled or emptied through a link
            continue
        progress = read_state_json(folder / PROGRESS_FILE)
        if progress is None:
            continue
        if partial_in_use(progress, folder / PROGRESS_FILE):
            logger.debug("%s is being filled by %s; leaving it", folder, _owner(progress))
            continue
        if (progress.get("md5"), progress.get("size")) != (info.md5, info.size):
            logger.debug("removing %s: members of another version of %s", folder, info.key)
            remove_tree(folder)
            continue
        try:
            os.rename(folder, mine)  # atomic: of two racing jobs, one gets it
        except OSError:
            continue
        if not own_tree(mine):
            # A link, or a link or another user's file inside: never written to.
            set_aside(mine, info.key)
            continue
        # Claim it at once, so that no other job takes it for abandoned.
        logger.debug("claimed %s (left by %s) as %s", folder, _owner(progress), mine)
        progress.update(owner_stamp())
        atomic_write_text(mine / PROGRESS_FILE, json.dumps(progress))
        return mine
    logger.debug("starting a new members folder %s", mine)
    return mine


def _owner(data: dict[str, Any]) -> str:
    return f"pid {data.get('pid')} on {data.get('host')}"
