"""Orchestration of downloads: which datasets to fetch, in parallel, within one run.

One dataset's work is a :class:`medimeta_cli.download.job.DatasetJob` under the dataset's lock:
fetch (:mod:`medimeta_cli.fetch.whole`, :mod:`medimeta_cli.fetch.segmented`, or only the members
the loader reads), then install (:mod:`medimeta_cli.install.installer`). What to fetch and the
space it needs come from :mod:`medimeta_cli.download.plan`. Correctness never relies on the
lock: temporary names are unique per process and every visible change is one rename.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

from medimeta_cli.catalog.datasets import Catalog, Dataset
from medimeta_cli.dataset.layouts import ArchiveLayout
from medimeta_cli.download.job import DatasetJob, JobOptions
from medimeta_cli.download.plan import ListedSize, Plan, plan_download, space_needed
from medimeta_cli.errors import NotInRecordError, OfflineError
from medimeta_cli.events import (
    DownloadInterrupted,
    EventSink,
    Notice,
    Outcome,
    OutcomeStatus,
    Phase,
    PhaseChanged,
    ignore,
)
from medimeta_cli.fetch.connections import FAST_LINK, MIN_SLICE, ConnectionBudget
from medimeta_cli.fetch.zipdir import listed_hdf5_size
from medimeta_cli.fsutil import ensure_space
from medimeta_cli.install.installer import Installer
from medimeta_cli.install.offers import (
    Offered,
    describe_offered,
    find_archives,
    needs_record,
    select_offered,
)
from medimeta_cli.settings import Settings
from medimeta_cli.store.layout import RootLayout, make_state_dir
from medimeta_cli.store.records import read_file_manifest, read_install_record
from medimeta_cli.store.status import installed_copy, is_installed
from medimeta_cli.zenodo.client import RetryPolicy
from medimeta_cli.zenodo.record import ArchiveInfo, Manifest
from medimeta_cli.zenodo.source import RecordSource

logger = logging.getLogger(__name__)


@dataclass
class Downloader:
    """Downloads and installs datasets into one data root."""

    settings: Settings
    catalog: Catalog
    on_event: EventSink = ignore
    policy: RetryPolicy | None = None
    sleep: Callable[[float], None] | None = None
    transport: httpx.BaseTransport | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    #: No slice of a segmented transfer is planned smaller (tests use small archives).
    min_slice: int = MIN_SLICE
    #: A first connection this fast is kept alone (None: all connections at once).
    fast_link: float | None = FAST_LINK
    _record: RecordSource | None = field(default=None, init=False, repr=False)

    @property
    def layout(self) -> RootLayout:
        """Paths inside the data root."""
        return RootLayout(self.settings.root)

    def _notice(self, dataset_id: str, message: str, warning: bool = False) -> None:
        self.on_event(Notice(dataset_id, message, warning))

    def _prepare_root(self) -> None:
        """Make the root's state folder; a data root that did not exist is announced, once,
        as a notice (the command line prints it; the API logs notices at INFO)."""
        if make_state_dir(self.layout):
            root, origin = self.settings.root, self.settings.root_origin()
            self._notice("", f"created the data root {root} ({origin})")

    def record(self) -> RecordSource:
        """Access to the record, set up on first use (after ``sleep`` etc. may have been set)."""
        if self._record is None:
            self._record = RecordSource(
                self.settings,
                policy=self.policy,
                sleep=self.sleep or self._interruptible_sleep,
                transport=self.transport,
                should_stop=self.cancel.is_set,
                on_notice=self._notice,
            )
        return self._record

    def _interruptible_sleep(self, seconds: float) -> None:
        """Wait between retries, but stop at once when the run is being cancelled."""
        if self.cancel.wait(seconds):
            raise KeyboardInterrupt

    def close(self) -> None:
        """Close network connections."""
        if self._record is not None:
            self._record.close()

    def manifest(self, *, prefer_saved: bool = False) -> Manifest:
        """The record's manifest: fetched (and saved) once per run, or the saved copy offline."""
        archives: Mapping[str, str] = {d.id: d.archive for d in self.catalog.datasets}
        return self.record().manifest(archives, prefer_saved=prefer_saved)

    def installer(self) -> Installer:
        """Installs into the data root, recording the version of the manifest in use."""
        loaded = self._record.loaded if self._record else None
        version = loaded.version if loaded else None
        return Installer(self.settings, version, self.on_event, self.cancel.is_set)

    def plan(
        self,
        datasets: Sequence[Dataset],
        *,
        force: bool = False,
        jobs: int = 2,
        keep_archive: bool = False,
        archive_layout: ArchiveLayout = ArchiveLayout.FULL,
        with_masks: bool = False,
        stream: bool = False,
    ) -> Plan:
        """What :meth:`download` would fetch and the space it needs. For the hdf5 layout
        online, archives' directories are read (one or two small range requests each) to give
        exact sizes."""
        try:
            manifest: Manifest | None = self.manifest(prefer_saved=self.settings.offline)
        except OfflineError:
            manifest = None

        def listed_size(dataset: Dataset, info: ArchiveInfo) -> int | None:
            return listed_hdf5_size(self.record().client(), self.layout, dataset, info, with_masks)

        return self._planned(
            datasets,
            manifest,
            JobOptions(
                force=force,
                keep_archive=keep_archive,
                archive_layout=archive_layout,
                with_masks=with_masks,
                stream=stream,
            ),
            jobs,
            listed_size=None if self.settings.offline else listed_size,
        )

    def download(
        self,
        datasets: Sequence[Dataset],
        *,
        force: bool = False,
        keep_archive: bool = False,
        jobs: int = 2,
        archive_layout: ArchiveLayout = ArchiveLayout.FULL,
        with_masks: bool = False,
        stream: bool = False,
    ) -> list[Outcome]:
        """Download and install datasets, ``jobs`` at a time; one outcome per dataset.

        The hdf5 layout fetches only the archive members the official loader reads,
        with range requests (the TIFF copies of the images are left out). ``stream``
        installs whole archives while they download; it is chosen by itself when the disk
        cannot hold the archives and their extraction but can hold the extraction.

        Errors of one dataset do not stop the others; they are returned in its
        outcome. Errors that concern every dataset (offline, no space, read-only
        root, unreachable record) are raised.
        """
        outcomes: dict[str, Outcome] = {}
        pending = []
        for dataset in datasets:
            found = None if force else installed_copy(self.settings, dataset)
            if found is None:
                pending.append(dataset)
                continue
            here = is_installed(self.settings.root, dataset.id)
            detail = "already installed" if here else "in a shared root (MEDIMETA_PATH)"
            outcomes[dataset.id] = Outcome(dataset.id, OutcomeStatus.SKIPPED, detail, path=found)
            self.on_event(PhaseChanged(dataset.id, Phase.SKIPPED))
        if pending:
            self._prepare_root()
            manifest = self.manifest()
            pending = self._in_record(manifest, pending, outcomes)
        if pending:
            infos = {d.id: manifest.archive(d.archive) for d in pending}
            options = JobOptions(
                force=force,
                keep_archive=keep_archive,
                archive_layout=archive_layout,
                with_masks=with_masks,
                stream=stream,
            )
            plan = self._planned(pending, manifest, options, jobs)
            if plan.stream and not stream:
                message = "too little space for archives and their extraction: installing "
                self._notice("", message + "while downloading (one connection per archive)")
            stream = plan.stream
            logger.debug(
                "%d dataset(s) to fetch (%s layout): %d bytes, %d needed, %d free",
                len(pending),
                archive_layout.value,
                plan.to_fetch,
                plan.needed_bytes,
                plan.free_bytes,
            )
            if (
                archive_layout is ArchiveLayout.FULL
            ):  # hdf5 installs check their exact size once listed
                parts = "extraction" if stream else "archives plus extraction"
                what = f"{len(pending)} dataset(s) ({parts})"
                ensure_space(self.settings.root, plan.needed_bytes, what)
            # One budget of connections for the whole run, whatever --jobs says.
            budget = ConnectionBudget(
                self.settings.connections,
                sharers=min(max(1, jobs), len(pending)),
                min_slice=self.min_slice,
                fast_link=self.fast_link,
            )
            job = DatasetJob(
                self.installer(),
                self.record().client,
                replace(options, stream=stream),
                self.on_event,
                budget,
            )
            with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                futures = {d.id: pool.submit(job.run, d, infos[d.id]) for d in pending}
                try:
                    for dataset_id, future in futures.items():
                        outcomes[dataset_id] = future.result()
                except KeyboardInterrupt:
                    self.cancel.set()
                    self._finish_after_interrupt(futures, outcomes, datasets)
        return [outcomes[d.id] for d in datasets]

    def reinstall(
        self,
        datasets: Sequence[Dataset],
        *,
        jobs: int = 2,
        keep_archive: bool = False,
        stream: bool = False,
    ) -> list[Outcome]:
        """Download datasets again (``download --force`` without ``--layout``, ``verify
        --repair``), each in the layout it was installed in (its install record says which;
        the hdf5 layout keeps its masks when it had them; the full layout when it is not
        installed), so that a reinstall never turns an hdf5 install into a full one twice
        its size."""
        groups: dict[tuple[ArchiveLayout, bool], list[Dataset]] = {}
        for dataset in datasets:
            groups.setdefault(installed_layout(self.layout, dataset.id), []).append(dataset)
        outcomes: dict[str, Outcome] = {}
        for (archive_layout, with_masks), group in groups.items():
            done = self.download(
                group,
                force=True,
                jobs=jobs,
                keep_archive=keep_archive,
                archive_layout=archive_layout,
                with_masks=with_masks,
                stream=stream,
            )
            outcomes.update((outcome.dataset_id, outcome) for outcome in done)
        return [outcomes[d.id] for d in datasets]

    def _planned(
        self,
        datasets: Sequence[Dataset],
        manifest: Manifest | None,
        options: JobOptions,
        jobs: int,
        listed_size: ListedSize | None = None,
    ) -> Plan:
        """The plan of a download; whole archives installed while downloading when asked
        (``options.stream``), or when only that fits on the disk (never with
        --keep-archive, which wants the archives on disk)."""

        def planned(streamed: bool) -> Plan:
            return plan_download(
                self.settings,
                datasets,
                manifest,
                force=options.force,
                jobs=jobs,
                keep_archive=options.keep_archive,
                archive_layout=options.archive_layout,
                with_masks=options.with_masks,
                listed_size=listed_size,
                stream=streamed,
            )

        plan = planned(options.stream)
        archives = [item for item in plan.pending if item.archive_layout is ArchiveLayout.FULL]
        if options.keep_archive or plan.stream or not archives:
            return plan
        if plan.needed_bytes <= plan.free_bytes or space_needed(plan.items, 0) > plan.free_bytes:
            return plan
        return planned(True)

    def _in_record(
        self, manifest: Manifest, datasets: Sequence[Dataset], outcomes: dict[str, Outcome]
    ) -> list[Dataset]:
        """The datasets whose archive the record lists; each of the others gets its own
        outcome (not in the record), so that one missing archive stops none of the rest."""
        listed = []
        for dataset in datasets:
            try:
                manifest.archive(dataset.archive)
            except NotInRecordError as error:
                logger.info("%s", error.message)
                outcomes[dataset.id] = Outcome.not_in_record(dataset.id, error)
                continue
            listed.append(dataset)
        return listed

    def _finish_after_interrupt(
        self,
        futures: Mapping[str, Future[Outcome]],
        outcomes: dict[str, Outcome],
        datasets: Sequence[Dataset],
    ) -> None:
        """After Ctrl-C or SIGTERM: let running jobs stop (or finish, once their folder is
        renamed into place), and report what really happened. Raises
        :class:`DownloadInterrupted` with the finished outcomes when some dataset was
        stopped; returns normally when every job had gone too far to stop."""
        stopped = False
        for dataset_id, future in futures.items():
            if future.cancel():  # never started
                stopped = True
                outcomes[dataset_id] = Outcome.interrupted(dataset_id, started=False)
                continue
            try:
                outcomes[dataset_id] = future.result()
            except KeyboardInterrupt:
                stopped = True
                outcomes[dataset_id] = Outcome.interrupted(dataset_id, started=True)
        if stopped:
            raise DownloadInterrupted([outcomes[d.id] for d in datasets if d.id in outcomes])
        logger.debug("interrupted, but every dataset had finished")

    def install_from(
        self, paths: Iterable[Path], *, force: bool = False, dataset_ids: Sequence[str] = ()
    ) -> list[Outcome]:
        """Install archives fetched by other means, after checking them against the record
        (archives of datasets outside the catalog: see :meth:`Installer.install_from`);
        ``dataset_ids`` select among what ``paths`` offer (:func:`select_offered`)."""
        archives = select_offered(find_archives(paths), dataset_ids)
        self._prepare_root()
        listed = needs_record(archives, self.catalog)
        manifest = self.manifest(prefer_saved=True) if listed else None
        return self.installer().install_from(archives, manifest, self.catalog, force=force)

    def offer_from(
        self, paths: Iterable[Path], *, force: bool = False, dataset_ids: Sequence[str] = ()
    ) -> list[Offered]:
        """What :meth:`install_from` would do (``download --from --dry-run``): it reads
        names, sizes and folder listings, and writes nothing, not even the state folder."""
        chosen = select_offered(find_archives(paths), dataset_ids)
        return describe_offered(chosen, self.settings.root, force=force)


def installed_layout(layout: RootLayout, dataset_id: str) -> tuple[ArchiveLayout, bool]:
    """The layout an installed dataset was installed in, and whether it has its masks (an
    hdf5 install lists them in its file manifest); the full layout when its record cannot
    be read (a damaged record is rebuilt by the repair)."""
    record = read_install_record(layout, dataset_id)
    if record is None or record.layout != ArchiveLayout.HDF5.value:
        return ArchiveLayout.FULL, False
    manifest = read_file_manifest(layout, dataset_id)
    files = manifest.files if manifest is not None else ()
    return ArchiveLayout.HDF5, any(entry.path.startswith("masks/") for entry in files)
