"""Installing a verified archive, or a folder of fetched members, into a data root.

Files are extracted into a staging folder on the data root's file system, the
folder's ``info.yaml`` must name the dataset the archive claims to be, and the
folder is renamed into ``<root>/<id>/`` in one step before the install record is
written. Archives fetched by other means (``download --from``) are checked
against the record (size and md5) first.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from medimeta_cli import __version__
from medimeta_cli.archive import extract_archive, inspect_archive
from medimeta_cli.catalog import Catalog, Dataset
from medimeta_cli.errors import IntegrityError, MedimetaError, UsageError
from medimeta_cli.events import (
    BytesTransferred,
    EventSink,
    Notice,
    Outcome,
    OutcomeStatus,
    Phase,
    PhaseChanged,
    TransferStarted,
    ignore,
)
from medimeta_cli.fsutil import (
    ensure_space,
    remove_tree,
    translate_os_error,
    unique_suffix,
    utc_now,
)
from medimeta_cli.layout import RootLayout
from medimeta_cli.locking import DatasetLock
from medimeta_cli.plan import ArchiveLayout, is_installed, wanted_in_layout
from medimeta_cli.record import ArchiveInfo, Manifest
from medimeta_cli.records import FileEntry, FileManifest, InstallRecord, write_install_record
from medimeta_cli.settings import Settings
from medimeta_cli.transfer import hash_file, new_md5

logger = logging.getLogger(__name__)


class InstallResult(str, Enum):
    """How an install ended when it did not fail."""

    INSTALLED = "installed"
    BY_ANOTHER_JOB = "installed by another job"  # possible only where locks do not work


@dataclass
class Installer:
    """Installs datasets into one data root and records what was installed."""

    settings: Settings
    record_version: str | None = None
    on_event: EventSink = ignore
    should_stop: Callable[[], bool] = lambda: False

    @property
    def layout(self) -> RootLayout:
        """Paths inside the data root."""
        return RootLayout(self.settings.root)

    def lock(self, dataset_id: str) -> DatasetLock:
        """The dataset's lock, configured from the settings (timeout, locks on or off)."""
        return DatasetLock(
            self.layout,
            dataset_id,
            timeout=self.settings.lock_timeout,
            on_wait=lambda message: self.on_event(Notice(dataset_id, message)),
            enabled=self.settings.locks,
            should_stop=self.should_stop,
        )

    def install_archive(
        self,
        dataset: Dataset,
        archive: Path,
        info: ArchiveInfo,
        *,
        force: bool = False,
        layout: ArchiveLayout = ArchiveLayout.FULL,
        with_masks: bool = False,
    ) -> InstallResult:
        """Extract a verified archive into place atomically and write its install record.

        With the hdf5 layout only the files the loader reads are extracted.
        """
        self.on_event(PhaseChanged(dataset.id, Phase.EXTRACTING))
        listing = inspect_archive(archive, dataset, archive_size=info.size)
        ensure_space(self.layout.root, listing.total_bytes, f"extracting {info.key}")
        staging = self.new_staging(dataset)
        logger.debug("extracting %s (%s layout) into %s", archive, layout.value, staging)
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
        layout: ArchiveLayout,
    ) -> InstallResult:
        """Rename a complete staging folder into ``<root>/<id>`` and record what it holds."""
        check_info_id(staging, dataset.id, info.key)
        final = self.layout.dataset_dir(dataset.id)
        old: Path | None = None
        try:
            if final.exists():
                if not force:
                    logger.debug("%s appeared meanwhile: installed by another job", final)
                    return InstallResult.BY_ANOTHER_JOB
                old = self.layout.tmp_dir / f"{dataset.id}.old.{unique_suffix()}"
                logger.debug("moving the installed %s aside to %s", final, old)
                os.rename(final, old)
            try:
                logger.debug("renaming %s to %s", staging, final)
                os.rename(staging, final)
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    logger.debug("%s appeared meanwhile: installed by another job", final)
                    return InstallResult.BY_ANOTHER_JOB
                raise
            write_install_record(
                self.layout,
                InstallRecord(
                    dataset_id=dataset.id,
                    archive_key=info.key,
                    archive_size=info.size,
                    archive_md5=info.md5,
                    record_id=self.settings.record_id,
                    record_version=self.record_version,
                    installed_at=utc_now(),
                    tool_version=__version__,
                    file_count=len(entries),
                    total_bytes=sum(entry.size for entry in entries),
                    layout=layout.value,
                ),
                FileManifest(tuple(entries)),
            )
            logger.debug("installed %s: %d files", final, len(entries))
        finally:
            if old is not None:
                remove_tree(old)
        return InstallResult.INSTALLED

    def install_from(
        self, archives: Sequence[Path], manifest: Manifest, catalog: Catalog, *, force: bool
    ) -> list[Outcome]:
        """Install archives fetched by other means, after checking them against the record."""
        outcomes = []
        for path in archives:
            started = time.monotonic()
            dataset = catalog.get(path.name.removesuffix(".zip"))
            folder = self.layout.dataset_dir(dataset.id)
            try:
                info = manifest.archive(dataset.archive)
                if not force and is_installed(self.settings.root, dataset.id):
                    outcomes.append(
                        Outcome(dataset.id, OutcomeStatus.SKIPPED, "already installed", path=folder)
                    )
                    continue
                self._check_local_archive(dataset.id, path, info)
                with self.lock(dataset.id).hold():
                    result = self.install_archive(dataset, path, info, force=force)
            except MedimetaError as error:
                outcomes.append(Outcome.failed(dataset.id, error, time.monotonic() - started))
                continue
            outcomes.append(
                Outcome(
                    dataset.id,
                    OutcomeStatus.INSTALLED
                    if result is InstallResult.INSTALLED
                    else OutcomeStatus.SKIPPED,
                    result.value,
                    path=folder,
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
        self.on_event(PhaseChanged(dataset_id, Phase.VERIFYING))
        digest = new_md5()
        hash_file(path, digest, lambda n: self.on_event(BytesTransferred(dataset_id, n)))
        if digest.hexdigest() != info.md5:
            raise IntegrityError(
                f"{path} has md5 {digest.hexdigest()}, the record lists {info.md5} for {info.key}",
                hint="The copy is damaged or from another version; fetch it again.",
            )


def check_info_id(folder: Path, dataset_id: str, key: str) -> None:
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


def find_archives(paths: Iterable[Path]) -> list[Path]:
    """The zip files named by ``download --from``: given files, and the zips in given folders."""
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
