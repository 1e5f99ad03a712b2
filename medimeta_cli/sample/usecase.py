"""The sampling use case, shared by ``medimeta sample`` and :func:`medimeta_cli.api.sample`.

Both go through the same steps: :func:`draw_sample` selects the task's split of an open
dataset and draws the episodes (:class:`SampleRequest` holds what was asked, as given);
:func:`write_sample` writes the episode file, :func:`export_episodes` every episode's
images. Between them the caller says what it wants to say (notices, left-out classes).

An episode export is one export of the export package, committed once::

    <out>/episodes.json                         the episode file, as --out writes it
    <out>/episode-000/support/<NN>_<class>/<id>_<index>.png   single-label tasks
    <out>/episode-000/query/<NN>_<class>/...
    <out>/episode-000/support/<id>_<index>.png  multi-label tasks, with their 0/1
    <out>/episode-000/support/metadata.csv      targets over the episode's labels
    <out>/episode-000/classes.json              the episode's classes, index = target
    <out>/provenance.json                       written last

``NN`` is the class's target within its episode (the ``target`` of the episode file),
so class folders sort in target order. An image used in several episodes is written
once per episode, and never twice in one episode (support and query are disjoint).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from medimeta_cli.catalog.datasets import Catalog, TaskTarget
from medimeta_cli.dataset.gate import DatasetFolder
from medimeta_cli.dataset.installed import open_installed
from medimeta_cli.dataset.reader import DatasetReader
from medimeta_cli.dataset.selection import Selection, SelectionSpec, SplitPart, select
from medimeta_cli.errors import UsageError
from medimeta_cli.export.options import ExportOptions, ExportResult
from medimeta_cli.export.run import export_pieces
from medimeta_cli.sample.episodes import ALL, Episode, Shots, WayRange
from medimeta_cli.sample.files import EpisodeFormat, data_identity, episodes_json
from medimeta_cli.sample.formats import CheckOptions, ReadFile, read_for_check, write_episode_file
from medimeta_cli.sample.results import EpisodeSample
from medimeta_cli.settings import Settings
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.records import read_install_record
from medimeta_cli.store.status import locate, root_of

__all__ = [
    "EPISODE_FILE",
    "SampleRequest",
    "check_file",
    "draw_episodes",
    "draw_sample",
    "episode_pieces",
    "export_episodes",
    "identity_in",
    "parse_ways",
    "select_split",
    "write_sample",
]

#: The episode file's name in an episode export.
EPISODE_FILE = "episodes.json"


@dataclass(frozen=True)
class SampleRequest:
    """What the caller asked to sample, as given (task may be None or abbreviated; ways a
    number, ``"all"`` or None for the task type's default; shots a number or ``"A-B"``)."""

    task: str | None = None
    split: str = "train"
    original: bool = False
    classes: tuple[str, ...] | None = None
    ways: int | str | None = None
    shots: int | str = 5
    queries: int = 15
    episodes: int = 1
    seed: int = 0
    min_class_images: int = 0


def parse_ways(value: int | str | None, selection: Selection) -> int | WayRange | None:
    """``--ways``: a number, a range ``A-B`` or ``A-all`` drawn per episode, or None for
    every usable class (``all``, and the default of binary and multi-label tasks, whose
    episodes cover both sides of every label; 5 for the others)."""
    if value is None:
        return None if selection.task.target in (TaskTarget.BINARY, TaskTarget.MULTILABEL) else 5
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lower() == ALL:
        return None
    if (drawn := WayRange.parse(text)) is not None:
        return drawn
    if not text.isdigit():
        raise UsageError(
            f"--ways {value!r} is neither a number, 'all' nor a range A-B",
            hint="For example --ways 5, or --ways 2-all for a number drawn per episode.",
        )
    return int(text)


def select_split(reader: DatasetReader, request: SampleRequest) -> Selection:
    """The request's task and split of the open dataset (its classes, if it names some)."""
    return select(
        reader,
        SelectionSpec(
            task=request.task,
            splits=(request.split,),
            original=request.original,
            classes=request.classes,
            seed=request.seed,
        ),
    )


def draw_episodes(selection: Selection, request: SampleRequest) -> EpisodeSample:
    """The request's episodes from a selected split (:func:`select_split`)."""
    return EpisodeSample.draw(
        selection,
        ways=parse_ways(request.ways, selection),
        shots=Shots.parse(request.shots),
        queries=request.queries,
        episodes=request.episodes,
        seed=request.seed,
        min_class_images=request.min_class_images,
    )


def draw_sample(reader: DatasetReader, request: SampleRequest) -> EpisodeSample:
    """Select the request's split of the open dataset and draw its episodes."""
    return draw_episodes(select_split(reader, request), request)


def identity_in(root: Path, dataset_id: str) -> dict[str, Any] | None:
    """The data's identity (:func:`data_identity`) from the install record in ``root``."""
    return data_identity(read_install_record(RootLayout(root), dataset_id))


def write_sample(
    root: Path,
    data: DatasetFolder,
    sample: EpisodeSample,
    out: Path,
    file_format: EpisodeFormat = EpisodeFormat.JSON,
) -> Path:
    """Write the sample's episode file under ``out`` (named as upstream names it), with the
    identity of the data in ``root`` (the dataset folder ``data``) it was drawn from;
    returns its path."""
    identity = identity_in(root, sample.selection.dataset.id)
    return write_episode_file(out, sample, identity, data, file_format)


def check_file(
    settings: Settings,
    catalog: Catalog,
    path: Path,
    options: CheckOptions | None = None,
    *,
    on_note: Callable[[str], None] | None = None,
) -> ReadFile:
    """``sample --check``: read an episode file (any format with a reader, known by its
    suffix) and compare it with the installed data it names, read through the gate, and
    with that data's identity. Returns what was read when it matches; raises
    :class:`~medimeta_cli.errors.IntegrityError` naming the differences otherwise.
    ``on_note`` hears, before the check, what the format cannot record."""
    read = read_for_check(path, options or CheckOptions())
    for note in read.notes:
        if on_note is not None:
            on_note(note)
    installed = open_installed(catalog, settings.root, settings.shared_roots, read.dataset)
    data = installed.folder()
    where = root_of(locate(settings.root, settings.shared_roots, data.dataset.id))
    identity = None if where is None else identity_in(where, data.dataset.id)
    read.check(data, identity)
    return read


def _episode_part(
    sample: EpisodeSample, episode: Episode, role: str, items: Iterable[tuple[int, Any]]
) -> SplitPart:
    target = sample.targets(episode)
    pairs = sorted(items, key=lambda item: item[0])
    labels = [target(label) if sample.selection.multilabel else label for _, label in pairs]
    shape = (len(pairs), len(episode.classes)) if sample.selection.multilabel else (len(pairs),)
    return SplitPart(
        role,
        np.array([index for index, _ in pairs], dtype=np.int64),
        np.array(labels, dtype=np.int64).reshape(shape),
    )


def episode_pieces(sample: EpisodeSample) -> list[tuple[str, Selection]]:
    """Every episode as a selection of its own, named ``episode-NNN``: its classes in the
    episode's order (a class's index is its target), parts ``support`` and ``query``
    (multi-label: rows over the episode's labels)."""
    width = max(3, len(str(len(sample.episodes) - 1)))
    return [
        (
            f"episode-{episode.number:0{width}d}",
            replace(
                sample.selection,
                classes=episode.classes,
                parts=(
                    _episode_part(sample, episode, "support", episode.support),
                    _episode_part(sample, episode, "query", episode.query),
                ),
            ),
        )
        for episode in sample.episodes
    ]


def export_episodes(
    root: Path,
    sample: EpisodeSample,
    out: Path,
    options: ExportOptions,
    *,
    roots: Iterable[Path] = (),
) -> ExportResult:
    """Write every episode's support and query images (see the module's layout) and the
    episode file beside them into ``out``, in one commit: nothing is visible before all
    of it is written. ``root`` holds the dataset, ``roots`` are the other data roots that
    ``out`` must keep out of."""
    identity = identity_in(root, sample.selection.dataset.id)
    text = episodes_json(sample, identity)
    return export_pieces(
        root,
        sample.selection,
        episode_pieces(sample),
        out,
        options,
        files={EPISODE_FILE: text},
        roots=roots,
    )
