"""The one gate for what an installed dataset says about itself.

Installed data describes itself: its ``info.yaml`` is the authority for what is on
disk, and the label files (``task_labels/<task>.npy``) and split files
(``splits/*.txt``, ``original_splits/*.txt``) are read as it says. All of that is
input, as hostile as a server's answer, so it is parsed and checked here, once, and
everything that reads an installed dataset (install, ``verify``, ``export``,
``sample``, ``list``, ``info``, the Python API) takes what this module hands out:

- :func:`describe_info` is the one parser of an ``info.yaml`` (installed, in a ``--from``
  folder or inside an archive); :func:`read_info` and :func:`info_in_archive` read one.
- :class:`DatasetFolder` is a dataset folder with its validated description; only a
  description that passes every rule can be one (it checks them when it is made).
- :func:`label_path` is the one place where a task name becomes a path.
- What the files of a folder hold (labels, splits) is checked by the gate's second half,
  :mod:`medimeta_cli.dataset.contents`, which takes only a :class:`DatasetFolder`.

Each rule on a description is one function in :data:`DESCRIPTION_RULES`: a rule added
there applies everywhere at once.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from medimeta_cli.catalog.build import dataset_from_info, parse_info_yaml
from medimeta_cli.catalog.datasets import Dataset, Task
from medimeta_cli.errors import CatalogError, IntegrityError
from medimeta_cli.fsutil import read_regular_file
from medimeta_cli.text import has_control

if TYPE_CHECKING:
    pass

# numpy (and the upstream format's module, which needs it) is imported where labels and
# splits are read: describing a dataset (list, info) stays light.

__all__ = [
    "DESCRIPTION_RULES",
    "LABELS_FOLDER",
    "MAX_INFO_BYTES",
    "DatasetFolder",
    "InfoError",
    "RefusedInfoError",
    "deep_hint",
    "describe_info",
    "info_in_archive",
    "label_path",
    "label_relpath",
    "one_line",
    "open_folder",
    "read_info",
]

#: The largest info.yaml read: upstream's are a few kilobytes; more is not an info file.
MAX_INFO_BYTES: Final = 1 << 20

#: The folder of a dataset that holds one label file per task.
LABELS_FOLDER: Final = "task_labels"


class InfoError(IntegrityError):
    """The ``info.yaml`` of a dataset folder is missing, unreadable, malformed, names
    another dataset or says something refused; ``reason`` says which, after the file name
    (``is missing``)."""

    def __init__(self, dataset_id: str, reason: str) -> None:
        super().__init__(
            f"info.yaml of {dataset_id!r} {reason}",
            hint=f"Run `medimeta verify --deep {dataset_id}` to see every problem, and "
            f"`medimeta verify --repair {dataset_id}` to fetch a fresh copy.",
        )
        self.reason = reason


class RefusedInfoError(InfoError):
    """The ``info.yaml`` reads as a description, but one that breaks a rule of
    :data:`DESCRIPTION_RULES` (a task name that would leave the dataset): refused
    everywhere, never shown in place of what the catalog says."""


# --------------------------------------------------------------------------- rules

#: The most images a description may claim: far beyond upstream's largest (112,120), far
#: below what would overflow a size computed from it.
MAX_IMAGES: Final = 100_000_000
#: The largest side of an image a description may claim (upstream's are 224).
MAX_IMAGE_SIDE: Final = 4096
#: Channels of an image: grayscale up to RGBA (upstream's have 1 or 3).
MAX_CHANNELS: Final = 4
#: The longest task name; with ``.npy`` it stays a short file name.
MAX_TASK_NAME: Final = 100
#: The longest label name (upstream's longest has 86 characters).
MAX_LABEL_NAME: Final = 200
_INT64: Final = (-(1 << 63), (1 << 63) - 1)


def task_name_rule(dataset: Dataset) -> str | None:
    """Task names are data, never paths: each must name a file inside ``task_labels/``
    (no separator, no ``..``, no NUL or other control character, not empty, at most
    :data:`MAX_TASK_NAME` characters), and no two may be one name after case-folding
    (``--task KIND`` could not tell ``Kind`` from ``kind``)."""
    seen: dict[str, str] = {}
    for task in dataset.tasks:
        problem = _task_name_problem(task.name)
        if problem is not None:
            return f"names task {_quoted(task.name)}, which {problem}"
        folded = task.name.casefold()
        if folded in seen:
            first, second = _quoted(seen[folded]), _quoted(task.name)
            return f"names tasks {first} and {second}, one name in any case"
        seen[folded] = task.name
    return None


def label_name_rule(dataset: Dataset) -> str | None:
    """Label names are data shown to people: no control character, not empty, at most
    :data:`MAX_LABEL_NAME` characters, no two of a task one name after case-folding."""
    for task in dataset.tasks:
        seen: dict[str, str] = {}
        for key, name in task.labels.items():
            problem = _name_problem(name, MAX_LABEL_NAME)
            if problem is not None:
                where = f"label {key} of task {_quoted(task.name)}"
                return f"names {where} {_quoted(name)}, which {problem}"
            folded = name.casefold()
            if folded in seen:
                return (
                    f"names labels {_quoted(seen[folded])} and {_quoted(name)} of task "
                    f"{_quoted(task.name)}, one name in any case"
                )
            seen[folded] = name
    return None


def label_key_rule(dataset: Dataset) -> str | None:
    """Label keys are integers that fit int64 (label files are read as such), and every
    task has at least one."""
    low, high = _INT64
    for task in dataset.tasks:
        if not task.labels:
            return f"gives task {_quoted(task.name)} no labels"
        for key in task.labels:
            if not low <= key <= high:
                return f"gives task {_quoted(task.name)} the label key {_short(key)}, beyond int64"
    return None


def count_rule(dataset: Dataset) -> str | None:
    """Image counts (in all and per split, of both kinds) are whole numbers from 0 to
    :data:`MAX_IMAGES` (that the splits add up to the total, :class:`Dataset` checks)."""
    counts = {"total_num_samples": dataset.num_samples}
    for field, splits in (
        ("splits_num_samples", dataset.splits),
        ("original_splits_num_samples", dataset.original_splits),
    ):
        counts.update({f"{field}.{name}": n for name, n in splits.as_dict().items()})
    for field, count in counts.items():
        if not 0 <= count <= MAX_IMAGES:
            return f"gives {field} as {_short(count)}, not a count from 0 to {MAX_IMAGES:,}"
    return None


def input_size_rule(dataset: Dataset) -> str | None:
    """``input_size`` is a plausible image: 1 to :data:`MAX_CHANNELS` channels, each
    side 1 to :data:`MAX_IMAGE_SIDE` pixels (every size computed from it stays bounded)."""
    size = dataset.input_size
    if not 1 <= size.channels <= MAX_CHANNELS:
        return f"gives input_size {_size(dataset)}, not 1 to {MAX_CHANNELS} channels"
    if not (1 <= size.height <= MAX_IMAGE_SIDE and 1 <= size.width <= MAX_IMAGE_SIDE):
        return f"gives input_size {_size(dataset)}, sides beyond 1 to {MAX_IMAGE_SIDE} pixels"
    return None


#: Every rule a description must pass: each returns the reason it is refused, or None.
DESCRIPTION_RULES: Final[tuple[Callable[[Dataset], str | None], ...]] = (
    count_rule,
    input_size_rule,
    task_name_rule,
    label_key_rule,
    label_name_rule,
)


def _name_problem(name: str, longest: int) -> str | None:
    """Why ``name`` cannot be a name shown to people, or None."""
    if not name.strip():
        return "is empty"
    if "\0" in name:
        return "holds a NUL character"
    if has_control(name):
        return "holds a control character"
    if len(name) > longest:
        return f"is longer than {longest} characters"
    return None


def _task_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be the file name of a label file (without ``.npy``), or None."""
    problem = _name_problem(name, MAX_TASK_NAME)
    if problem is not None:
        return problem
    if "/" in name or "\\" in name:
        return f"holds a path separator (a task name is no path inside {LABELS_FOLDER}/)"
    if ".." in name or name == ".":
        return f"holds '..' or is '.' (a task name is no path inside {LABELS_FOLDER}/)"
    return None


def _quoted(name: str) -> str:
    """A name from data for a message: quoted, escaped, long ones shortened."""
    return repr(name if len(name) <= 60 else name[:50] + "..." + name[-6:])


def _short(number: int) -> str:
    text = f"{number:,}"
    return text if len(text) <= 30 else f"{text[:12]}...({len(str(abs(number)))} digits)"


def _size(dataset: Dataset) -> str:
    size = dataset.input_size
    return f"[{_short(size.channels)}, {_short(size.height)}, {_short(size.width)}]"


def _problems_of(dataset: Dataset) -> str | None:
    for rule in DESCRIPTION_RULES:
        reason = rule(dataset)
        if reason is not None:
            return reason
    return None


# --------------------------------------------------------------------------- info.yaml


def describe_info(raw: bytes, dataset_id: str, *, summary: str | None = None) -> Dataset:
    """The :class:`Dataset` an ``info.yaml``'s bytes describe, after every rule of
    :data:`DESCRIPTION_RULES`; :class:`InfoError` when they cannot be read as one, name
    another dataset than ``dataset_id`` or break a rule. The one parser of ``info.yaml``
    for data on disk."""
    if len(raw) > MAX_INFO_BYTES:
        raise InfoError(dataset_id, f"is {len(raw):,} bytes, too large for an info file")
    try:
        info = parse_info_yaml(raw.decode("utf-8"), source="info.yaml")
        dataset = dataset_from_info(info, summary=summary)
    except UnicodeDecodeError:
        raise InfoError(dataset_id, "is not UTF-8 text") from None
    except CatalogError as exc:
        raise InfoError(dataset_id, _reason(exc.message)) from None
    except (AttributeError, TypeError, ValueError) as exc:
        # Shapes dataset_from_info does not anticipate (a list where a mapping belongs).
        raise InfoError(dataset_id, f"is malformed: {one_line(str(exc))}") from None
    if dataset.id != dataset_id:
        raise InfoError(dataset_id, f"names dataset {dataset.id!r}, not {dataset_id!r}")
    reason = _problems_of(dataset)
    if reason is not None:
        raise RefusedInfoError(dataset_id, f"{reason}; refused")
    return dataset


def read_info(folder: Path, dataset_id: str, *, summary: str | None = None) -> Dataset:
    """The description in ``<folder>/info.yaml`` (:func:`describe_info`), read without
    following a link at its end; :class:`InfoError` naming what is wrong."""
    path = Path(folder) / "info.yaml"
    raw = read_regular_file(path)
    if raw is None:
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            raise InfoError(dataset_id, "is missing") from None
        except OSError as exc:
            raise InfoError(dataset_id, f"cannot be read: {exc.strerror}") from None
        if stat.S_ISLNK(mode):
            raise InfoError(dataset_id, "is a symbolic link (never followed)")
        if not stat.S_ISREG(mode):
            raise InfoError(dataset_id, "is not a regular file")
        raise InfoError(dataset_id, "cannot be read")
    return describe_info(raw, dataset_id, summary=summary)


def info_in_archive(path: Path, dataset_id: str) -> Dataset:
    """What the ``<id>/info.yaml`` inside an archive describes, read before extracting
    anything (it bounds what the archive may unpack to); :class:`IntegrityError` when the
    archive has none, or one that cannot be read, names another dataset or is refused."""
    import zipfile

    name = f"{dataset_id}/info.yaml"
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                member = archive.getinfo(name)
            except KeyError:
                raise IntegrityError(
                    f"refusing {path.name}: it holds no {name}, so it is no dataset "
                    "in the MedIMeta format",
                    hint="An archive <id>.zip must hold the folder <id>/ with its info.yaml.",
                ) from None
            if member.file_size > MAX_INFO_BYTES:
                raise IntegrityError(
                    f"refusing {path.name}: {name} declares {member.file_size:,} bytes, "
                    "too large for an info file",
                    hint="The archive is not in the MedIMeta format.",
                )
            with archive.open(member) as handle:
                raw = handle.read(MAX_INFO_BYTES + 1)
    except (zipfile.BadZipFile, OSError) as exc:
        raise IntegrityError(f"{path.name} is not a readable zip archive: {exc}") from exc
    try:
        return describe_info(raw, dataset_id)
    except InfoError as error:
        raise IntegrityError(
            f"refusing {path.name}: {name} {error.reason}",
            hint="The archive is not in the MedIMeta format; fix its info.yaml.",
        ) from None


def _reason(message: str) -> str:
    """A CatalogError message as the reason after ``info.yaml of 'x'``."""
    message = one_line(message)
    for prefix in ("info.yaml of ", "info.yaml "):
        if message.startswith(prefix):
            rest = message[len(prefix) :]
            # "info.yaml of 'crc' lacks ..." -> "lacks ..."
            return re.sub(r"^'[^']*' ", "", rest) if prefix == "info.yaml of " else rest
    return message


def one_line(text: str) -> str:
    """``text`` on one line, runs of white space as one space (for messages)."""
    return " ".join(text.split())


# --------------------------------------------------------------------------- the folder


@dataclass(frozen=True)
class DatasetFolder:
    """An installed dataset folder ``<root>/<id>/`` with its validated description.

    Made by :func:`open_folder` from the folder's own ``info.yaml``; one made by hand
    with another description must pass the same rules (checked on construction), so no
    :class:`DatasetFolder` holds a description the gate would refuse.
    """

    folder: Path
    dataset: Dataset

    def __post_init__(self) -> None:
        reason = _problems_of(self.dataset)
        if reason is not None:
            raise RefusedInfoError(self.dataset.id, f"{reason}; refused")

    @property
    def dataset_id(self) -> str:
        """The dataset's id."""
        return self.dataset.id


def open_folder(folder: Path, dataset_id: str, *, summary: str | None = None) -> DatasetFolder:
    """The dataset folder ``folder`` as its own ``info.yaml`` describes it (:func:`read_info`)."""
    return DatasetFolder(Path(folder), read_info(folder, dataset_id, summary=summary))


def deep_hint(dataset_id: str) -> str:
    """The hint of every refusal of an installed dataset's contents."""
    return f"Run `medimeta verify --deep {dataset_id}` to see every problem."


# --------------------------------------------------------------------------- label files


def label_relpath(task: Task | str) -> str:
    """Path of a task's label file inside a dataset folder, ``task_labels/<name>.npy``:
    the one mapping from a task name to a file. :class:`IntegrityError` for a name that
    is no file name (it would leave ``task_labels/``)."""
    name = task if isinstance(task, str) else task.name
    problem = _task_name_problem(name)
    if problem is not None:
        raise IntegrityError(
            f"refusing task {name!r}: its name {problem}",
            hint="The dataset's info.yaml is not in the MedIMeta format; fix it or install "
            "the dataset again.",
        )
    return f"{LABELS_FOLDER}/{name}.npy"


def label_path(folder: Path, task: Task | str) -> Path:
    """The label file of a task in the dataset folder ``folder``; :class:`IntegrityError`
    unless it lies directly in this dataset's ``task_labels/`` folder (which must be a
    real folder, not a link)."""
    folder = Path(folder)
    path = folder / label_relpath(task)
    labels = folder / LABELS_FOLDER
    # Lexically: the file's parent is exactly this dataset's task_labels folder.
    if Path(os.path.normpath(path)).parent != Path(os.path.normpath(labels)):
        raise IntegrityError(
            f"refusing {path}: it lies outside {labels}",
            hint=deep_hint(folder.name),
        )
    try:
        mode = os.lstat(labels).st_mode
    except OSError:
        return path  # a missing folder: the file is missing, which the callers report
    if not stat.S_ISDIR(mode):
        raise IntegrityError(
            f"{LABELS_FOLDER}/ of {folder.name!r} is not a folder (a link is never followed)",
            hint=deep_hint(folder.name),
        )
    return path
