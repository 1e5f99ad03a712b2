"""The slices of a segmented transfer: contiguous byte ranges of one archive, each done up
to some offset, which tile the archive; splitting the largest for an idle connection."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field


@dataclass
class Slice:
    """Bytes ``start`` to ``end`` (exclusive) of the archive, done up to ``pos``."""

    start: int
    end: int
    pos: int
    busy: bool = False

    @property
    def left(self) -> int:
        """Bytes still to fetch."""
        return self.end - self.pos


@dataclass
class SliceTable:
    """The slices of one archive, in archive order."""

    size: int
    slices: list[Slice] = field(default_factory=list)

    @classmethod
    def fresh(cls, size: int, count: int) -> SliceTable:
        """``count`` slices of about equal size."""
        bounds = [size * i // count for i in range(count + 1)]
        return cls(size, [Slice(a, b, a) for a, b in itertools.pairwise(bounds)])

    @classmethod
    def restored(cls, size: int, saved: list[tuple[int, int, int]]) -> SliceTable:
        """The slices a sidecar recorded."""
        return cls(size, [Slice(a, b, p) for a, b, p in saved])

    def to_json(self) -> list[list[int]]:
        """The state to save."""
        return [[s.start, s.end, s.pos] for s in self.slices]

    def done(self) -> int:
        """Bytes done."""
        return sum(s.pos - s.start for s in self.slices)

    def complete(self) -> bool:
        """Whether every byte is done."""
        return all(s.left == 0 for s in self.slices)

    def prefix(self) -> int:
        """End of the contiguous done bytes from the archive's start."""
        for piece in self.slices:
            if piece.left:
                return piece.pos
        return self.size

    def take(self, split_at: int, may_split: bool) -> Slice | None:
        """An idle slice with bytes left, or the second half of the largest busy one (when
        ``may_split`` and at least ``split_at`` are left); marked busy."""
        idle = [s for s in self.slices if not s.busy and s.left]
        if idle:
            idle[0].busy = True
            return idle[0]
        if not may_split:
            return None
        largest = max((s for s in self.slices if s.busy), key=lambda s: s.left, default=None)
        if largest is None or largest.left < split_at:
            return None
        middle = largest.pos + largest.left // 2
        second = Slice(middle, largest.end, middle, busy=True)
        largest.end = middle
        self.slices.insert(self.slices.index(largest) + 1, second)
        return second
