"""Install records: what was installed, each file's hashes, and the sizes of archives.

Every file under ``.medimeta/installed/`` and ``.medimeta/records/sizes.json`` is
read and written here and nowhere else. Reading is cheap (one small JSON file per
dataset), so ``list`` stays fast.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from medimeta_cli.layout import RootLayout

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


@dataclass(frozen=True)
class InstallRecord:
    """What was installed, from which archive, and when it was last checked."""

    dataset_id: str
    archive_key: str
    archive_size: int
    archive_md5: str
    record_id: int
    record_version: str | None
    installed_at: str
    tool_version: str
    file_count: int
    total_bytes: int
    layout: str = "full"
    last_check: CheckStamp | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InstallRecord:
        """Read a record written by :meth:`to_json`."""
        check = data.get("last_check")
        return cls(**{**data, "last_check": CheckStamp(**check) if check else None})


@dataclass(frozen=True)
class FileEntry:
    """One installed file: its size, its modification stamp and the SHA-256 of each block."""

    path: str
    size: int
    mtime_ns: int
    sha256: tuple[str, ...]


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
    def from_json(cls, data: dict[str, Any]) -> FileManifest:
        """Read a manifest written by :meth:`to_json`."""
        return cls(
            block_size=int(data["block_size"]),
            files=tuple(
                FileEntry(path, int(size), int(mtime), tuple(hashes))
                for path, size, mtime, hashes in data["files"]
            ),
        )


def read_install_record(layout: RootLayout, dataset_id: str) -> InstallRecord | None:
    """The install record of a dataset, or None when it has none (or an unreadable one)."""
    try:
        data = json.loads(layout.install_record_path(dataset_id).read_bytes())
        return InstallRecord.from_json(data)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def read_file_manifest(layout: RootLayout, dataset_id: str) -> FileManifest | None:
    """The file manifest of a dataset, or None."""
    try:
        return FileManifest.from_json(
            json.loads(layout.file_manifest_path(dataset_id).read_bytes())
        )
    except (OSError, ValueError, TypeError, KeyError):
        return None


def write_install_record(
    layout: RootLayout, record: InstallRecord, manifest: FileManifest | None = None
) -> None:
    """Save an install record (and its file manifest) atomically."""
    from medimeta_cli.fsutil import atomic_write_text

    if manifest is not None:
        atomic_write_text(
            layout.file_manifest_path(record.dataset_id),
            json.dumps(manifest.to_json(), separators=(",", ":")),
        )
    atomic_write_text(
        layout.install_record_path(record.dataset_id), json.dumps(record.to_json(), indent=1)
    )


def stamp_check(layout: RootLayout, dataset_id: str, check: CheckStamp) -> None:
    """Remember the outcome of a verification in the install record."""
    record = read_install_record(layout, dataset_id)
    if record is not None:
        write_install_record(layout, replace(record, last_check=check))


def forget_install(layout: RootLayout, dataset_id: str) -> None:
    """Drop the install record of a dataset (its folder is handled by the caller)."""
    layout.install_record_path(dataset_id).unlink(missing_ok=True)
    layout.file_manifest_path(dataset_id).unlink(missing_ok=True)


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

    from medimeta_cli.fsutil import atomic_write_text

    path = layout.records_dir / "sizes.json"
    try:
        saved = json.loads(path.read_bytes())
    except (OSError, ValueError):
        saved = {}
    saved[key] = {"md5": md5, **sizes}
    with contextlib.suppress(OSError):
        atomic_write_text(path, json.dumps(saved, indent=1))
