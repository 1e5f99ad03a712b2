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

Reading them back and checking them against the installed data is
:mod:`medimeta_cli.sample.torchcross_check`.
"""

from __future__ import annotations

import importlib.util
import math
import pickle
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from medimeta_cli.catalog.datasets import TaskTarget
from medimeta_cli.dataset.contents import load_labels
from medimeta_cli.dataset.gate import DatasetFolder
from medimeta_cli.errors import UsageError
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
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_SYS_INFO = {
    "protocol_version": LEGACY_PROTOCOL,
    "little_endian": True,
    "type_sizes": {"short": 2, "int": 4, "long": 4},
}
#: The one storage key of every tensor (torch writes a memory address here).
_KEY = "0"

#: ``<task>_<shots>_<queries>_<length>[_<split>].pkl``, as upstream names its files.
FILE_NAME = re.compile(
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
            pickle.dumps(LEGACY_MAGIC, protocol=2),
            pickle.dumps(LEGACY_PROTOCOL, protocol=2),
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
