"""Check installed datasets against their install records (and, deeply, their structure).

Three depths:

* ``fast``: every recorded file exists with its recorded size and modification
  stamp, and no file was added; a few ``stat`` calls per file.
* ``full``: every file is hashed again (SHA-256 per 64 MiB block, blocks spread
  over threads, since hashlib releases the GIL) and compared with the record.
  Files whose content matches but whose stamp changed (a copy without ``-p``)
  get their stamp refreshed, so the next fast check passes.
* ``deep``: ``full`` plus the structure of the upstream format (see
  :mod:`medimeta_cli.structure`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from medimeta_cli.catalog import Dataset
from medimeta_cli.fsutil import utc_now
from medimeta_cli.layout import RootLayout
from medimeta_cli.records import (
    CheckStamp,
    FileEntry,
    FileManifest,
    read_file_manifest,
    read_install_record,
    stamp_check,
    write_install_record,
)

MODES = ("fast", "full", "deep")
_READ = 4 * 1024 * 1024


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an installed dataset."""

    path: str
    kind: str  # missing, changed, extra, structure, untracked
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        """A JSON-ready mapping."""
        return {"path": self.path, "kind": self.kind, "detail": self.detail}

    def describe(self) -> str:
        """One line for people."""
        return f"{self.kind}: {self.path}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class Report:
    """The outcome of verifying one dataset."""

    dataset_id: str
    mode: str
    status: str  # ok, damaged, untracked, absent
    problems: tuple[Problem, ...] = ()
    files_checked: int = 0
    bytes_hashed: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Nothing is wrong (an untracked dataset is not wrong, only unverifiable)."""
        return self.status in ("ok", "untracked")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "id": self.dataset_id,
            "mode": self.mode,
            "status": self.status,
            "ok": self.ok,
            "files_checked": self.files_checked,
            "bytes_hashed": self.bytes_hashed,
            "seconds": round(self.seconds, 3),
            "problems": [problem.to_json() for problem in self.problems],
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
            info = os.stat(folder / entry.path)
        except FileNotFoundError:
            problems.append(Problem(entry.path, "missing"))
            continue
        if info.st_size != entry.size:
            problems.append(
                Problem(entry.path, "changed", f"{info.st_size:,} bytes, expected {entry.size:,}")
            )
        elif info.st_mtime_ns != entry.mtime_ns:
            stale.append(entry)
    known = {entry.path for entry in manifest.files}
    problems += [Problem(path, "extra") for path in sorted(_listed_files(folder) - known)]
    return problems, stale


def verify_dataset(
    layout: RootLayout,
    dataset: Dataset,
    *,
    mode: str = "fast",
    jobs: int | None = None,
    on_bytes: Callable[[int], None] = lambda count: None,
    on_start: Callable[[int], None] | None = None,
    record_result: bool = True,
) -> Report:
    """Verify one installed dataset at the given depth.

    ``on_start`` learns how many bytes a full or deep check will hash, before it starts.
    """
    started = time.monotonic()
    folder = layout.dataset_dir(dataset.id)
    if not (folder / "info.yaml").is_file():
        return Report(dataset.id, mode, "absent", seconds=time.monotonic() - started)
    manifest = read_file_manifest(layout, dataset.id)
    problems: list[Problem] = []
    checked = hashed = 0
    if manifest is None:
        status = "untracked"
        problems.append(Problem(".", "untracked", "no install record; only --deep can check it"))
    else:
        if on_start is not None and mode != "fast":
            on_start(sum(entry.size for entry in manifest.files))
        found, stale = _stat_problems(folder, manifest)
        problems += found
        checked = len(manifest.files)
        if mode == "fast":
            problems += [Problem(e.path, "changed", "modified since install") for e in stale]
        else:
            bad_paths = {p.path for p in found}
            mismatched, hashed = _rehash(folder, manifest, bad_paths, jobs, on_bytes)
            problems += [
                Problem(path, "changed", "content differs from the install record")
                for path in mismatched
            ]
            refreshed = [e for e in stale if e.path not in set(mismatched)]
            if refreshed and record_result:
                _refresh_stamps(layout, dataset.id, folder, manifest, refreshed)
        status = "damaged" if problems else "ok"
    if mode == "deep":
        from medimeta_cli.structure import check_structure

        structure = check_structure(folder, dataset)
        problems += [Problem(p.path, "structure", p.message) for p in structure]
        if structure:
            status = "damaged"
    report = Report(
        dataset.id, mode, status, tuple(problems), checked, hashed, time.monotonic() - started
    )
    if record_result and manifest is not None:
        # A read-only root can be verified, just not stamped.
        with contextlib.suppress(OSError):
            stamp_check(layout, dataset.id, CheckStamp(utc_now(), report.ok, mode, len(problems)))
    return report


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
