"""The cache of ``medimeta stats``: pixel sums of an installed dataset, beside its install record.

``<root>/.medimeta/installed/<id>.stats.json`` holds, per entry (a split), the exact sums
of one pass over its images and the key they were computed under: the install record's
archive md5 and install time, and the size, modification time, inode and device of the
files read. An entry is used only when its key equals the key of the data as it is now;
anything else (another install, a changed file, a damaged or foreign cache file) is
ignored and the sums are computed again. The file is written atomically; a root that
cannot be written (read-only, shared) is simply not cached in.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from medimeta_cli.fsutil import atomic_write_text, read_regular_file
from medimeta_cli.store.layout import RootLayout

logger = logging.getLogger(__name__)

#: Changes whenever what an entry holds changes: older entries are then never trusted.
CACHE_VERSION = 1


def file_key(path: Path) -> dict[str, int] | None:
    """What identifies the bytes of a file without reading them: size, modification time
    (ns), inode and device; None when it does not exist or is not a regular file."""
    try:
        info = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    if not os.path.isfile(path) or os.path.islink(path):
        return None
    return {
        "size": info.st_size,
        "mtime_ns": info.st_mtime_ns,
        "inode": info.st_ino,
        "device": info.st_dev,
    }


def _entries(layout: RootLayout, dataset_id: str) -> dict[str, Any]:
    raw = read_regular_file(layout.stats_cache_path(dataset_id))
    if raw is None:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def load_cached(
    layout: RootLayout, dataset_id: str, entry: str, key: dict[str, Any]
) -> dict[str, Any] | None:
    """The value cached under ``entry`` if it was computed under exactly ``key``; else None."""
    found = _entries(layout, dataset_id).get(entry)
    if not isinstance(found, dict) or found.get("key") != key:
        return None
    value = found.get("value")
    return value if isinstance(value, dict) else None


def save_cached(
    layout: RootLayout, dataset_id: str, entry: str, key: dict[str, Any], value: dict[str, Any]
) -> bool:
    """Cache ``value`` under ``entry`` with its ``key``, atomically; whether it was written
    (False where the root cannot be written: the result is then simply not cached)."""
    entries = _entries(layout, dataset_id)
    entries[entry] = {"key": key, "value": value}
    text = json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=1)
    try:
        if not layout.installed_dir.is_dir():
            return False  # no install record to sit beside
        atomic_write_text(layout.stats_cache_path(dataset_id), text)
    except OSError as exc:
        logger.debug("not caching the stats of %s: %s", dataset_id, exc)
        return False
    return True
