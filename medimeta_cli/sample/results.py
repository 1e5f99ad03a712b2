"""What a sample reports: episodes or per-class subsets as JSON and CSV rows, with each
image's index, position (the official loader's number), label and target."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from medimeta_cli.dataset.selection import Selection, SplitPart
from medimeta_cli.sample.episodes import (
    ClassCount,
    Episode,
    Shots,
    WayRange,
    class_counts,
    sample_episodes,
    sample_per_class,
    usable_classes,
)

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

    ways: int | WayRange | None  # None: every usable class; a range: drawn per episode
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
        ways: int | WayRange | None,
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
            # A range stays a range ("2-all"): each episode lists its own classes.
            "ways": len(used)
            if self.ways is None
            else str(self.ways)
            if isinstance(self.ways, WayRange)
            else self.ways,
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
