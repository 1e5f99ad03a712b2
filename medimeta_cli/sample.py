"""Few-shot episodes, stratified per-class subsets and contact sheets.

Sampling uses :class:`random.Random` seeded by the user: its generator and its
``sample`` algorithm are the same on every platform and Python version, so the
same seed gives the same episodes everywhere. Per-class image lists are sorted
by upstream index before sampling, so nothing depends on file order either.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from medimeta_cli.errors import UsageError
from medimeta_cli.reader import DatasetReader
from medimeta_cli.selection import Selection


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
        single = [t.name for t in selection.dataset.tasks if t.target.value != "multilabel"]
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
    if len(eligible) < ways:
        short = ", ".join(
            f"{selection.task.labels[key]} ({len(group)})"
            for key, group in members.items()
            if len(group) < needed
        )
        split = selection.parts[0].split
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


#: Contact sheet geometry, in pixels.
THUMB = 96
GAP = 4
LABEL_WIDTH = 220


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
    for row, (name, indices) in enumerate(rows):
        top = GAP + row * (THUMB + GAP)
        draw.text((GAP, top + THUMB // 2 - 6), name[:34], fill="black")
        if not indices:
            continue
        for column, pixels in enumerate(reader.read_images(indices)):
            thumb = Image.fromarray(pixels).convert("RGB").resize((THUMB, THUMB))
            sheet.paste(thumb, (LABEL_WIDTH + GAP + column * (THUMB + GAP), top))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")
