"""Install records: what was installed, each file's hashes, and the sizes of archives.

Every file under ``.medimeta/installed/`` and ``.medimeta/records/sizes.json`` is
read and written here and nowhere else. Reading is cheap (one small JSON file per
dataset), so ``list`` stays fast.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from medimeta_cli.errors import IntegrityError
from medimeta_cli.fsutil import atomic_write_text, read_regular_file, unique_suffix
from medimeta_cli.store.layout import RootLayout

_Loaded = TypeVar("_Loaded")

#: Files are hashed in blocks of this size so that one large file (images.hdf5)
#: can be verified by several threads at once.
HASH_BLOCK_SIZE = 64 * 1024 * 1024


@dataclass(frozen=True)
class CheckStamp:
    """The outcome of the last ``verify`` of a dataset."""

    at: str
    ok: bool
    mode: str
    problems: int = 0


class ArchiveCheck(str, Enum):
    """What was checked of the archive a dataset was installed from."""

    #: The whole archive was fetched and its md5 and size matched the record.
    MD5 = "archive md5 and size"
    #: Only some members were fetched (``--layout hdf5``): each one's CRC-32 and size
    #: matched the archive's directory; the archive's md5 could not be checked.
    MEMBERS = "member crc32 and sizes"
    #: A local archive of a dataset outside the catalog (``download --from``): the record
    #: lists nothing to check it against; its md5 is what was installed.
    LOCAL = "local archive outside the record"
    #: An unzipped dataset folder (``download --from <id>/``), copied with each file
    #: hashed; there is no archive, so no md5 was checked or listed.
    FOLDER = "copied from a folder; each file hashed"


class UnreadableRecordError(IntegrityError):
    """An install record or file manifest exists but cannot be read or makes no sense."""

    default_hint = (
        "Reinstall it to rebuild its record: `medimeta verify --repair ID` for a catalog "
        "dataset, `medimeta download --from <its source> --force` for one from elsewhere."
    )


@dataclass(frozen=True)
class InstallRecord:
    """What was installed, from which archive, and when it was last checked.

    ``archive_md5`` is the md5 that was checked, None when none was (``--layout hdf5``
    fetches members only); ``listed_md5`` is the md5 the record lists for the archive
    either way, and ``archive_check`` says what was checked.
    """

    dataset_id: str
    archive_key: str
    archive_size: int
    archive_md5: str | None
    record_id: int
    record_version: str | None
    installed_at: str
    tool_version: str
    file_count: int
    total_bytes: int
    layout: str = "full"
    last_check: CheckStamp | None = None
    archive_check: str = ArchiveCheck.MD5.value
    listed_md5: str | None = None

    @property
    def source_md5(self) -> str | None:
        """The md5 the record listed for the archive installed (checked or not)."""
        return self.listed_md5 or self.archive_md5

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> InstallRecord:
        """Read a record written by :meth:`to_json`; ValueError when it makes no sense."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        if "archive_check" not in data and data.get("layout") == "hdf5":
            # Written before the check was recorded: the md5 of an hdf5 install was the
            # record's, not a checked one; claim no more than the members' checks.
            data["listed_md5"] = data.get("archive_md5")
            data["archive_md5"] = None
            data["archive_check"] = ArchiveCheck.MEMBERS.value
        check = data.get("last_check")
        record = cls(**{**data, "last_check": CheckStamp(**check) if check else None})
        for name, kind in (("dataset_id", str), ("archive_key", str), ("file_count", int)):
            if not isinstance(getattr(record, name), kind):
                raise ValueError(f"{name} is not a {kind.__name__}")
        ArchiveCheck(record.archive_check)  # ValueError for an unknown value
        return record


@dataclass(frozen=True)
class FileEntry:
    """One installed file: its size, its modification stamp and the SHA-256 of each block."""

    path: str
    size: int
    mtime_ns: int
    sha256: tuple[str, ...]

    @classmethod
    def from_json(cls, item: Any) -> FileEntry:
        """An entry written as ``[path, size, stamp, hashes]`` (a file manifest's, or a
        partial download's); ValueError when it is not one."""
        if not (isinstance(item, list) and len(item) == 4):
            raise ValueError(f"file entry {item!r} is not [path, size, stamp, hashes]")
        path, size, mtime, hashes = item
        if not (
            isinstance(path, str)
            and isinstance(size, int)
            and isinstance(mtime, int)
            and isinstance(hashes, list)
            and all(isinstance(h, str) for h in hashes)
        ):
            raise ValueError(f"file entry {item!r} has values of the wrong kind")
        return cls(path, size, mtime, tuple(hashes))


@dataclass(frozen=True)
class FileManifest:
    """Every file of an installed dataset, relative to the dataset folder."""

    files: tuple[FileEntry, ...]
    block_size: int = HASH_BLOCK_SIZE

    def to_json(self) -> dict[str, Any]:
        """Compact JSON: one list per file, because crc has 100k of them."""
        return {
            "block_size": self.block_size,
            "files": [[f.path, f.size, f.mtime_ns, list(f.sha256)] for f in self.files],
        }

    @classmethod
    def from_json(cls, data: Any) -> FileManifest:
        """Read a manifest written by :meth:`to_json`; ValueError when it makes no sense."""
        if not isinstance(data, dict) or not isinstance(data.get("files"), list):
            raise ValueError("not a JSON object with a list of files")
        block_size = data.get("block_size")
        if not isinstance(block_size, int) or block_size <= 0:
            raise ValueError(f"block size {block_size!r} is not a positive integer")
        files = tuple(FileEntry.from_json(item) for item in data["files"])
        return cls(block_size=block_size, files=files)


def _load(path: Path, parse: Callable[[Any], _Loaded], what: str) -> _Loaded | None:
    """What ``parse`` makes of the JSON in ``path``; None when the file does not exist;
    :class:`UnreadableRecordError` when it exists but is a link, not a regular file, or
    cannot be read, parsed or validated (damage, not the absence of a record)."""
    if not os.path.lexists(path):
        return None
    raw = read_regular_file(path)  # never through a link
    if raw is None:
        raise UnreadableRecordError(f"{path} cannot be read (or is not a regular file)")
    try:
        return parse(json.loads(raw))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise UnreadableRecordError(f"{path} is not a valid {what} ({exc})") from exc


def load_install_record(layout: RootLayout, dataset_id: str) -> InstallRecord | None:
    """The install record of a dataset; None when it has none at all.

    Raises :class:`UnreadableRecordError` when a record exists but is unreadable, which
    is damage, not the absence of a record.
    """
    path = layout.install_record_path(dataset_id)
    return _load(path, InstallRecord.from_json, "install record")


def load_file_manifest(layout: RootLayout, dataset_id: str) -> FileManifest | None:
    """The file manifest of a dataset; None when it has none at all.

    Raises :class:`UnreadableRecordError` when a manifest exists but is unreadable.
    """
    return _load(layout.file_manifest_path(dataset_id), FileManifest.from_json, "file manifest")


def read_install_record(layout: RootLayout, dataset_id: str) -> InstallRecord | None:
    """The install record of a dataset, or None when it has none (or an unreadable one:
    use :func:`load_install_record` where the difference matters)."""
    try:
        return load_install_record(layout, dataset_id)
    except UnreadableRecordError:
        return None


def read_file_manifest(layout: RootLayout, dataset_id: str) -> FileManifest | None:
    """The file manifest of a dataset, or None (see :func:`load_file_manifest`)."""
    try:
        return load_file_manifest(layout, dataset_id)
    except UnreadableRecordError:
        return None


def write_install_record(
    layout: RootLayout, record: InstallRecord, manifest: FileManifest | None = None
) -> None:
    """Save an install record (and its file manifest) atomically."""

    if manifest is not None:
        atomic_write_text(
            layout.file_manifest_path(record.dataset_id),
            json.dumps(manifest.to_json(), separators=(",", ":")),
        )
    atomic_write_text(
        layout.install_record_path(record.dataset_id), json.dumps(record.to_json(), indent=1)
    )


@dataclass(frozen=True)
class StagedRecord:
    """An install record and its file manifest written in full under temporary names, so
    that committing them needs renames only, never space."""

    moves: tuple[tuple[Path, Path], ...]  # (temporary, final), manifest first

    def commit(self) -> None:
        """Give the staged files their final names (manifest first, then the record)."""
        for temporary, final in self.moves:
            os.replace(temporary, final)

    def discard(self) -> None:
        """Delete what was staged and not committed."""
        for temporary, _ in self.moves:
            temporary.unlink(missing_ok=True)


def stage_install_record(
    layout: RootLayout, record: InstallRecord, manifest: FileManifest
) -> StagedRecord:
    """Write an install record and its manifest under temporary names next to their final
    ones, to the disk; on failure (a full disk) nothing is left behind."""

    texts = (
        (
            layout.file_manifest_path(record.dataset_id),
            json.dumps(manifest.to_json(), separators=(",", ":")),
        ),
        (layout.install_record_path(record.dataset_id), json.dumps(record.to_json(), indent=1)),
    )
    layout.installed_dir.mkdir(parents=True, exist_ok=True)
    staged = StagedRecord(
        tuple(
            (final.with_name(f".{final.name}.{unique_suffix()}.tmp"), final) for final, _ in texts
        )
    )
    try:
        for (temporary, _), (_, text) in zip(staged.moves, texts, strict=True):
            with open(temporary, "wb") as handle:
                handle.write(text.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
    except BaseException:
        staged.discard()
        raise
    return staged


def stamp_check(layout: RootLayout, dataset_id: str, check: CheckStamp) -> None:
    """Remember the outcome of a verification in the install record."""
    record = read_install_record(layout, dataset_id)
    if record is not None:
        write_install_record(layout, replace(record, last_check=check))


def forget_install(layout: RootLayout, dataset_id: str) -> None:
    """Drop the install record of a dataset (its folder is handled by the caller)."""
    layout.install_record_path(dataset_id).unlink(missing_ok=True)
    layout.file_manifest_path(dataset_id).unlink(missing_ok=True)
    layout.stats_cache_path(dataset_id).unlink(missing_ok=True)


def saved_archive_sizes(layout: RootLayout, key: str, md5: str | None = None) -> dict[str, int]:
    """Sizes of an archive's layouts saved by a download (``full``, ``hdf5``,
    ``hdf5_with_masks``), or what the saved record says (``full``); empty when unknown.
    With ``md5``, sizes saved for another version of the archive are ignored."""
    sizes: dict[str, int] = {}
    for path in sorted(layout.records_dir.glob("*.json")):
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if path.name == "sizes.json":
            found = data.get(key) if isinstance(data, dict) else None
            if isinstance(found, dict) and (md5 is None or found.get("md5") == md5):
                sizes.update({k: int(v) for k, v in found.items() if k != "md5"})
        elif isinstance(data, dict) and isinstance(data.get("files"), dict):
            entry = data["files"].get(key)
            if isinstance(entry, dict) and "size" in entry and "full" not in sizes:
                sizes["full"] = int(entry["size"])
    return sizes


def save_archive_sizes(layout: RootLayout, key: str, md5: str, sizes: dict[str, int]) -> None:
    """Remember the sizes of an archive version's layouts (``full``, ``hdf5``,
    ``hdf5_with_masks``), so ``info`` can show them without the network; best effort."""
    import contextlib

    path = layout.records_dir / "sizes.json"
    try:
        saved = json.loads(path.read_bytes())
    except (OSError, ValueError):
        saved = {}
    saved[key] = {"md5": md5, **sizes}
    with contextlib.suppress(OSError):
        atomic_write_text(path, json.dumps(saved, indent=1))
