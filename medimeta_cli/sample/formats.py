"""The formats of episode files, in one table: how each is written by ``sample --out`` and
read back by ``sample --check``.

A new format is one module with its writer (and reader) and one row in :data:`FORMATS`;
nothing else chooses between formats.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medimeta_cli.dataset.gate import DatasetFolder
from medimeta_cli.errors import IntegrityError, UsageError
from medimeta_cli.sample.episodes import Shots
from medimeta_cli.sample.files import (
    SHOWN_DIFFERENCES,
    EpisodeFormat,
    check_episode_file,
    episode_file_name,
    read_episode_file,
    write_csv_file,
    write_json_file,
)
from medimeta_cli.sample.results import EpisodeSample
from medimeta_cli.sample.torchcross import (
    loader_notes,
    torchcross_file_name,
    write_torchcross_file,
)
from medimeta_cli.sample.torchcross_check import read_torchcross_file, torchcross_differences

#: What a file's check is given: the data's identity from its install record.
Identity = dict[str, Any] | None


@dataclass(frozen=True)
class CheckOptions:
    """What ``--check`` is told besides the file: the task and split, for formats whose
    files do not record them (torchcross: taken from the file's name otherwise)."""

    task: str | None = None
    split: str | None = None


@dataclass(frozen=True)
class ReadFile:
    """An episode file read back: the dataset it names, its image count, what cannot be
    checked, and its check against the installed data."""

    path: Path
    dataset: str
    images: int
    check: Callable[[DatasetFolder, Identity], None]
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Setting:
    """What names an episode file: the dataset, task and split, and the setting."""

    dataset_id: str
    task: str
    split: str
    original: bool
    shots: Shots
    queries: int
    episodes: int


@dataclass(frozen=True)
class FileFormat:
    """One format: its file suffix, its file name, its writer and (when it can be checked)
    its reader."""

    suffix: str
    name: Callable[[Setting], Path]
    write: Callable[[Path, EpisodeSample, Identity, DatasetFolder], Path]
    read: Callable[[Path, CheckOptions], ReadFile] | None = None
    #: What to tell the user about a file just written (e.g. what loads it).
    notes: Callable[[], tuple[str, ...]] = tuple


def _read_json(path: Path, options: CheckOptions) -> ReadFile:
    parsed = read_episode_file(path)
    return ReadFile(
        path,
        parsed.dataset,
        len(parsed.images),
        lambda data, identity: check_episode_file(parsed, data, identity),
    )


def _read_torchcross(path: Path, options: CheckOptions) -> ReadFile:
    parsed = read_torchcross_file(path, task=options.task, split=options.split)

    def check(data: DatasetFolder, identity: Identity) -> None:
        differences = torchcross_differences(parsed, data)
        if differences:
            shown = "; ".join(differences[:SHOWN_DIFFERENCES])
            more = len(differences) - SHOWN_DIFFERENCES
            raise IntegrityError(
                f"{path} does not match the installed {parsed.dataset}: {shown}"
                + (f" (and {more} more)" if more > 0 else ""),
                hint="Sample the episodes again, or give the file's --task and --split.",
            )

    split = "the whole dataset" if parsed.split is None else f"split {parsed.split!r}"
    return ReadFile(
        path,
        parsed.dataset,
        parsed.images,
        check,
        (
            f"{path}: a torchcross file records no data identity, seed or tool version; "
            f"checked as task {parsed.task!r} of {parsed.dataset!r}, {split} (from its "
            "path, or --task/--split)",
        ),
    )


def _safe_name(file_format: EpisodeFormat) -> Callable[[Setting], Path]:
    def name(setting: Setting) -> Path:
        return episode_file_name(
            setting.dataset_id,
            setting.task,
            shots=setting.shots,
            queries=setting.queries,
            episodes=setting.episodes,
            split=setting.split,
            original=setting.original,
            file_format=file_format,
        )

    return name


def _upstream_name(setting: Setting) -> Path:
    return torchcross_file_name(
        setting.dataset_id,
        setting.task,
        shots=setting.shots,
        queries=setting.queries,
        episodes=setting.episodes,
        split=setting.split,
    )


FORMATS: dict[EpisodeFormat, FileFormat] = {
    EpisodeFormat.JSON: FileFormat(
        ".json",
        _safe_name(EpisodeFormat.JSON),
        lambda out, sample, identity, data: write_json_file(out, sample, identity),
        _read_json,
    ),
    EpisodeFormat.CSV: FileFormat(
        ".csv",
        _safe_name(EpisodeFormat.CSV),
        lambda out, sample, identity, data: write_csv_file(out, sample),
    ),
    EpisodeFormat.TORCHCROSS: FileFormat(
        ".pkl",
        _upstream_name,
        lambda out, sample, identity, data: write_torchcross_file(out, sample, data),
        _read_torchcross,
        loader_notes,
    ),
}


def write_episode_file(
    out: Path,
    sample: EpisodeSample,
    identity: Identity,
    data: DatasetFolder,
    file_format: EpisodeFormat = EpisodeFormat.JSON,
) -> Path:
    """Write the sample's file in ``file_format`` under ``out`` and return its path."""
    return FORMATS[file_format].write(out, sample, identity, data)


def episode_path(file_format: EpisodeFormat, setting: Setting) -> Path:
    """Where under ``--out`` the file of ``setting`` lies in ``file_format``."""
    return FORMATS[file_format].name(setting)


def written_notes(file_format: EpisodeFormat) -> tuple[str, ...]:
    """What to tell the user about a file just written in ``file_format``."""
    return FORMATS[file_format].notes()


def read_for_check(path: Path, options: CheckOptions = CheckOptions()) -> ReadFile:
    """Read an episode file for ``--check``, its format known by its suffix."""
    readable = {f.suffix: f for f in FORMATS.values() if f.read is not None}
    chosen = readable.get(Path(path).suffix.lower())
    if chosen is None or chosen.read is None:
        raise UsageError(
            f"--check reads {' and '.join(sorted(readable))} episode files, not {path}",
            hint="Check the JSON or torchcross file of the same episodes.",
        )
    return chosen.read(Path(path), options)
