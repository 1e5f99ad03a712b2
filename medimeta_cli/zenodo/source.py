"""The record as one run sees it: the manifest fetched once and saved (or the saved copy,
offline or when preferred), its versions checked once, and which record a download uses.

Only commands that talk to the record import this module (it loads httpx).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field

import httpx

from medimeta_cli.errors import OfflineError
from medimeta_cli.settings import Settings
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.zenodo.client import RemoteClient, RetryPolicy
from medimeta_cli.zenodo.record import (
    Manifest,
    load_saved_record,
    save_record,
    upstream_changes,
)
from medimeta_cli.zenodo.versions import VersionReport, check_latest, report_versions

logger = logging.getLogger(__name__)


@dataclass
class RecordSource:
    """The record as one run sees it: the HTTP client, made on first use, and the manifest,
    fetched (and saved) once, or the saved copy offline or when preferred."""

    settings: Settings
    policy: RetryPolicy | None = None
    sleep: Callable[[float], None] = time.sleep
    transport: httpx.BaseTransport | None = None
    #: True once the run is being cancelled: waiting reads stop (within half a second).
    should_stop: Callable[[], bool] | None = None
    #: Told ``(dataset id or "", message, warning)``: retries, rate limits, upstream changes.
    on_notice: Callable[[str, str, bool], None] = lambda dataset_id, message, warning: None
    _client: RemoteClient | None = field(default=None, init=False, repr=False)
    _manifest: Manifest | None = field(default=None, init=False, repr=False)
    _versions: VersionReport | None = field(default=None, init=False, repr=False)

    @property
    def layout(self) -> RootLayout:
        """Paths inside the data root (where manifests are saved)."""
        return RootLayout(self.settings.root)

    @property
    def loaded(self) -> Manifest | None:
        """The manifest this run uses, once :meth:`manifest` has been called."""
        return self._manifest

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
                on_notice=lambda message: self.on_notice("", message, False),
                sleep=self.sleep,
                transport=self.transport,
                stall_seconds=self.settings.stall_seconds,
                should_stop=self.should_stop,
            )
        return self._client

    def close(self) -> None:
        """Close network connections."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def manifest(
        self, dataset_archives: Mapping[str, str], *, prefer_saved: bool = False
    ) -> Manifest:
        """The record's manifest: fetched (and saved) once per run, or the saved copy offline.

        A fetched manifest is compared with the saved one and with the installed datasets
        (``dataset_archives`` maps their ids to archive keys): changes upstream are told.
        """
        if self._manifest is not None:
            return self._manifest
        settings = self.settings
        saved = load_saved_record(self.layout, settings.record_id, settings.base_url)
        if settings.offline or (prefer_saved and saved is not None):
            if saved is None:
                raise OfflineError(
                    "offline mode is on and no record manifest is saved in "
                    f"{self.layout.records_dir}",
                    hint="Run `medimeta download --print-urls` once with network access to save "
                    "it, or unset MEDIMETA_OFFLINE.",
                )
            logger.debug("using the saved manifest of record %d", settings.record_id)
            self._manifest = saved
            return saved
        fresh = self.client().fetch_record()
        for dataset_id, message in upstream_changes(self.layout, dataset_archives, fresh, saved):
            self.on_notice(dataset_id, message, True)
        # A read-only root still lets us report; the install step will say more.
        with suppress(OSError):
            save_record(self.layout, fresh)
        self._manifest = fresh
        return fresh

    def versions(self, dataset_archives: Mapping[str, str]) -> VersionReport:
        """The record's latest version compared with the record and the installed data:
        one request more than the manifest, made once per run; the check is saved for
        ``list``. :class:`OfflineError` offline, :class:`RemoteDataError` (one line) when
        the answer is refused."""
        if self._versions is not None:
            return self._versions
        if self.settings.offline:
            raise OfflineError("offline mode is on: the latest version cannot be asked for")
        current = self.manifest(dataset_archives)
        latest = self.client().fetch_latest()
        check_latest(current, latest)
        report = report_versions(self.layout, current, latest, latest.fetched_at)
        self._versions = report
        return report


def resolve_record(
    settings: Settings, which: str, source: RecordSource | None = None
) -> tuple[Settings, VersionReport | None]:
    """The settings of a run that fetches record ``which``: ``latest`` (the latest version
    of the configured record, asked for once: :meth:`RecordSource.versions`) or a record id
    (as ``MEDIMETA_RECORD`` gives one); with the version check when one was made.

    :class:`UsageError` for anything else, :class:`OfflineError` for ``latest`` offline.
    """
    from dataclasses import replace

    from medimeta_cli.errors import UsageError

    text = which.strip()
    if text.lower() == "latest":
        own = source is None
        source = source or RecordSource(settings)
        try:
            report = source.versions({})
        finally:
            if own:
                source.close()
        record_id = report.latest.record_id
    elif text.isascii() and text.isdigit() and 0 < int(text) < 10**18:
        report, record_id = None, int(text)
    else:
        raise UsageError(
            f"--record takes 'latest' or a record id (a whole number), not {which[:40]!r}",
            hint="Use --record latest for the latest version of the record, or its id.",
        )
    sources = {**settings.sources, "record_id": f"--record {text}"}
    return replace(settings, record_id=record_id, sources=sources), report
