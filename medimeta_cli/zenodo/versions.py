"""Versions of the record: whether a newer one than the installed data exists, and what
changed in its file list.

Zenodo publishes each new version of a record under one concept record;
``GET /api/records/<id>/versions/latest`` answers with the latest version's record. That
answer is validated as strictly as the record itself (:func:`parse_latest`) and then
checked against the record it was asked about (:func:`check_latest`): same concept, not
older. The comparison with the installed datasets (:class:`VersionReport`) reads their
install records only; what ``list`` needs of the last check is saved
(``.medimeta/records/versions.json``) so that it is shown without the network, and read
back with plain checks, without the record's models.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from medimeta_cli.errors import RemoteDataError
from medimeta_cli.fsutil import atomic_write_text, human_bytes, read_json_object
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.records import ArchiveCheck, InstallRecord, read_install_record

if TYPE_CHECKING:
    # Only for types: the record's models load pydantic, which `list` must not pay for.
    from medimeta_cli.zenodo.record import ArchiveInfo, Manifest

logger = logging.getLogger(__name__)


class ChangeKind(str, Enum):
    """How one file of the record differs between two versions."""

    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


@dataclass(frozen=True)
class FileChange:
    """One file that differs between two versions of the record."""

    key: str
    kind: ChangeKind
    old: ArchiveInfo | None
    new: ArchiveInfo | None

    def describe(self) -> str:
        """``crc.zip changed (md5 a -> b, 1.0 MB -> 1.1 MB)``, ``x.zip added (...)``."""
        if self.kind is ChangeKind.ADDED:
            assert self.new is not None
            return f"{self.key} added ({human_bytes(self.new.size)}, md5 {self.new.md5})"
        if self.kind is ChangeKind.REMOVED:
            return f"{self.key} removed"
        assert self.old is not None and self.new is not None
        parts = [f"md5 {self.old.md5} -> {self.new.md5}"] if self.old.md5 != self.new.md5 else []
        if self.old.size != self.new.size:
            parts.append(f"{human_bytes(self.old.size)} -> {human_bytes(self.new.size)}")
        return f"{self.key} changed ({', '.join(parts)})"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "key": self.key,
            "change": self.kind.value,
            "old": None if self.old is None else {"size": self.old.size, "md5": self.old.md5},
            "new": None if self.new is None else {"size": self.new.size, "md5": self.new.md5},
        }


def file_changes(
    old: Mapping[str, ArchiveInfo], new: Mapping[str, ArchiveInfo]
) -> list[FileChange]:
    """The files added, removed or changed (size or md5) from ``old`` to ``new``, by key."""
    changes = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before is None:
            changes.append(FileChange(key, ChangeKind.ADDED, None, after))
        elif after is None:
            changes.append(FileChange(key, ChangeKind.REMOVED, before, None))
        elif (before.md5, before.size) != (after.md5, after.size):
            changes.append(FileChange(key, ChangeKind.CHANGED, before, after))
    return changes


def parse_latest(payload: Any, *, asked: int, base_url: str, fetched_at: str | None) -> Manifest:
    """Validate the ``versions/latest`` answer for record ``asked``: a record response that
    names its own id; :class:`RemoteDataError` in one line otherwise."""
    if not isinstance(payload, dict) or "id" not in payload:
        raise RemoteDataError(
            f"the latest-version answer for record {asked} was refused: it names no record id"
        )
    from medimeta_cli.zenodo.record import parse_record

    try:
        return parse_record(payload, record_id=asked, base_url=base_url, fetched_at=fetched_at)
    except RemoteDataError as exc:
        message = exc.message.removeprefix("invalid record response: ")
        raise RemoteDataError(
            f"the latest-version answer for record {asked} was refused: {message}"
        ) from exc


def check_latest(current: Manifest, latest: Manifest) -> None:
    """Refuse a latest version that cannot be one of ``current``: another concept record,
    not marked the latest, or older than ``current`` (by index or by record id)."""
    asked = current.record_id
    prefix = f"the latest-version answer for record {asked} was refused"
    if (
        current.concept_id is not None
        and latest.concept_id is not None
        and current.concept_id != latest.concept_id
    ):
        raise RemoteDataError(
            f"{prefix}: it is record {latest.record_id} of concept record "
            f"{latest.concept_id}, not of {current.concept_id}"
        )
    if latest.is_latest is False:
        raise RemoteDataError(f"{prefix}: record {latest.record_id} says it is not the latest")
    older_index = (
        current.version_index is not None
        and latest.version_index is not None
        and latest.version_index < current.version_index
    )
    if older_index or latest.record_id < current.record_id:
        raise RemoteDataError(
            f"{prefix}: record {latest.record_id} (version index {latest.version_index}) is "
            f"older than record {asked} (version index {current.version_index})"
        )


@dataclass(frozen=True)
class DatasetUpdate:
    """An installed dataset and the latest version of the record it was installed from."""

    dataset_id: str
    archive_key: str
    installed_record: int
    #: Whether the latest version's archive differs (size or md5) or is gone; None when
    #: that cannot be told (a copy from a folder has no archive md5).
    changed: bool | None


_MD5 = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class LatestSeen:
    """What a check learnt of the latest version, as saved for ``list``: plain data read
    back with plain checks, so that ``list`` never loads the record's models."""

    asked: int
    record_id: int
    version: str | None
    concept_id: int | None
    #: key -> (size, md5) of the latest version's files.
    files: Mapping[str, tuple[int, str]]

    @classmethod
    def of(cls, current: Manifest, latest: Manifest) -> LatestSeen:
        """The part of a check that ``list`` needs."""
        return cls(
            current.record_id,
            latest.record_id,
            latest.version,
            latest.concept_id,
            {key: (f.size, f.md5) for key, f in latest.files.items()},
        )

    def to_json(self) -> dict[str, Any]:
        """The saved form."""
        return {
            "asked": self.asked,
            "record_id": self.record_id,
            "version": self.version,
            "concept_id": self.concept_id,
            "files": {key: {"size": s, "md5": m} for key, (s, m) in self.files.items()},
        }

    @classmethod
    def from_json(cls, data: Any) -> LatestSeen:
        """Read :meth:`to_json`'s form back; ValueError when it is not that."""
        if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
            raise ValueError("not a saved check")
        asked: Any = data.get("asked")
        record_id: Any = data.get("record_id")
        concept, version = data.get("concept_id"), data.get("version")
        if not (_whole(asked) and _whole(record_id) and (concept is None or _whole(concept))):
            raise ValueError("record ids are not whole numbers")
        if not (version is None or (isinstance(version, str) and len(version) <= 200)):
            raise ValueError("the version is not a string")
        files = {}
        for key, entry in data["files"].items():
            size, md5 = entry.get("size"), entry.get("md5")
            if not (_whole(size, 0) and isinstance(md5, str) and _MD5.match(md5)):
                raise ValueError(f"file {key!r} has no size and md5")
            files[key] = (size, md5)
        return cls(asked, record_id, version, concept, files)


def _whole(value: Any, least: int = 1) -> bool:
    return type(value) is int and value >= least


@dataclass(frozen=True)
class LatestCheck:
    """The last check compared with the install records of today: which installed datasets
    are older than the latest version, and whether their archive changed."""

    latest: LatestSeen
    checked_at: str | None
    behind: tuple[DatasetUpdate, ...]

    def newer_version(self, dataset_id: str) -> dict[str, Any] | None:
        """``list --json``'s ``newer_version`` of an installed dataset, or None."""
        found = next((u for u in self.behind if u.dataset_id == dataset_id), None)
        if found is None:
            return None
        return {
            "record_id": self.latest.record_id,
            "version": self.latest.version,
            "changed": found.changed,
        }


@dataclass(frozen=True)
class VersionReport:
    """The latest version of a record compared with the record and the installed data."""

    current: Manifest
    latest: Manifest
    check: LatestCheck

    @property
    def newer(self) -> bool:
        """Whether a newer version than the record asked about exists."""
        return self.latest.record_id != self.current.record_id

    @property
    def behind(self) -> tuple[DatasetUpdate, ...]:
        """Installed datasets whose install record names an older version."""
        return self.check.behind

    @property
    def changes(self) -> list[FileChange]:
        """The files that differ from the record asked about to the latest version."""
        return file_changes(self.current.files, self.latest.files)

    def line(self) -> str:
        """One line: the newer version, what changed, and which installed datasets are
        older; or that the record is the latest."""
        latest = self.latest
        if not self.newer and not self.behind:
            version = f" (version {latest.version})" if latest.version else ""
            return f"record {latest.record_id}{version} is the latest version"
        name = f"version {latest.version}" if latest.version else "version"
        published = f", published {latest.published}" if latest.published else ""
        asked = self.current.record_id
        head = f"a newer {name} of record {asked} exists (record {latest.record_id}{published})"
        if not self.newer:
            head = f"record {asked} is the latest version ({name})"
        changes = self.changes
        said = "; ".join(c.describe() for c in changes) if changes else "same files"
        parts = [f"{head}: {said}" if self.newer else head]
        if self.behind:
            parts.append(
                "installed from an older version: "
                + ", ".join(f"{u.dataset_id} ({_said(u.changed)})" for u in self.behind)
            )
        return "; ".join(parts)


def _said(changed: bool | None) -> str:
    return "unknown" if changed is None else "changed" if changed else "unchanged"


def installed_records(layout: RootLayout) -> list[InstallRecord]:
    """The readable install records of the data root (damaged ones are ``verify``'s)."""
    try:
        names = sorted(layout.installed_dir.glob("*.json"))
    except OSError:
        return []
    found = []
    for path in names:
        if path.name.endswith(".files.json"):
            continue
        record = read_install_record(layout, path.name.removesuffix(".json"))
        if record is not None:
            found.append(record)
    return found


def compare_installed(
    layout: RootLayout, latest: LatestSeen, checked_at: str | None
) -> LatestCheck:
    """Compare the latest version with every dataset installed from an older version of
    the same record (the one asked about, or a saved record of the same concept)."""
    behind = []
    for record in installed_records(layout):
        if record.archive_check == ArchiveCheck.LOCAL.value:
            continue  # an archive from outside the record: no version of it to compare
        if record.record_id >= latest.record_id or not _same_concept(
            layout, record.record_id, latest
        ):
            continue
        info = latest.files.get(record.archive_key)
        if info is None:
            changed: bool | None = True
        elif record.source_md5 is None:
            changed = None
        else:
            changed = (record.archive_size, record.source_md5) != info
        behind.append(
            DatasetUpdate(record.dataset_id, record.archive_key, record.record_id, changed)
        )
    return LatestCheck(latest, checked_at, tuple(behind))


def _same_concept(layout: RootLayout, record_id: int, latest: LatestSeen) -> bool:
    """Whether a dataset installed from ``record_id`` is of the record checked: the one
    asked about, or one whose saved manifest names the same concept record."""
    if record_id == latest.asked:
        return True
    # The saved manifest (``record.saved_record_path``), read as plain JSON: only its
    # concept id is compared, with a number that was validated when the check was made.
    saved = read_json_object(layout.records_dir / f"{record_id}.json")
    concept = None if saved is None else saved.get("concept_id")
    return latest.concept_id is not None and concept == latest.concept_id


def report_versions(
    layout: RootLayout, current: Manifest, latest: Manifest, checked_at: str | None
) -> VersionReport:
    """Compare a validated latest version (:func:`check_latest`) with the record asked
    about and the installed data, and save what ``list`` needs of it."""
    seen = LatestSeen.of(current, latest)
    report = VersionReport(current, latest, compare_installed(layout, seen, checked_at))
    _save_check(layout, seen, checked_at)
    return report


def _save_check(layout: RootLayout, seen: LatestSeen, checked_at: str | None) -> None:
    """Save the last check for ``list``, in a data root that has saved a record already:
    a check never creates a data root (best effort: a read-only root keeps none)."""
    if not layout.records_dir.is_dir():
        return
    text = json.dumps({"checked_at": checked_at, "latest": seen.to_json()}, indent=1)
    try:
        atomic_write_text(layout.version_check_path, text)
    except OSError as exc:
        logger.debug("the version check was not saved: %s", exc)


def load_check(layout: RootLayout) -> LatestCheck | None:
    """The last check saved in the data root, compared with today's install records;
    None when there is none or it cannot be read (it is only a cache)."""
    data = read_json_object(layout.version_check_path)
    if data is None:
        return None
    try:
        seen = LatestSeen.from_json(data.get("latest"))
    except (ValueError, AttributeError) as exc:
        logger.debug("the saved version check is not used: %s", exc)
        return None
    checked_at = data.get("checked_at")
    return compare_installed(layout, seen, checked_at if isinstance(checked_at, str) else None)
