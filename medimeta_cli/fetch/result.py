"""What every transfer is and returns: the :class:`Transfer` interface and :class:`Fetched`.

A transfer fetches one archive's bytes (all of them, or the members the install needs)
and returns a :class:`Fetched`: an archive file (:class:`ArchiveFile`) or a staged
members folder (:class:`MembersFolder`), the bytes resumed and fetched, and the
:class:`~medimeta_cli.install.commit.Proof` of what its check covered, which the install
requires before anything becomes visible. The job (:mod:`medimeta_cli.download.job`)
installs what it gets and then finishes or discards it through these objects; it never
reaches into a transfer. A transfer that cannot serve this archive raises
:class:`TransferUnavailable`: the job goes on with its fallback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from medimeta_cli.catalog.datasets import Dataset
from medimeta_cli.errors import IntegrityError
from medimeta_cli.events import EventSink, ignore
from medimeta_cli.fetch.connections import ConnectionBudget
from medimeta_cli.fsutil import remove_tree
from medimeta_cli.install.commit import Proof
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.partials import Partial
from medimeta_cli.store.records import FileEntry
from medimeta_cli.zenodo.client import RemoteClient
from medimeta_cli.zenodo.record import ArchiveInfo


class TransferUnavailable(Exception):
    """This transfer cannot serve the archive (no byte ranges, a partial archive to resume):
    the whole archive is fetched instead. ``warning``: the user should know."""

    def __init__(self, message: str, *, warning: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.warning = warning


@dataclass(frozen=True)
class TransferContext:
    """What every transfer of a run works with."""

    client: RemoteClient
    layout: RootLayout
    on_event: EventSink = ignore
    should_stop: Callable[[], bool] = lambda: False
    #: The run's connections; None: one connection each, outside any budget.
    budget: ConnectionBudget | None = None
    #: The hdf5 layout with the masks (members transfers only).
    with_masks: bool = False


@dataclass(frozen=True)
class ArchiveFile:
    """A complete archive in a partial file of this process (see :class:`Partial`)."""

    partial: Partial = field(repr=False)
    key: str  # the archive's name in the record

    @property
    def path(self) -> Path:
        """The archive, to be read (extraction)."""
        return self.partial.archive_path


@dataclass(frozen=True)
class MembersFolder:
    """Members of an archive in a claimed members folder; :attr:`data` becomes ``<root>/<id>``."""

    folder: Path = field(repr=False)  # removed once installed
    data: Path
    entries: list[FileEntry]
    #: Whether a later run may go on with the folder when this install fails (not after a
    #: streamed pass: its md5 could not go on).
    resumable: bool


@dataclass(frozen=True)
class Fetched:
    """What a transfer fetched, with the proof of what its check covered."""

    content: ArchiveFile | MembersFolder
    proof: Proof
    resumed_from: int  # bytes earlier runs had left
    fetched: int  # bytes transferred by this run

    def finish(self, keep_as: Path | None = None) -> None:
        """Installed: keep the archive at ``keep_as`` (archive files only) or drop what
        was fetched. The proof is confirmed first: nothing unchecked is ever kept."""
        self.proof.confirm()
        if isinstance(self.content, ArchiveFile):
            self.content.partial.finish(keep_as)
        else:
            remove_tree(self.content.folder)

    def failed(self) -> None:
        """The install failed for another reason than the fetched bytes: keep what a later
        run can go on with, drop the rest."""
        if isinstance(self.content, MembersFolder) and not self.content.resumable:
            remove_tree(self.content.folder)

    def refused(self, error: IntegrityError) -> IntegrityError:
        """The install refused what was fetched: discard it and say so. A pending md5 that
        does not match is told instead (the download does not match the record). Kept, it
        would be refused again from the local copy on every run."""
        try:
            self.proof.confirm()
        except IntegrityError as mismatch:
            error = mismatch
        content = self.content
        if isinstance(content, MembersFolder):
            remove_tree(content.folder)
            return error
        name = content.partial.archive_path.name
        content.partial.discard()
        message = error.message.replace(name, content.key)
        if message.endswith("the download was discarded"):
            return type(error)(message, hint=error.hint)
        return type(error)(
            f"{message}; the download was discarded",
            hint="Run the same command again to download it afresh; should the same error "
            "come back, the archive on the server is damaged.",
        )


class Transfer(Protocol):
    """Fetches one archive's bytes for an install (whole, in slices, members, streamed)."""

    def fetch(self, dataset: Dataset, info: ArchiveInfo) -> Fetched:
        """Fetch and check; :class:`TransferUnavailable` when another transfer must do it,
        :class:`~medimeta_cli.errors.IntegrityError` when the bytes do not pass its check."""
        ...
