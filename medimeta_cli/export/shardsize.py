"""``--shard-size``: how much one tar shard of a ``webdataset`` export holds.

Two spellings that cannot be mistaken for each other: a size with a unit (``1GB``,
``500MB``, ``64MiB``) or a count of images (``5000images``). A bare number is refused,
since it could mean either. Light (no numpy): the command line parses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from medimeta_cli.errors import UsageError

#: Bytes per unit; decimal units as disks count, binary ones as memory does.
_UNITS: Final = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE: Final = re.compile(r"([0-9]{1,15})\s*([a-z]+)")
_HINT: Final = "For example --shard-size 1GB, 500MB, 64MiB, or 5000images."


@dataclass(frozen=True)
class ShardSize:
    """At most ``images`` images per shard, or about ``bytes`` bytes (exactly one is set)."""

    images: int | None = None
    bytes: int | None = None

    def __str__(self) -> str:
        return f"{self.images}images" if self.images is not None else f"{self.bytes}B"

    def images_per_shard(self, bytes_per_image: int, bytes_per_shard: int = 0) -> int:
        """Images in each shard, given upper bounds of one sample's bytes and of a shard's
        own (its end): a pure function of the options and the selection, never of the
        encoded sizes, so every job of a sharded export cuts the same shards. At least one."""
        if self.images is not None:
            return self.images
        assert self.bytes is not None
        return max(1, (self.bytes - bytes_per_shard) // max(1, bytes_per_image))


#: About 1 GB per shard, what large-image training pipelines usually read.
DEFAULT_SHARD_SIZE: Final = ShardSize(bytes=10**9)


def parse_shard_size(text: str) -> ShardSize:
    """``"1GB"`` -> about 10**9 bytes per shard, ``"5000images"`` -> 5000 images per shard."""
    match = _SIZE.fullmatch(text.strip().lower())
    if match is None or (
        match.group(2) not in _UNITS and match.group(2) not in ("images", "image")
    ):
        bare = text.strip().isdigit()
        raise UsageError(
            f"--shard-size takes a size with a unit or a number of images, not {text[:40]!r}"
            + (" (bytes or images?)" if bare else ""),
            hint=_HINT,
        )
    number, unit = int(match.group(1)), match.group(2)
    if number < 1:
        raise UsageError(f"--shard-size {text.strip()}: must be at least 1", hint=_HINT)
    if unit in ("images", "image"):
        return ShardSize(images=number)
    return ShardSize(bytes=number * _UNITS[unit])
