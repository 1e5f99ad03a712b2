"""Who owns a temporary name or a partial download, and whether that job is still alive.

Every temporary name the tool makes ends in ``fsutil.unique_suffix()``, i.e.
``<host>.<pid>.<8 hex>``, so the process that made it can be found from the name.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

#: A temporary file of a job on another host (which cannot be asked whether the job is
#: alive) counts as abandoned once it has not changed for this long.
STALE_SECONDS = 24 * 3600.0
#: ``download`` leaves alone a partial file that a job on another host wrote to this recently.
PARTIAL_ACTIVE_SECONDS = 120.0


def owner_stamp() -> dict[str, Any]:
    """Who writes a temporary file: this host and process, as sidecars, progress files and
    lock owner notes record it (read back by :func:`owner_alive` and :func:`partial_in_use`)."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def process_alive(pid: object) -> bool:
    """Whether a process with this id runs on this host (a foreign user's counts too).

    A zombie (exited, not yet reaped by its parent) is dead: it writes nothing any more.
    """
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return not _zombie(pid)  # alive, owned by another user
    except OSError:
        return False
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether ``/proc`` says the process has exited (state Z or X) and only awaits reaping.

    Where ``/proc`` cannot be read, the process counts as running (the safe side).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    # "pid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ")".
    fields = stat[stat.rfind(b")") + 1 :].split()
    return bool(fields) and fields[0] in (b"Z", b"X")


def owner_alive(
    host: object,
    pid: object,
    path: Path,
    *,
    quiet_seconds: float = STALE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether the job owning a temporary file may still be using it.

    On this host the question is whether its process exists; for another host (or an
    unknown one) whether ``path`` changed within ``quiet_seconds``.
    """
    if host == socket.gethostname():
        return process_alive(pid)
    try:
        mtime = path.lstat().st_mtime
    except OSError:
        return False
    return (time.time() if now is None else now) - mtime < quiet_seconds


def partial_in_use(
    sidecar: dict[str, Any], part: Path, *, quiet_seconds: float = PARTIAL_ACTIVE_SECONDS
) -> bool:
    """Whether another live job is still writing this partial download.

    ``sidecar`` is the parsed ``.json`` next to ``part`` (it names host and pid). A
    partial of this very process is not "in use by another job".
    """
    host, pid = sidecar.get("host"), sidecar.get("pid")
    if host == socket.gethostname() and pid == os.getpid():
        return False
    return owner_alive(host, pid, part, quiet_seconds=quiet_seconds)


def owner_from_name(name: str) -> tuple[str | None, int] | None:
    """``(host, pid)`` of the process that made a name ending in ``unique_suffix()``
    (optionally followed by an extension such as ``.part``); ``host`` is this host's name
    when the name carries it and None for any other host. None when the name has no suffix."""
    import re

    match = re.fullmatch(r"(?P<head>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}(?:\.[a-z]+)?", name)
    if match is None:
        return None
    here = socket.gethostname()
    head = match.group("head")
    host = here if head == here or head.endswith(f".{here}") else None
    return host, int(match.group("pid"))
