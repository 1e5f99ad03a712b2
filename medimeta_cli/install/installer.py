"""Installing a verified archive, or a folder of fetched members, into a data root.

Files are extracted into a staging folder on the data root's file system, the
folder's ``info.yaml`` must name the dataset the archive claims to be and the folder
must pass the quick structure check; its install record is written in full under
temporary names, committed, and the folder is renamed into ``<root>/<id>/`` in one
step, so a dataset never becomes visible without its record. Archives fetched by
other means (``download --from``) are checked against the record (size and md5) first.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path

from medimeta_cli._version import __version__
from medimeta_cli.catalog.datasets import Catalog, Dataset
from medimeta_cli.dataset.contents import check_contents
from medimeta_cli.dataset.essentials import essential_problems
from medimeta_cli.dataset.gate import DatasetFolder, InfoError, info_in_archive, read_info
from medimeta_cli.dataset.installed import check_dataset_id
from medimeta_cli.dataset.layouts import ArchiveLayout, wanted_in_layout
from medimeta_cli.errors import (
    IntegrityError,
    MedimetaError,
    OutputExistsError,
    UnknownDatasetError,
    UsageError,
)
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
from medimeta_cli.hashing import hash_file, new_md5
from medimeta_cli.install.archive import extract_archive, inspect_archive
from medimeta_cli.install.commit import InstallResult, Proof, commit_rule
from medimeta_cli.install.from_folder import install_dataset_folder, is_dataset_folder
from medimeta_cli.install.offers import archive_id
from medimeta_cli.settings import Settings
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.locking import DatasetLock
from medimeta_cli.store.records import (
    ArchiveCheck,
    FileEntry,
    FileManifest,
    InstallRecord,
    StagedRecord,
    forget_install,
    read_file_manifest,
    stage_install_record,
    write_install_record,
)
from medimeta_cli.store.status import is_installed
from medimeta_cli.zenodo.record import ArchiveInfo, Manifest

logger = logging.getLogger(__name__)


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
        archive_layout: ArchiveLayout = ArchiveLayout.FULL,
        with_masks: bool = False,
        proof: Proof,
    ) -> InstallResult:
        """Extract a verified archive into place atomically and write its install record.

        With the hdf5 layout only the files the loader reads are extracted. ``proof`` says
        what was checked of the archive; when its md5 is still being computed, the commit
        waits for it after the extraction and before anything becomes visible (what it
        raises stops the install).
        """
        self.on_event(PhaseChanged(dataset.id, Phase.EXTRACTING))
        listing = inspect_archive(archive, dataset, archive_size=info.size)
        ensure_space(self.layout.root, listing.total_bytes, f"extracting {info.key}")
        staging = self.new_staging(dataset)
        logger.debug("extracting %s (%s layout) into %s", archive, archive_layout.value, staging)
        try:
            entries = extract_archive(
                archive,
                dataset,
                listing,
                staging,
                wanted=lambda path: wanted_in_layout(path, archive_layout, with_masks=with_masks),
                should_stop=self.should_stop,
            )
            return self.install_folder(
                dataset,
                staging,
                entries,
                info,
                force=force,
                archive_layout=archive_layout,
                proof=proof,
            )
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
        archive_layout: ArchiveLayout,
        proof: Proof,
    ) -> InstallResult:
        """Rename a complete staging folder into ``<root>/<id>`` together with its record.

        The folder must pass the quick structure check first. The record and file manifest
        are written in full under temporary names before anything becomes visible, and
        committed by renames just before the folder's rename: a full disk or a crash never
        leaves a visible dataset without its record. Nothing is renamed before ``proof``
        holds (:func:`~medimeta_cli.install.commit.commit_rule`); it says what was verified
        (the archive's md5, or only its members against the directory...).
        """
        check_info_id(staging, dataset.id, info.key)
        # The folder's own info.yaml says what its files must be, not the catalog.
        described = described_staging(staging, dataset, info.key)
        check_essentials(staging, described, info.key)
        check_contents_staged(staging, described, info.key)
        checked = commit_rule(proof)
        final = self.layout.dataset_dir(dataset.id)
        target = inspect_target(final)
        if target is Target.DATASET and not force:
            logger.debug("%s appeared meanwhile: installed by another job", final)
            return InstallResult.BY_ANOTHER_JOB
        record = InstallRecord(
            dataset_id=dataset.id,
            archive_key=info.key,
            archive_size=info.size,
            archive_md5=info.md5 if checked in (ArchiveCheck.MD5, ArchiveCheck.LOCAL) else None,
            record_id=self.settings.record_id,
            record_version=self.record_version,
            installed_at=utc_now(),
            tool_version=__version__,
            file_count=len(entries),
            total_bytes=sum(entry.size for entry in entries),
            layout=archive_layout.value,
            archive_check=checked.value,
            listed_md5=info.md5 if checked in (ArchiveCheck.MD5, ArchiveCheck.MEMBERS) else None,
        )
        try:
            staged = stage_install_record(self.layout, record, FileManifest(tuple(entries)))
        except OSError as exc:
            raise translate_os_error(exc, f"the install record of {dataset.id}") from exc
        try:
            return self._commit(dataset.id, staging, final, target, staged, record)
        except OSError as exc:
            raise translate_os_error(exc, f"{dataset.id} into {self.layout.root}") from exc
        finally:
            staged.discard()  # a no-op once committed

    def _commit(
        self,
        dataset_id: str,
        staging: Path,
        final: Path,
        target: Target,
        staged: StagedRecord,
        record: InstallRecord,
    ) -> InstallResult:
        """The renames that make an install visible: the old copy aside, the record, the
        folder (over an empty folder, atomically). Nothing before the last is visible."""
        if self.should_stop():
            raise KeyboardInterrupt  # nothing is visible yet: stop here
        old: Path | None = None
        try:
            if target is Target.DATASET:
                # Transfers that stage in the partial folder (members, streamed) have not
                # made the temporary folder the old copy is moved aside into.
                self.layout.tmp_dir.mkdir(parents=True, exist_ok=True)
                old = self.layout.tmp_dir / f"{dataset_id}.old.{unique_suffix()}"
                logger.debug("moving the installed %s aside to %s", final, old)
                os.rename(final, old)
            staged.commit()
            try:
                logger.debug("renaming %s to %s", staging, final)
                os.rename(staging, final)
            except OSError as exc:
                if old is not None:
                    os.rename(old, final)  # put the installed copy back
                    old = None
                    raise
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                    return self._lost_race(dataset_id, final, record, staged)
                raise
            logger.debug("installed %s: %d files", final, record.file_count)
        finally:
            if old is not None:
                remove_tree(old)
        return InstallResult.INSTALLED

    def _lost_race(
        self, dataset_id: str, final: Path, record: InstallRecord, staged: StagedRecord
    ) -> InstallResult:
        """Something took ``final`` between the check and the rename (another job, where
        locks do not work). The record just committed must describe what is there."""
        try:
            kind = inspect_target(final)
        except MedimetaError:
            forget_install(self.layout, dataset_id)
            raise
        if kind is not Target.DATASET:  # pragma: no cover - emptied again meanwhile
            forget_install(self.layout, dataset_id)
            raise IntegrityError(f"{final} changed while {dataset_id} was being installed")
        logger.debug("%s appeared meanwhile: installed by another job", final)
        manifest = read_file_manifest(self.layout, dataset_id)
        if manifest is not None:
            # The same verified archive: same contents, but the other copy's stamps.
            files = []
            for entry in manifest.files:
                try:
                    files.append(replace(entry, mtime_ns=os.lstat(final / entry.path).st_mtime_ns))
                except OSError:
                    files.append(entry)
            with contextlib.suppress(OSError):
                write_install_record(self.layout, record, replace(manifest, files=tuple(files)))
        return InstallResult.BY_ANOTHER_JOB

    def install_from(
        self,
        archives: Sequence[Path],
        manifest: Manifest | None,
        catalog: Catalog,
        *,
        force: bool,
    ) -> list[Outcome]:
        """Install archives fetched by other means, after checking them against the record.

        An archive ``<id>.zip`` of an id the catalog lacks is a dataset in the MedIMeta
        format from elsewhere (a lab's subset, a rebuild): the id must be safe and match
        its ``<id>/info.yaml``, which describes it; the record lists nothing to check it
        against, but every other check of an install applies. ``manifest`` may be None
        when no archive is of a catalog dataset. An unzipped dataset folder ``<id>/`` is
        copied in instead (:mod:`medimeta_cli.install.from_folder`).
        """
        outcomes = []
        for path in archives:
            if is_dataset_folder(path):
                outcomes.append(install_dataset_folder(self, path, catalog, force=force))
                continue
            started = time.monotonic()
            dataset_id = archive_id(path)
            try:
                entry = _catalog_entry(catalog, dataset_id)
                dataset = entry or info_in_archive(path, dataset_id)
                dataset_id = dataset.id
                folder = self.layout.dataset_dir(dataset_id)
                if not force and is_installed(self.settings.root, dataset_id):
                    outcomes.append(
                        Outcome(dataset_id, OutcomeStatus.SKIPPED, "already installed", path=folder)
                    )
                    continue
                if entry is not None:
                    if manifest is None:  # pragma: no cover - callers pass it for these
                        raise UsageError(f"no record manifest to check {path.name} against")
                    info = manifest.archive(dataset.archive)
                    self._check_local_archive(dataset_id, path, info)
                    proof = Proof.md5(f"the md5 of {path}, checked before extraction")
                else:
                    info = self._local_archive_info(dataset_id, path)
                    proof = Proof.local_archive(f"the md5 of {path}, computed before extraction")
                with self.lock(dataset_id).hold():
                    result = self.install_archive(dataset, path, info, force=force, proof=proof)
            except MedimetaError as error:
                outcomes.append(Outcome.failed(dataset_id, error, time.monotonic() - started))
                continue
            outcomes.append(
                Outcome(
                    dataset_id,
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

    def _local_archive_info(self, dataset_id: str, path: Path) -> ArchiveInfo:
        """Size and md5 of a local archive the record does not list (hashed once)."""
        size = path.stat().st_size
        self.on_event(TransferStarted(dataset_id, total=size, done=0))
        self.on_event(PhaseChanged(dataset_id, Phase.VERIFYING))
        digest = new_md5()
        hash_file(path, digest, lambda n: self.on_event(BytesTransferred(dataset_id, n)))
        return ArchiveInfo(path.name, size, digest.hexdigest(), path.absolute().as_uri())

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


class Target(str, Enum):
    """What is found where a dataset belongs (``<root>/<id>``)."""

    ABSENT = "absent"
    EMPTY_FOLDER = "empty folder"  # replaced by the install, atomically
    DATASET = "dataset"


def inspect_target(path: Path) -> Target:
    """What is at ``path``, without following links.

    Anything that is neither absent, an empty folder nor a dataset folder (a folder
    holding ``info.yaml``) is refused with an error naming it: the tool never follows
    or replaces a link there, and never deletes what it did not install.
    """
    hint = f"Move {path} out of the way (or delete it yourself), then run the command again."
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return Target.ABSENT
    if stat.S_ISLNK(mode):
        raise OutputExistsError(
            f"{path} is a symbolic link (to {os.readlink(path)}), not a dataset folder; "
            "the tool never follows or replaces a link where a dataset belongs",
            hint=hint,
        )
    if not stat.S_ISDIR(mode):
        kind = "a regular file" if stat.S_ISREG(mode) else "a special file"
        raise OutputExistsError(
            f"{path} is {kind}, not a dataset folder; nothing was installed", hint=hint
        )
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISREG(os.lstat(path / "info.yaml").st_mode):
            return Target.DATASET
    with os.scandir(path) as entries:
        if next(entries, None) is None:
            return Target.EMPTY_FOLDER
    raise OutputExistsError(
        f"{path} is a folder holding files but no info.yaml, not an installed dataset; "
        "nothing was installed",
        hint=hint,
    )


def check_essentials(folder: Path, dataset: Dataset, key: str) -> None:
    """Refuse a folder that fails the quick structure check (required files present and
    regular, ``images.hdf5`` readable as the loader needs it)."""
    problems = essential_problems(folder, dataset)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise IntegrityError(
            f"refusing {key}: {dataset.id}/{problems[0]}{more}",
            hint="The archive is not a genuine MedIMeta archive; delete it and download again.",
        )


def check_contents_staged(folder: Path, dataset: Dataset, key: str) -> None:
    """Refuse a folder whose label or split files the gate would not hand out
    (:func:`~medimeta_cli.dataset.gate.check_contents`): a label that is no label of its
    task, a split file that repeats an image or contradicts its described count."""
    try:
        check_contents(DatasetFolder(folder, dataset))
    except IntegrityError as error:
        raise IntegrityError(
            f"refusing {key}: {error.message}",
            hint="The archive is not a genuine MedIMeta archive, or its labels or splits are "
            "damaged; fix the dataset or download it again.",
        ) from None


def check_info_id(folder: Path, dataset_id: str, key: str) -> None:
    """The archive must hold ``info.yaml`` naming the dataset it claims to be, as the gate
    (:mod:`medimeta_cli.dataset.gate`) reads it."""
    try:
        read_info(folder, dataset_id)
    except InfoError as error:
        raise IntegrityError(
            f"refusing {key}: {dataset_id}/info.yaml {error.reason}",
            hint="The archive is not the one it is named after, or not a genuine MedIMeta "
            "archive; fetch it again.",
        ) from None


def described_staging(folder: Path, dataset: Dataset, key: str) -> Dataset:
    """The dataset as the extracted ``info.yaml`` describes it; refuse the archive when
    that cannot be read (the loader needs it)."""
    try:
        return read_info(folder, dataset.id, summary=dataset.summary)
    except InfoError as error:
        raise IntegrityError(
            f"refusing {key}: {dataset.id}/info.yaml {error.reason}",
            hint="The archive is not a genuine MedIMeta archive; delete it and download again.",
        ) from None


def _catalog_entry(catalog: Catalog, dataset_id: str) -> Dataset | None:
    """The catalog's entry for an archive's id, or None for a dataset outside the catalog
    (whose id must then be safe: it names a folder of the data root)."""
    try:
        return catalog.get(dataset_id)
    except UnknownDatasetError:
        check_dataset_id(dataset_id)
        return None
