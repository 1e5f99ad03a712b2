"""Drawing few-shot episodes and stratified per-class subsets.

What is drawn is reported by :mod:`medimeta_cli.sample.results` (JSON, CSV rows) and shown
by :mod:`medimeta_cli.sample.sheets` (contact sheets).

Sampling uses :class:`random.Random` seeded by the user: its generator and its
``sample`` algorithm are the same on every platform and Python version, so the
same seed gives the same episodes everywhere. Per-class image lists are sorted
by upstream index before sampling, so nothing depends on file order either.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from medimeta_cli.catalog.datasets import TaskTarget
from medimeta_cli.dataset.selection import Selection
from medimeta_cli.errors import UsageError
from medimeta_cli.sample.cover import LabelPatterns

#: What an episode says of one image: its upstream index and its label (a label key, or
#: the 0/1 row over the selection's labels for multi-label tasks).
Item = tuple[int, Any]


@dataclass(frozen=True)
class Episode:
    """One episode: its classes (label keys), support and query images (upstream indices)."""

    number: int
    classes: tuple[int, ...]
    support: tuple[Item, ...]  # (index, label key or 0/1 row)
    query: tuple[Item, ...]
    shots: int = 0

    def to_json(
        self, position: Callable[[int], int], target: Callable[[Any], Any]
    ) -> dict[str, Any]:
        """A JSON-ready mapping; ``position`` numbers an index as the official loader does,
        ``target`` turns a label into the image's class within this episode."""

        def item(index: int, label: Any) -> dict[str, Any]:
            shown = list(label) if isinstance(label, tuple) else label
            return {
                "index": index,
                "position": position(index),
                "label": shown,
                "target": target(label),
            }

        return {
            "episode": self.number,
            "shots": self.shots,
            "classes": list(self.classes),
            "support": [item(i, k) for i, k in self.support],
            "query": [item(i, k) for i, k in self.query],
        }


#: ``--shots``: a number or a range ``A-B`` (plain ASCII digits, not absurdly many).
_SHOTS = re.compile(r"([0-9]{1,6})(?:-([0-9]{1,6}))?")

#: The ``--ways`` value for every usable class.
ALL = "all"

#: ``--ways`` as a range: ``A-B`` or ``A-all`` (plain ASCII digits).
_WAYS = re.compile(r"([0-9]{1,6})-([0-9]{1,6}|all)")


@dataclass(frozen=True)
class WayRange:
    """Classes per episode drawn from ``low`` to ``high`` (``None``: every usable class), as
    upstream's random setting (``SubTaskRandomFewShotMetaDataset``) draws them. A binary
    task's episodes always hold both classes: a range means both there."""

    low: int
    high: int | None = None

    @classmethod
    def parse(cls, text: str) -> WayRange | None:
        """``"2-all"`` or ``"2-5"``; ``None`` when ``text`` is no range."""
        match = _WAYS.fullmatch(text.strip().lower())
        if match is None:
            return None
        high = None if match[2] == ALL else int(match[2])
        if int(match[1]) < 1 or (high is not None and high < int(match[1])):
            raise UsageError(
                f"--ways {text!r} is no range A-B of at least 1 class",
                hint="For example --ways 2-all (2 up to every usable class) or --ways 2-5.",
            )
        return cls(int(match[1]), high)

    def bounds(self, usable: int) -> tuple[int, int]:
        """Both ends for a task with ``usable`` classes."""
        return self.low, usable if self.high is None else self.high

    def __str__(self) -> str:
        return f"{self.low}-{ALL if self.high is None else self.high}"


@dataclass(frozen=True)
class Shots:
    """Support images per class: one number, or a range each episode draws from."""

    low: int
    high: int

    @classmethod
    def parse(cls, text: str | int) -> Shots:
        """``"5"`` or ``"1-10"`` (both ends included)."""
        match = _SHOTS.fullmatch(str(text).strip())
        if match is None or int(match[2] or match[1]) < int(match[1]):
            raise UsageError(
                f"--shots {text!r} is neither a number nor a range A-B",
                hint="For example --shots 5, or --shots 1-10 for a number drawn per episode.",
            )
        low, high = match[1], match[2]
        return cls(int(low), int(high or low))

    def draw(self, rng: random.Random) -> int:
        """This episode's shots (a fixed number draws nothing: seeded draws stay as they were)."""
        return self.low if self.low == self.high else rng.randint(self.low, self.high)

    def __str__(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"


@dataclass(frozen=True)
class ClassCount:
    """How many images of a class (positives and negatives of a label) a split has."""

    key: int
    images: int
    negatives: int | None = None  # multi-label tasks only

    def enough(self, needed: int) -> bool:
        """Whether the class (both sides of a label) has at least ``needed`` images."""
        return self.images >= needed and (self.negatives is None or self.negatives >= needed)

    def to_json(self, name: str) -> dict[str, Any]:
        """A JSON-ready mapping with the class's name."""
        if self.negatives is None:
            return {"key": self.key, "name": name, "images": self.images}
        return {
            "key": self.key,
            "name": name,
            "positives": self.images,
            "negatives": self.negatives,
        }


def _single_part(selection: Selection) -> tuple[str, npt.NDArray[np.int64], npt.NDArray[Any]]:
    if selection.multilabel:
        task = selection.task
        single = [t.name for t in selection.dataset.tasks if t.target is not TaskTarget.MULTILABEL]
        raise UsageError(
            f"task {task.name!r} of {selection.dataset.id} is multi-label; per-class "
            "subsets need one label per image",
            hint=("Choose a single-label task: " + ", ".join(repr(n) for n in single) + ".")
            if single
            else "Sample episodes instead (without --per-class): they cover every label.",
        )
    return _one_split(selection)


def _one_split(selection: Selection) -> tuple[str, npt.NDArray[np.int64], npt.NDArray[Any]]:
    if len(selection.parts) != 1:
        raise UsageError("sampling works on one split at a time", hint="Give one --split.")
    part = selection.parts[0]
    return part.split, part.indices, part.labels


def class_members(selection: Selection) -> dict[int, list[int]]:
    """Upstream indices of each selected class, ascending."""
    _, indices, labels = _single_part(selection)
    return {key: indices[labels == key].tolist() for key in selection.classes}


def class_counts(selection: Selection) -> list[ClassCount]:
    """Images of every selected class in the split (positives and negatives per label)."""
    _, indices, labels = _one_split(selection)
    if selection.multilabel:
        positives = labels.sum(axis=0) if len(labels) else np.zeros(len(selection.classes))
        return [
            ClassCount(key, int(n), len(indices) - int(n))
            for key, n in zip(selection.classes, positives, strict=True)
        ]
    keys, numbers = np.unique(labels, return_counts=True)
    found = dict(zip(keys.tolist(), numbers.tolist(), strict=True))
    return [ClassCount(key, int(found.get(key, 0))) for key in selection.classes]


def _check_shape(ways: int | WayRange | None, shots: Shots, queries: int, episodes: int) -> None:
    fewest = ways.low if isinstance(ways, WayRange) else ways or 1
    if min(fewest, shots.low, episodes) < 1 or queries < 0:
        raise UsageError(
            "--ways, --shots and --episodes must be at least 1, --queries at least 0",
            hint="For example --ways 5 --shots 5 --queries 15.",
        )


def _short_list(selection: Selection, counts: list[ClassCount], needed: int) -> str:
    labels = selection.task.labels
    return ", ".join(
        f"{labels[c.key]} ({c.images}"
        + ("" if c.negatives is None else f" positives, {c.negatives} negatives")
        + ")"
        for c in counts
        if not c.enough(needed)
    )


def usable_classes(
    selection: Selection, *, needed: int, min_class_images: int = 0
) -> tuple[list[int], list[ClassCount]]:
    """Label keys of the classes an episode may use, and the classes left out because they
    have fewer than ``min_class_images`` images (binary and multi-label: positives and
    negatives). Classes short of the ``needed`` images are not usable either."""
    counts = class_counts(selection)
    left_out = [c for c in counts if not c.enough(min_class_images)]
    usable = [c.key for c in counts if c.enough(max(needed, min_class_images))]
    return usable, left_out


def sample_episodes(
    selection: Selection,
    *,
    ways: int | WayRange | None,
    shots: int | Shots,
    queries: int,
    episodes: int,
    seed: int,
    min_class_images: int = 0,
) -> list[Episode]:
    """``episodes`` episodes of ``ways`` classes (``None``: every usable class; a
    :class:`WayRange`: a number drawn per episode, then that many classes), support and
    query disjoint, drawn among the classes with enough images.

    Multi-class and ordinal tasks: ``shots`` support and ``queries`` query images per class.
    Binary tasks: both classes, so K positives and K negatives. Multi-label tasks: the
    smallest support set built greedily with at least K positives and K negatives of every
    label of the episode; the query set likewise with Q, from the images left.
    """
    shots = shots if isinstance(shots, Shots) else Shots(shots, shots)
    _check_shape(ways, shots, queries, episodes)
    binary = selection.task.target is TaskTarget.BINARY
    if binary and isinstance(ways, WayRange):
        ways = None  # upstream draws no number of ways for binary tasks: both classes
    if binary and ways not in (None, 2):
        raise UsageError(
            f"--ways is {ways}, but {selection.task.name!r} is a binary task: its episodes "
            "hold K positives and K negatives",
            hint="Leave out --ways (or give --ways all or 2).",
        )
    _one_split(selection)
    split = selection.parts[0].split
    needed = shots.high + queries
    usable, _ = usable_classes(selection, needed=needed, min_class_images=min_class_images)
    counts = class_counts(selection)
    if isinstance(ways, WayRange):
        return _ranged(selection, usable, ways, shots, queries, episodes, seed)
    if ways is not None and len(counts) < ways:  # no class is short: not that many classes
        raise UsageError(
            f"--ways is {ways}, but {selection.task.name!r} has only {len(counts)} "
            f"selected classes in {split}",
            hint=f"Lower --ways to at most {len(counts)}, or select more classes.",
        )
    wanted = len(counts) if binary else 2 if ways is None else ways
    if len(usable) < wanted:
        threshold = max(needed, min_class_images)
        what = (
            f"the {needed} images ({shots} shots + {queries} queries) an episode needs"
            if threshold == needed
            else f"the {threshold} images --min-class-images asks for"
        )
        raise UsageError(
            f"only {len(usable)} classes of {selection.task.name!r} in {split} have {what}, "
            f"and {'a binary task needs both' if binary else f'--ways is {ways or ALL}'}; "
            f"too small: {_short_list(selection, counts, threshold)}",
            hint="Lower --ways, --shots, --queries or --min-class-images, or choose a larger "
            "split.",
        )
    return _draw(selection, usable, None if binary else ways, shots, queries, episodes, seed)


def _ranged(
    selection: Selection,
    usable: list[int],
    ways: WayRange,
    shots: Shots,
    queries: int,
    episodes: int,
    seed: int,
) -> list[Episode]:
    """Episodes of a number of classes drawn per episode: never fewer usable classes than
    the range's upper end (nothing is silently shrunk)."""
    low, high = ways.bounds(len(usable))
    if len(usable) < max(high, 2) or high < low:
        split = selection.parts[0].split
        raise UsageError(
            f"--ways is {ways}, but only {len(usable)} classes of {selection.task.name!r} in "
            f"{split} have the {shots.high + queries} images an episode needs "
            "(or the images --min-class-images asks for)",
            hint="Lower the range, --shots, --queries or --min-class-images.",
        )
    return _draw(selection, usable, ways, shots, queries, episodes, seed)


def _draw(
    selection: Selection,
    usable: list[int],
    ways: int | WayRange | None,
    shots: Shots,
    queries: int,
    episodes: int,
    seed: int,
) -> list[Episode]:
    rng = random.Random(seed)
    if selection.multilabel:
        return _multilabel_episodes(selection, usable, ways, shots, queries, episodes, rng)
    members = class_members(selection)
    result = []
    for number in range(episodes):
        k = shots.draw(rng)
        # Every usable class keeps its key order, so targets mean the same in each episode.
        chosen = _classes(usable, ways, rng)
        support: list[Item] = []
        query: list[Item] = []
        for key in chosen:
            picks = rng.sample(members[key], k + queries)
            support += [(index, key) for index in picks[:k]]
            query += [(index, key) for index in picks[k:]]
        result.append(Episode(number, tuple(chosen), tuple(support), tuple(query), k))
    return result


def _classes(usable: list[int], ways: int | WayRange | None, rng: random.Random) -> list[int]:
    """An episode's classes: every usable one in key order, ``ways`` drawn, or a number
    drawn from a range, then that many classes (in the order drawn, as upstream)."""
    if ways is None:
        return list(usable)
    if isinstance(ways, WayRange):
        low, high = ways.bounds(len(usable))
        return rng.sample(usable, rng.randint(low, high))
    return rng.sample(usable, ways)


def _multilabel_episodes(
    selection: Selection,
    usable: list[int],
    ways: int | WayRange | None,
    shots: Shots,
    queries: int,
    episodes: int,
    rng: random.Random,
) -> list[Episode]:
    _, indices, rows = _one_split(selection)
    column = {key: n for n, key in enumerate(selection.classes)}
    patterns: dict[tuple[int, ...], LabelPatterns] = {}
    result = []
    for number in range(episodes):
        k = shots.draw(rng)
        chosen = _classes(usable, ways, rng)
        # The same labels give the same patterns: built once for a run of episodes.
        columns = tuple(column[key] for key in chosen)
        if columns not in patterns:
            patterns.clear()  # a drawn number of ways seldom repeats a set: keep one
            patterns[columns] = LabelPatterns(rows[:, list(columns)])
        grouped = patterns[columns]
        taken: dict[int, list[int]] = {}
        support = grouped.cover(k, taken, rng)
        query = grouped.cover(queries, taken, rng) if support is not None else None
        if support is None or query is None:
            raise UsageError(
                f"episode {number} of {selection.task.name!r}: the images of "
                f"{selection.parts[0].split} cannot hold {k} support and {queries} query "
                "positives and negatives of every label apart",
                hint="Lower --shots or --queries, raise --min-class-images, or lower --ways.",
            )

        def items(picks: list[int]) -> tuple[Item, ...]:
            return tuple((int(indices[p]), tuple(int(v) for v in rows[p])) for p in picks)

        result.append(Episode(number, tuple(chosen), items(support), items(query), k))
    return result


def sample_per_class(selection: Selection, *, per_class: int, seed: int) -> dict[int, list[int]]:
    """Up to ``per_class`` images of every selected class (all of them when fewer), sorted."""
    if per_class < 1:
        raise UsageError("--per-class must be at least 1", hint="For example --per-class 10.")
    rng = random.Random(seed)
    return {
        key: sorted(rng.sample(group, min(per_class, len(group))))
        for key, group in class_members(selection).items()
    }
