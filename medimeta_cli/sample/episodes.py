"""Few-shot episodes, stratified per-class subsets and contact sheets.

Sampling uses :class:`random.Random` seeded by the user: its generator and its
``sample`` algorithm are the same on every platform and Python version, so the
same seed gives the same episodes everywhere. Per-class image lists are sorted
by upstream index before sampling, so nothing depends on file order either.
"""

from __future__ import annotations

import random
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


@dataclass(frozen=True)
class Episode:
    """One N-way K-shot episode: its classes, support and query images (upstream indices)."""

    number: int
    classes: tuple[int, ...]
    support: tuple[tuple[int, int], ...]  # (index, label key)
    query: tuple[tuple[int, int], ...]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "episode": self.number,
            "classes": list(self.classes),
            "support": [{"index": i, "label": k} for i, k in self.support],
            "query": [{"index": i, "label": k} for i, k in self.query],
        }


def _single_part(selection: Selection) -> tuple[str, npt.NDArray[np.int64], npt.NDArray[Any]]:
    if selection.multilabel:
        task = selection.task
        single = [t.name for t in selection.dataset.tasks if t.target is not TaskTarget.MULTILABEL]
        raise UsageError(
            f"task {task.name!r} of {selection.dataset.id} is multi-label; episodes and per-class "
            "subsets need one label per image",
            hint=("Choose a single-label task: " + ", ".join(repr(n) for n in single) + ".")
            if single
            else "Export the task instead (medimeta export) and sample per label yourself.",
        )
    if len(selection.parts) != 1:
        raise UsageError("sampling works on one split at a time", hint="Give one --split.")
    part = selection.parts[0]
    return part.split, part.indices, part.labels


def class_members(selection: Selection) -> dict[int, list[int]]:
    """Upstream indices of each selected class, ascending."""
    _, indices, labels = _single_part(selection)
    return {key: indices[labels == key].tolist() for key in selection.classes}


def sample_episodes(
    selection: Selection, *, ways: int, shots: int, queries: int, episodes: int, seed: int
) -> list[Episode]:
    """``episodes`` episodes of ``ways`` classes with ``shots`` support and ``queries`` query
    images each, support and query disjoint, classes drawn among those with enough images."""
    if min(ways, shots, episodes) < 1 or queries < 0:
        raise UsageError(
            "--ways, --shots and --episodes must be at least 1, --queries at least 0",
            hint="For example --ways 5 --shots 5 --queries 15.",
        )
    members = class_members(selection)
    needed = shots + queries
    eligible = [key for key, group in members.items() if len(group) >= needed]
    split = selection.parts[0].split
    if len(members) < ways:  # no class is short: there are not that many classes
        raise UsageError(
            f"--ways is {ways}, but {selection.task.name!r} has only {len(members)} "
            f"selected classes in {split}",
            hint=f"Lower --ways to at most {len(members)}, or select more classes.",
        )
    if len(eligible) < ways:
        short = ", ".join(
            f"{selection.task.labels[key]} ({len(group)})"
            for key, group in members.items()
            if len(group) < needed
        )
        raise UsageError(
            f"only {len(eligible)} classes of {selection.task.name!r} in {split} have the "
            f"{needed} images ({shots} shots + {queries} queries) an episode needs, "
            f"and --ways is {ways}; too small: {short}",
            hint="Lower --ways, --shots or --queries, or choose a larger split.",
        )
    rng = random.Random(seed)
    result = []
    for number in range(episodes):
        chosen = rng.sample(eligible, ways)
        support: list[tuple[int, int]] = []
        query: list[tuple[int, int]] = []
        for key in chosen:
            picks = rng.sample(members[key], needed)
            support += [(index, key) for index in picks[:shots]]
            query += [(index, key) for index in picks[shots:]]
        result.append(Episode(number, tuple(chosen), tuple(support), tuple(query)))
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
ROW_COLUMNS = ("episode", "set", "class_key", "class_name", "index")
Row = tuple[str, str, str, str, str]


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
    """N-way K-shot episodes with their query images."""

    ways: int
    shots: int
    queries: int
    episodes: tuple[Episode, ...]

    @classmethod
    def draw(
        cls, selection: Selection, *, ways: int, shots: int, queries: int, episodes: int, seed: int
    ) -> EpisodeSample:
        """Sample episodes (see :func:`sample_episodes`)."""
        drawn = sample_episodes(
            selection, ways=ways, shots=shots, queries=queries, episodes=episodes, seed=seed
        )
        return cls(selection, seed, ways, shots, queries, tuple(drawn))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping: the header, the shape, label names and every episode."""
        return {
            **self.header(),
            "ways": self.ways,
            "shots": self.shots,
            "queries": self.queries,
            "labels": {str(k): n for k, n in self.selection.task.labels.items()},
            "episodes": [episode.to_json() for episode in self.episodes],
        }

    def rows(self) -> list[Row]:
        """One row per support and query image of every episode."""
        labels = self.selection.task.labels
        return [
            (str(e.number), role, str(k), labels[k], str(i))
            for e in self.episodes
            for role, items in (("support", e.support), ("query", e.query))
            for i, k in items
        ]

    def picked(self) -> dict[int, list[int]]:
        """The support images of the first episode."""
        first = self.episodes[0]
        return {key: [i for i, k in first.support if k == key] for key in first.classes}


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
        return [
            ("0", "subset", str(k), labels[k], str(i))
            for k, indices in self.chosen.items()
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
