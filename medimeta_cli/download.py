"""Resumable, verified, concurrency-safe download and installation of dataset archives.

The flow for one dataset: take the dataset's lock; stream the archive into a
partial file with a unique name in ``<root>/.medimeta/partial/``, hashing (md5)
while streaming and resuming with ``Range`` after cuts and across runs; check
md5 and size; extract into a temporary folder next to the data root; rename it
into ``<root>/<id>/`` in one step; write the install record.

Nothing here relies on the lock for correctness: every temporary name is unique
to its process and every visible change is one ``rename``, so a lock that
silently fails (some network file systems) costs bandwidth, never a corrupt
install.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from medimeta_cli import __version__
from medimeta_cli.archive import extract_archive, inspect_archive, member_path, wanted_in_layout
from medimeta_cli.catalog import Catalog, Dataset
from medimeta_cli.errors import (
    IntegrityError,
    MedimetaError,
    NetworkError,
    OfflineError,
    RemoteDataError,
    UsageError,
)
from medimeta_cli.fsutil import (
    atomic_write_text,
    ensure_space,
    ensure_writable_dir,
    free_bytes,
    human_bytes,
    remove_tree,
    translate_os_error,
    unique_suffix,
    utc_now,
)
from medimeta_cli.layout import RootLayout
from medimeta_cli.locking import DatasetLock
from medimeta_cli.ownership import partial_in_use
from medimeta_cli.ranged import (
    MemberFetcher,
    RangesUnsupported,
    RemoteListing,
    claim_members_folder,
    read_listing,
)
from medimeta_cli.record import ArchiveInfo, Manifest, load_saved_record, save_record
from medimeta_cli.records import (
    FileEntry,
    FileManifest,
    InstallRecord,
    read_install_record,
    saved_archive_sizes,
    write_install_record,
)
from medimeta_cli.remote import RemoteClient, RetryPolicy, content_range
from medimeta_cli.settings import Settings

_READ_CHUNK = 1024 * 1024


def _use_large_reads() -> None:
    """Read the socket in 1 MiB steps instead of httpcore's 64 KiB.

    Sixteen times fewer trips through the HTTP/1.1 parser per byte: a 1 GB
    archive then downloads at the speed of md5 rather than of Python.
    """
    try:
        from httpcore._sync.http11 import HTTP11Connection
    except ImportError:  # a future httpcore; the default works, only slower
        return
    if getattr(HTTP11Connection, "READ_NUM_BYTES", _READ_CHUNK) < _READ_CHUNK:
        HTTP11Connection.READ_NUM_BYTES = _READ_CHUNK


_use_large_reads()
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


# ----------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Event:
    """Something a progress display may want to show."""

    dataset_id: str


@dataclass(frozen=True)
class TransferStarted(Event):
    """Bytes of an archive are about to flow; ``done`` were already there (resume)."""

    total: int
    done: int


@dataclass(frozen=True)
class BytesTransferred(Event):
    """``count`` more bytes arrived."""

    count: int


@dataclass(frozen=True)
class PhaseChanged(Event):
    """The dataset moved on: ``verifying``, ``extracting``, ``installed``, ``skipped``..."""

    phase: str


@dataclass(frozen=True)
class Notice(Event):
    """A message for the user: a retry, a wait for a lock, an upstream change."""

    message: str
    warning: bool = False


EventSink = Callable[[Event], None]


def _ignore(event: Event) -> None:
    """The default sink."""


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Outcome:
    """What happened to one dataset."""

    dataset_id: str
    status: str  # "installed", "skipped" or "failed"
    detail: str = ""
    path: Path | None = None
    archive_md5: str | None = None
    downloaded_bytes: int = 0
    resumed_from: int = 0
    seconds: float = 0.0
    error: MedimetaError | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "id": self.dataset_id,
            "status": self.status,
            "detail": self.detail,
            "path": str(self.path) if self.path else None,
            "archive_md5": self.archive_md5,
            "downloaded_bytes": self.downloaded_bytes,
            "resumed_from": self.resumed_from,
            "seconds": round(self.seconds, 3),
            "error": None
            if self.error is None
            else {
                "type": type(self.error).__name__,
                "message": self.error.message,
                "hint": self.error.hint,
            },
        }


@dataclass(frozen=True)
class PlanItem:
    """One archive of a download plan."""

    dataset_id: str
    key: str
    url: str
    size: int | None
    md5: str | None
    state: str  # "installed", "partial" or "absent"
    partial_bytes: int = 0
    hdf5_size: int | None = None  # what --layout hdf5 fetches, when known
    layout: str = "full"

    @property
    def to_fetch(self) -> int:
        """Bytes still to transfer (0 when installed or unknown)."""
        size = self.hdf5_size if self.layout == "hdf5" and self.hdf5_size else self.size
        if self.state == "installed" or size is None:
            return 0
        return max(0, size - self.partial_bytes)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "id": self.dataset_id,
            "key": self.key,
            "url": self.url,
            "size": self.size,
            "md5": self.md5,
            "state": self.state,
            "partial_bytes": self.partial_bytes,
            "hdf5_size": self.hdf5_size,
            "layout": self.layout,
            "to_fetch": self.to_fetch,
        }


@dataclass(frozen=True)
class Plan:
    """What a download would do, and whether it fits on disk."""

    items: tuple[PlanItem, ...]
    needed_bytes: int
    free_bytes: int
    record_version: str | None

    @property
    def to_fetch(self) -> int:
        """Bytes to transfer in all."""
        return sum(item.to_fetch for item in self.items)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "items": [item.to_json() for item in self.items],
            "to_fetch": self.to_fetch,
            "needed_bytes": self.needed_bytes,
            "free_bytes": self.free_bytes,
            "record_version": self.record_version,
        }


# ----------------------------------------------------------------------------- engine


@dataclass
class _Partial:
    part: Path
    sidecar: Path
    resumed: bool


@dataclass
class Downloader:
    """Downloads and installs datasets into one data root."""

    settings: Settings
    catalog: Catalog
    on_event: EventSink = _ignore
    policy: RetryPolicy | None = None
    sleep: Callable[[float], None] | None = None
    transport: httpx.BaseTransport | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    _client: RemoteClient | None = field(default=None, init=False, repr=False)
    _manifest: Manifest | None = field(default=None, init=False, repr=False)

    @property
    def layout(self) -> RootLayout:
        """Paths inside the data root."""
        return RootLayout(self.settings.root)

    # -- network ------------------------------------------------------------------

    def _notice(self, dataset_id: str, message: str, *, warning: bool = False) -> None:
        self.on_event(Notice(dataset_id, message, warning))

    def client(self) -> RemoteClient:
        """The HTTP client, created on first use; :class:`OfflineError` in offline mode."""
        if self.settings.offline:
            raise OfflineError("offline mode is on, and this needs the Zenodo record")
        if self._client is None:
            self._client = RemoteClient(
                self.settings.base_url,
                self.settings.record_id,
                timeout=self.settings.timeout,
                policy=self.policy or RetryPolicy(retries=self.settings.retries),
                on_notice=lambda message: self._notice("", message),
                sleep=self.sleep or self._interruptible_sleep,
                transport=self.transport,
            )
        return self._client

    def _interruptible_sleep(self, seconds: float) -> None:
        """Wait between retries, but stop at once when the run is being cancelled."""
        if self.cancel.wait(seconds):
            raise KeyboardInterrupt

    def close(self) -> None:
        """Close network connections."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def manifest(self, *, prefer_saved: bool = False) -> Manifest:
        """The record's manifest: fetched (and saved) once per run, or the saved copy offline."""
        if self._manifest is not None:
            return self._manifest
        saved = load_saved_record(self.layout, self.settings.record_id, self.settings.base_url)
        if self.settings.offline or (prefer_saved and saved is not None):
            if saved is None:
                raise OfflineError(
                    "offline mode is on and no record manifest is saved in "
                    f"{self.layout.records_dir}",
                    hint="Run `medimeta download --print-urls` once with network access to save "
                    "it, or unset MEDIMETA_OFFLINE.",
                )
            self._manifest = saved
            return saved
        fresh = self.client().fetch_record()
        self._warn_about_changes(fresh, saved)
        # A read-only root still lets us report; the install step will say more.
        with contextlib.suppress(OSError):
            save_record(self.layout, fresh)
        self._manifest = fresh
        return fresh

    def _warn_about_changes(self, fresh: Manifest, saved: Manifest | None) -> None:
        """Say loudly when upstream files differ from what is installed or was seen before."""
        for dataset in self.catalog.datasets:
            info = fresh.files.get(dataset.archive)
            if info is None:
                continue
            record = read_install_record(self.layout, dataset.id)
            if record is not None and (record.archive_md5, record.archive_size) != (
                info.md5,
                info.size,
            ):
                self._notice(
                    dataset.id,
                    f"upstream changed: {info.key} is now {human_bytes(info.size)} with md5 "
                    f"{info.md5}, but the installed copy came from md5 {record.archive_md5}; "
                    f"keeping the installed copy (use --force to replace it)",
                    warning=True,
                )
            elif saved is not None and dataset.archive in saved.files:
                old = saved.files[dataset.archive]
                if (old.md5, old.size) != (info.md5, info.size):
                    self._notice(
                        dataset.id,
                        f"upstream changed: {info.key} md5 {old.md5} -> {info.md5}",
                        warning=True,
                    )

    # -- planning -----------------------------------------------------------------

    def is_installed(self, dataset: Dataset) -> bool:
        """Installed means the folder the loader reads holds ``info.yaml``."""
        return (self.layout.dataset_dir(dataset.id) / "info.yaml").is_file()

    def shared_copy(self, dataset: Dataset) -> Path | None:
        """The dataset's folder in the first shared root (``MEDIMETA_PATH``) holding it."""
        for root in self.settings.shared_roots:
            folder = RootLayout(root).dataset_dir(dataset.id)
            if (folder / "info.yaml").is_file():
                return folder
        return None

    def partial_bytes(self, key: str, md5: str | None) -> int:
        """Bytes already downloaded of this archive version (0 when none)."""
        for sidecar in self.layout.partial_sidecars(key):
            try:
                data = json.loads(sidecar.read_bytes())
                if md5 is None or data.get("md5") == md5:
                    return sidecar.with_suffix(".part").stat().st_size
            except (OSError, ValueError):
                continue
        return 0

    def plan(
        self,
        datasets: Sequence[Dataset],
        *,
        force: bool = False,
        jobs: int = 2,
        layout: str = "full",
        with_masks: bool = False,
    ) -> Plan:
        """Sizes (of both layouts where known), URLs and states of the archives, and the disk
        space a download needs. For ``layout="hdf5"`` online, the archives' directories are
        read (one or two small range requests each) to give exact sizes."""
        try:
            manifest: Manifest | None = self.manifest(prefer_saved=self.settings.offline)
        except OfflineError:
            manifest = None
        items = []
        for dataset in datasets:
            info = manifest.files.get(dataset.archive) if manifest else None
            installed = not force and (
                self.is_installed(dataset) or self.shared_copy(dataset) is not None
            )
            done = (
                0 if installed else self.partial_bytes(dataset.archive, info.md5 if info else None)
            )
            hdf5_size = self._hdf5_size(dataset, info, layout, with_masks, installed)
            items.append(
                PlanItem(
                    dataset_id=dataset.id,
                    key=dataset.archive,
                    url=info.url if info else _archive_url(self.settings, dataset.archive),
                    size=info.size if info else None,
                    md5=info.md5 if info else None,
                    state="installed" if installed else ("partial" if done else "absent"),
                    partial_bytes=done,
                    hdf5_size=hdf5_size,
                    layout=layout,
                )
            )
        return Plan(
            items=tuple(items),
            # hdf5 installs write the fetched members straight into place: no archive copy.
            needed_bytes=sum(i.to_fetch for i in items)
            if layout == "hdf5"
            else space_needed(items, jobs),
            free_bytes=free_bytes(self.settings.root),
            record_version=manifest.version if manifest else None,
        )

    def _hdf5_size(
        self,
        dataset: Dataset,
        info: ArchiveInfo | None,
        layout: str,
        with_masks: bool,
        installed: bool,
    ) -> int | None:
        """The hdf5 layout's size: saved by an earlier download, or read from the archive's
        directory now (online, when that layout is asked for and the dataset is needed)."""
        if info is None:
            return None
        field = "hdf5_with_masks" if with_masks else "hdf5"
        saved = saved_archive_sizes(self.layout, info.key, info.md5).get(field)
        if saved is not None or layout != "hdf5" or installed or self.settings.offline:
            return saved
        try:
            listing, _ = read_listing(self.client(), info, dataset)
        except RangesUnsupported:
            return None
        self._save_sizes(info, listing)
        return listing.wanted_bytes(partial(wanted_in_layout, layout="hdf5", with_masks=with_masks))

    # -- download -----------------------------------------------------------------

    def download(
        self,
        datasets: Sequence[Dataset],
        *,
        force: bool = False,
        keep_archive: bool = False,
        jobs: int = 2,
        layout: str = "full",
        with_masks: bool = False,
    ) -> list[Outcome]:
        """Download and install datasets, ``jobs`` at a time; one outcome per dataset.

        ``layout="hdf5"`` fetches only the archive members the official loader reads,
        with range requests (the TIFF copies of the images are left out).

        Errors of one dataset do not stop the others; they are returned in its
        outcome. Errors that concern every dataset (offline, no space, read-only
        root, unreachable record) are raised.
        """
        outcomes: dict[str, Outcome] = {}
        pending = []
        for dataset in datasets:
            shared = self.shared_copy(dataset)
            if not force and self.is_installed(dataset):
                outcomes[dataset.id] = Outcome(
                    dataset.id,
                    "skipped",
                    "already installed",
                    path=self.layout.dataset_dir(dataset.id),
                )
                self.on_event(PhaseChanged(dataset.id, "skipped"))
            elif not force and shared is not None:
                outcomes[dataset.id] = Outcome(
                    dataset.id, "skipped", "in a shared root (MEDIMETA_PATH)", path=shared
                )
                self.on_event(PhaseChanged(dataset.id, "skipped"))
            else:
                pending.append(dataset)
        if pending:
            ensure_writable_dir(self.layout.state_dir)
            manifest = self.manifest()
            infos = {d.id: manifest.archive(d.archive) for d in pending}
            plan_items = [
                PlanItem(
                    d.id,
                    d.archive,
                    infos[d.id].url,
                    infos[d.id].size,
                    infos[d.id].md5,
                    "absent",
                    self.partial_bytes(d.archive, infos[d.id].md5),
                )
                for d in pending
            ]
            if layout == "full":  # hdf5 installs check their exact size once listed
                ensure_space(
                    self.settings.root,
                    space_needed(plan_items, jobs if not keep_archive else len(plan_items)),
                    f"{len(pending)} dataset(s) (archives plus extraction)",
                )
            with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                futures = {
                    d.id: pool.submit(
                        self._download_one, d, infos[d.id], force, keep_archive, layout, with_masks
                    )
                    for d in pending
                }
                try:
                    for dataset_id, future in futures.items():
                        outcomes[dataset_id] = future.result()
                except KeyboardInterrupt:
                    self.cancel.set()
                    raise
        return [outcomes[d.id] for d in datasets]

    def _download_one(
        self,
        dataset: Dataset,
        info: ArchiveInfo,
        force: bool,
        keep_archive: bool,
        layout: str = "full",
        with_masks: bool = False,
    ) -> Outcome:
        started = time.monotonic()
        try:
            lock = DatasetLock(
                self.layout,
                dataset.id,
                timeout=self.settings.lock_timeout,
                on_wait=lambda message: self._notice(dataset.id, message),
                enabled=self.settings.locks,
                should_stop=self.cancel.is_set,
            )
            with lock.hold():
                if not force and self.is_installed(dataset):
                    self.on_event(PhaseChanged(dataset.id, "skipped"))
                    return Outcome(
                        dataset.id,
                        "skipped",
                        "installed by another job",
                        path=self.layout.dataset_dir(dataset.id),
                        seconds=time.monotonic() - started,
                    )
                if layout == "hdf5":
                    try:
                        detail, resumed_from, fetched = self._install_members(
                            dataset, info, force, with_masks
                        )
                        layout_done = True
                    except RangesUnsupported:
                        self._notice(
                            dataset.id,
                            "the server does not honour byte ranges; fetching the whole archive",
                            warning=True,
                        )
                        layout_done = False
                if layout == "full" or not layout_done:
                    archive, resumed_from, fetched = self.fetch_archive(dataset.id, info)
                    detail = self.install_archive(
                        dataset, archive, info, force=force, layout=layout, with_masks=with_masks
                    )
                    self._dispose(archive, info.key, keep_archive)
        except MedimetaError as error:
            self.on_event(PhaseChanged(dataset.id, "failed"))
            return Outcome(
                dataset.id, "failed", error.message, error=error, seconds=time.monotonic() - started
            )
        self.on_event(PhaseChanged(dataset.id, detail))
        return Outcome(
            dataset.id,
            "installed" if detail == "installed" else "skipped",
            detail,
            path=self.layout.dataset_dir(dataset.id),
            archive_md5=info.md5,
            downloaded_bytes=fetched,
            resumed_from=resumed_from,
            seconds=time.monotonic() - started,
        )

    def _install_members(
        self, dataset: Dataset, info: ArchiveInfo, force: bool, with_masks: bool
    ) -> tuple[str, int, int]:
        """Fetch the loader's members with range requests and install them (hdf5 layout)."""
        client = self.client()
        self.on_event(PhaseChanged(dataset.id, "reading the archive's directory"))
        listing, _ = read_listing(client, info, dataset)
        spans = listing.spans(partial(wanted_in_layout, layout="hdf5", with_masks=with_masks))
        self._save_sizes(info, listing)
        total = sum(end - start for _, start, end in spans)
        ensure_space(self.settings.root, total, f"the hdf5 layout of {info.key}")
        folder = claim_members_folder(self.layout.partial_dir, info)
        fetched = [0]

        def count(n: int) -> None:
            fetched[0] += n
            self.on_event(BytesTransferred(dataset.id, n))

        fetcher = MemberFetcher(
            client, info, folder, on_bytes=count, should_stop=self.cancel.is_set
        )
        fetcher.load_progress()
        resumed = sum(end - start for i, start, end in spans if member_path(i) in fetcher.done)
        self.on_event(TransferStarted(dataset.id, total=total, done=resumed))
        try:
            entries = fetcher.fetch(spans)
        except OSError as exc:
            raise translate_os_error(exc, f"{info.key} into {folder}") from exc
        detail = self.install_folder(
            dataset, fetcher.data, entries, info, force=force, layout="hdf5"
        )
        remove_tree(folder)
        return detail, resumed, fetched[0]

    def _save_sizes(self, info: ArchiveInfo, listing: RemoteListing) -> None:
        """Remember both layouts' sizes, so ``info`` can show them without the network."""
        path = self.layout.records_dir / "sizes.json"
        try:
            sizes = json.loads(path.read_bytes())
        except (OSError, ValueError):
            sizes = {}
        sizes[info.key] = {
            "md5": info.md5,
            "full": info.size,
            "hdf5": listing.wanted_bytes(partial(wanted_in_layout, layout="hdf5")),
            "hdf5_with_masks": listing.wanted_bytes(
                partial(wanted_in_layout, layout="hdf5", with_masks=True)
            ),
        }
        with contextlib.suppress(OSError):
            atomic_write_text(path, json.dumps(sizes, indent=1))

    def _dispose(self, archive: Path, key: str, keep_archive: bool) -> None:
        archive.with_suffix(".json").unlink(missing_ok=True)
        if keep_archive:
            kept = self.layout.archives_dir / key
            kept.parent.mkdir(parents=True, exist_ok=True)
            os.replace(archive, kept)
        else:
            archive.unlink(missing_ok=True)

    # -- transfer -----------------------------------------------------------------

    def _claim_partial(self, dataset_id: str, info: ArchiveInfo) -> _Partial:
        """Take over the largest partial download of this archive version, or start one."""
        partial_dir = self.layout.partial_dir
        partial_dir.mkdir(parents=True, exist_ok=True)
        mine = partial_dir / f"{info.key}.{unique_suffix()}.part"
        for sidecar in self.layout.partial_sidecars(info.key):
            try:
                data = json.loads(sidecar.read_bytes())
            except (OSError, ValueError):
                continue
            if partial_in_use(data, sidecar.with_suffix(".part")):
                continue  # another live job is writing it (locks are off or do not work)
            if (data.get("md5"), data.get("size")) != (info.md5, info.size):
                self._notice(
                    dataset_id, f"discarding a partial download of another version of {info.key}"
                )
                sidecar.with_suffix(".part").unlink(missing_ok=True)
                sidecar.unlink(missing_ok=True)
                continue
            try:
                # Renaming is atomic: if two jobs race for one partial file, one wins.
                os.rename(sidecar.with_suffix(".part"), mine)
            except FileNotFoundError:
                continue
            data.update(host=socket.gethostname(), pid=os.getpid())
            atomic_write_text(mine.with_suffix(".json"), json.dumps(data))
            sidecar.unlink(missing_ok=True)
            return _Partial(mine, mine.with_suffix(".json"), resumed=True)
        atomic_write_text(
            mine.with_suffix(".json"),
            json.dumps(
                {
                    "key": info.key,
                    "url": info.url,
                    "size": info.size,
                    "md5": info.md5,
                    "started_at": utc_now(),
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                }
            ),
        )
        return _Partial(mine, mine.with_suffix(".json"), resumed=False)

    def fetch_archive(self, dataset_id: str, info: ArchiveInfo) -> tuple[Path, int, int]:
        """Download one archive, resuming what earlier runs left; verify size and md5.

        Returns the path of the complete archive, the offset it resumed from and
        the bytes transferred in this run.
        """
        partial = self._claim_partial(dataset_id, info)
        part = partial.part
        digest = hashlib.md5()
        offset = part.stat().st_size if part.exists() else 0
        if offset > info.size:
            part.unlink()
            offset = 0
        if offset:
            self.on_event(PhaseChanged(dataset_id, "checking partial download"))
            offset = _hash_prefix(part, digest)
            self._notice(dataset_id, f"resuming {info.key} at {human_bytes(offset)}")
        resumed_from = offset
        self.on_event(TransferStarted(dataset_id, total=info.size, done=offset))
        fetched = 0
        attempt = 0
        client = self.client()
        while offset < info.size or (info.size == 0 and not part.exists()):
            # identity: the bytes hashed must be the archive's, never a proxy's gzip of it.
            headers = {"Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
            gained = 0
            try:
                with client.stream(info.url, headers) as response:
                    offset, digest = self._check_response(
                        dataset_id, response, info, offset, digest, part
                    )
                    if offset >= info.size:
                        break
                    gained = self._receive(dataset_id, response, info, part, offset, digest)
                    offset += gained
                    fetched += gained
                if offset < info.size:
                    raise httpx.RemoteProtocolError("the server closed the transfer early")
            except httpx.TransportError as exc:
                offset = part.stat().st_size if part.exists() else 0
                # A flaky link that still makes progress should not run out of retries.
                attempt = 1 if gained else attempt + 1
                client.retry_wait(
                    attempt, f"transfer of {info.key} interrupted at {human_bytes(offset)} ({exc})"
                )
            except OSError as exc:
                raise translate_os_error(exc, f"{info.key} into {part.parent}") from exc
        self.on_event(PhaseChanged(dataset_id, "verifying"))
        actual = digest.hexdigest()
        size = part.stat().st_size if part.exists() else 0
        if size != info.size or actual != info.md5:
            part.unlink(missing_ok=True)
            partial.sidecar.unlink(missing_ok=True)
            raise IntegrityError(
                f"{info.key} does not match the record (md5 {actual}, {size:,} bytes; "
                f"expected md5 {info.md5}, {info.size:,} bytes); the download was discarded",
                hint="Run the same command again to download it afresh.",
            )
        return part, resumed_from, fetched

    def _check_response(
        self,
        dataset_id: str,
        response: httpx.Response,
        info: ArchiveInfo,
        offset: int,
        digest: Any,
        part: Path,
    ) -> tuple[int, Any]:
        """Make sense of the status: resume (206), restart (200) or done (416)."""
        status = response.status_code
        if status == 416:
            if offset == info.size:
                return offset, digest
            self._notice(dataset_id, f"server rejected resuming {info.key}; starting over")
            return self._restart(part), hashlib.md5()
        if status == 206:
            start, total = content_range(response) or (-1, None)
            if start != offset or (total is not None and total != info.size):
                self._notice(dataset_id, f"unexpected Content-Range for {info.key}; starting over")
                part.unlink(missing_ok=True)
                raise httpx.RemoteProtocolError("mismatched Content-Range")
        elif status == 200:
            if offset:
                self._notice(dataset_id, "the server ignored the range request; starting over")
                offset, digest = self._restart(part), hashlib.md5()
        elif status == 404:
            raise RemoteDataError(
                f"{info.key} was not found at {info.url} (HTTP 404)",
                hint="The record may have changed; check MEDIMETA_BASE_URL and MEDIMETA_RECORD.",
            )
        else:
            raise NetworkError(f"HTTP {status} for {info.url}")
        _refuse_non_archive(response, info)
        return offset, digest

    @staticmethod
    def _restart(part: Path) -> int:
        part.unlink(missing_ok=True)
        return 0

    def _receive(
        self,
        dataset_id: str,
        response: httpx.Response,
        info: ArchiveInfo,
        part: Path,
        offset: int,
        digest: Any,
    ) -> int:
        """Append the body to the partial file, hashing it as it streams; return bytes written."""
        written = 0
        head = b""
        with open(part, "ab") as sink, BackgroundHasher(digest) as hasher:
            for chunk in response.iter_raw():
                if offset == 0 and len(head) < 4:
                    head += chunk[:4]
                    if len(head) >= 4 and head[:4] not in _ZIP_MAGIC:
                        raise RemoteDataError(
                            f"the server sent something that is not a zip archive for {info.key} "
                            f"(it starts with {head[:16]!r})"
                        )
                if offset + written + len(chunk) > info.size:
                    raise IntegrityError(
                        f"the server sent more than the {info.size:,} bytes the record lists for "
                        f"{info.key}"
                    )
                sink.write(chunk)
                hasher.feed(chunk)
                written += len(chunk)
                self.on_event(BytesTransferred(dataset_id, len(chunk)))
                if self.cancel.is_set():
                    raise KeyboardInterrupt
        return written

    # -- install ------------------------------------------------------------------

    def install_archive(
        self,
        dataset: Dataset,
        archive: Path,
        info: ArchiveInfo,
        *,
        force: bool = False,
        layout: str = "full",
        with_masks: bool = False,
    ) -> str:
        """Extract a verified archive into place atomically and write its install record.

        With ``layout="hdf5"`` only the files the loader reads are extracted.
        Returns ``"installed"``, or ``"installed by another job"`` when another
        process got there first (possible only where locks do not work).
        """
        self.on_event(PhaseChanged(dataset.id, "extracting"))
        listing = inspect_archive(archive, dataset, archive_size=info.size)
        ensure_space(self.layout.root, listing.total_bytes, f"extracting {info.key}")
        staging = self.new_staging(dataset)
        try:
            entries = extract_archive(
                archive,
                dataset,
                listing,
                staging,
                wanted=lambda path: wanted_in_layout(path, layout, with_masks=with_masks),
            )
            return self.install_folder(dataset, staging, entries, info, force=force, layout=layout)
        except OSError as exc:
            raise translate_os_error(exc, f"{dataset.id} into {self.layout.root}") from exc
        finally:
            remove_tree(staging)

    def new_staging(self, dataset: Dataset) -> Path:
        """A fresh extraction folder on the data root's file system."""
        self.layout.tmp_dir.mkdir(parents=True, exist_ok=True)
        return self.layout.tmp_dir / f"{dataset.id}.{unique_suffix()}"

    def install_folder(
        self,
        dataset: Dataset,
        staging: Path,
        entries: Sequence[FileEntry],
        info: ArchiveInfo,
        *,
        force: bool,
        layout: str,
    ) -> str:
        """Rename a complete staging folder into ``<root>/<id>`` and record what it holds."""
        _check_info_id(staging, dataset.id, info.key)
        final = self.layout.dataset_dir(dataset.id)
        old: Path | None = None
        try:
            if final.exists():
                if not force:
                    return "installed by another job"
                old = self.layout.tmp_dir / f"{dataset.id}.old.{unique_suffix()}"
                os.rename(final, old)
            try:
                os.rename(staging, final)
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    return "installed by another job"
                raise
            manifest = self._manifest
            write_install_record(
                self.layout,
                InstallRecord(
                    dataset_id=dataset.id,
                    archive_key=info.key,
                    archive_size=info.size,
                    archive_md5=info.md5,
                    record_id=self.settings.record_id,
                    record_version=manifest.version if manifest else None,
                    installed_at=utc_now(),
                    tool_version=__version__,
                    file_count=len(entries),
                    total_bytes=sum(entry.size for entry in entries),
                    layout=layout,
                ),
                FileManifest(tuple(entries)),
            )
        finally:
            if old is not None:
                remove_tree(old)
        return "installed"

    def install_from(self, paths: Iterable[Path], *, force: bool = False) -> list[Outcome]:
        """Install archives fetched by other means, after checking them against the record."""
        archives = _find_archives(paths)
        ensure_writable_dir(self.layout.state_dir)
        manifest = self.manifest(prefer_saved=True)
        outcomes = []
        for path in archives:
            started = time.monotonic()
            dataset = self.catalog.get(path.name.removesuffix(".zip"))
            try:
                info = manifest.archive(dataset.archive)
                if not force and self.is_installed(dataset):
                    outcomes.append(
                        Outcome(
                            dataset.id,
                            "skipped",
                            "already installed",
                            path=self.layout.dataset_dir(dataset.id),
                        )
                    )
                    continue
                self._check_local_archive(dataset.id, path, info)
                with DatasetLock(
                    self.layout,
                    dataset.id,
                    timeout=self.settings.lock_timeout,
                    on_wait=partial(self._notice, dataset.id),
                    enabled=self.settings.locks,
                    should_stop=self.cancel.is_set,
                ).hold():
                    detail = self.install_archive(dataset, path, info, force=force)
            except MedimetaError as error:
                outcomes.append(
                    Outcome(
                        dataset.id,
                        "failed",
                        error.message,
                        error=error,
                        seconds=time.monotonic() - started,
                    )
                )
                continue
            outcomes.append(
                Outcome(
                    dataset.id,
                    "installed" if detail == "installed" else "skipped",
                    detail,
                    path=self.layout.dataset_dir(dataset.id),
                    archive_md5=info.md5,
                    seconds=time.monotonic() - started,
                )
            )
        return outcomes

    def _check_local_archive(self, dataset_id: str, path: Path, info: ArchiveInfo) -> None:
        size = path.stat().st_size
        if size != info.size:
            raise IntegrityError(
                f"{path} has {size:,} bytes, the record lists {info.size:,} for {info.key}",
                hint="The copy is incomplete or from another version; fetch it again.",
            )
        self.on_event(TransferStarted(dataset_id, total=size, done=0))
        self.on_event(PhaseChanged(dataset_id, "verifying"))
        digest = hashlib.md5()
        with open(path, "rb") as handle:
            while chunk := handle.read(_READ_CHUNK):
                digest.update(chunk)
                self.on_event(BytesTransferred(dataset_id, len(chunk)))
        if digest.hexdigest() != info.md5:
            raise IntegrityError(
                f"{path} has md5 {digest.hexdigest()}, the record lists {info.md5} for {info.key}",
                hint="The copy is damaged or from another version; fetch it again.",
            )


# ----------------------------------------------------------------------------- helpers


class BackgroundHasher:
    """Feeds chunks to a hash in a second thread, so hashing overlaps receiving.

    hashlib releases the GIL for large buffers, so on two cores the md5 costs
    almost no wall time as long as the network is not faster than md5 itself.
    """

    def __init__(self, digest: Any, depth: int = 32) -> None:
        import queue

        self.digest = digest
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name="md5", daemon=True)

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self.digest.update(chunk)

    def feed(self, chunk: bytes) -> None:
        """Hash this chunk after the ones fed before it."""
        self._queue.put(chunk)

    def __enter__(self) -> BackgroundHasher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # Always drain: the caller reads the digest of exactly what was written.
        self._queue.put(None)
        self._thread.join()


def _archive_url(settings: Settings, key: str) -> str:
    from medimeta_cli.catalog import file_download_url

    return file_download_url(settings.base_url, settings.record_id, key)


def space_needed(items: Sequence[PlanItem], parallel_archives: int) -> int:
    """Extraction of everything plus the largest archives that exist at the same time."""
    pending = [item for item in items if item.state != "installed" and item.size is not None]
    extraction = sum(item.size or 0 for item in pending)  # stored zips unpack to about their size
    downloads = sorted((item.to_fetch for item in pending), reverse=True)
    return extraction + sum(downloads[: max(1, parallel_archives)])


def _hash_prefix(part: Path, digest: Any) -> int:
    """Feed what an earlier run downloaded into the running hash; return its length."""
    done = 0
    with open(part, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
            done += len(chunk)
    return done


def _refuse_non_archive(response: httpx.Response, info: ArchiveInfo) -> None:
    """An HTML page or a JSON error instead of a zip is reported as such, not as a bad md5."""
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("text/html", "application/xhtml+xml"):
        raise RemoteDataError(
            f"the server sent an HTML page instead of {info.key} ({info.url})",
            hint="Zenodo may be in maintenance, or a proxy is intercepting; try again later.",
        )
    if content_type in ("application/json", "application/problem+json"):
        body = response.read()[:500].decode("utf-8", "replace")
        raise RemoteDataError(
            f"the server sent a JSON message instead of {info.key}: {body.strip()}",
        )


def _check_info_id(folder: Path, dataset_id: str, key: str) -> None:
    """The archive must hold ``info.yaml`` naming the dataset it claims to be."""
    import yaml

    info_path = folder / "info.yaml"
    try:
        info = yaml.safe_load(info_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise IntegrityError(f"{key} holds no readable {dataset_id}/info.yaml ({exc})") from exc
    found = info.get("id") if isinstance(info, dict) else None
    if found != dataset_id:
        raise IntegrityError(
            f"{key} holds info.yaml for dataset {found!r}, not {dataset_id!r}",
            hint="The archive is not the one it is named after; fetch it again.",
        )


_FROM_HINT = "Give a folder of <id>.zip files, or a zip file."


def _find_archives(paths: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(path.glob("*.zip")))
        elif path.is_file():
            found.append(path)
        else:
            raise UsageError(
                f"{path} does not exist", hint="Give a folder of <id>.zip files or a zip."
            )
    if not found:
        raise UsageError("no .zip archives found", hint=_FROM_HINT)
    return found
