"""A whole archive in one stream: resumable, md5 hashed while it arrives.

The archive streams into a partial file this process owns (see
:mod:`medimeta_cli.store.partials`), hashed (md5) while it streams, in a second thread
so that hashing overlaps receiving. A cut transfer goes on with ``Range`` from where it
stopped, within a run and across runs; the server's answer (see
:mod:`medimeta_cli.fetch.answers`) is acted on before a byte is written (resume,
restart, an HTML page instead of a zip...), and size and md5 are checked against the
record at the end. :func:`stream_archive` is also how a segmented transfer goes on when
the server stops honouring ranges.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from medimeta_cli.catalog.datasets import Dataset
from medimeta_cli.errors import IntegrityError, MedimetaError
from medimeta_cli.events import (
    BytesTransferred,
    Notice,
    Phase,
    PhaseChanged,
    TransferStarted,
)
from medimeta_cli.fetch.answers import Answer, Kind, check_zip_start, open_range
from medimeta_cli.fetch.connections import one_connection
from medimeta_cli.fetch.result import ArchiveFile, Fetched, TransferContext
from medimeta_cli.fetch.retry import RetryRule
from medimeta_cli.fsutil import human_bytes, translate_os_error
from medimeta_cli.hashing import BackgroundHasher, Digest, new_md5
from medimeta_cli.install.commit import Proof
from medimeta_cli.store.partials import Partial, claim_partial
from medimeta_cli.zenodo.record import ArchiveInfo

logger = logging.getLogger(__name__)

#: What the md5 check of an archive file covers: extraction reads every byte it uses
#: (central directory, local headers, members) from this very file.
COVERS = "the archive file's md5 and size, which hold every byte extraction reads"


class RangeRefused(httpx.RemoteProtocolError):
    """The server answered a range request with 416: the partial was dropped, start over."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


@dataclass
class StreamStart:
    """Where one stream of an archive starts: the bytes before ``offset`` hashed into
    ``digest``; ``resumed_from`` and ``fetched`` as reported in the result."""

    digest: Digest
    offset: int
    resumed_from: int
    fetched: int


def verified(
    context: TransferContext,
    dataset_id: str,
    info: ArchiveInfo,
    partial: Partial,
    md5: Callable[[], str],
) -> None:
    """Check size and md5 (``md5()``, which may wait for it) against the record (the
    download discarded on a mismatch)."""
    context.on_event(PhaseChanged(dataset_id, Phase.VERIFYING))
    actual = md5()
    size = partial.size()
    if size != info.size or actual != info.md5:
        partial.discard()
        raise IntegrityError(
            f"{info.key} does not match the record (md5 {actual}, {size:,} bytes; "
            f"expected md5 {info.md5}, {info.size:,} bytes); the download was discarded",
            hint="Run the same command again to download it afresh.",
        )
    logger.debug("%s verified: %d bytes, md5 %s", info.key, size, actual)


def stream_archive(
    context: TransferContext,
    dataset_id: str,
    info: ArchiveInfo,
    partial: Partial,
    start: StreamStart,
) -> Fetched:
    """One stream from ``start.offset`` to the archive's end, then its check."""
    digest, offset = start.digest, start.offset
    rule = RetryRule(context.client)
    # Every byte received counts, those of attempts cut short included.
    received = [start.fetched]

    def count(n: int) -> None:
        received[0] += n
        context.on_event(BytesTransferred(dataset_id, n))

    try:
        while offset < info.size or (info.size == 0 and not partial.exists()):
            gained = 0
            try:
                with open_range(context.client, info.url, offset, total=info.size) as answer:
                    offset, digest = _act_on(
                        context, dataset_id, answer, info, partial, offset, digest
                    )
                    if offset >= info.size:
                        break
                    gained = _receive(context, answer, info, partial, offset, digest, count)
                    offset += gained
                if offset < info.size:
                    raise httpx.RemoteProtocolError("the server closed the transfer early")
            except httpx.TransportError as exc:
                offset = partial.size()
                if offset == 0:  # the partial file was dropped: so is what was hashed of it
                    digest = new_md5()
                reason = f"transfer of {info.key} interrupted at {human_bytes(offset)} ({exc})"
                rule.retry(reason, progressed=gained > 0, error=exc)
            except OSError as exc:
                raise translate_os_error(exc, f"{info.key} into {partial.folder}") from exc
    except MedimetaError:
        if partial.size() == 0:  # refused before a byte was kept: leave no "partial 0%"
            partial.discard()
        raise
    verified(context, dataset_id, info, partial, digest.hexdigest)
    return Fetched(
        ArchiveFile(partial, info.key), Proof.md5(COVERS), start.resumed_from, received[0]
    )


def _act_on(
    context: TransferContext,
    dataset_id: str,
    answer: Answer,
    info: ArchiveInfo,
    partial: Partial,
    offset: int,
    digest: Digest,
) -> tuple[int, Digest]:
    """Resume (206), restart (200) or done (416 at the end); the offset and digest to go on
    with. Anything else is an error."""
    if answer.kind is Kind.UNSATISFIABLE:
        if offset == info.size:
            return offset, digest
        # The partial cannot be a prefix of the file the server has: start over.
        context.on_event(
            Notice(
                dataset_id,
                f"the server refused the byte range of {info.key} (HTTP 416); starting over",
            )
        )
        partial.restart()
        raise RangeRefused(f"the server refused the byte range from {offset} (HTTP 416)")
    if answer.kind is Kind.WRONG_RANGE:
        context.on_event(
            Notice(dataset_id, f"unexpected Content-Range for {info.key}; starting over")
        )
        partial.restart()
        raise httpx.RemoteProtocolError("mismatched Content-Range")
    if answer.kind is Kind.WHOLE and offset:
        context.on_event(Notice(dataset_id, "the server ignored the range request; starting over"))
        return partial.restart(), new_md5()
    if answer.kind not in (Kind.PARTIAL, Kind.WHOLE):
        raise answer.refuse(info.key, info.url)
    return offset, digest


def _receive(
    context: TransferContext,
    answer: Answer,
    info: ArchiveInfo,
    partial: Partial,
    offset: int,
    digest: Digest,
    count: Callable[[int], None],
) -> int:
    """Append the body to the partial file, hashing it as it streams (``count`` told of
    each chunk written); return bytes written."""
    written = 0
    head = b""
    should_stop = context.should_stop
    with partial.open_append() as sink, BackgroundHasher(digest) as hasher:
        for chunk in answer.response.iter_raw():
            if offset == 0 and len(head) < 4:
                head += chunk[:4]
                if len(head) >= 4:
                    check_zip_start(head, info.key)
            if offset + written + len(chunk) > info.size:
                raise IntegrityError(
                    f"the server sent more than the {info.size:,} bytes the record lists for "
                    f"{info.key}"
                )
            sink.write(chunk)
            hasher.feed(chunk)
            written += len(chunk)
            count(len(chunk))
            if should_stop():
                raise KeyboardInterrupt
    return written


@dataclass(frozen=True)
class WholeArchiveTransfer:
    """Downloads a whole archive in one stream (one connection of the run's budget)."""

    context: TransferContext

    def fetch(self, dataset: Dataset, info: ArchiveInfo) -> Fetched:
        """Download the archive, resuming what earlier runs left; verify size and md5."""
        context, dataset_id = self.context, dataset.id
        partial = claim_partial(
            context.layout, info, lambda m: context.on_event(Notice(dataset_id, m))
        )
        with one_connection(context.budget, context.should_stop):
            return resume_stream(context, dataset_id, info, partial)


def resume_stream(
    context: TransferContext, dataset_id: str, info: ArchiveInfo, partial: Partial
) -> Fetched:
    """One stream that goes on from the bytes the partial holds (hashed first)."""
    digest = new_md5()
    offset = partial.resume_offset(info.size)
    if offset:
        context.on_event(PhaseChanged(dataset_id, Phase.CHECKING_PARTIAL))
        offset = partial.hash_into(digest)
        logger.info("resuming %s at byte %d", info.key, offset)
        context.on_event(Notice(dataset_id, f"resuming {info.key} at {human_bytes(offset)}"))
    context.on_event(TransferStarted(dataset_id, total=info.size, done=offset))
    return stream_archive(
        context, dataset_id, info, partial, StreamStart(digest, offset, offset, 0)
    )
