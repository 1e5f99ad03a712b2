"""The Zenodo record's manifest: validated in every response shape, saved for offline runs.

pydantic checks the response once here; everything downstream gets plain
frozen dataclasses (:class:`Manifest`, :class:`ArchiveInfo`). A record is one version
of a concept record: its concept id (``parent.id`` or ``conceptrecid``), its place among
the versions (``versions.index``, ``versions.is_latest``) and its publication date are
validated with the files, as strictly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medimeta_cli.catalog.datasets import file_download_url
from medimeta_cli.errors import NotInRecordError, RemoteDataError
from medimeta_cli.fsutil import atomic_write_text
from medimeta_cli.store.layout import RootLayout


class RecordFile(BaseModel):
    """One file of the record, normalised from any Zenodo response shape."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    key: str = Field(min_length=1)
    size: int = Field(ge=0)
    md5: str = Field(pattern=r"^[0-9a-f]{32}$")

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = dict(data)
        # Older responses: filename/filesize and a bare hex checksum.
        if "key" not in out and "filename" in out:
            out["key"] = out["filename"]
        if "size" not in out and "filesize" in out:
            out["size"] = out["filesize"]
        if "md5" not in out and "checksum" in out:
            out["md5"] = out["checksum"]
        return out

    @field_validator("md5", mode="before")
    @classmethod
    def _strip_algorithm(cls, value: Any) -> Any:
        if isinstance(value, str):
            algorithm, _, digest = value.rpartition(":")
            if algorithm not in ("", "md5"):
                raise ValueError(f"checksum is {algorithm}, expected md5")
            return digest.lower()
        return value


def _record_number(value: Any) -> Any:
    """A record id as Zenodo writes it (a number, or a string of digits); anything else,
    a bool, a float or words, is left for the validator to refuse."""
    if isinstance(value, bool):
        raise ValueError("a record id is a whole number, not a bool")
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    if isinstance(value, str):
        raise ValueError(f"a record id is a whole number, not {value[:40]!r}")
    return value


class RecordManifest(BaseModel):
    """The files of one record version, as fetched (or saved) at a given time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    record_id: int = Field(ge=1)
    version: str | None = Field(default=None, max_length=200)
    doi: str | None = None
    files: dict[str, RecordFile]
    fetched_at: str | None = None
    #: The concept record that every version of this record belongs to.
    concept_id: int | None = Field(default=None, ge=1)
    #: This version's place among the concept's versions (1 = the first).
    version_index: int | None = Field(default=None, ge=1, le=1_000_000, strict=True)
    #: Whether the server said this is the latest version when it was fetched.
    is_latest: bool | None = Field(default=None, strict=True)
    #: The version's publication date (``YYYY-MM-DD``, as Zenodo gives it).
    published: str | None = Field(default=None, pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")

    @field_validator("record_id", "concept_id", mode="before")
    @classmethod
    def _record_numbers(cls, value: Any) -> Any:
        return _record_number(value)


@dataclass(frozen=True)
class ArchiveInfo:
    """Size, md5 and URL of one archive of the record."""

    key: str
    size: int
    md5: str
    url: str


@dataclass(frozen=True)
class Manifest:
    """The record's files, validated; plain data so callers never touch pydantic."""

    record_id: int
    version: str | None
    doi: str | None
    files: Mapping[str, ArchiveInfo]
    fetched_at: str | None = None
    concept_id: int | None = None
    version_index: int | None = None
    is_latest: bool | None = None
    published: str | None = None

    def archive(self, key: str) -> ArchiveInfo:
        """The archive with this key; :class:`NotInRecordError` when the record lacks it."""
        try:
            return self.files[key]
        except KeyError:
            raise NotInRecordError(self.record_id, key, held=tuple(self.files)) from None

    def to_json(self) -> dict[str, Any]:
        """The saved form."""
        return {
            "record_id": self.record_id,
            "version": self.version,
            "doi": self.doi,
            "fetched_at": self.fetched_at,
            "concept_id": self.concept_id,
            "version_index": self.version_index,
            "is_latest": self.is_latest,
            "published": self.published,
            "files": {
                key: {"key": f.key, "size": f.size, "md5": f.md5, "url": f.url}
                for key, f in self.files.items()
            },
        }


def parse_record(
    payload: Any, *, record_id: int, base_url: str, fetched_at: str | None = None
) -> Manifest:
    """Validate a Zenodo record response (current, legacy or ``entries`` shape).

    Raises :class:`RemoteDataError` naming the first field that does not validate.
    """
    if not isinstance(payload, dict):
        raise RemoteDataError("the record response is not a JSON object")
    files = payload.get("files")
    if isinstance(files, dict):  # {"enabled": true, "entries": {key: {...}}}
        files = list((files.get("entries") or {}).values())
    if not isinstance(files, list):
        raise RemoteDataError("the record response has no list of files")
    metadata = payload.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
    raw = {
        "record_id": payload.get("id", record_id),
        "version": metadata.get("version"),
        "doi": payload.get("doi") or metadata.get("doi"),
        "fetched_at": fetched_at,
        "files": {},
        **_version_fields(payload, metadata),
    }
    try:
        parsed_files = {}
        for index, item in enumerate(files):
            try:
                parsed = RecordFile.model_validate(item)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"]) or "file"
                raise RemoteDataError(
                    f"invalid record response: files[{index}].{where}: {first['msg']}"
                ) from exc
            parsed_files[parsed.key] = parsed
        raw["files"] = parsed_files
        model = RecordManifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise RemoteDataError(f"invalid record response: {where}: {first['msg']}") from exc
    return Manifest(
        record_id=model.record_id,
        version=model.version,
        doi=model.doi,
        fetched_at=model.fetched_at,
        concept_id=model.concept_id,
        version_index=model.version_index,
        is_latest=model.is_latest,
        published=model.published,
        files={
            key: ArchiveInfo(
                key=key,
                size=f.size,
                md5=f.md5,
                url=file_download_url(base_url, model.record_id, key),
            )
            for key, f in model.files.items()
        },
    )


def _version_fields(payload: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    """The version fields of a record response, unvalidated (the model validates them):
    ``parent.id`` (or ``conceptrecid``), ``versions.index``/``is_latest`` (or the older
    ``metadata.relations.version[0]``, whose index counts from 0) and the publication date.
    Absent fields are left out; present ones are passed on whatever their type."""
    found: dict[str, Any] = {}
    parent = payload.get("parent")
    if isinstance(parent, dict) and parent.get("id") is not None:
        found["concept_id"] = parent["id"]
    elif parent is not None and not isinstance(parent, dict):
        found["concept_id"] = parent  # refused by the model, with its field named
    elif payload.get("conceptrecid") is not None:
        found["concept_id"] = payload["conceptrecid"]
    versions = payload.get("versions")
    relations = metadata.get("relations")
    if versions is not None:
        if not isinstance(versions, dict):
            raise RemoteDataError("invalid record response: versions: not a JSON object")
        if versions.get("index") is not None:
            found["version_index"] = versions["index"]
        if versions.get("is_latest") is not None:
            found["is_latest"] = versions["is_latest"]
    elif isinstance(relations, dict) and isinstance(relations.get("version"), list):
        first = relations["version"][0] if relations["version"] else None
        if isinstance(first, dict):
            index = first.get("index")
            # Counted from 0 there; a wrong type is passed on for the model to refuse.
            found["version_index"] = index + 1 if type(index) is int else index
            if first.get("is_last") is not None:
                found["is_latest"] = first["is_last"]
    if metadata.get("publication_date") is not None:
        found["published"] = metadata["publication_date"]
    return found


def saved_record_path(layout: RootLayout, record_id: int) -> Path:
    """Where the manifest of a record is saved inside a data root."""
    return layout.records_dir / f"{record_id}.json"


def save_record(layout: RootLayout, manifest: Manifest) -> None:
    """Save a validated manifest (with the time it was fetched) for later and offline runs."""
    atomic_write_text(
        saved_record_path(layout, manifest.record_id), json.dumps(manifest.to_json(), indent=1)
    )


def load_saved_record(layout: RootLayout, record_id: int, base_url: str) -> Manifest | None:
    """The saved manifest of a record, or None when there is none (or it is unreadable)."""
    path = saved_record_path(layout, record_id)
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    try:
        return manifest_from_saved(data, base_url)
    except (RemoteDataError, KeyError, TypeError, AttributeError):
        return None


def manifest_from_saved(data: Any, base_url: str) -> Manifest:
    """A manifest saved by :meth:`Manifest.to_json`, validated again as a response is;
    :class:`RemoteDataError` (or KeyError, TypeError, AttributeError) when it is not one."""
    return parse_record(
        {
            "id": data["record_id"],
            "doi": data.get("doi"),
            "metadata": {
                "version": data.get("version"),
                "publication_date": data.get("published"),
            },
            "parent": {"id": data.get("concept_id")},
            "versions": {"index": data.get("version_index"), "is_latest": data.get("is_latest")},
            "files": list(data["files"].values()),
        },
        record_id=data["record_id"],
        base_url=base_url,
        fetched_at=data.get("fetched_at"),
    )


def upstream_changes(
    layout: RootLayout, dataset_archives: Mapping[str, str], fresh: Manifest, saved: Manifest | None
) -> list[tuple[str, str]]:
    """``(dataset id, message)`` for each archive whose upstream file differs from the
    installed copy or from the manifest seen before; ``dataset_archives`` maps dataset ids
    to archive keys."""
    from medimeta_cli.fsutil import human_bytes
    from medimeta_cli.store.records import read_install_record

    changes = []
    for dataset_id, key in dataset_archives.items():
        info = fresh.files.get(key)
        if info is None:
            continue
        record = read_install_record(layout, dataset_id)
        # A copy from a dataset folder has no archive md5 to compare (source_md5 None).
        if (
            record is not None
            and record.source_md5 is not None
            and (
                record.source_md5,
                record.archive_size,
            )
            != (
                info.md5,
                info.size,
            )
        ):
            changes.append(
                (
                    dataset_id,
                    f"upstream changed: {info.key} is now {human_bytes(info.size)} with md5 "
                    f"{info.md5}, but the installed copy came from md5 {record.source_md5}; "
                    f"keeping the installed copy (use --force to replace it)",
                )
            )
        elif saved is not None and key in saved.files:
            old = saved.files[key]
            if (old.md5, old.size) != (info.md5, info.size):
                changes.append(
                    (dataset_id, f"upstream changed: {info.key} md5 {old.md5} -> {info.md5}")
                )
    return changes
