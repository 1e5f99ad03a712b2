"""The hdf5 layout's transfer: only the members the loader reads, by range requests.

The archive's directory is read first (:mod:`medimeta_cli.fetch.zipdir`), then each
wanted member not fetched yet (:class:`~medimeta_cli.fetch.ranged.MemberFetcher`), into
a members folder a later run can go on with. No md5 can be checked of a part of an
archive: the proof is that every member's local header, size and CRC-32 agree with the
directory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from medimeta_cli.catalog.datasets import Dataset
from medimeta_cli.events import BytesTransferred, Phase, PhaseChanged, TransferStarted
from medimeta_cli.fetch.answers import RangesUnsupported
from medimeta_cli.fetch.connections import one_connection
from medimeta_cli.fetch.ranged import MemberFetcher
from medimeta_cli.fetch.result import Fetched, MembersFolder, TransferContext, TransferUnavailable
from medimeta_cli.fetch.zipdir import hdf5_members, read_listing, remember_sizes
from medimeta_cli.fsutil import ensure_space, translate_os_error
from medimeta_cli.install.archive import member_path
from medimeta_cli.install.commit import Proof
from medimeta_cli.store.partials import claim_members_folder
from medimeta_cli.zenodo.record import ArchiveInfo

logger = logging.getLogger(__name__)

#: What the check of the hdf5 layout covers.
COVERS = "every member's local header, size and CRC-32 against the central directory"

NO_RANGES = "the server does not honour byte ranges; fetching the whole archive"


@dataclass(frozen=True)
class MembersTransfer:
    """Fetches the members the loader reads, with range requests (resumable)."""

    context: TransferContext

    def fetch(self, dataset: Dataset, info: ArchiveInfo) -> Fetched:
        """Read the archive's directory, then fetch every wanted member not fetched yet;
        :class:`TransferUnavailable` when the server sends whole files only."""
        context = self.context
        try:
            with one_connection(context.budget, context.should_stop):
                return self._fetch(dataset, info)
        except RangesUnsupported:
            logger.info("%s: no byte ranges; falling back to the whole archive", info.key)
            raise TransferUnavailable(NO_RANGES, warning=True) from None

    def _fetch(self, dataset: Dataset, info: ArchiveInfo) -> Fetched:
        context = self.context
        context.on_event(PhaseChanged(dataset.id, Phase.READING_DIRECTORY))
        listing, _ = read_listing(context.client, info, dataset)
        spans = listing.spans(hdf5_members(context.with_masks))
        remember_sizes(context.layout, info, listing)
        total = sum(end - start for _, start, end in spans)
        ensure_space(context.layout.root, total, f"the hdf5 layout of {info.key}")
        folder = claim_members_folder(context.layout, info)
        fetched = [0]

        def count(n: int) -> None:
            fetched[0] += n
            context.on_event(BytesTransferred(dataset.id, n))

        fetcher = MemberFetcher(
            context.client, info, folder, on_bytes=count, should_stop=context.should_stop
        )
        fetcher.load_progress()
        resumed = sum(end - start for i, start, end in spans if member_path(i) in fetcher.done)
        if resumed:
            logger.info("resuming the members of %s: %d of %d bytes done", info.key, resumed, total)
        context.on_event(TransferStarted(dataset.id, total=total, done=resumed))
        try:
            entries = fetcher.fetch(spans)
        except OSError as exc:
            raise translate_os_error(exc, f"{info.key} into {folder}") from exc
        members = MembersFolder(folder, fetcher.data, entries, resumable=True)
        return Fetched(members, Proof.members(COVERS), resumed, fetched[0])
