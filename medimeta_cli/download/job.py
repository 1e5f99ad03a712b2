"""One dataset's download: under its lock, fetch it and install it; its outcome.

The whole archive is fetched into a partial file (:class:`ArchiveTransfer`) and
extracted; or installed while it downloads, its members written straight into place and
the archive never on disk (:class:`StreamedTransfer`, asked for with ``stream``); or, for
the hdf5 layout, only the members the loader reads are fetched (:class:`MembersTransfer`).
Both member paths fall back to the whole archive when the server does not honour byte
ranges.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from medimeta_cli.catalog.datasets import Dataset
from medimeta_cli.dataset.layouts import ArchiveLayout
from medimeta_cli.errors import IntegrityError, MedimetaError
from medimeta_cli.events import EventSink, Notice, Outcome, OutcomeStatus, Phase, PhaseChanged
from medimeta_cli.fetch.connections import ConnectionBudget
from medimeta_cli.fetch.ranged import RangesUnsupported
from medimeta_cli.fetch.streamed import StreamedTransfer
from medimeta_cli.fetch.transfer import ArchiveTransfer, FetchedMembers, MembersTransfer
from medimeta_cli.fsutil import remove_tree
from medimeta_cli.install.installer import Installer, InstallResult, inspect_target
from medimeta_cli.store.partials import partial_bytes
from medimeta_cli.store.records import ArchiveCheck
from medimeta_cli.store.status import is_installed
from medimeta_cli.zenodo.client import RemoteClient
from medimeta_cli.zenodo.record import ArchiveInfo

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobOptions:
    """What was asked of every dataset of one download."""

    force: bool = False
    keep_archive: bool = False
    layout: ArchiveLayout = ArchiveLayout.FULL
    with_masks: bool = False
    #: Install whole archives while they download (no archive on disk, one connection each).
    stream: bool = False


@dataclass(frozen=True)
class DatasetJob:
    """Fetches and installs datasets one at a time (several threads may share it)."""

    installer: Installer
    client: Callable[[], RemoteClient]  # made on first use: offline fails per dataset
    options: JobOptions
    on_event: EventSink
    #: The run's connections, shared by every job (None: one stream each, no limit).
    budget: ConnectionBudget | None = None

    def run(self, dataset: Dataset, info: ArchiveInfo) -> Outcome:
        """Take the dataset's lock, fetch and install it; errors end up in the outcome."""
        started = time.monotonic()
        folder = self.installer.layout.dataset_dir(dataset.id)
        try:
            with self.installer.lock(dataset.id).hold():
                if not self.options.force and is_installed(self.installer.layout.root, dataset.id):
                    self.on_event(PhaseChanged(dataset.id, Phase.SKIPPED))
                    return Outcome(
                        dataset.id,
                        OutcomeStatus.SKIPPED,
                        "installed by another job",
                        path=folder,
                        seconds=time.monotonic() - started,
                    )
                # A stray entry where the dataset belongs fails before any byte is fetched.
                inspect_target(folder)
                result, resumed_from, fetched, checked = self._fetch_and_install(dataset, info)
        except MedimetaError as error:
            logger.debug("%s failed: %s", dataset.id, error.message)
            self.on_event(PhaseChanged(dataset.id, Phase.FAILED))
            return Outcome.failed(dataset.id, error, time.monotonic() - started)
        except Exception as exc:
            # One dataset's unexpected failure must not hide the others' outcomes.
            logger.debug("%s failed unexpectedly", dataset.id, exc_info=True)
            self.on_event(PhaseChanged(dataset.id, Phase.FAILED))
            return Outcome.failed(dataset.id, unexpected_error(exc), time.monotonic() - started)
        done = result is InstallResult.INSTALLED
        self.on_event(
            PhaseChanged(dataset.id, Phase.INSTALLED if done else Phase.INSTALLED_BY_ANOTHER_JOB)
        )
        return Outcome(
            dataset.id,
            OutcomeStatus.INSTALLED if done else OutcomeStatus.SKIPPED,
            result.value,
            path=folder,
            # Only an md5 that was checked is reported as the archive's.
            archive_md5=info.md5 if checked is ArchiveCheck.MD5 else None,
            downloaded_bytes=fetched,
            resumed_from=resumed_from,
            seconds=time.monotonic() - started,
        )

    def _fetch_and_install(
        self, dataset: Dataset, info: ArchiveInfo
    ) -> tuple[InstallResult, int, int, ArchiveCheck]:
        """The install's result, the offset resumed from, the bytes transferred and what
        was checked of the archive."""
        installer, options = self.installer, self.options
        layout, stop = installer.layout, installer.should_stop
        if options.layout is ArchiveLayout.HDF5 or (options.stream and not options.keep_archive):
            installed = self._install_members(dataset, info)
            if installed is not None:
                return installed
        archive = ArchiveTransfer(self.client(), layout, self.on_event, stop, self.budget).fetch(
            dataset.id, info
        )
        try:
            result = installer.install_archive(
                dataset,
                archive.path,
                info,
                force=options.force,
                layout=options.layout,
                with_masks=options.with_masks,
                before_commit=archive.confirm,
            )
            archive.confirm()  # installed by another job meanwhile: still never kept unchecked
        except IntegrityError as error:
            archive.confirm()  # a download that does not match the record is told as such
            raise archive.refused(error) from error
        archive.partial.finish(layout.archives_dir / info.key if options.keep_archive else None)
        return result, archive.resumed_from, archive.fetched, ArchiveCheck.MD5

    @contextmanager
    def _connection(self) -> Iterator[None]:
        """One connection of the run's budget, for a transfer that uses exactly one."""
        if self.budget is None:
            yield
            return
        self.budget.acquire(self.installer.should_stop)
        try:
            yield
        finally:
            self.budget.release()

    def _install_members(
        self, dataset: Dataset, info: ArchiveInfo
    ) -> tuple[InstallResult, int, int, ArchiveCheck] | None:
        """Fetch members straight into a members folder and install it: the hdf5 layout's
        members (CRC-32 checked), or every member of the archive while it downloads (md5
        checked too). None when the whole archive must be downloaded instead."""
        layout, stop, options = self.installer.layout, self.installer.should_stop, self.options
        streamed = options.layout is ArchiveLayout.FULL
        if streamed and partial_bytes(layout, info.key, info.md5):
            # Bytes an earlier run left are worth more than the disk the archive needs.
            message = f"resuming the partial {info.key} of an earlier run"
            logger.info("%s: a partial archive exists; not installing while downloading", info.key)
            self.on_event(Notice(dataset.id, message))
            return None
        members: FetchedMembers
        try:
            with self._connection():
                if streamed:
                    members = StreamedTransfer(self.client(), layout, self.on_event, stop).fetch(
                        dataset, info
                    )
                else:
                    members = MembersTransfer(self.client(), layout, self.on_event, stop).fetch(
                        dataset, info, with_masks=options.with_masks
                    )
        except RangesUnsupported:
            message = "the server does not honour byte ranges; fetching the whole archive"
            logger.info("%s: no byte ranges; falling back to the whole archive", info.key)
            self.on_event(Notice(dataset.id, message, warning=True))
            return None
        checked = ArchiveCheck.MD5 if streamed else ArchiveCheck.MEMBERS
        try:
            result = self.installer.install_folder(
                dataset,
                members.data,
                members.entries,
                info,
                force=options.force,
                layout=options.layout,
                checked=checked,
            )
        finally:
            if streamed:  # never resumed by a later run: its md5 could not go on
                remove_tree(members.folder)
        if not streamed:
            remove_tree(members.folder)
        return result, members.resumed_from, members.fetched, checked


def unexpected_error(exc: Exception) -> MedimetaError:
    """An error the core did not anticipate, as one dataset's failure (exit code 1)."""
    if isinstance(exc, OSError):
        what = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    else:
        what = f"{type(exc).__name__}: {exc}"
    return MedimetaError(
        f"unexpected error: {what}",
        hint="Run again with --debug and report the traceback.",
    )
