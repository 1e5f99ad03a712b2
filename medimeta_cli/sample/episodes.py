"""Few-shot episodes, stratified per-class subsets and contact sheets.

Sampling uses :class:`random.Random` seeded by the user: its generator and its
``sample`` algorithm are the same on every platform and Python version, so the
same seed gives the same episodes everywhere. Per-class image lists are sorted
by upstream index before sampling, so nothing depends on file order either.
"""

from __future__ import annotations

import random
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from medimeta_cli.catalog.datasets import TaskTarget
from medimeta_cli.dataset.reader import DatasetReader
from medimeta_cli.dataset.selection import Selection, SplitPart
from medimeta_cli.errors import UsageError

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


def _check_shape(ways: int | None, shots: Shots, queries: int, episodes: int) -> None:
    if min(ways or 1, shots.low, episodes) < 1 or queries < 0:
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
    ways: int | None,
    shots: int | Shots,
    queries: int,
    episodes: int,
    seed: int,
    min_class_images: int = 0,
) -> list[Episode]:
    """``episodes`` episodes of ``ways`` classes (``None``: every usable class), support and
    query disjoint, drawn among the classes with enough images.

    Multi-class and ordinal tasks: ``shots`` support and ``queries`` query images per class.
    Binary tasks: both classes, so K positives and K negatives. Multi-label tasks: the
    smallest support set built greedily with at least K positives and K negatives of every
    label of the episode; the query set likewise with Q, from the images left.
    """
    shots = shots if isinstance(shots, Shots) else Shots(shots, shots)
    _check_shape(ways, shots, queries, episodes)
    binary = selection.task.target is TaskTarget.BINARY
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
    rng = random.Random(seed)
    if selection.multilabel:
        return _multilabel_episodes(selection, usable, ways, shots, queries, episodes, rng)
    members = class_members(selection)
    result = []
    for number in range(episodes):
        k = shots.draw(rng)
        # Every usable class keeps its key order, so targets mean the same in each episode.
        chosen = list(usable) if ways is None or binary else rng.sample(usable, ways)
        support: list[Item] = []
        query: list[Item] = []
        for key in chosen:
            picks = rng.sample(members[key], k + queries)
            support += [(index, key) for index in picks[:k]]
            query += [(index, key) for index in picks[k:]]
        result.append(Episode(number, tuple(chosen), tuple(support), tuple(query), k))
    return result


def greedy_cover(
    rows: npt.NDArray[Any], free: npt.NDArray[np.bool_], count: int, rng: random.Random
) -> list[int] | None:
    """Row numbers of a small set of free rows holding at least ``count`` positives and
    ``count`` negatives of every column, built greedily: each step takes a row that meets
    the most unmet needs (ties drawn with ``rng``). ``None`` when the free rows cannot."""
    ones = rows.astype(np.int64)
    free = free.copy()
    need_pos = np.full(ones.shape[1], count, dtype=np.int64)
    need_neg = need_pos.copy()
    chosen: list[int] = []
    while (need_pos > 0).any() or (need_neg > 0).any():
        want_pos, want_neg = (need_pos > 0).astype(np.int64), (need_neg > 0).astype(np.int64)
        # Per row: unmet positives it holds plus unmet negatives it holds, in one product.
        gain = ones @ (want_pos - want_neg) + int(want_neg.sum())
        gain[~free] = -1
        best = int(gain.max()) if len(gain) else 0
        if best <= 0:
            return None
        candidates = np.flatnonzero(gain == best)
        pick = int(candidates[rng.randrange(len(candidates))])
        chosen.append(pick)
        free[pick] = False
        need_pos -= ones[pick]
        need_neg -= 1 - ones[pick]
    # An early pick may have become redundant: drop, latest first, what the rest covers.
    for pick in reversed(list(chosen)):
        rest = ones[[p for p in chosen if p != pick]]
        if (rest.sum(axis=0) >= count).all() and ((1 - rest).sum(axis=0) >= count).all():
            chosen.remove(pick)
    return sorted(chosen)


def _multilabel_episodes(
    selection: Selection,
    usable: list[int],
    ways: int | None,
    shots: Shots,
    queries: int,
    episodes: int,
    rng: random.Random,
) -> list[Episode]:
    _, indices, rows = _one_split(selection)
    column = {key: n for n, key in enumerate(selection.classes)}
    result = []
    for number in range(episodes):
        k = shots.draw(rng)
        chosen = list(usable) if ways is None else rng.sample(usable, ways)
        used = rows[:, [column[key] for key in chosen]]
        free = np.ones(len(indices), dtype=bool)
        support = greedy_cover(used, free, k, rng)
        if support is not None:
            free[support] = False
        query = greedy_cover(used, free, queries, rng) if support is not None else None
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


#: Columns of :meth:`SampleResult.rows`, as the CSV output names them.
#: Multi-label rows list every positive label's key and name, joined by ``;``.
ROW_COLUMNS = ("episode", "set", "class_key", "class_name", "index", "position", "target")
Row = tuple[str, ...]


@dataclass(frozen=True)
class SampleResult(ABC):
    """What was sampled from one split of a selection; renders itself as JSON or rows."""

    selection: Selection
    seed: int

    def header(self) -> dict[str, Any]:
        """The fields every sample document starts with."""
        return {
            "dataset": self.selection.dataset.id,
            "task": self.selection.task.name,
            "split": self.selection.parts[0].split,
            "original_split": self.selection.spec.original,
            "seed": self.seed,
        }

    def position(self, index: int) -> int:
        """The official loader's number for image ``index``: its rank among the split's
        sorted indices (``MedIMeta`` sorts a split before numbering it)."""
        return self.positions_of([index])[index]

    def positions_of(self, indices: list[int]) -> dict[int, int]:
        """:meth:`position` of many images at once (one NumPy lookup, not one per image)."""
        part = self.selection.parts[0]
        at = np.searchsorted(part.indices, np.asarray(indices, dtype=np.int64))
        found = at if part.positions is None else part.positions[at]
        return dict(zip(indices, found.tolist(), strict=True))

    @abstractmethod
    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""

    @abstractmethod
    def rows(self) -> list[Row]:
        """One row per chosen image, with the columns :data:`ROW_COLUMNS`."""

    @abstractmethod
    def picked(self) -> dict[int, list[int]]:
        """The images a contact sheet or an export of the sample shows, per label key."""

    def sheet_rows(self) -> list[tuple[str, list[int]]]:
        """Rows for :func:`contact_sheet`: ``"<key>: <class name>"`` and its picked images.

        The key comes first: several label names of a task may begin alike (dr_regular's
        "Can identify Level 3 vascular arch and ...").
        """
        labels = self.selection.task.labels
        return [(f"{key}: {labels[key]}", indices) for key, indices in self.picked().items()]

    def picked_selection(self) -> Selection:
        """The picked images as a selection of their own (to export them)."""
        pairs = sorted((index, key) for key, indices in self.picked().items() for index in indices)
        part = SplitPart(
            self.selection.parts[0].split,
            np.array([i for i, _ in pairs], dtype=np.int64),
            np.array([k for _, k in pairs], dtype=np.int64),
        )
        return replace(self.selection, parts=(part,))


@dataclass(frozen=True)
class EpisodeSample(SampleResult):
    """Few-shot episodes with their query images, and the classes they leave out."""

    ways: int | None  # None: every usable class
    shots: Shots
    queries: int
    episodes: tuple[Episode, ...]
    min_class_images: int = 0
    left_out: tuple[ClassCount, ...] = ()

    @classmethod
    def draw(
        cls,
        selection: Selection,
        *,
        ways: int | None,
        shots: int | Shots,
        queries: int,
        episodes: int,
        seed: int,
        min_class_images: int = 0,
    ) -> EpisodeSample:
        """Sample episodes (see :func:`sample_episodes`)."""
        shots = shots if isinstance(shots, Shots) else Shots(shots, shots)
        drawn = sample_episodes(
            selection,
            ways=ways,
            shots=shots,
            queries=queries,
            episodes=episodes,
            seed=seed,
            min_class_images=min_class_images,
        )
        _, left_out = usable_classes(
            selection, needed=shots.high + queries, min_class_images=min_class_images
        )
        return cls(
            selection, seed, ways, shots, queries, tuple(drawn), min_class_images, tuple(left_out)
        )

    def targets(self, episode: Episode) -> Callable[[Any], Any]:
        """A label's class within ``episode``: 0..N-1, or the 0/1 row over its labels."""
        if self.selection.multilabel:
            columns = [self.selection.classes.index(key) for key in episode.classes]
            return lambda row: [row[c] for c in columns]
        order = {key: n for n, key in enumerate(episode.classes)}
        return lambda key: order[key]

    def _positions(self, episode: Episode) -> dict[int, int]:
        return self.positions_of([i for i, _ in episode.support + episode.query])

    def used_classes(self) -> list[int]:
        """Label keys of every class some episode uses, ascending."""
        return sorted({key for episode in self.episodes for key in episode.classes})

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping: the header, the shape, label names and every episode."""
        labels = self.selection.task.labels
        counts = {c.key: c for c in class_counts(self.selection)}
        used = self.used_classes()
        return {
            **self.header(),
            "task_type": self.selection.task.target.value,
            "ways": len(used) if self.ways is None else self.ways,
            "shots": self.shots.low if self.shots.low == self.shots.high else str(self.shots),
            "queries": self.queries,
            "labels": {str(k): n for k, n in labels.items()},
            "min_class_images": self.min_class_images,
            "classes": [counts[key].to_json(labels[key]) for key in used],
            "left_out": [c.to_json(labels[c.key]) for c in self.left_out],
            "episodes": [
                e.to_json(self._positions(e).__getitem__, self.targets(e)) for e in self.episodes
            ],
        }

    def rows(self) -> list[Row]:
        """One row per support and query image of every episode."""
        labels = self.selection.task.labels
        rows: list[Row] = []
        for e in self.episodes:
            target, position = self.targets(e), self._positions(e)
            for role, items in (("support", e.support), ("query", e.query)):
                for i, label in items:
                    keys = self._keys(label)
                    rows.append(
                        (
                            str(e.number),
                            role,
                            ";".join(str(k) for k in keys),
                            ";".join(labels[k] for k in keys),
                            str(i),
                            str(position[i]),
                            _cell(target(label)),
                        )
                    )
        return rows

    def _keys(self, label: Any) -> list[int]:
        if isinstance(label, tuple):
            return [k for k, v in zip(self.selection.classes, label, strict=True) if v]
        return [int(label)]

    def picked(self) -> dict[int, list[int]]:
        """The support images of the first episode (multi-label: per label, its positives)."""
        first = self.episodes[0]
        return {
            key: [i for i, label in first.support if key in self._keys(label)]
            for key in first.classes
        }

    def picked_selection(self) -> Selection:
        """The support images of the first episode as a selection of their own."""
        part = self.selection.parts[0]
        indices = np.array(sorted({i for i, _ in self.episodes[0].support}), dtype=np.int64)
        rows = np.searchsorted(part.indices, indices)
        return replace(self.selection, parts=(SplitPart(part.split, indices, part.labels[rows]),))


def _cell(target: Any) -> str:
    return " ".join(str(v) for v in target) if isinstance(target, list) else str(target)


@dataclass(frozen=True)
class ClassSubset(SampleResult):
    """Up to ``per_class`` images of every selected class."""

    per_class: int
    chosen: dict[int, list[int]]

    @classmethod
    def draw(cls, selection: Selection, *, per_class: int, seed: int) -> ClassSubset:
        """Sample the subset (see :func:`sample_per_class`)."""
        return cls(
            selection, seed, per_class, sample_per_class(selection, per_class=per_class, seed=seed)
        )

    def short_classes(self) -> list[tuple[str, int]]:
        """Name and image count of the classes that have fewer than ``per_class`` images."""
        labels = self.selection.task.labels
        return [
            (labels[key], len(indices))
            for key, indices in self.chosen.items()
            if len(indices) < self.per_class
        ]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping: the header and the chosen images of every class."""
        labels = self.selection.task.labels
        return {
            **self.header(),
            "per_class": self.per_class,
            "classes": [
                {"key": key, "name": labels[key], "indices": indices}
                for key, indices in self.chosen.items()
            ],
        }

    def rows(self) -> list[Row]:
        """One row per chosen image (episode 0, set ``subset``)."""
        labels = self.selection.task.labels
        positions = self.positions_of([i for v in self.chosen.values() for i in v])
        return [
            ("0", "subset", str(k), labels[k], str(i), str(positions[i]), str(target))
            for target, (k, indices) in enumerate(self.chosen.items())
            for i in indices
        ]

    def picked(self) -> dict[int, list[int]]:
        """Every chosen image."""
        return dict(self.chosen)


#: Contact sheet geometry, in pixels.
THUMB = 96
GAP = 4
LABEL_WIDTH = 220
#: Lines of label text beside a row of thumbnails (they fit the row's height).
LABEL_LINES = 6
ELLIPSIS = "..."


def label_lines(text: str, fits: Callable[[str], bool], max_lines: int = LABEL_LINES) -> list[str]:
    """``text`` wrapped into lines that each ``fits``; at most ``max_lines`` of them.

    Words are kept whole where they fit a line and cut where one alone does not. When
    the text needs more lines, the middle gives way (a line ``...``): the beginning
    (the key and the first words) and the end (often what tells similar names apart,
    e.g. "and most lesions" against "and all lesions", or an abbreviation) stay.
    """
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and fits(candidate):
            lines[-1] = candidate
            continue
        while len(word) > 1 and not fits(word):
            cut = len(word) - 1
            while cut > 1 and not fits(word[:cut]):
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    if len(lines) > max_lines:
        lines = [*lines[: max(0, max_lines - 2)], ELLIPSIS, lines[-1]][-max_lines:]
    return lines


def sheet_size(rows: int, columns: int) -> tuple[int, int]:
    """Width and height of a contact sheet with ``rows`` classes of ``columns`` images."""
    return (
        LABEL_WIDTH + columns * (THUMB + GAP) + GAP,
        max(1, rows) * (THUMB + GAP) + GAP,
    )


def contact_sheet(reader: DatasetReader, rows: list[tuple[str, list[int]]], path: Path) -> None:
    """Write a PNG with one row per class: its name, then its images as thumbnails."""
    from PIL import Image, ImageDraw

    columns = max((len(indices) for _, indices in rows), default=0)
    sheet = Image.new("RGB", sheet_size(len(rows), columns), "white")
    draw = ImageDraw.Draw(sheet)

    def fits(line: str) -> bool:
        return draw.textlength(line) <= LABEL_WIDTH - GAP

    for row, (name, indices) in enumerate(rows):
        top = GAP + row * (THUMB + GAP)
        text = "\n".join(label_lines(name, fits))
        box = draw.multiline_textbbox((0, 0), text, spacing=2)
        middle = top + max(0, (THUMB - (box[3] - box[1])) // 2) - box[1]
        draw.multiline_text((GAP, middle), text, fill="black", spacing=2)
        if not indices:
            continue
        for column, pixels in enumerate(reader.read_images(indices)):
            thumb = Image.fromarray(pixels).convert("RGB").resize((THUMB, THUMB))
            sheet.paste(thumb, (LABEL_WIDTH + GAP + column * (THUMB + GAP), top))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")
