"""Versions of the record: whether a newer one than the installed data exists, and what
changed in its file list.

Zenodo publishes each new version of a record under one concept record;
``GET /api/records/<id>/versions/latest`` answers with the latest version's record. That
answer is validated as strictly as the record itself (:func:`parse_latest`) and then
checked against the record it was asked about (:func:`check_latest`): same concept, not
older. The comparison with the installed datasets (:class:`VersionReport`) reads their
install records only; the last check is saved (``.medimeta/records/versions.json``) so that
``medimeta list`` can show it without the network.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from medimeta_cli.errors import RemoteDataError
from medimeta_cli.fsutil import atomic_write_text, human_bytes
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.records import InstallRecord, read_install_record
from medimeta_cli.zenodo.record import (
    ArchiveInfo,
    Manifest,
    load_saved_record,
    manifest_from_saved,
    parse_record,
)

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
    #: The archive in the latest version; None when that version no longer has it.
    latest_file: ArchiveInfo | None
    #: Whether the latest version's archive differs from the installed one; None when
    #: that cannot be told (a copy from a folder has no archive md5).
    changed: bool | None


@dataclass(frozen=True)
class VersionReport:
    """The latest version of a record compared with the record and the installed data."""

    current: Manifest
    latest: Manifest
    checked_at: str | None
    #: Installed datasets whose install record names an older version of the record.
    behind: tuple[DatasetUpdate, ...]

    @property
    def newer(self) -> bool:
        """Whether a newer version than the record asked about exists."""
        return self.latest.record_id != self.current.record_id

    @property
    def changes(self) -> list[FileChange]:
        """The files that differ from the record asked about to the latest version."""
        return file_changes(self.current.files, self.latest.files)

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

    def to_json(self) -> dict[str, Any]:
        """The saved form (and ``--json``)."""
        return {
            "checked_at": self.checked_at,
            "current": self.current.to_json(),
            "latest": self.latest.to_json(),
        }


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
    layout: RootLayout,
    current: Manifest,
    latest: Manifest,
    checked_at: str | None,
    base_url: str = "",
) -> VersionReport:
    """Compare the latest version with the record asked about and with every dataset
    installed from a version older than the latest (of the same record or concept)."""
    versions = {current.record_id, latest.record_id}
    behind = []
    for record in installed_records(layout):
        if record.record_id >= latest.record_id or not _same_concept(
            layout, record.record_id, versions, latest, base_url
        ):
            continue
        info = latest.files.get(record.archive_key)
        if info is None:
            changed: bool | None = True
        elif record.source_md5 is None:
            changed = None
        else:
            changed = (record.source_md5, record.archive_size) != (info.md5, info.size)
        behind.append(
            DatasetUpdate(record.dataset_id, record.archive_key, record.record_id, info, changed)
        )
    return VersionReport(current, latest, checked_at, tuple(behind))


def _same_concept(
    layout: RootLayout, record_id: int, versions: set[int], latest: Manifest, base_url: str
) -> bool:
    """Whether a dataset installed from ``record_id`` is of the record checked: one of its
    versions seen in this check, or a saved manifest of the same concept."""
    if record_id in versions:
        return True
    saved = load_saved_record(layout, record_id, base_url)
    return (
        saved is not None and saved.concept_id is not None and saved.concept_id == latest.concept_id
    )


def save_check(layout: RootLayout, report: VersionReport) -> None:
    """Save the last check for ``list``, in a data root that has saved a record already:
    a check never creates a data root (best effort: a read-only root keeps none)."""
    if not layout.records_dir.is_dir():
        return
    try:
        atomic_write_text(layout.version_check_path, json.dumps(report.to_json(), indent=1))
    except OSError as exc:
        logger.debug("the version check was not saved: %s", exc)


def load_check(layout: RootLayout, base_url: str) -> VersionReport | None:
    """The last check saved in the data root, compared with today's install records;
    None when there is none or it cannot be read (it is only a cache)."""
    try:
        data = json.loads((layout.version_check_path).read_bytes())
        current, latest = (manifest_from_saved(data[k], base_url) for k in ("current", "latest"))
        checked_at = data.get("checked_at")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RemoteDataError):
        return None
    when = checked_at if isinstance(checked_at, str) else None
    return compare_installed(layout, current, latest, when, base_url)
