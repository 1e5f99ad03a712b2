"""How task names become parts of file and folder names, and the names of label columns.

Names are data, never paths: a task name from ``info.yaml`` becomes a name part only
through :func:`task_folder_part`, which is injective and yields no separator.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

from medimeta_cli.catalog.datasets import Task
from medimeta_cli.export.options import FOLDER_SUFFIXES

#: A task name that becomes its folder name as it is: words of letters, digits, ``.`` and
#: ``-``, single spaces between them (each space becomes ``_``). Every upstream task name is
#: one ("tissue class": ``crc-tissue_class``), so their folders keep the names they had.
_PLAIN_TASK: Final = re.compile(r"[A-Za-z0-9.-]+(?: [A-Za-z0-9.-]+)*")

#: Endings a plain name may not have, because other names' folders end so: a format's
#: suffix (``-numpy``) and a hash suffix (``-`` and 10 hex digits).
_RESERVED_END: Final = re.compile(
    "(?:-[0-9a-f]{10}"
    + "".join(f"|{re.escape(suffix)}" for suffix in FOLDER_SUFFIXES.values() if suffix)
    + r")\Z"
)


def task_folder_part(task: str) -> str:
    """A task name as part of a folder name: injective, so two tasks never share a folder.

    A plain name (:data:`_PLAIN_TASK`) gives itself with its spaces as ``_``; any other
    (``grp/sub``, ``grp_sub``, control characters, a reserved ending) gives its safe
    characters followed by ``-`` and 10 hex digits of the SHA-256 of the name, an ending
    no plain name has. Two plain names never map to one part (``_`` stands only for a
    space there), and two others share one only if their hashes do.
    """
    if _PLAIN_TASK.fullmatch(task) and not _RESERVED_END.search(task):
        return task.replace(" ", "_")
    safe = re.sub(r"[^A-Za-z0-9.-]+", "_", task).strip("_")[:64] or "task"
    digest = hashlib.sha256(task.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{safe}-{digest}"


def task_column(task: Task) -> str:
    """The name of a task's labels in an export of every task (``--task all``): the array
    ``labels_<task>.npy``, the column ``labels_<task>``, the task as :func:`task_folder_part`
    makes it, so that two tasks never share one."""
    return f"labels_{task_folder_part(task.name)}"
