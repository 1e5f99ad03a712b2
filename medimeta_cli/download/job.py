"""One dataset's download: under its lock, fetch it and install it; its outcome.

The transfer comes from a table (:data:`TRANSFERS`), by mode: the whole archive in one
stream, or in slices over several connections when the run has a connection budget
(:mod:`medimeta_cli.fetch.whole`, :mod:`medimeta_cli.fetch.segmented`); only the members
the loader reads for the hdf5 layout (:mod:`medimeta_cli.fetch.members`); or every
member installed while the archive downloads, the archive never on disk
(:mod:`medimeta_cli.fetch.streamed`, asked for with ``stream``: one connection); by
default, within the run's connection budget, every member installed while the archive
downloads in pieces over several connections (:mod:`medimeta_cli.fetch.windowed`). A
transfer that cannot serve an archive says so, and the table's fallback, the whole
archive, fetches it.
Whatever the transfer, the install takes its result and the proof of its check
(:mod:`medimeta_cli.fetch.result`), and finishes or discards it through that result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import httpx

from medimeta_cli.catalog.datasets import Dataset
from medimeta_cli.dataset.layouts import ArchiveLayout
from medimeta_cli.errors import IntegrityError, MedimetaError
from medimeta_cli.events import EventSink, Notice, Outcome, OutcomeStatus, Phase, PhaseChanged
from medimeta_cli.fetch.connections import ConnectionBudget
from medimeta_cli.fetch.members import MembersTransfer
from medimeta_cli.fetch.result import (
    ArchiveFile,
    Fetched,
    Transfer,
    TransferContext,
    TransferUnavailable,
)
from medimeta_cli.fetch.segmented import SegmentedTransfer
from medimeta_cli.fetch.streamed import StreamedTransfer
from medimeta_cli.fetch.whole import WholeArchiveTransfer
from medimeta_cli.fetch.windowed import WindowedTransfer
from medimeta_cli.install.commit import InstallResult
from medimeta_cli.install.installer import Installer, inspect_target
from medimeta_cli.store.records import ArchiveCheck
from medimeta_cli.store.status import is_installed
from medimeta_cli.zenodo.client import RemoteClient, network_error
from medimeta_cli.zenodo.record import ArchiveInfo

logger = logging.getLogger(__name__)


class Mode(str, Enum):
    """How an archive is fetched."""

    WHOLE = "whole archive"
    SEGMENTED = "archive in slices"
    MEMBERS = "hdf5 members"
    STREAMED = "installed while downloading"
    WINDOWED = "installed while downloading in pieces"


@dataclass(frozen=True)
class Route:
    """A mode's transfer, and the mode that fetches the archive when it cannot."""

    transfer: Callable[[TransferContext], Transfer]
    #: None: no fallback; ``WHOLE`` means the whole archive, in slices within a budget.
    fallback: Mode | None = None


#: Mode -> transfer. The segmented transfer goes on in one stream by itself (a small
#: archive, a single stream's partial, a server that drops ranges midway).
TRANSFERS: dict[Mode, Route] = {
    Mode.WHOLE: Route(WholeArchiveTransfer),
    Mode.SEGMENTED: Route(SegmentedTransfer),
    Mode.MEMBERS: Route(MembersTransfer, fallback=Mode.WHOLE),
    Mode.STREAMED: Route(StreamedTransfer, fallback=Mode.WHOLE),
    Mode.WINDOWED: Route(WindowedTransfer, fallback=Mode.WHOLE),
}


@dataclass(frozen=True)
class JobOptions:
    """What was asked of every dataset of one download."""

    force: bool = False
    keep_archive: bool = False
    archive_layout: ArchiveLayout = ArchiveLayout.FULL
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
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            # A network fault no transfer handled is network trouble all the same (exit 3).
            logger.debug("%s failed", dataset.id, exc_info=True)
            self.on_event(PhaseChanged(dataset.id, Phase.FAILED))
            trouble = network_error(exc, info.url)
            return Outcome.failed(dataset.id, trouble, time.monotonic() - started)
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

    def mode(self) -> Mode:
        """The mode the options ask for."""
        options = self.options
        if options.archive_layout is ArchiveLayout.HDF5:
            return Mode.MEMBERS
        if options.keep_archive:
            return self._archive_mode()
        if options.stream:
            return Mode.STREAMED
        # The default: installed while downloading, over the run's connections.
        return Mode.WINDOWED if self.budget is not None else Mode.WHOLE

    def _archive_mode(self) -> Mode:
        return Mode.WHOLE if self.budget is None else Mode.SEGMENTED

    def _fetch_and_install(
        self, dataset: Dataset, info: ArchiveInfo
    ) -> tuple[InstallResult, int, int, ArchiveCheck]:
        """The install's result, the offset resumed from, the bytes transferred and what
        was checked of the archive."""
        installer = self.installer
        context = TransferContext(
            client=self.client(),
            layout=installer.layout,
            on_event=self.on_event,
            should_stop=installer.should_stop,
            budget=self.budget,
            with_masks=self.options.with_masks,
        )
        mode: Mode | None = self.mode()
        while True:
            assert mode is not None
            route = TRANSFERS[mode]
            try:
                fetched = route.transfer(context).fetch(dataset, info)
                break
            except TransferUnavailable as unavailable:
                if route.fallback is None:  # pragma: no cover - every such mode has one
                    raise
                if unavailable.warning:
                    self.on_event(Notice(dataset.id, unavailable.message, warning=True))
                mode = route.fallback
                if mode is Mode.WHOLE:
                    mode = self._archive_mode()
        result = self._install(dataset, info, fetched)
        keep = self.options.keep_archive and isinstance(fetched.content, ArchiveFile)
        fetched.finish(installer.layout.archives_dir / info.key if keep else None)
        return result, fetched.resumed_from, fetched.fetched, fetched.proof.check

    def _install(self, dataset: Dataset, info: ArchiveInfo, fetched: Fetched) -> InstallResult:
        """Install what a transfer fetched; what it does not pass is discarded."""
        options, content = self.options, fetched.content
        try:
            if isinstance(content, ArchiveFile):
                return self.installer.install_archive(
                    dataset,
                    content.path,
                    info,
                    force=options.force,
                    archive_layout=options.archive_layout,
                    with_masks=options.with_masks,
                    proof=fetched.proof,
                )
            return self.installer.install_folder(
                dataset,
                content.data,
                content.entries,
                info,
                force=options.force,
                archive_layout=options.archive_layout,
                proof=fetched.proof,
            )
        except IntegrityError as error:
            raise fetched.refused(error) from error
        except BaseException:
            fetched.failed()
            raise


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
