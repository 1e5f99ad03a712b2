"""The Zenodo record's manifest: validated in every response shape, saved for offline runs.

pydantic checks the response once here; everything downstream gets plain
frozen dataclasses (:class:`Manifest`, :class:`ArchiveInfo`).
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


class RecordManifest(BaseModel):
    """The files of one record version, as fetched (or saved) at a given time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    record_id: int
    version: str | None = None
    doi: str | None = None
    files: dict[str, RecordFile]
    fetched_at: str | None = None


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
        return parse_record(
            {
                "id": data["record_id"],
                "doi": data.get("doi"),
                "metadata": {"version": data.get("version")},
                "files": list(data["files"].values()),
            },
            record_id=record_id,
            base_url=base_url,
            fetched_at=data.get("fetched_at"),
        )
    except (RemoteDataError, KeyError, TypeError, AttributeError):
        return None


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
