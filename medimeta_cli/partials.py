"""Partial downloads: the only code that names, claims, measures and finishes them.

A whole-archive download streams into ``<root>/.medimeta/partial/<key>.<uniq>.part``
next to a sidecar ``<key>.<uniq>.json`` naming the archive version (url, size, md5)
and the job writing it (host, pid). An hdf5-layout download fills a folder
``<key>.members.<uniq>/`` whose ``progress.json`` plays the sidecar's part.

Every name is unique to the process that made it, and a job takes over an earlier
run's partial by renaming it to a name of its own: of two racing jobs, one wins.
A partial that a live job is still writing is left alone.

Only the standard library is imported here: ``list`` reads partial sizes too.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medimeta_cli.fsutil import atomic_write_text, remove_tree, unique_suffix, utc_now
from medimeta_cli.layout import RootLayout
from medimeta_cli.ownership import owner_stamp, partial_in_use

if TYPE_CHECKING:
    from medimeta_cli.record import ArchiveInfo

logger = logging.getLogger(__name__)

#: The file a members folder records its progress (and owner) in.
PROGRESS_FILE = "progress.json"


def partial_sidecars(layout: RootLayout, key: str) -> list[Path]:
    """Sidecars of partial downloads of an archive, largest download first."""
    sidecars = list(layout.partial_dir.glob(f"{key}.*.json"))

    def done(sidecar: Path) -> int:
        try:
            return sidecar.with_suffix(".part").stat().st_size
        except OSError:
            return -1

    return sorted(sidecars, key=done, reverse=True)


def partial_bytes(layout: RootLayout, key: str, md5: str | None) -> int:
    """Bytes already downloaded of this archive version (0 when none)."""
    for sidecar in partial_sidecars(layout, key):
        try:
            data = json.loads(sidecar.read_bytes())
            if md5 is None or data.get("md5") == md5:
                return sidecar.with_suffix(".part").stat().st_size
        except (OSError, ValueError):
            continue
    return 0


@dataclass(frozen=True)
class Partial:
    """A partial download this process owns: the ``.part`` file and its sidecar."""

    part: Path

    @property
    def sidecar(self) -> Path:
        """The ``.json`` next to the partial file."""
        return self.part.with_suffix(".json")

    def size(self) -> int:
        """Bytes in the partial file now (0 when it does not exist)."""
        return self.part.stat().st_size if self.part.exists() else 0

    def resume_offset(self, archive_size: int) -> int:
        """Where the transfer goes on: the bytes already there, or 0 after dropping a file
        larger than the archive (it cannot be a prefix of it)."""
        offset = self.size()
        if offset > archive_size:
            logger.debug("%s is larger than the archive; starting over", self.part)
            self.part.unlink()
            return 0
        return offset

    def restart(self) -> int:
        """Drop the bytes (keep the claim); the offset to go on from, 0."""
        logger.debug("truncating %s to start over", self.part)
        self.part.unlink(missing_ok=True)
        return 0

    def discard(self) -> None:
        """Drop the partial download altogether (bytes and sidecar)."""
        logger.debug("discarding %s", self.part)
        self.part.unlink(missing_ok=True)
        self.sidecar.unlink(missing_ok=True)

    def finish(self, keep_as: Path | None) -> None:
        """The download was installed: keep the archive at ``keep_as``, or delete it."""
        self.sidecar.unlink(missing_ok=True)
        if keep_as is None:
            self.part.unlink(missing_ok=True)
            return
        keep_as.parent.mkdir(parents=True, exist_ok=True)
        logger.debug("keeping the archive: renaming %s to %s", self.part, keep_as)
        os.replace(self.part, keep_as)


def claim_partial(
    layout: RootLayout, info: ArchiveInfo, on_notice: Callable[[str], None]
) -> Partial:
    """Take over the largest partial download of this archive version, or start one.

    Partials of other versions of the archive are deleted (``on_notice`` says so);
    partials a live job is writing are left alone.
    """
    partial_dir = layout.partial_dir
    partial_dir.mkdir(parents=True, exist_ok=True)
    mine = partial_dir / f"{info.key}.{unique_suffix()}.part"
    for sidecar in partial_sidecars(layout, info.key):
        try:
            data = json.loads(sidecar.read_bytes())
        except (OSError, ValueError):
            continue
        earlier = sidecar.with_suffix(".part")
        if partial_in_use(data, earlier):
            logger.debug("%s is being written by %s; leaving it", earlier, _owner(data))
            continue  # another live job is writing it (locks are off or do not work)
        if (data.get("md5"), data.get("size")) != (info.md5, info.size):
            on_notice(f"discarding a partial download of another version of {info.key}")
            Partial(earlier).discard()
            continue
        try:
            # Renaming is atomic: if two jobs race for one partial file, one wins.
            os.rename(earlier, mine)
        except FileNotFoundError:
            continue
        logger.debug("claimed %s (left by %s) as %s", earlier, _owner(data), mine)
        data.update(owner_stamp())
        atomic_write_text(mine.with_suffix(".json"), json.dumps(data))
        sidecar.unlink(missing_ok=True)
        return Partial(mine)
    logger.debug("starting a new partial download %s", mine)
    atomic_write_text(
        mine.with_suffix(".json"),
        json.dumps(
            {
                "key": info.key,
                "url": info.url,
                "size": info.size,
                "md5": info.md5,
                "started_at": utc_now(),
                **owner_stamp(),
            }
        ),
    )
    return Partial(mine)


def claim_members_folder(layout: RootLayout, info: ArchiveInfo) -> Path:
    """Take over an earlier run's members folder for this archive version, or name a new one
    (created by the code that fills it)."""
    partial_dir = layout.partial_dir
    partial_dir.mkdir(parents=True, exist_ok=True)
    mine = partial_dir / f"{info.key}.members.{unique_suffix()}"
    for folder in sorted(partial_dir.glob(f"{info.key}.members.*")):
        try:
            progress = json.loads((folder / PROGRESS_FILE).read_bytes())
        except (OSError, ValueError):
            continue
        if partial_in_use(progress, folder / PROGRESS_FILE):
            logger.debug("%s is being filled by %s; leaving it", folder, _owner(progress))
            continue
        if (progress.get("md5"), progress.get("size")) != (info.md5, info.size):
            logger.debug("removing %s: members of another version of %s", folder, info.key)
            remove_tree(folder)
            continue
        try:
            os.rename(folder, mine)  # atomic: of two racing jobs, one gets it
        except OSError:
            continue
        # Claim it at once, so that no other job takes it for abandoned.
        logger.debug("claimed %s (left by %s) as %s", folder, _owner(progress), mine)
        progress.update(owner_stamp())
        atomic_write_text(mine / PROGRESS_FILE, json.dumps(progress))
        return mine
    logger.debug("starting a new members folder %s", mine)
    return mine


def _owner(data: dict[str, Any]) -> str:
    return f"pid {data.get('pid')} on {data.get('host')}"
