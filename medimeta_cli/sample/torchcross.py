"""Episode files the official pipeline loads: pickled ``torchcross`` task lists, written
and read without torch.

``medimeta.PickledMedIMetaTaskDataset`` opens
``<dir>/<dataset_id>/<task>_<n_support>_<n_query>_<length>_<split>.pkl`` (the raw task
name) and unpickles a list of ``torchcross.data.task.Task(support, query, description)``,
as ``FewShotMetaDataset(..., output_indices=True)`` yields them: support and query are
lists of ``(numpy.int64 position, label tensor)``, the position numbering the split as
``MedIMeta(data, id, task, split=split)`` does. The labels take upstream's own form:
multi-class and ordinal ``torch.tensor(target)`` (0-d int64, the class within the
episode), binary the label file's value as a (1,) tensor of its dtype, multi-label its row
over the episode's labels.

The bytes are emitted here, opcode by opcode, instead of by torch: torch names a pickled
storage by its memory address, so its files differ from run to run; ours name every
storage ``"0"`` and are byte-identical for the same seed on any machine, and writing them
needs neither torch nor torchcross.

Reading never runs code from the file: :class:`_EpisodeUnpickler` resolves only the
globals of this structure, each to a plain stand-in, and the storages' legacy
``torch.save`` bytes are parsed by a second restricted unpickler. Anything else is "not a
torchcross episode file".
"""

from __future__ import annotations

import functools
import importlib.util
import io
import math
import pickle
import re
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from medimeta_cli.catalog.datasets import Task, TaskTarget
from medimeta_cli.dataset.contents import load_labels, load_split
from medimeta_cli.dataset.gate import DatasetFolder
from medimeta_cli.errors import IntegrityError, UsageError
from medimeta_cli.fsutil import atomic_write_bytes
from medimeta_cli.sample.episodes import Episode, Shots
from medimeta_cli.sample.results import EpisodeSample

#: ``torchcross.data.task.TaskTarget`` values (``enum.auto()``, in declaration order).
UPSTREAM_TARGETS = {
    TaskTarget.MULTICLASS: 1,
    TaskTarget.BINARY: 2,
    TaskTarget.MULTILABEL: 3,
    TaskTarget.ORDINAL: 4,
}

#: Label dtypes and the legacy torch storage class that holds them.
STORAGES: dict[np.dtype[Any], str] = {
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.int16): "ShortStorage",
    np.dtype(np.int8): "CharStorage",
    np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float16): "HalfStorage",
}

#: ``torch.save``'s legacy format: its magic number and protocol version.
_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_SYS_INFO = {
    "protocol_version": _LEGACY_PROTOCOL,
    "little_endian": True,
    "type_sizes": {"short": 2, "int": 4, "long": 4},
}
#: The one storage key of every tensor (torch writes a memory address here).
_KEY = "0"

#: ``<task>_<shots>_<queries>_<length>[_<split>].pkl``, as upstream names its files.
_FILE_NAME = re.compile(
    r"(?P<task>.+)_(?P<shots>[0-9]+(?:-[0-9]+)?)_(?P<queries>[0-9]+)_(?P<length>[0-9]+)"
    r"(?:_(?P<split>[A-Za-z][A-Za-z0-9-]*))?\.pkl"
)


def torchcross_file_name(
    dataset_id: str, task: str, *, shots: Shots, queries: int, episodes: int, split: str
) -> Path:
    """``<dataset_id>/<task>_<shots>_<queries>_<episodes>_<split>.pkl``: the exact name
    ``PickledMedIMetaTaskDataset`` opens (the raw task name, spaces kept). A task or split
    name that would be a path is refused, never written."""
    for what, name in (("task", task), ("split", split), ("dataset", dataset_id)):
        if not name or "/" in name or "\\" in name or "\0" in name or ".." in name:
            raise UsageError(
                f"the {what} name {name!r} cannot be a torchcross file name",
                hint="Use --format json: its file names are made safe.",
            )
    return Path(dataset_id) / f"{task}_{shots}_{queries}_{episodes}_{split}.pkl"


#: What loads these files: the official pipeline (``pip install ".[torch]"``).
OFFICIAL_MODULES = ("medimeta", "torchcross", "torch")


def loader_notes() -> tuple[str, ...]:
    """What to install to load the files, when the official pipeline is not installed here
    (looked up, never imported: importing torch takes seconds)."""
    missing = [name for name in OFFICIAL_MODULES if importlib.util.find_spec(name) is None]
    if not missing:
        return ()
    return (
        f"loading this file needs {', '.join(missing)} (not installed here): "
        'pip install ".[torch]" (in a clone of medimeta-cli)',
    )


# --- writing ------------------------------------------------------------------------------


def _str(text: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) < 256:
        return b"\x8c" + bytes([len(data)]) + data  # SHORT_BINUNICODE
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def _int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])  # BININT1
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)  # BININT2
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)  # BININT
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data  # LONG1


def _bytes(data: bytes) -> bytes:
    if len(data) < 256:
        return b"C" + bytes([len(data)]) + data  # SHORT_BINBYTES
    return b"B" + struct.pack("<I", len(data)) + data  # BINBYTES


def _tuple(items: list[bytes]) -> bytes:
    if len(items) <= 3:
        return b"".join(items) + (b")", b"\x85", b"\x86", b"\x87")[len(items)]
    return b"(" + b"".join(items) + b"t"


def _legacy_str(text: str) -> bytes:
    data = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data


def legacy_storage_bytes(values: npt.NDArray[Any]) -> bytes:
    """What ``torch.save(storage, f, _use_new_zipfile_serialization=False)`` writes for a
    CPU storage of these values, its key ``"0"``: the bytes a pickled tensor hands to
    ``torch.storage._load_from_bytes``."""
    storage = STORAGES[values.dtype]
    numel = int(values.size)
    persistent = (
        b"\x80\x02(" + _legacy_str("storage") + b"q\x00"
        b"ctorch\n"
        + storage.encode()
        + b"\nq\x01"
        + _legacy_str(_KEY)
        + b"q\x02"
        + _legacy_str("cpu")
        + b"q\x03"
        + pickle.dumps(numel, protocol=2)[2:-1]
        + b"Ntq\x04Q."
    )
    keys = b"\x80\x02]q\x00" + _legacy_str(_KEY) + b"q\x01a."
    return b"".join(
        (
            pickle.dumps(_MAGIC, protocol=2),
            pickle.dumps(_LEGACY_PROTOCOL, protocol=2),
            pickle.dumps(_SYS_INFO, protocol=2),
            persistent,
            keys,
            struct.pack("<q", numel),
            values.astype(values.dtype.newbyteorder("<"), copy=False).tobytes(),
        )
    )


class _Emitter:
    """Pickle opcodes (protocol 4, unframed) for the task list; globals and dtypes are
    memoized, as ``pickle.dumps`` memoizes them, and each tensor's bytes are cached."""

    def __init__(self) -> None:
        self.memo: dict[object, int] = {}
        self.tensors: dict[tuple[str, tuple[int, ...], bytes], bytes] = {}

    def _get_or_put(self, key: object, make: Callable[[], bytes]) -> bytes:
        if key in self.memo:
            n = self.memo[key]
            return b"h" + bytes([n]) if n < 256 else b"j" + struct.pack("<I", n)
        n = self.memo[key] = len(self.memo)
        return make() + (b"q" + bytes([n]) if n < 256 else b"r" + struct.pack("<I", n))

    def global_(self, module: str, name: str) -> bytes:
        return self._get_or_put(("global", module, name), lambda: f"c{module}\n{name}\n".encode())

    def dtype(self, dtype: np.dtype[Any]) -> bytes:
        def make() -> bytes:
            order = "|" if dtype.itemsize == 1 else "<"
            state = _tuple([_int(3), _str(order), b"N", b"N", b"N", _int(-1), _int(-1), _int(0)])
            return (
                self.global_("numpy", "dtype")
                + _tuple([_str(dtype.str[1:]), b"\x89", b"\x88"])
                + b"R"
                + state
                + b"b"
            )

        return self._get_or_put(("dtype", dtype.str), make)

    def position(self, value: int) -> bytes:
        """``numpy.int64(value)`` as NumPy pickles it."""
        return (
            self.global_("numpy._core.multiarray", "scalar")
            + _tuple([self.dtype(np.dtype(np.int64)), _bytes(struct.pack("<q", value))])
            + b"R"
        )

    def tensor(self, values: npt.NDArray[Any]) -> bytes:
        """``torch.tensor(values)``: ``_rebuild_tensor_v2(storage, 0, size, stride, False,
        OrderedDict())``."""
        key = (values.dtype.str, values.shape, values.tobytes())
        if key not in self.tensors:
            shape = list(values.shape)
            strides = [math.prod(shape[i + 1 :]) for i in range(len(shape))]
            self.tensors[key] = (
                self.global_("torch._utils", "_rebuild_tensor_v2")
                + b"("
                + self.global_("torch.storage", "_load_from_bytes")
                + _bytes(legacy_storage_bytes(values))
                + b"\x85R"
                + _int(0)
                + _tuple([_int(n) for n in shape])
                + _tuple([_int(n) for n in strides])
                + b"\x89"
                + self.global_("collections", "OrderedDict")
                + b")R"
                + b"tR"
            )
        return self.tensors[key]

    def obj(self, name: str, fields: list[tuple[str, bytes]]) -> bytes:
        """A dataclass of ``torchcross.data.task``: NEWOBJ, then its ``__dict__``."""
        items = b"".join(_str(k) + v for k, v in fields)
        return self.global_("torchcross.data.task", name) + b")\x81}(" + items + b"ub"

    def description(self, target: int, classes: dict[int, str]) -> bytes:
        names = b"".join(_int(k) + _str(v) for k, v in classes.items())
        target_value = self.global_("torchcross.data.task", "TaskTarget") + _int(target) + b"\x85R"
        return self.obj(
            "TaskDescription",
            [
                ("task_target", target_value),
                ("classes", b"}(" + names + b"u"),
                ("task_identifier", b"N"),
                ("domain_identifier", b"N"),
            ],
        )


@dataclass(frozen=True)
class _Labeller:
    """The label tensor and class names of an episode, in upstream's form."""

    sample: EpisodeSample
    labels: npt.NDArray[Any]  # the task's label file, as installed

    def classes(self, episode: Episode) -> dict[int, str]:
        names = self.sample.selection.task.labels
        if self.sample.selection.task.target is TaskTarget.BINARY:
            return {0: names[0], 1: names[1]}
        return {n: names[key] for n, key in enumerate(episode.classes)}

    def label(self, episode: Episode) -> Callable[[int, Any], npt.NDArray[Any]]:
        task = self.sample.selection.task
        if task.target is TaskTarget.BINARY:
            return lambda index, _: self.labels[index : index + 1]
        if task.target is TaskTarget.MULTILABEL:
            columns = [list(task.labels).index(key) for key in episode.classes]
            return lambda index, _: self.labels[index, columns]
        order = {key: n for n, key in enumerate(episode.classes)}
        return lambda _, key: np.array(order[int(key)], dtype=np.int64)


def torchcross_bytes(sample: EpisodeSample, labels: npt.NDArray[Any]) -> bytes:
    """The pickled task list of ``sample``; ``labels`` is the task's installed label file
    (its dtype is the dtype of binary and multi-label tensors, as upstream)."""
    if labels.dtype not in STORAGES:
        raise UsageError(
            f"labels of dtype {labels.dtype} have no torch storage here",
            hint="Use --format json.",
        )
    task = sample.selection.task
    labeller = _Labeller(sample, labels)
    emit = _Emitter()
    positions = sample.positions_of([i for e in sample.episodes for i, _ in e.support + e.query])
    out = [b"\x80\x04]("]  # PROTO 4, EMPTY_LIST, MARK
    for episode in sample.episodes:
        label = labeller.label(episode)
        sets = []
        for items in (episode.support, episode.query):
            pairs = b"".join(
                emit.position(positions[i]) + emit.tensor(label(i, key)) + b"\x86"
                for i, key in items
            )
            sets.append(b"](" + pairs + b"e")
        description = emit.description(UPSTREAM_TARGETS[task.target], labeller.classes(episode))
        out.append(
            emit.obj(
                "Task", [("support", sets[0]), ("query", sets[1]), ("description", description)]
            )
        )
    out.append(b"e.")  # APPENDS, STOP
    return b"".join(out)


def write_torchcross_file(out: Path, sample: EpisodeSample, data: DatasetFolder) -> Path:
    """Write the sample as the task list ``PickledMedIMetaTaskDataset`` loads (atomically)
    and return its path."""
    selection = sample.selection
    if selection.spec.original:
        raise UsageError(
            "--format torchcross cannot hold episodes of an original split",
            hint="PickledMedIMetaTaskDataset reads the MedIMeta splits; drop --original-split.",
        )
    path = out / torchcross_file_name(
        selection.dataset.id,
        selection.task.name,
        shots=sample.shots,
        queries=sample.queries,
        episodes=len(sample.episodes),
        split=selection.parts[0].split,
    )
    content = torchcross_bytes(sample, load_labels(data, selection.task))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, content)
    return path


# --- reading ------------------------------------------------------------------------------


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
    if _LegacyUnpickler(f).load() != _MAGIC:
        raise NotEpisodes("magic number")
    if _LegacyUnpickler(f).load() != _LEGACY_PROTOCOL:
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
    match = _FILE_NAME.fullmatch(path.name)
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
