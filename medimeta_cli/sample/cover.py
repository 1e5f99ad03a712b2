"""The support and query sets of multi-label episodes: the smallest set of images, built
greedily, that holds at least K positives and K negatives of every label of an episode.

Images are grouped by their 0/1 pattern over the episode's labels (:class:`LabelPatterns`),
so a greedy step scores the patterns, not the rows: the same choice, in time that does not
grow with the split.
"""

from __future__ import annotations

import bisect
import random
from typing import Any

import numpy as np
import numpy.typing as npt


class LabelPatterns:
    """The rows of a multi-label task grouped by their 0/1 pattern over an episode's labels.

    A greedy cover step scores every row by the unmet needs it meets; rows of one pattern
    score alike, and a task has far fewer patterns than rows (cxr's 25,596 test images show
    a few hundred over its 14 labels). So each step scores the patterns, not the rows, and
    draws among the tied rows by their number per pattern: the same greedy choice over
    every row, with ties drawn uniformly among the rows, in time that does not grow with
    the split.
    """

    def __init__(self, rows: npt.NDArray[Any]) -> None:
        ones = np.ascontiguousarray(rows, dtype=np.uint8)
        # Each row's bytes as one value: patterns sorted by their bytes, on every machine.
        keys = (
            ones.view(np.dtype((np.void, ones.shape[1]))).ravel()
            if ones.shape[1]
            else np.zeros(len(ones), dtype=np.uint8)
        )
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
        order = np.argsort(inverse, kind="stable")  # ascending rows within each pattern
        bounds = np.cumsum(np.bincount(inverse, minlength=len(first)))[:-1]
        #: Each pattern's 0/1 values (patterns x labels).
        self.patterns = ones[first].astype(np.int64)
        #: Each pattern's row numbers, ascending.
        self.members = [m.tolist() for m in np.split(order, bounds)]
        self.sizes = np.array([len(m) for m in self.members], dtype=np.int64)
        #: The same patterns as tuples of Python ints, for the per-step arithmetic.
        self.rows: list[tuple[int, ...]] = [tuple(r) for r in self.patterns.tolist()]

    def cover(
        self, count: int, taken: dict[int, list[int]], rng: random.Random
    ) -> list[int] | None:
        """Row numbers (ascending) of a small set of rows not in ``taken`` holding at least
        ``count`` positives and ``count`` negatives of every label, built greedily: each
        step takes a row that meets the most unmet needs (ties drawn with ``rng``,
        uniformly among the tied rows), then picks that the rest make redundant are
        dropped, latest first. The rows kept are added to ``taken`` (pattern -> sorted
        positions among its rows). ``None`` when the free rows cannot cover."""
        labels = self.patterns.shape[1]
        # The needs live in plain lists: a cover takes tens of steps over a dozen labels,
        # where NumPy's per-call cost would outweigh the arithmetic.
        need_pos, need_neg = [count] * labels, [count] * labels
        unmet = 2 * labels if count > 0 else 0
        free = self.sizes - np.array([len(taken.get(p, ())) for p in range(len(self.sizes))])
        picks: list[tuple[int, int]] = []  # (pattern, position among its rows)
        tied: list[int] = []
        tied_free: list[int] = []
        total = 0  # free rows among the tied patterns
        while unmet:
            if total == 0:
                # A pattern's score (the unmet needs its rows meet) changes only when a
                # need is met or its rows run out: scored again only then.
                want_pos = np.array([n > 0 for n in need_pos], dtype=np.int64)
                want_neg = np.array([n > 0 for n in need_neg], dtype=np.int64)
                gain = self.patterns @ (want_pos - want_neg) + int(want_neg.sum())
                gain[free <= 0] = -1
                best = int(gain.max()) if len(gain) else 0
                if best <= 0:
                    self._release(picks, taken)
                    return None
                tied = np.flatnonzero(gain == best).tolist()
                tied_free = [int(free[p]) for p in tied]
                total = sum(tied_free)
            # Uniform among the tied rows: a pattern with no free row left is passed over.
            draw = rng.randrange(total)
            slot = 0
            while draw >= tied_free[slot]:
                draw -= tied_free[slot]
                slot += 1
            pattern = tied[slot]
            position = self._take(pattern, draw, taken)
            picks.append((pattern, position))
            free[pattern] -= 1
            tied_free[slot] -= 1
            total -= 1
            met = False
            for label, value in enumerate(self.rows[pattern]):
                need = need_pos if value else need_neg
                need[label] -= 1
                if need[label] == 0:
                    met, unmet = True, unmet - 1
            if met:
                total = 0
        # An early pick may have become redundant: drop, latest first, what the rest covers.
        have_pos = [count - n for n in need_pos]
        have_neg = [count - n for n in need_neg]
        kept: list[tuple[int, int]] = []
        for pattern, position in reversed(picks):
            row = self.rows[pattern]
            if all((have_pos if v else have_neg)[j] > count for j, v in enumerate(row)):
                for j, v in enumerate(row):
                    (have_pos if v else have_neg)[j] -= 1
                self._release([(pattern, position)], taken)
            else:
                kept.append((pattern, position))
        return sorted(self.members[p][n] for p, n in kept)

    def _take(self, pattern: int, draw: int, taken: dict[int, list[int]]) -> int:
        """Mark the ``draw``-th free row of ``pattern`` taken; its position among the
        pattern's rows."""
        used = taken.setdefault(pattern, [])
        position = draw
        for n in used:  # ascending: each taken row at or before it moves it one on
            if n > position:
                break
            position += 1
        bisect.insort(used, position)
        return position

    @staticmethod
    def _release(picks: list[tuple[int, int]], taken: dict[int, list[int]]) -> None:
        for pattern, position in picks:
            taken[pattern].remove(position)


def greedy_cover(
    rows: npt.NDArray[Any], free: npt.NDArray[np.bool_], count: int, rng: random.Random
) -> list[int] | None:
    """Row numbers of a small set of free rows holding at least ``count`` positives and
    ``count`` negatives of every column, built greedily (see :meth:`LabelPatterns.cover`).
    ``None`` when the free rows cannot."""
    grouped = LabelPatterns(rows)
    taken: dict[int, list[int]] = {}
    for pattern, members in enumerate(grouped.members):
        used = [n for n, row in enumerate(members) if not free[row]]
        if used:
            taken[pattern] = used
    return grouped.cover(count, taken, rng)
