"""The local store: layout of a data root, install records, dataset states and locks.

A data root holds installed datasets exactly as the official loader reads them
(``<root>/<id>/info.yaml`` ...) and one hidden folder, ``<root>/.medimeta/``,
for the tool's own state, so dataset folders stay pristine::

    <root>/.medimeta/records/<record>.json      saved record manifests
    <root>/.medimeta/partial/<key>.<uniq>.part  partial downloads, one per process
    <root>/.medimeta/partial/<key>.<uniq>.json  their sidecars (url, size, md5)
    <root>/.medimeta/locks/<id>.lock            one lock per dataset (+ .owner.json)
    <root>/.medimeta/installed/<id>.json        install record (small; read by `list`)
    <root>/.medimeta/installed/<id>.files.json  size, stamp and hashes of every file
    <root>/.medimeta/tmp/                        extraction folders, renamed into place

Reading state is cheap (a few ``stat`` calls and one small JSON file per dataset)
so ``list`` stays fast.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from medimeta_cli.errors import LockTimeoutError

#: Files are hashed in blocks of this size so that one large file (images.hdf5)
#: can be verified by several threads at once.
HASH_BLOCK_SIZE = 64 * 1024 * 1024


def utc_now() -> str:
    """The current time as an ISO 8601 string in UTC (seconds)."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


class State(str, Enum):
    """Local state of one dataset in a data root."""

    ABSENT = "absent"
    PARTIAL = "partial"
    INSTALLED = "installed"
    VERIFIED = "verified"
    DAMAGED = "damaged"


@dataclass(frozen=True)
class RootLayout:
    """Paths inside one data root; creating them is left to the code that writes."""

    root: Path

    @property
    def state_dir(self) -> Path:
        """The hidden folder for the tool's own state."""
        return self.root / ".medimeta"

    @property
    def records_dir(self) -> Path:
        """Saved record manifests."""
        return self.state_dir / "records"

    @property
    def partial_dir(self) -> Path:
        """Partial downloads and their sidecars."""
        return self.state_dir / "partial"

    @property
    def locks_dir(self) -> Path:
        """Lock files."""
        return self.state_dir / "locks"

    @property
    def archives_dir(self) -> Path:
        """Archives kept with ``download --keep-archive``."""
        return self.state_dir / "archives"

    @property
    def installed_dir(self) -> Path:
        """Install records."""
        return self.state_dir / "installed"

    @property
    def tmp_dir(self) -> Path:
        """Extraction folders; on the same file system as the datasets, so renames are atomic."""
        return self.state_dir / "tmp"

    def dataset_dir(self, dataset_id: str) -> Path:
        """The folder the official loader reads for this dataset."""
        return self.root / dataset_id

    def install_record_path(self, dataset_id: str) -> Path:
        """The small install record of a dataset."""
        return self.installed_dir / f"{dataset_id}.json"

    def file_manifest_path(self, dataset_id: str) -> Path:
        """The per-file sizes, stamps and hashes of an installed dataset."""
        return self.installed_dir / f"{dataset_id}.files.json"

    def partial_sidecars(self, key: str) -> list[Path]:
        """Sidecars of partial downloads of an archive, largest download first."""
        sidecars = list(self.partial_dir.glob(f"{key}.*.json"))

        def done(sidecar: Path) -> int:
            try:
                return sidecar.with_suffix(".part").stat().st_size
            except OSError:
                return -1

        return sorted(sidecars, key=done, reverse=True)


# ----------------------------------------------------------------------------- records


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


# ----------------------------------------------------------------------------- states


@dataclass(frozen=True)
class LocalStatus:
    """The state of one dataset and where it lives."""

    dataset_id: str
    state: State
    path: Path | None = None
    percent: float | None = None
    checked_at: str | None = None
    tracked: bool = True
    shared: bool = False
    size_bytes: int | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "state": self.state.value,
            "path": str(self.path) if self.path else None,
            "percent": self.percent,
            "checked_at": self.checked_at,
            "shared": self.shared,
            "size_bytes": self.size_bytes,
        }

    def describe(self) -> str:
        """Short text for tables: ``partial 42%``, ``verified 2026-11-28``."""
        if self.state is State.PARTIAL and self.percent is not None:
            return f"partial {self.percent:.0f}%"
        text = self.state.value
        if self.state in (State.VERIFIED, State.DAMAGED) and self.checked_at:
            text = f"{text} {self.checked_at[:10]}"
        return f"{text} (shared)" if self.shared else text


def local_status(root: Path, dataset_id: str) -> LocalStatus:
    """Find out whether a dataset is absent, partly downloaded, installed, verified or damaged.

    A dataset counts as installed when its folder holds ``info.yaml``, as every
    unzipped upstream archive does, whether or not this tool installed it.
    """
    layout = RootLayout(root)
    folder = layout.dataset_dir(dataset_id)
    if (folder / "info.yaml").is_file():
        record = read_install_record(layout, dataset_id)
        check = record.last_check if record else None
        size = record.total_bytes if record else None
        if check is None:
            return LocalStatus(
                dataset_id, State.INSTALLED, folder, tracked=record is not None, size_bytes=size
            )
        state = State.VERIFIED if check.ok else State.DAMAGED
        return LocalStatus(dataset_id, state, folder, checked_at=check.at, size_bytes=size)
    for sidecar in layout.partial_sidecars(f"{dataset_id}.zip"):
        try:
            expected = int(json.loads(sidecar.read_bytes())["size"])
            done = sidecar.with_suffix(".part").stat().st_size
        except (OSError, ValueError, KeyError, TypeError):
            continue
        percent = 100.0 * done / expected if expected else 0.0
        return LocalStatus(dataset_id, State.PARTIAL, percent=round(percent, 1))
    return LocalStatus(dataset_id, State.ABSENT)


def locate(root: Path, shared_roots: Iterable[Path], dataset_id: str) -> LocalStatus:
    """The state of a dataset in the data root or, failing that, in the first shared root
    (``MEDIMETA_PATH``) that holds it installed."""
    status = local_status(root, dataset_id)
    if status.state not in (State.ABSENT, State.PARTIAL):
        return status
    for shared in shared_roots:
        found = local_status(shared, dataset_id)
        if found.state not in (State.ABSENT, State.PARTIAL):
            return replace(found, shared=True)
    return status


def root_of(status: LocalStatus) -> Path | None:
    """The data root holding an installed dataset (the parent of its folder)."""
    return status.path.parent if status.path is not None else None


# ----------------------------------------------------------------------------- locks


@dataclass
class DatasetLock:
    """An exclusive, inter-process lock on one dataset of one data root.

    Built on ``flock`` (via filelock), which the kernel releases when a process
    dies, so locks of killed jobs never go stale. The holder writes who it is
    next to the lock so that waiters can say whom they wait for. Correctness
    never depends on the lock: on file systems where locks do not work, jobs
    may download twice but still install atomically.
    """

    layout: RootLayout
    name: str
    timeout: float
    on_wait: Callable[[str], None] | None = None
    enabled: bool = True
    poll_interval: float = 0.5
    should_stop: Callable[[], bool] | None = None

    @property
    def path(self) -> Path:
        """The lock file."""
        return self.layout.locks_dir / f"{self.name}.lock"

    @property
    def owner_path(self) -> Path:
        """Who holds the lock: pid, host and since when."""
        return self.layout.locks_dir / f"{self.name}.owner.json"

    def holder(self) -> str:
        """A description of the current holder, for messages."""
        try:
            owner = json.loads(self.owner_path.read_bytes())
            return f"pid {owner['pid']} on {owner['host']} since {owner['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for the duration of the ``with`` block."""
        if not self.enabled:
            yield
            return
        from filelock import FileLock, Timeout

        self.layout.locks_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path), mode=lock_file_mode())
        deadline = time.monotonic() + self.timeout
        announced = False
        locked = True
        while True:
            try:
                lock.acquire(timeout=self.poll_interval)
                break
            except Timeout:
                if self.should_stop is not None and self.should_stop():
                    raise KeyboardInterrupt from None
                if not announced and self.on_wait is not None:
                    self.on_wait(f"waiting for {self.name}: locked by {self.holder()}")
                    announced = True
                if time.monotonic() >= deadline:
                    raise LockTimeoutError(
                        f"gave up after {self.timeout:.0f} s waiting for the lock on "
                        f"{self.name}, held by {self.holder()}"
                    ) from None
            except OSError as exc:  # after Timeout, which is an OSError too
                # Some network file systems refuse flock outright. Going on unlocked is
                # safe (unique temporary names, atomic renames); it may only cost bandwidth.
                if self.on_wait is not None:
                    self.on_wait(
                        f"file locks do not work in {self.path.parent} ({exc}); "
                        "going on without a lock"
                    )
                locked = False
                break
        if not locked:
            yield
            return
        try:
            from medimeta_cli.fsutil import atomic_write_text

            atomic_write_text(
                self.owner_path,
                json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": utc_now()}),
            )
            yield
        finally:
            self.owner_path.unlink(missing_ok=True)
            lock.release()


# ----------------------------------------------------------------------------- care
#
# Removing datasets, pruning what killed jobs left behind, and file modes. Every
# temporary name the tool makes ends in ``fsutil.unique_suffix()``, i.e.
# ``<host>.<pid>.<8 hex>``, so the process that made it can be found from the name.


def current_umask() -> int:
    """The umask of this process, read without changing it where ``/proc`` tells it.

    Elsewhere it is swapped out and back for a moment, through the stricter ``077`` so
    that a file another thread creates meanwhile is never more open than it should be.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def lock_file_mode() -> int:
    """The mode for lock files: ``0o666`` less the umask, as ``open`` would create them.

    filelock applies an explicit mode with ``fchmod`` (past the umask) and, in versions
    before 3.15, used ``0o644`` otherwise; passing the umask-filtered mode gives the same,
    group-usable result with every version.
    """
    return 0o666 & ~current_umask()


# ----------------------------------------------------------------------------- archive sizes


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


def estimated_hdf5_bytes(full_size: int, num_samples: int, pixels_per_image: int) -> int:
    """What the hdf5 layout of an archive takes when its directory has not been read yet:
    the archive less one uncompressed TIFF (pixels plus about 200 bytes of header) per image."""
    return max(0, full_size - num_samples * (pixels_per_image + 200))
