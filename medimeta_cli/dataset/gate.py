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
- :func:`label_path` is the one place where a task name becomes a path;
  :func:`load_labels` and :func:`load_split` offer the contents of label and split files
  only after checking them. :func:`label_problems` and :func:`split_lines` are the same
  checks for ``verify --deep``, which collects every problem instead of refusing.

Each rule on a description is one function in :data:`DESCRIPTION_RULES`: a rule added
there applies everywhere at once.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from medimeta_cli.catalog.build import dataset_from_info, parse_info_yaml
from medimeta_cli.catalog.datasets import SPLIT_NAMES, Dataset, Task, TaskTarget
from medimeta_cli.errors import CatalogError, IntegrityError, UsageError
from medimeta_cli.fsutil import read_regular_file
from medimeta_cli.text import has_control

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# numpy (and the upstream format's module, which needs it) is imported where labels and
# splits are read: describing a dataset (list, info) stays light.

__all__ = [
    "DESCRIPTION_RULES",
    "LABELS_FOLDER",
    "MAX_INFO_BYTES",
    "DatasetFolder",
    "InfoError",
    "RefusedInfoError",
    "SplitLines",
    "check_contents",
    "describe_info",
    "info_in_archive",
    "label_file_problems",
    "label_path",
    "label_problems",
    "label_relpath",
    "label_value_problem",
    "load_labels",
    "load_split",
    "open_folder",
    "read_info",
    "split_lines",
]

#: The largest info.yaml read: upstream's are a few kilobytes; more is not an info file.
MAX_INFO_BYTES: Final = 1 << 20

#: The folder of a dataset that holds one label file per task.
LABELS_FOLDER: Final = "task_labels"

# How many example values a message lists before it says "...".
_EXAMPLES: Final = 3


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
        raise InfoError(dataset_id, f"is malformed: {_one_line(str(exc))}") from None
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
    message = _one_line(message)
    for prefix in ("info.yaml of ", "info.yaml "):
        if message.startswith(prefix):
            rest = message[len(prefix) :]
            # "info.yaml of 'crc' lacks ..." -> "lacks ..."
            return re.sub(r"^'[^']*' ", "", rest) if prefix == "info.yaml of " else rest
    return message


def _one_line(text: str) -> str:
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


def _deep_hint(dataset_id: str) -> str:
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
            hint=_deep_hint(folder.name),
        )
    try:
        mode = os.lstat(labels).st_mode
    except OSError:
        return path  # a missing folder: the file is missing, which the callers report
    if not stat.S_ISDIR(mode):
        raise IntegrityError(
            f"{LABELS_FOLDER}/ of {folder.name!r} is not a folder (a link is never followed)",
            hint=_deep_hint(folder.name),
        )
    return path


def _expected_label_shape(dataset: Dataset, task: Task) -> tuple[int, ...]:
    if task.target is TaskTarget.MULTILABEL:
        return (dataset.num_samples, task.num_classes)
    return (dataset.num_samples,)


def label_problems(array: Any, dataset: Dataset, task: Task) -> list[str]:
    """What is wrong with a label array for ``task``: not one numeric array, or not of
    the shape the description gives (one row per image; a column per label for a
    multi-label task). Empty when it can be used."""
    import numpy as np

    if not isinstance(array, np.ndarray):
        return ["is not a single array"]
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        return [f"has dtype {array.dtype}, expected numeric labels"]
    expected = _expected_label_shape(dataset, task)
    if array.ndim != len(expected):
        return [f"has shape {array.shape}, expected {expected}"]
    problems: list[str] = []
    if array.shape[0] != expected[0]:
        problems.append(f"has {array.shape[0]} rows, expected {expected[0]}")
    if array.ndim == 2 and array.shape[1] != task.num_classes:
        problems.append(f"has {array.shape[1]} columns, expected {task.num_classes}")
    return problems


def label_value_problem(array: npt.NDArray[Any], task: Task) -> str | None:
    """Values of a label array (of a usable shape) that are no label of ``task``: not
    0/1 for a multi-label task, not a label key otherwise; None when all are."""
    import numpy as np

    if task.target is TaskTarget.MULTILABEL:
        valid = np.array([0, 1])
        what = "values other than 0 and 1"
    else:
        valid = np.array(sorted(task.labels))
        keys = ", ".join(str(key) for key in sorted(task.labels))
        what = f"values that are not label keys ({keys})"
    bad = np.isin(array, valid, invert=True)
    if not bad.any():
        return None
    values = np.unique(array[bad])
    examples = ", ".join(_show_number(v) for v in values[:_EXAMPLES])
    more = ", ..." if len(values) > _EXAMPLES else ""
    row = int(np.argwhere(bad)[0][0])
    return f"has {int(bad.sum())} {what}: {examples}{more} (first in row {row})"


def _show_number(value: Any) -> str:
    import numpy as np

    number = value.item() if isinstance(value, np.generic) else value
    if isinstance(number, float) and number.is_integer():
        return str(int(number))
    return str(number)


def read_label_array(folder: Path, task: Task) -> npt.NDArray[Any]:
    """The array in a task's label file, read without following a link; raises
    :class:`FileNotFoundError` when it is missing and :class:`ValueError` (or OSError,
    EOFError, MemoryError) when it cannot be read as one array."""
    import numpy as np

    path = label_path(folder, task)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            raise ValueError("is a symbolic link (never followed)") from exc
        raise
    with open(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ValueError("is not a regular file")
        array = np.load(handle, allow_pickle=False)
    if not isinstance(array, np.ndarray):  # pragma: no cover - np.load of a .npz
        raise ValueError("is not a single array")
    return array


def load_labels(data: DatasetFolder, task: Task | str) -> npt.NDArray[Any]:
    """The label array of a task, after the checks of :func:`label_problems`: label keys
    (N,) or a 0/1 matrix (N, C), N being the described image count; read-only.

    :class:`IntegrityError` when the file is missing, unreadable, of the wrong dtype or
    shape, or holds a value that is no label of the task (not integral, not finite, not a
    label key; not 0/1 for a multi-label task): such a file never reaches an export or a
    sample, where 1.5 would become class 1 and NaN would drop images.
    :class:`~medimeta_cli.errors.UnknownTaskError` for a task the dataset lacks.
    """
    dataset = data.dataset
    resolved = dataset.task(task) if isinstance(task, str) else task
    where = f"{label_relpath(resolved)} of {dataset.id!r}"
    try:
        array = read_label_array(data.folder, resolved)
    except FileNotFoundError:
        raise IntegrityError(f"{where} is missing", hint=_deep_hint(dataset.id)) from None
    except (OSError, ValueError, EOFError, MemoryError) as exc:
        # MemoryError: a damaged header can claim an absurd shape.
        raise IntegrityError(
            f"{where} cannot be read: {_one_line(str(exc))}", hint=_deep_hint(dataset.id)
        ) from exc
    problems = label_problems(array, dataset, resolved)
    if not problems and (values := label_value_problem(array, resolved)) is not None:
        problems.append(values)
    if problems:
        raise IntegrityError(f"{where} {problems[0]}", hint=_deep_hint(dataset.id))
    array.setflags(write=False)
    return array


def label_file_problems(folder: Path, dataset: Dataset, task: Task) -> list[str]:
    """Every problem of a task's label file, as ``verify --deep`` reports them: missing,
    unreadable, of the wrong dtype or shape (:func:`label_problems`), or holding a value
    that is no label (:func:`label_value_problem`). Empty when :func:`load_labels` would
    hand it out."""
    try:
        array = read_label_array(folder, task)
    except FileNotFoundError:
        return ["is missing"]
    except (OSError, ValueError, EOFError, MemoryError) as exc:
        # MemoryError: a damaged header can claim an absurd shape.
        return [f"cannot be read: {_one_line(str(exc))}"]
    problems = label_problems(array, dataset, task)
    if not problems and (values := label_value_problem(array, task)) is not None:
        problems.append(values)
    return problems


def check_contents(data: DatasetFolder) -> None:
    """Refuse a dataset whose label or split files the gate would not hand out: every
    task's labels (:func:`load_labels`: shape, dtype, every value a label of its task)
    and every split file of both kinds (:func:`load_split`: well-formed lines naming
    images that exist, each once, as many as the description says). Installs run it
    before their commit; :class:`IntegrityError` names the first problem."""
    for task in data.dataset.tasks:
        load_labels(data, task)
    for original in (False, True):
        for split in SPLIT_NAMES:
            load_split(data, split, original=original)


# --------------------------------------------------------------------------- split files


@dataclass(frozen=True)
class SplitLines:
    """The lines of one split file, checked against the image count."""

    indices: npt.NDArray[np.int64]
    """Image index of each line in file order; -1 marks a malformed line."""
    distinct: npt.NDArray[np.int64]
    """The valid indices, sorted and without repeats."""
    malformed: str | None
    """What the malformed lines are, or None."""
    beyond: str | None
    """Which lines name images that do not exist, or None."""
    repeated: str | None
    """Which images are listed more than once, or None."""
    miscounted: str | None = None
    """How the line count differs from the described count, or None."""

    @property
    def count(self) -> int:
        """Number of lines."""
        return len(self.indices)

    def problems(self) -> list[str]:
        """Every problem found, for ``verify --deep``."""
        found = (self.malformed, self.beyond, self.repeated, self.miscounted)
        return [m for m in found if m is not None]


def split_lines(data: bytes, total: int, expected: int | None = None) -> SplitLines:
    """Check the lines of a split file of a dataset of ``total`` images: each
    ``images/NNNNNN.tiff`` naming an image that exists, none listed twice, and (when
    ``expected`` is given) as many lines as the description gives the split."""
    import numpy as np

    from medimeta_cli.dataset.upstream import image_relpath, parse_split_bytes, split_line

    indices = parse_split_bytes(data)
    malformed = beyond = repeated = None
    bad = np.flatnonzero(indices < 0)
    if len(bad):
        first = int(bad[0]) + 1
        malformed = (
            f"has {_plural(len(bad), 'malformed line')}, first line {first}: "
            f"{split_line(data, first)!r} (expected 'images/NNNNNN.tiff')"
        )
    outside = np.flatnonzero(indices >= total)
    if len(outside):
        first = int(outside[0]) + 1
        beyond = (
            f"has {_plural(len(outside), 'line')} naming images that do not exist, first line "
            f"{first}: {split_line(data, first)!r} (the dataset has {total} images)"
        )
    valid = indices[(indices >= 0) & (indices < total)]
    distinct, occurrences = np.unique(valid, return_counts=True)
    twice = np.flatnonzero(occurrences > 1)
    if len(twice):
        index = int(distinct[twice[0]])
        repeated = (
            f"lists {_plural(len(twice), 'image')} more than once, e.g. "
            f"{image_relpath(index)} ({int(occurrences[twice[0]])} times)"
        )
    miscounted = None
    if expected is not None and len(indices) != expected:
        miscounted = f"has {len(indices)} lines, expected {expected}"
    return SplitLines(indices, distinct, malformed, beyond, repeated, miscounted)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def described_split_count(dataset: Dataset, split: str, *, original: bool) -> int:
    """Images of a split by the dataset's description (its own ``info.yaml``)."""
    counts: Mapping[str, int] = (dataset.original_splits if original else dataset.splits).as_dict()
    return int(counts[split])


def load_split(data: DatasetFolder, split: str, *, original: bool = False) -> npt.NDArray[np.int64]:
    """Image indices listed in ``splits/<split>.txt`` (or ``original_splits/``), in file
    order, after the checks of :func:`split_lines`; read-only.

    An absent file means an empty split when the description gives the split no images;
    otherwise the file was lost and :class:`IntegrityError` names it. Raises
    :class:`IntegrityError` naming the file and line when a line is not
    ``images/NNNNNN.tiff``, names an image beyond the described image count or one
    listed before, or when the file's line count is not the described count of the split.
    """
    import numpy as np

    from medimeta_cli.dataset.upstream import split_relpath

    dataset = data.dataset
    if split not in SPLIT_NAMES:
        raise UsageError(
            f"unknown split {split!r}", hint=f"Valid splits: {', '.join(SPLIT_NAMES)}."
        )
    rel = split_relpath(split, original=original)
    path = data.folder / rel
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        # Upstream leaves out the file of an empty split; info.yaml tells which.
        expected = described_split_count(dataset, split, original=original)
        if expected > 0:
            raise IntegrityError(
                f"{rel} of {dataset.id!r} is missing, but info.yaml gives the "
                f"{'original ' if original else ''}{split} split {expected} images",
                hint=f"Run `medimeta verify --repair {dataset.id}` to restore it (a dataset "
                "outside the catalog: reinstall it with `medimeta download --from`).",
            ) from None
        return np.empty(0, dtype=np.int64)
    except OSError as exc:
        raise IntegrityError(
            f"cannot read {rel} of {dataset.id!r}: {exc.strerror}", hint=_deep_hint(dataset.id)
        ) from exc
    expected = described_split_count(dataset, split, original=original)
    lines = split_lines(raw, dataset.num_samples, expected)
    problems = lines.problems()
    if problems:
        # A repeated line would export an image twice; a count that contradicts the
        # description would make every number derived from it wrong.
        raise IntegrityError(f"{rel} of {dataset.id!r} {problems[0]}", hint=_deep_hint(dataset.id))
    indices = lines.indices
    indices.setflags(write=False)
    return indices
