"""Check installed datasets against their install records (and, deeply, their structure).

Three depths:

* ``fast``: every recorded file exists with its recorded size and modification
  stamp, and no file was added; a few ``stat`` calls per file. Every mode also
  checks that the files the loader reads are present as regular files, and calls an
  install record or file manifest that exists but cannot be read damage.
* ``full``: every file is hashed again (SHA-256 per 64 MiB block, blocks spread
  over threads, since hashlib releases the GIL) and compared with the record.
  Files whose content matches but whose stamp changed (a copy without ``-p``)
  get their stamp refreshed, so the next fast check passes.
* ``deep``: ``full`` plus the structure of the upstream format (see
  :mod:`medimeta_cli.dataset.structure`).

Every check measures the files against the dataset's own ``info.yaml``, not against
the catalog: how that differs from the catalog is reported as a notice
(``catalog_differences``), never as damage.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

from medimeta_cli.catalog.datasets import Dataset
from medimeta_cli.dataset.essentials import required_file_problems
from medimeta_cli.dataset.gate import InfoError, read_info
from medimeta_cli.dataset.installed import CatalogDifference, catalog_differences
from medimeta_cli.fsutil import utc_now
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.records import (
    CheckStamp,
    FileEntry,
    FileManifest,
    UnreadableRecordError,
    load_file_manifest,
    load_install_record,
    read_install_record,
    stamp_check,
    write_install_record,
)

logger = logging.getLogger(__name__)

_READ = 4 * 1024 * 1024


class VerifyMode(str, Enum):
    """How deeply to check (see the module docstring)."""

    FAST = "fast"
    FULL = "full"
    DEEP = "deep"


class VerifyStatus(str, Enum):
    """The verdict on one dataset."""

    OK = "ok"
    DAMAGED = "damaged"
    UNTRACKED = "untracked"  # installed without a file manifest: only --deep can check it
    ABSENT = "absent"


class ProblemKind(str, Enum):
    """What is wrong with a file (or with the dataset as a whole)."""

    MISSING = "missing"
    CHANGED = "changed"
    EXTRA = "extra"
    STRUCTURE = "structure"
    UNTRACKED = "untracked"
    NOT_REGULAR = "not a regular file"
    UNREADABLE_RECORD = "unreadable record"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an installed dataset."""

    path: str
    kind: ProblemKind
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        """A JSON-ready mapping."""
        return {"path": self.path, "kind": self.kind.value, "detail": self.detail}

    def describe(self) -> str:
        """One line for people."""
        return f"{self.kind.value}: {self.path}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class Report:
    """The outcome of verifying one dataset."""

    dataset_id: str
    mode: VerifyMode
    status: VerifyStatus
    problems: tuple[Problem, ...] = ()
    files_checked: int = 0
    bytes_hashed: int = 0
    seconds: float = 0.0
    catalog_differences: tuple[CatalogDifference, ...] = ()
    """How the installed ``info.yaml`` differs from the catalog: a notice, not damage."""

    @property
    def ok(self) -> bool:
        """Nothing is wrong (an untracked dataset is not wrong, only unverifiable)."""
        return self.status in (VerifyStatus.OK, VerifyStatus.UNTRACKED)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "id": self.dataset_id,
            "mode": self.mode.value,
            "status": self.status.value,
            "ok": self.ok,
            "files_checked": self.files_checked,
            "bytes_hashed": self.bytes_hashed,
            "seconds": round(self.seconds, 3),
            "problems": [problem.to_json() for problem in self.problems],
            "catalog_differences": [d.to_json() for d in self.catalog_differences],
        }


_BUFFERS = threading.local()


def _read_buffer(size: int) -> memoryview:
    """One reusable read buffer per thread: allocating 4 MiB per small TIFF costs more
    than hashing it."""
    buffer: memoryview | None = getattr(_BUFFERS, "view", None)
    if buffer is None or len(buffer) < size:
        buffer = memoryview(bytearray(size))
        _BUFFERS.view = buffer
    return buffer[:size]


def hash_blocks(
    path: Path, block_size: int, blocks: Sequence[int], on_bytes: Callable[[int], None]
) -> dict[int, str]:
    """SHA-256 of the given blocks of a file."""
    digests: dict[int, str] = {}
    view = _read_buffer(min(_READ, block_size))
    with open(path, "rb", buffering=0) as handle:
        for index in blocks:
            handle.seek(index * block_size)
            digest = hashlib.sha256()
            left = block_size
            while left:
                count = handle.readinto(view[: min(len(view), left)])
                if not count:
                    break
                digest.update(view[:count])
                on_bytes(count)
                left -= count
            digests[index] = digest.hexdigest()
    return digests


def _blocks_of(entry: FileEntry, block_size: int) -> int:
    return max(1, -(-entry.size // block_size))


def _listed_files(folder: Path) -> set[str]:
    found: set[str] = set()
    for directory, _, files in os.walk(folder):
        base = Path(directory).relative_to(folder)
        found.update((base / name).as_posix() for name in files)
    return found


def _stat_problems(folder: Path, manifest: FileManifest) -> tuple[list[Problem], list[FileEntry]]:
    """Missing and resized files; also the entries whose stamp no longer matches."""
    problems: list[Problem] = []
    stale: list[FileEntry] = []
    for entry in manifest.files:
        try:
            info = os.lstat(folder / entry.path)  # a link in a file's place is not the file
        except FileNotFoundError:
            problems.append(Problem(entry.path, ProblemKind.MISSING))
            continue
        if not stat.S_ISREG(info.st_mode):
            problems.append(Problem(entry.path, ProblemKind.NOT_REGULAR, "is not a regular file"))
        elif info.st_size != entry.size:
            problems.append(
                Problem(
                    entry.path,
                    ProblemKind.CHANGED,
                    f"{info.st_size:,} bytes, expected {entry.size:,}",
                )
            )
        elif info.st_mtime_ns != entry.mtime_ns:
            stale.append(entry)
    known = {entry.path for entry in manifest.files}
    extra = sorted(_listed_files(folder) - known)
    problems += [Problem(path, ProblemKind.EXTRA) for path in extra]
    return problems, stale


def verify_dataset(
    layout: RootLayout,
    dataset: Dataset,
    *,
    mode: VerifyMode = VerifyMode.FAST,
    jobs: int | None = None,
    on_bytes: Callable[[int], None] = lambda count: None,
    on_start: Callable[[int], None] | None = None,
    record_result: bool = True,
) -> Report:
    """Verify one installed dataset at the given depth.

    ``dataset`` is the catalog entry (or, for a dataset outside the catalog, its own
    description): the files are checked against the folder's own ``info.yaml``, and the
    report lists how that differs from ``dataset`` as a notice. ``on_start`` learns how
    many bytes a full or deep check will hash, before it starts.
    """
    started = time.monotonic()
    mode = VerifyMode(mode)  # also from callers that pass the plain string
    folder = layout.dataset_dir(dataset.id)
    logger.debug("verifying %s in %s (%s)", dataset.id, folder, mode.value)
    if not (folder / "info.yaml").is_file():
        logger.debug("%s has no info.yaml: absent", dataset.id)
        return Report(dataset.id, mode, VerifyStatus.ABSENT, seconds=time.monotonic() - started)
    problems: list[Problem] = []
    differences: tuple[CatalogDifference, ...] = ()
    try:
        described = read_info(folder, dataset.id, summary=dataset.summary)
        differences = tuple(catalog_differences(described, dataset))
    except InfoError as error:
        # Without a readable info.yaml, the catalog says which files must be there.
        described = dataset
        if mode is not VerifyMode.DEEP:  # the structure check reports it in deep mode
            problems.append(Problem("info.yaml", ProblemKind.STRUCTURE, error.reason))
    checked = hashed = 0
    status: VerifyStatus
    manifest, unreadable = _load_records(layout, dataset.id)
    if unreadable:
        # A record that exists but cannot be read is damage, never "untracked".
        status = VerifyStatus.DAMAGED
        problems += unreadable
    elif manifest is None:
        status = VerifyStatus.UNTRACKED
        problems.append(
            Problem(".", ProblemKind.UNTRACKED, "no install record; only --deep can check it")
        )
    else:
        if on_start is not None and mode is not VerifyMode.FAST:
            on_start(sum(entry.size for entry in manifest.files))
        found, stale = _stat_problems(folder, manifest)
        problems += found
        checked = len(manifest.files)
        if mode is VerifyMode.FAST:
            problems += [
                Problem(e.path, ProblemKind.CHANGED, "modified since install") for e in stale
            ]
        else:
            bad_paths = {p.path for p in found}
            mismatched, hashed = _rehash(folder, manifest, bad_paths, jobs, on_bytes)
            problems += [
                Problem(path, ProblemKind.CHANGED, "content differs from the install record")
                for path in mismatched
            ]
            refreshed = [e for e in stale if e.path not in set(mismatched)]
            if refreshed and record_result:
                _refresh_stamps(layout, dataset.id, folder, manifest, refreshed)
        status = VerifyStatus.DAMAGED if problems else VerifyStatus.OK
    if any(p.kind is ProblemKind.STRUCTURE for p in problems):
        status = VerifyStatus.DAMAGED
    # Every mode: the files the loader reads are there, as regular files.
    reported = {p.path for p in problems}
    essential = [
        Problem(p.path, ProblemKind.MISSING if p.missing else ProblemKind.NOT_REGULAR, p.message)
        for p in required_file_problems(folder, described)
        if p.path not in reported
    ]
    if essential:
        problems += essential
        status = VerifyStatus.DAMAGED
    if mode is VerifyMode.DEEP:
        from medimeta_cli.dataset.structure import check_structure

        structure = check_structure(folder, dataset)
        problems += [Problem(p.path, ProblemKind.STRUCTURE, p.message) for p in structure]
        if structure:
            status = VerifyStatus.DAMAGED
    report = Report(
        dataset.id,
        mode,
        status,
        problems=tuple(problems),
        files_checked=checked,
        bytes_hashed=hashed,
        seconds=time.monotonic() - started,
        catalog_differences=differences,
    )
    logger.debug(
        "%s: %s, %d files checked, %d bytes hashed, %d problems in %.1f s",
        dataset.id,
        status.value,
        checked,
        hashed,
        len(problems),
        report.seconds,
    )
    if record_result and (manifest is not None or unreadable):
        # A read-only root can be verified, just not stamped.
        stamp = CheckStamp(utc_now(), report.ok, mode.value, len(problems))
        with contextlib.suppress(OSError):
            stamp_check(layout, dataset.id, stamp)
    return report


def _load_records(layout: RootLayout, dataset_id: str) -> tuple[FileManifest | None, list[Problem]]:
    """The dataset's file manifest (None when it has no record at all), and a problem for
    each of its record files that exists but cannot be read."""
    problems = []
    manifest = None
    for path, load in (
        (layout.install_record_path(dataset_id), load_install_record),
        (layout.file_manifest_path(dataset_id), load_file_manifest),
    ):
        try:
            loaded = load(layout, dataset_id)
        except UnreadableRecordError as error:
            detail = (
                f"{error.message}; reinstalling it rebuilds its record (`verify --repair`, "
                "or `download --from` for a dataset outside the catalog)"
            )
            problems.append(Problem(path.name, ProblemKind.UNREADABLE_RECORD, detail))
            continue
        if isinstance(loaded, FileManifest):
            manifest = loaded
    return manifest, problems


def _rehash(
    folder: Path,
    manifest: FileManifest,
    skip: set[str],
    jobs: int | None,
    on_bytes: Callable[[int], None],
) -> tuple[list[str], int]:
    """Hash every block of every file not already known bad; return mismatching paths."""
    block_size = manifest.block_size
    # Work units of about one block each keep both cores busy on one large HDF5 file,
    # and batch small files so that thread hand-offs do not dominate.
    units: list[list[tuple[FileEntry, list[int]]]] = []
    batch: list[tuple[FileEntry, list[int]]] = []
    batch_bytes = 0
    for entry in manifest.files:
        if entry.path in skip:
            continue
        for index in range(_blocks_of(entry, block_size)):
            batch.append((entry, [index]))
            batch_bytes += min(block_size, max(entry.size - index * block_size, 0)) or 1
            if batch_bytes >= block_size:
                units.append(batch)
                batch, batch_bytes = [], 0
    if batch:
        units.append(batch)

    def work(unit: list[tuple[FileEntry, list[int]]]) -> tuple[list[str], int]:
        bad, total = [], 0
        for entry, blocks in unit:
            try:
                digests = hash_blocks(folder / entry.path, block_size, blocks, on_bytes)
            except OSError:
                bad.append(entry.path)
                continue
            total += sum(min(block_size, max(entry.size - i * block_size, 0)) for i in blocks)
            # A block the record has no hash for cannot be vouched for: count it as changed.
            if any(i >= len(entry.sha256) or digests[i] != entry.sha256[i] for i in blocks):
                bad.append(entry.path)
        return bad, total

    workers = jobs or os.cpu_count() or 1
    logger.debug(
        "hashing %d files in %d units on %d threads", len(manifest.files), len(units), workers
    )
    mismatched: set[str] = set()
    hashed = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for bad, total in pool.map(work, units):
            mismatched.update(bad)
            hashed += total
    return sorted(mismatched), hashed


def _refresh_stamps(
    layout: RootLayout,
    dataset_id: str,
    folder: Path,
    manifest: FileManifest,
    refreshed: list[FileEntry],
) -> None:
    """Content matched, so record the files' new modification stamps."""
    stamps = {e.path: os.stat(folder / e.path).st_mtime_ns for e in refreshed}
    files = tuple(replace(e, mtime_ns=stamps.get(e.path, e.mtime_ns)) for e in manifest.files)
    record = read_install_record(layout, dataset_id)
    if record is None:
        return
    with contextlib.suppress(OSError):
        write_install_record(layout, record, FileManifest(files, manifest.block_size))
