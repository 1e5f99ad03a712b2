"""Episode files: writing one file per setting, reading them back and checking them.

A file is named as the official pipeline names its pre-sampled episode lists
(``<dataset_id>/<task>_<n_support>_<n_query>_<length>_<split>.<ext>``) and holds nothing
that changes from run to run (no timestamp), so the same seed gives byte-identical files.
The JSON file starts with a header saying which data the episodes were drawn from (the
install record's archive md5 and record id); :func:`check_episode_file` re-reads a file
and compares every image with the installed data.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from medimeta_cli._version import __version__
from medimeta_cli.dataset.contents import load_labels, load_split
from medimeta_cli.dataset.gate import DatasetFolder
from medimeta_cli.errors import IntegrityError
from medimeta_cli.export.naming import task_folder_part
from medimeta_cli.fsutil import atomic_write_text
from medimeta_cli.sample.episodes import Shots
from medimeta_cli.sample.results import ROW_COLUMNS, EpisodeSample
from medimeta_cli.store.records import InstallRecord

#: What the ``format`` field of a JSON episode file says.
FILE_KIND = "medimeta-episodes"
FILE_VERSION = 1

#: Differences a failed check names (the rest are counted).
SHOWN_DIFFERENCES = 5


class EpisodeFormat(str, Enum):
    """Formats of ``sample --out``."""

    JSON = "json"
    CSV = "csv"
    TORCHCROSS = "torchcross"


def episode_file_name(
    dataset_id: str,
    task: str,
    *,
    shots: Shots,
    queries: int,
    episodes: int,
    split: str,
    original: bool = False,
    file_format: EpisodeFormat = EpisodeFormat.JSON,
) -> Path:
    """``<dataset_id>/<task>_<n_support>_<n_query>_<length>_<split>.<ext>``, as upstream
    names its files; the task name made safe as :func:`task_folder_part` makes it (never a
    path), an original split marked ``original-<split>``."""
    split_part = f"original-{split}" if original else split
    name = f"{task_folder_part(task)}_{shots}_{queries}_{episodes}_{split_part}.{file_format.value}"
    return Path(dataset_id) / name


def data_identity(record: InstallRecord | None) -> dict[str, Any] | None:
    """Which data a file's episodes were drawn from, from the install record (None when
    the dataset has no record, e.g. unpacked by hand)."""
    if record is None:
        return None
    return {
        "record_id": record.record_id,
        "record_version": record.record_version,
        "archive_md5": record.archive_md5,
        "listed_md5": record.listed_md5,
    }


def episode_document(sample: EpisodeSample, identity: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON episode file's content: a header (format, tool version, the data's
    identity and everything ``sample`` prints) followed by the episodes."""
    body = sample.to_json()
    episodes = body.pop("episodes")
    return {
        "format": FILE_KIND,
        "format_version": FILE_VERSION,
        "tool_version": __version__,
        "data": identity,
        **body,
        # What a multi-label ``label`` row is over: the task's labels, or the --classes.
        "label_keys": list(sample.selection.classes),
        "episodes": episodes,
    }


def episodes_json(sample: EpisodeSample, identity: dict[str, Any] | None) -> str:
    """The JSON episode file's text (:func:`episode_document`), as ``--out`` writes it: the
    header indented, then one episode per line.

    One line per episode keeps a file of 1,000 episodes readable (and ``grep``-able) and
    lets the C encoder write the episodes: an indented dump goes through Python's pure
    encoder, which made writing the paper's grid slower than drawing it.
    """
    document = episode_document(sample, identity)
    episodes = document.pop("episodes")
    head = json.dumps(document, indent=1, ensure_ascii=False)
    lines = ",\n".join(
        "  " + json.dumps(episode, ensure_ascii=False, separators=(", ", ": "))
        for episode in episodes
    )
    body = f'"episodes": [\n{lines}\n ]' if episodes else '"episodes": []'
    return f"{head[:-2]},\n {body}\n}}\n"


def episodes_csv(sample: EpisodeSample) -> str:
    """The episodes as CSV with the columns :data:`ROW_COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(ROW_COLUMNS)
    writer.writerows(sample.rows())
    return buffer.getvalue()


def _sample_path(out: Path, sample: EpisodeSample, file_format: EpisodeFormat) -> Path:
    selection = sample.selection
    return out / episode_file_name(
        selection.dataset.id,
        selection.task.name,
        shots=sample.shots,
        queries=sample.queries,
        episodes=len(sample.episodes),
        split=selection.parts[0].split,
        original=selection.spec.original,
        file_format=file_format,
    )


def write_json_file(out: Path, sample: EpisodeSample, identity: dict[str, Any] | None) -> Path:
    """Write the sample's JSON file under ``out`` (atomically) and return its path."""
    path = _sample_path(out, sample, EpisodeFormat.JSON)
    text = episodes_json(sample, identity)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path


def write_csv_file(out: Path, sample: EpisodeSample) -> Path:
    """Write the sample's CSV file under ``out`` (atomically) and return its path."""
    path = _sample_path(out, sample, EpisodeFormat.CSV)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, episodes_csv(sample))
    return path


@dataclass(frozen=True)
class FileImage:
    """One image of an episode file: where it is, and what the file says of it."""

    episode: int
    role: str  # support or query
    index: int
    position: int
    label: int | tuple[int, ...]


@dataclass(frozen=True)
class EpisodeFile:
    """A parsed JSON episode file."""

    path: Path
    dataset: str
    task: str
    split: str
    original_split: bool
    identity: dict[str, Any] | None
    label_keys: tuple[int, ...]
    images: tuple[FileImage, ...]


def _malformed(path: Path, what: str) -> IntegrityError:
    return IntegrityError(
        f"{path} is not a valid episode file: {what}",
        hint="Write it again with medimeta sample --out.",
    )


def _field(path: Path, mapping: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise _malformed(path, f"{where} has no {key!r}")
    value = mapping[key]
    # bool is an int to Python, never an index or a label here.
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
        raise _malformed(path, f"{where}{key!r} is not {_kind_name(kind)}")
    return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in _kinds(kind))


def _label(path: Path, value: Any, where: str) -> int | tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, list) and all(v in (0, 1) and not isinstance(v, bool) for v in value):
        return tuple(int(v) for v in value)
    raise _malformed(path, f"{where}'label' is neither a label key nor a 0/1 list")


def read_episode_file(path: Path) -> EpisodeFile:
    """Parse a JSON episode file; :class:`IntegrityError` (one line) when it is malformed."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise _malformed(path, exc.strerror or type(exc).__name__) from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _malformed(path, f"not JSON ({str(exc).splitlines()[0]})") from exc
    if not isinstance(document, dict) or document.get("format") != FILE_KIND:
        raise _malformed(path, f"no 'format': {FILE_KIND!r} header")
    version = _field(path, document, "format_version", int, "")
    if version != FILE_VERSION:
        raise _malformed(path, f"format_version {version} (this tool reads {FILE_VERSION})")
    identity = document.get("data")
    if identity is not None and not isinstance(identity, dict):
        raise _malformed(path, "'data' is not an object")
    label_keys = _field(path, document, "label_keys", list, "")
    if not all(isinstance(k, int) and not isinstance(k, bool) for k in label_keys):
        raise _malformed(path, "'label_keys' is not a list of label keys")
    images: list[FileImage] = []
    for n, episode in enumerate(_field(path, document, "episodes", list, "")):
        number = _field(path, episode, "episode", int, f"episode {n} ")
        for role in ("support", "query"):
            for m, item in enumerate(_field(path, episode, role, list, f"episode {n} ")):
                where = f"episode {n} {role} {m} "
                images.append(
                    FileImage(
                        number,
                        role,
                        _field(path, item, "index", int, where),
                        _field(path, item, "position", int, where),
                        _label(path, _field(path, item, "label", (int, list), where), where),
                    )
                )
    return EpisodeFile(
        Path(path),
        _field(path, document, "dataset", str, ""),
        _field(path, document, "task", str, ""),
        _field(path, document, "split", str, ""),
        _field(path, document, "original_split", bool, ""),
        identity,
        tuple(label_keys),
        tuple(images),
    )


def file_differences(
    parsed: EpisodeFile, data: DatasetFolder, identity: dict[str, Any] | None
) -> list[str]:
    """How a parsed episode file differs from the installed data: the data's identity,
    indices out of range, labels other than the installed ones (read through the gate),
    positions other than the official loader's (its rank among the split's sorted
    indices). Empty when the file matches."""
    differences: list[str] = []
    if parsed.identity != identity:
        differences.append(
            f"the data's identity is {_identity_text(identity)}, the file recorded "
            f"{_identity_text(parsed.identity)}"
        )
    task = data.dataset.task(parsed.task)
    labels = load_labels(data, task)
    order = list(task.labels)
    if unknown := [k for k in parsed.label_keys if k not in order]:
        return [*differences, f"label keys {unknown} are no labels of {parsed.task!r}"]
    columns = [order.index(k) for k in parsed.label_keys]
    # The official loader numbers a split's images in ascending index order.
    listed = np.sort(load_split(data, parsed.split, original=parsed.original_split))
    for image in parsed.images:
        where = f"episode {image.episode} {image.role} index {image.index}"
        if not 0 <= image.index < len(labels):
            differences.append(f"{where}: out of range (the dataset has {len(labels)} images)")
            continue
        row = labels[image.index]
        # A multi-label row is over the file's label keys (the task's, or its --classes).
        installed: int | tuple[int, ...] = (
            tuple(int(row[c]) for c in columns) if np.ndim(row) else int(row)
        )
        if image.label != installed:
            differences.append(f"{where}: label {_show(image.label)}, installed {_show(installed)}")
        if not 0 <= image.position < len(listed) or int(listed[image.position]) != image.index:
            differences.append(f"{where}: position {image.position} is not that image in the split")
    return differences


def _show(label: int | tuple[int, ...]) -> str:
    return str(list(label)) if isinstance(label, tuple) else str(label)


def _identity_text(identity: dict[str, Any] | None) -> str:
    if identity is None:
        return "unknown (no install record)"
    return (
        f"record {identity.get('record_id')} archive md5 "
        f"{identity.get('archive_md5') or identity.get('listed_md5')}"
    )


def check_episode_file(
    parsed: EpisodeFile, data: DatasetFolder, identity: dict[str, Any] | None
) -> None:
    """:class:`IntegrityError` naming the first differences when the file does not match
    the installed data (see :func:`file_differences`)."""
    differences = file_differences(parsed, data, identity)
    if not differences:
        return
    shown = "; ".join(differences[:SHOWN_DIFFERENCES])
    more = len(differences) - SHOWN_DIFFERENCES
    raise IntegrityError(
        f"{parsed.path} does not match the installed {parsed.dataset}: {shown}"
        + (f" (and {more} more)" if more > 0 else ""),
        hint="Sample the episodes again, or install the data the file was drawn from.",
    )
