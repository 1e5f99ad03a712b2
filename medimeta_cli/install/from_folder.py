"""Installing an unzipped dataset folder in the MedIMeta format (``download --from <id>/``).

A folder holding ``info.yaml`` is a dataset, named by the folder: its name must be a safe
id and match the id in its ``info.yaml``, in the catalog or not. It is copied into a
staging folder on the data root's file system and installed like an extracted archive
(:meth:`Installer.install_folder`: the quick structure check, the record written before
the folder becomes visible). No link is ever followed, at any depth, at any moment: the
walk and the copy go through directory descriptors, each sub-folder and file opened from
its parent's descriptor with ``O_NOFOLLOW`` (:class:`_Source`). A link, FIFO, device or
socket anywhere in the folder, or a name that is not UTF-8 or holds a control character,
refuses it before a byte is copied; a sub-folder replaced during the copy (by a link or
another folder) refuses it when the copy reaches it, and each file is checked to be
regular again. Every file is hashed as it is copied, which gives the install record its
file manifest. The source folder is only read, never changed.

What ``--from`` takes and offers (archives, folders of them, dataset folders) is
:mod:`medimeta_cli.install.offers`.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from medimeta_cli.catalog.datasets import Catalog, Dataset
from medimeta_cli.dataset.gate import InfoError, read_info
from medimeta_cli.dataset.installed import check_dataset_id
from medimeta_cli.dataset.layouts import ArchiveLayout
from medimeta_cli.errors import (
    IntegrityError,
    MedimetaError,
    PermissionDeniedError,
    UnknownDatasetError,
    UsageError,
)
from medimeta_cli.events import (
    BytesTransferred,
    EventSink,
    Outcome,
    OutcomeStatus,
    Phase,
    PhaseChanged,
    TransferStarted,
)
from medimeta_cli.fsutil import ensure_space, remove_tree, translate_os_error
from medimeta_cli.install.archive import HashedWriter
from medimeta_cli.install.commit import InstallResult, Proof
from medimeta_cli.settings import Settings
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.locking import DatasetLock
from medimeta_cli.store.records import FileEntry
from medimeta_cli.store.status import is_installed
from medimeta_cli.zenodo.record import ArchiveInfo

__all__ = [
    "FolderFile",
    "FolderInstaller",
    "install_dataset_folder",
    "is_dataset_folder",
    "list_dataset_folder",
    "shown_path",
]

logger = logging.getLogger(__name__)

_COPY_CHUNK = 1024 * 1024
_NOT_A_DATASET = "is not a dataset in the MedIMeta format"
_HINT = (
    "A dataset folder <id>/ holds only regular files and folders (no links, devices or "
    "FIFOs); copy the real files in, or give the dataset's <id>.zip."
)


class FolderInstaller(Protocol):
    """What copying a folder in needs of the installer (:class:`Installer`, which hands
    folders to this module: described here, so that this module does not import it)."""

    @property
    def settings(self) -> Settings:
        """The installer's settings (its data root)."""

    @property
    def on_event(self) -> EventSink:
        """Where progress goes."""

    @property
    def should_stop(self) -> Callable[[], bool]:
        """Asked between files: stop now?"""

    @property
    def layout(self) -> RootLayout:
        """Paths inside the data root."""

    def lock(self, dataset_id: str) -> DatasetLock:
        """The dataset's lock."""

    def new_staging(self, dataset: Dataset) -> Path:
        """A fresh staging folder on the data root's file system."""

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
        """Commit a complete staging folder as ``<root>/<id>``."""


def is_dataset_folder(path: Path) -> bool:
    """Whether ``path`` is a folder holding ``info.yaml`` (of any kind: a link there is
    refused later, with the reason), as opposed to a folder of ``<id>.zip`` archives."""
    if not path.is_dir():
        return False
    try:
        os.lstat(path / "info.yaml")
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class FolderFile:
    """A regular file of a dataset folder: its path inside the folder and its size."""

    relative: str
    size: int


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link (never followed)"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file or folder"


def _refused(folder: Path, entry: Path, mode: int) -> IntegrityError:
    return IntegrityError(
        f"the folder {folder} {_NOT_A_DATASET}: {entry} is {_kind(mode)}; nothing was installed",
        hint=_HINT,
    )


def _read_error(exc: OSError, path: Path) -> MedimetaError:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PermissionDeniedError(
            f"cannot read {path}: {exc.strerror}; nothing was installed",
            hint="Make the dataset folder readable, then run the command again.",
        )
    return IntegrityError(f"cannot read {path}: {exc.strerror}; nothing was installed")


#: A sub-folder is opened from its parent's descriptor, never through a link; so is a file
#: (O_NONBLOCK: a FIFO put there since the walk must not block the open).
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _name_problem(name: str) -> str | None:
    """Why a file name cannot be installed: not UTF-8 (the install record and every
    output are UTF-8), or holding a control character (it would reach a terminal raw)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in name):
        return "holds a control character"
    return None


def shown_path(relative: str) -> str:
    """A path from the folder for a message: escaped where it is not printable UTF-8."""
    return ascii(relative)[1:-1] if _name_problem(relative) else relative


class _Source:
    """A dataset folder open for reading. Every sub-folder is opened from its parent's
    descriptor with ``O_NOFOLLOW``, so no path is resolved twice and a link is never
    followed, whenever it appears: a folder swapped for a link after the walk is refused
    when the copy reaches it, and one swapped for another folder is told by its identity
    (device and inode, taken by the walk). The folder given itself is opened as given."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._open: dict[str, int] = {}
        self.identities: dict[str, tuple[int, int]] = {}
        try:
            self._open[""] = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise _read_error(exc, folder) from exc

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc: object) -> None:
        for descriptor in self._open.values():
            os.close(descriptor)
        self._open.clear()

    def _path(self, relative: str) -> Path:
        return self.folder / shown_path(relative) if relative else self.folder

    def _refuse_entry(self, parent: int, relative: str, exc: OSError) -> MedimetaError:
        """The error for an entry that could not be opened: what it is now, if it is no
        longer what the walk saw (a link, a FIFO), else the read error."""
        try:
            mode = os.stat(relative.rpartition("/")[2], dir_fd=parent, follow_symlinks=False)
        except OSError:
            return _read_error(exc, self._path(relative))
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and not stat.S_ISDIR(mode.st_mode):
            return _refused(self.folder, self._path(relative), mode.st_mode)
        return _read_error(exc, self._path(relative))

    def directory(self, relative: str) -> int:
        """The descriptor of a sub-folder (``""``: the folder), opened once."""
        found = self._open.get(relative)
        if found is not None:
            return found
        above, _, name = relative.rpartition("/")
        parent = self.directory(above)
        try:
            descriptor = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            raise self._refuse_entry(parent, relative, exc) from exc
        self._open[relative] = descriptor
        info = os.fstat(descriptor)
        expected = self.identities.setdefault(relative, (info.st_dev, info.st_ino))
        if expected != (info.st_dev, info.st_ino):
            raise _changed(self._path(relative), "another folder took its place")
        return descriptor

    def open_file(self, relative: str) -> int:
        """A descriptor of a regular file, opened without following a link."""
        above, _, name = relative.rpartition("/")
        parent = self.directory(above)
        try:
            descriptor = os.open(name, _FILE_FLAGS, dir_fd=parent)
        except OSError as exc:
            raise self._refuse_entry(parent, relative, exc) from exc
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            os.close(descriptor)
            raise _refused(self.folder, self._path(relative), mode)
        return descriptor

    def walk(self) -> tuple[list[str], list[FolderFile]]:
        """Sub-folders and regular files, relative to the folder, sorted."""
        folders: list[str] = []
        files: list[FolderFile] = []
        pending = [""]
        while pending:
            relative = pending.pop()
            descriptor = self.directory(relative)
            try:
                with os.scandir(descriptor) as scan:
                    entries = sorted(scan, key=lambda e: e.name)
                for entry in entries:
                    inner = f"{relative}/{entry.name}" if relative else entry.name
                    problem = _name_problem(entry.name)
                    if problem is not None:
                        raise IntegrityError(
                            f"the folder {self.folder} {_NOT_A_DATASET}: the name "
                            f"{shown_path(inner)} {problem}; nothing was installed",
                            hint="Rename or remove that file; MedIMeta's files have plain names.",
                        )
                    info = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(info.st_mode):
                        folders.append(inner)
                        pending.append(inner)
                    elif stat.S_ISREG(info.st_mode):
                        files.append(FolderFile(inner, info.st_size))
                    else:
                        raise _refused(self.folder, self._path(inner), info.st_mode)
            except OSError as exc:
                raise _read_error(exc, self._path(relative)) from exc
        # The copy opens each sub-folder again, so that one replaced since is refused
        # (by its identity, or as a link) rather than copied from where it was moved.
        for relative in [name for name in self._open if name]:
            os.close(self._open.pop(relative))
        return sorted(folders), sorted(files, key=lambda f: f.relative)


def _changed(path: Path, how: str) -> IntegrityError:
    return IntegrityError(
        f"{path} changed while it was being copied ({how}); nothing was installed",
        hint="Let whatever writes to the folder finish, then run the command again.",
    )


def list_dataset_folder(folder: Path) -> tuple[list[str], list[FolderFile]]:
    """The sub-folders and regular files of a dataset folder, relative to it, walked
    through directory descriptors without following links; :class:`IntegrityError` naming
    the first entry that is a link, FIFO, device or socket, or whose name is not UTF-8."""
    with _Source(folder) as source:
        return source.walk()


def _copy_file(
    source: _Source, staging: Path, item: FolderFile, installer: FolderInstaller, dataset_id: str
) -> FileEntry:
    """Copy one regular file, hashing it; the source is opened from its folder's descriptor
    without following a link and must still be a regular file of the size listed."""
    path = source.folder / item.relative
    with open(source.open_file(item.relative), "rb") as reader:
        writer = HashedWriter(staging / item.relative, item.relative)
        try:
            while True:
                try:
                    chunk = reader.read(_COPY_CHUNK)
                except OSError as exc:
                    raise _read_error(exc, path) from exc
                if not chunk:
                    break
                writer.write(chunk)
                installer.on_event(BytesTransferred(dataset_id, len(chunk)))
        finally:
            writer.close()
    if writer.written != item.size:
        raise _changed(path, f"{item.size:,} bytes, then {writer.written:,}")
    return writer.finish()


def _file_list_digest(entries: list[FileEntry]) -> str:
    """An md5 of the copied files' paths, sizes and block hashes: identifies the folder's
    contents in the outcome (it is no archive md5, and is not recorded as one)."""
    digest = hashlib.md5(usedforsecurity=False)
    for entry in entries:
        digest.update(f"{entry.path}\0{entry.size}\0{','.join(entry.sha256)}\n".encode())
    return digest.hexdigest()


def _describe(folder: Path, catalog: Catalog) -> Dataset:
    """The dataset the folder is: named by the folder, described by its ``info.yaml``
    (the catalog's entry when the id is in the catalog)."""
    dataset_id = folder.name
    try:
        entry: Dataset | None = catalog.get(dataset_id)
    except UnknownDatasetError:
        entry = None
    if entry is None or entry.id != dataset_id:
        check_dataset_id(dataset_id)
    try:
        described = read_info(folder, dataset_id, summary=entry.summary if entry else None)
    except InfoError as error:
        raise IntegrityError(
            f"the folder {folder} {_NOT_A_DATASET}: its info.yaml {error.reason}; "
            "nothing was installed",
            hint="A dataset folder is named after the id in its own info.yaml.",
        ) from None
    return entry if entry is not None else described


def _copy_and_install(
    installer: FolderInstaller, folder: Path, dataset: Dataset, *, force: bool
) -> tuple[OutcomeStatus, str]:
    """Copy the folder into staging and install it; the staging copy is removed after."""
    with _Source(folder) as source:
        return _copy_source(installer, source, dataset, force=force)


def _copy_source(
    installer: FolderInstaller, source: _Source, dataset: Dataset, *, force: bool
) -> tuple[OutcomeStatus, str]:
    folder = source.folder
    folders, files = source.walk()
    total = sum(item.size for item in files)
    ensure_space(installer.layout.root, total, f"copying {folder}")
    installer.on_event(TransferStarted(dataset.id, total=total, done=0))
    installer.on_event(PhaseChanged(dataset.id, Phase.COPYING))
    staging = installer.new_staging(dataset)
    logger.debug("copying %s (%d files) into %s", folder, len(files), staging)
    try:
        staging.mkdir()
        for inner in folders:
            (staging / inner).mkdir()
        entries = []
        for item in files:
            if installer.should_stop():
                raise KeyboardInterrupt
            entries.append(_copy_file(source, staging, item, installer, dataset.id))
        info = ArchiveInfo(
            f"{dataset.id}/", total, _file_list_digest(entries), folder.absolute().as_uri()
        )
        result = installer.install_folder(
            dataset,
            staging,
            entries,
            info,
            force=force,
            archive_layout=ArchiveLayout.FULL,
            proof=Proof.folder(f"every file of {folder}, hashed as it was copied"),
        )
    except OSError as exc:
        raise translate_os_error(exc, f"{dataset.id} into {installer.layout.root}") from exc
    finally:
        remove_tree(staging)
    installed = result is InstallResult.INSTALLED
    return OutcomeStatus.INSTALLED if installed else OutcomeStatus.SKIPPED, result.value


def install_dataset_folder(
    installer: FolderInstaller, folder: Path, catalog: Catalog, *, force: bool
) -> Outcome:
    """Install one unzipped dataset folder into the installer's data root; the outcome
    says what happened (a failure is an outcome too, as for archives)."""
    started = time.monotonic()
    dataset_id = folder.name
    try:
        dataset = _describe(folder, catalog)
        dataset_id = dataset.id
        final = installer.layout.dataset_dir(dataset_id)
        if _same_folder(folder, final):
            raise UsageError(
                f"{folder} is the installed {dataset_id} itself; nothing to install",
                hint="Give a copy of the dataset folder from outside the data root.",
            )
        if not force and is_installed(installer.settings.root, dataset_id):
            return Outcome(dataset_id, OutcomeStatus.SKIPPED, "already installed", path=final)
        with installer.lock(dataset_id).hold():
            status, detail = _copy_and_install(installer, folder, dataset, force=force)
    except MedimetaError as error:
        return Outcome.failed(dataset_id, error, time.monotonic() - started)
    return Outcome(dataset_id, status, detail, path=final, seconds=time.monotonic() - started)


def _same_folder(folder: Path, final: Path) -> bool:
    try:
        return os.path.samefile(folder, final)
    except OSError:
        return False
