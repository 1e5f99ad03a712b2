"""Reading ``torchcross`` episode files back and checking them against the installed data
(``sample --check FILE.pkl``), without torch and without running code from the file.

:class:`_EpisodeUnpickler` resolves only the globals of the structure
:mod:`medimeta_cli.sample.torchcross` writes (and upstream's sampler pickles), each to a
plain stand-in, and the storages' legacy ``torch.save`` bytes are parsed by a second
restricted unpickler. Anything else is "not a torchcross episode file".
"""

from __future__ import annotations

import functools
import io
import math
import pickle
import struct
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from medimeta_cli.catalog.datasets import Task, TaskTarget
from medimeta_cli.dataset.contents import load_labels, load_split
from medimeta_cli.dataset.gate import DatasetFolder
from medimeta_cli.errors import IntegrityError
from medimeta_cli.sample.torchcross import (
    FILE_NAME,
    LEGACY_MAGIC,
    LEGACY_PROTOCOL,
    STORAGES,
    UPSTREAM_TARGETS,
)


class NotEpisodes(pickle.UnpicklingError):
    """The pickle holds something other than a torchcross task list."""


@dataclass(frozen=True)
class _Storage:
    values: npt.NDArray[Any]


@dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype[Any]


@dataclass(frozen=True)
class _PendingStorage:
    dtype: np.dtype[Any]
    key: str
    numel: int


_STORAGE_TYPES: dict[str, np.dtype[Any]] = {name: dtype for dtype, name in STORAGES.items()}


class _LegacyUnpickler(pickle.Unpickler):
    """The pickles of a legacy ``torch.save``: only ``torch.<X>Storage`` globals, storages
    as persistent ids."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_TYPES:
            return _StorageType(_STORAGE_TYPES[name])
        raise NotEpisodes(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        if not (
            isinstance(pid, tuple)
            and len(pid) == 6
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
            and isinstance(pid[2], str)
            and pid[3] == "cpu"
            and isinstance(pid[4], int)
            and pid[5] is None
        ):
            raise NotEpisodes("storage id")
        return _PendingStorage(pid[1].dtype, pid[2], pid[4])


def _load_from_bytes(data: Any) -> _Storage:
    """``torch.storage._load_from_bytes``: one storage from legacy ``torch.save`` bytes."""
    if not isinstance(data, bytes):
        raise NotEpisodes("storage bytes")
    return _parse_storage(data)


# Our files repeat the same few label tensors byte for byte: each is parsed once (the
# values are read-only, so sharing them is safe).
@functools.lru_cache(maxsize=1024)
def _parse_storage(data: bytes) -> _Storage:
    f = io.BytesIO(data)
    if _LegacyUnpickler(f).load() != LEGACY_MAGIC:
        raise NotEpisodes("magic number")
    if _LegacyUnpickler(f).load() != LEGACY_PROTOCOL:
        raise NotEpisodes("protocol")
    info = _LegacyUnpickler(f).load()
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise NotEpisodes("sys info")
    pending = _LegacyUnpickler(f).load()
    keys = _LegacyUnpickler(f).load()
    if not isinstance(pending, _PendingStorage) or keys != [pending.key]:
        raise NotEpisodes("storage keys")
    (numel,) = struct.unpack("<q", f.read(8))
    size = pending.dtype.itemsize * numel
    raw = f.read(size)
    if numel != pending.numel or len(raw) != size:
        raise NotEpisodes("storage size")
    return _Storage(np.frombuffer(raw, dtype=pending.dtype.newbyteorder("<")))


@dataclass(frozen=True)
class Label:
    """A label tensor's dtype and values."""

    values: npt.NDArray[Any]


def _rebuild_tensor(
    storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, hooks: Any, *rest: Any
) -> Label:
    """``torch._utils._rebuild_tensor_v2`` for contiguous tensors."""
    if not (
        isinstance(storage, _Storage)
        and isinstance(offset, int)
        and isinstance(size, tuple)
        and all(isinstance(n, int) and n >= 0 for n in size)
        and isinstance(stride, tuple)
        and requires_grad is False
        and len(rest) <= 1
    ):
        raise NotEpisodes("tensor")
    numel = math.prod(size)
    contiguous = tuple(math.prod(size[i + 1 :]) for i in range(len(size)))
    if stride != contiguous or not 0 <= offset <= len(storage.values) - numel:
        raise NotEpisodes("tensor layout")
    return Label(storage.values[offset : offset + numel].reshape(size))


class _DType:
    """``numpy.dtype(name, False, True)``, for integer scalars only."""

    def __init__(self, name: Any, align: Any = False, copy: Any = False) -> None:
        if name not in ("i8", "i4", "u8", "u4"):
            raise NotEpisodes(f"dtype {name!r}")
        self.dtype = np.dtype(name).newbyteorder("<")

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or not state or state[1] not in ("<", "|", "="):
            raise NotEpisodes("dtype state")


def _scalar(dtype: Any, data: Any) -> int:
    """``numpy.core.multiarray.scalar``: an integer position."""
    if not isinstance(dtype, _DType) or not isinstance(data, bytes):
        raise NotEpisodes("scalar")
    if len(data) != dtype.dtype.itemsize:
        raise NotEpisodes("scalar size")
    return int(np.frombuffer(data, dtype=dtype.dtype)[0])


def _target(value: Any) -> int:
    if not isinstance(value, int) or value not in range(1, 8):
        raise NotEpisodes("task target")
    return value


class _Description:
    task_target: int
    classes: dict[int, str]

    def __setstate__(self, state: Any) -> None:
        if not (
            isinstance(state, dict)
            and isinstance(state.get("task_target"), int)
            and isinstance(state.get("classes"), dict)
            and all(isinstance(k, int) and isinstance(v, str) for k, v in state["classes"].items())
        ):
            raise NotEpisodes("task description")
        self.task_target, self.classes = state["task_target"], state["classes"]


class _Task:
    support: list[Any]
    query: list[Any]
    description: _Description

    def __setstate__(self, state: Any) -> None:
        if not (
            isinstance(state, dict)
            and isinstance(state.get("support"), list)
            and isinstance(state.get("query"), list)
            and isinstance(state.get("description"), _Description)
        ):
            raise NotEpisodes("task")
        self.support, self.query = state["support"], state["query"]
        self.description = state["description"]


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torchcross.data.task", "Task"): _Task,
    ("torchcross.data.task", "TaskDescription"): _Description,
    ("torchcross.data.task", "TaskTarget"): _target,
    ("numpy", "dtype"): _DType,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("collections", "OrderedDict"): OrderedDict,
}


class _EpisodeUnpickler(pickle.Unpickler):
    """Resolves only the globals of a torchcross task list, each to a stand-in here."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise NotEpisodes(f"{module}.{name}")


@dataclass(frozen=True)
class TorchcrossEpisode:
    """One task of the list: its target, class names and ``(position, label)`` pairs."""

    number: int
    target: int
    classes: dict[int, str]
    support: tuple[tuple[int, Label], ...]
    query: tuple[tuple[int, Label], ...]


@dataclass(frozen=True)
class TorchcrossFile:
    """A parsed torchcross episode file, with what its path says of it."""

    path: Path
    dataset: str
    task: str
    split: str | None
    episodes: tuple[TorchcrossEpisode, ...]

    @property
    def images(self) -> int:
        """Support and query images over every episode."""
        return sum(len(e.support) + len(e.query) for e in self.episodes)


def _not_episodes(path: Path, what: str) -> IntegrityError:
    return IntegrityError(
        f"{path} is not a torchcross episode file: {what}",
        hint="Write it again with medimeta sample --out DIR --format torchcross.",
    )


def _pairs(path: Path, items: Any, where: str) -> Iterator[tuple[int, Label]]:
    for item in items:
        if not (
            isinstance(item, tuple)
            and len(item) == 2
            and isinstance(item[0], int)
            and isinstance(item[1], Label)
        ):
            raise _not_episodes(path, f"{where} holds something other than (position, label)")
        yield item[0], item[1]


def read_torchcross_file(
    path: Path, *, task: str | None = None, split: str | None = None
) -> TorchcrossFile:
    """Parse a torchcross episode file without running anything in it. The dataset, task
    and split come from the path as upstream names it (``<id>/<task>_..._<split>.pkl``);
    ``task`` and ``split`` override them. :class:`IntegrityError` (one line) when the file
    is no task list."""
    path = Path(path)
    match = FILE_NAME.fullmatch(path.name)
    if task is None and match is None:
        raise _not_episodes(path, "its name is not <task>_<shots>_<queries>_<episodes>_<split>.pkl")
    try:
        with path.open("rb") as f:
            tasks = _EpisodeUnpickler(f).load()
    except OSError as exc:
        raise _not_episodes(path, exc.strerror or type(exc).__name__) from exc
    except NotEpisodes as exc:
        raise _not_episodes(path, f"it names {exc} (nothing was run)") from exc
    # Hostile bytes fail in many ways inside the unpickler; each is the same answer.
    except Exception as exc:
        raise _not_episodes(path, f"{type(exc).__name__}: {exc}"[:200]) from exc
    if not isinstance(tasks, list) or not all(isinstance(t, _Task) for t in tasks):
        raise _not_episodes(path, "it holds no list of tasks")
    episodes = tuple(
        TorchcrossEpisode(
            n,
            t.description.task_target,
            t.description.classes,
            tuple(_pairs(path, t.support, f"task {n} support")),
            tuple(_pairs(path, t.query, f"task {n} query")),
        )
        for n, t in enumerate(tasks)
    )
    return TorchcrossFile(
        path,
        path.absolute().parent.name,
        task if task is not None else match["task"] if match else "",
        split if split is not None else (match["split"] if match else None),
        episodes,
    )


# --- checking -----------------------------------------------------------------------------


def _episode_differences(
    episode: TorchcrossEpisode,
    task: Task,
    labels: npt.NDArray[Any],
    listed: npt.NDArray[np.int64],
) -> Iterator[str]:
    number = episode.number
    if episode.target != UPSTREAM_TARGETS[task.target]:
        yield f"task {number}: task target {episode.target}, the task is {task.target.value}"
        return
    support, query = [p for p, _ in episode.support], [p for p, _ in episode.query]
    if overlap := sorted(set(support) & set(query)):
        yield f"task {number}: positions {overlap[:5]} are in both support and query"
    for role, positions in (("support", support), ("query", query)):
        if len(set(positions)) != len(positions):
            yield f"task {number}: an image appears twice in its {role}"
    by_name = {name: key for key, name in task.labels.items()}
    columns: list[int] = []
    if task.target is TaskTarget.MULTILABEL:
        if unknown := [n for n in episode.classes.values() if n not in by_name]:
            yield f"task {number}: labels {unknown} are no labels of {task.name!r}"
            return
        order = list(task.labels)
        columns = [order.index(by_name[episode.classes[n]]) for n in sorted(episode.classes)]
    for role, pairs in (("support", episode.support), ("query", episode.query)):
        for position, label in pairs:
            where = f"task {number} {role} position {position}"
            if not 0 <= position < len(listed):
                yield f"{where}: out of range (the split has {len(listed)} images)"
                continue
            row = labels[int(listed[position])]
            values = label.values
            if task.target is TaskTarget.MULTILABEL:
                installed = [int(v) for v in row[columns]]
                if values.shape != (len(columns),) or values.astype(int).tolist() != installed:
                    yield f"{where}: label {values.tolist()}, installed {installed}"
            elif task.target is TaskTarget.BINARY:
                if values.shape != (1,) or int(values[0]) != int(row):
                    yield f"{where}: label {values.tolist()}, installed {int(row)}"
            else:
                name = episode.classes.get(int(values)) if values.shape == () else None
                if name != task.labels.get(int(row)):
                    yield (
                        f"{where}: target {values.tolist()} ({name!r}), installed "
                        f"{int(row)} ({task.labels.get(int(row))!r})"
                    )


def torchcross_differences(parsed: TorchcrossFile, data: DatasetFolder) -> list[str]:
    """How a torchcross file differs from the installed data: every position in the split
    (numbered as ``MedIMeta`` numbers it), every label the installed one (multi-class and
    ordinal: the target names the installed class; binary: the 0/1 value; multi-label: the
    row over the labels the description names), support and query disjoint."""
    task = data.dataset.task(parsed.task)
    labels = load_labels(data, task)
    listed = (
        np.arange(len(labels), dtype=np.int64)
        if parsed.split is None
        else np.sort(load_split(data, parsed.split))
    )
    return [
        difference
        for episode in parsed.episodes
        for difference in _episode_differences(episode, task, labels, listed)
    ]
