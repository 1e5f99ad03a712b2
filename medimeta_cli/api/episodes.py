"""Few-shot episodes: ``sample`` and its files (``write_episodes``, ``export_episodes``,
``load_episodes``, ``check_episodes``) and the paper's grid (``sample_protocol``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from medimeta_cli.errors import UsageError

if TYPE_CHECKING:
    from medimeta_cli.export.options import ExportResult
    from medimeta_cli.sample.files import EpisodeFile
    from medimeta_cli.sample.formats import ReadFile
    from medimeta_cli.sample.protocol import ProtocolResult, TaskOutcome
    from medimeta_cli.sample.results import EpisodeSample
    from medimeta_cli.settings import Settings

from medimeta_cli.api._arguments import (
    PathLike,
    _check,
    _count,
    _flag,
    _ids,
    _misuse,
    _root,
    _settings,
)

logger = logging.getLogger(__name__)


def sample_protocol(
    out: PathLike,
    ids: str | Iterable[str] | None = None,
    *,
    root: PathLike | None = None,
    protocol: str = "medimeta-paper",
    first_task: bool = False,
    split: str = "test",
    original_split: bool = False,
    min_class_images: int = 50,
    seed: int = 0,
    format: str = "json",
    on_task: Callable[[TaskOutcome], None] | None = None,
) -> ProtocolResult:
    """``medimeta sample --protocol``: a whole grid of episode files under ``out``, for the
    named installed datasets (default: every installed one), every task of each (or
    ``first_task``). A setting that cannot be met is skipped and reported in the result
    (``result.complete``, ``result.to_json()``), never shrunk; ``on_task`` receives each
    task's outcome as it finishes. The same seed writes the same bytes.
    """
    from medimeta_cli.sample.files import EpisodeFormat
    from medimeta_cli.sample.protocol import ProtocolRequest, run_protocol

    _check("out", out, (str, os.PathLike), "a path (str or os.PathLike)")
    _root(root)
    for name, text in (("protocol", protocol), ("split", split), ("format", format)):
        _check(name, text, (str,), "a str")
    _flag("first_task", first_task)
    _flag("original_split", original_split)
    _check("seed", seed, (int,), "a whole number")
    _check("min_class_images", min_class_images, (int,), "a whole number")
    if on_task is not None and not callable(on_task):
        raise _misuse("on_task", on_task, "a callable taking a task's outcome (or None)")
    try:
        file_format = EpisodeFormat(format)
    except ValueError:
        choices = ", ".join(repr(f.value) for f in EpisodeFormat)
        raise UsageError(f"unknown episode format {format!r}", hint=f"Use {choices}.") from None
    settings, catalog = _settings(root)
    request = ProtocolRequest(
        out=Path(out),
        protocol=protocol,
        dataset_ids=tuple(_ids(ids)),
        first_task=first_task,
        split=split,
        original=original_split,
        min_class_images=min_class_images,
        seed=seed,
        file_format=file_format,
    )
    return run_protocol(settings, catalog, request, on_task=on_task)


def _data_root(settings: Settings, dataset_id: str) -> Path:
    """The data root the installed dataset is read from (the data root, else a shared one)."""
    from medimeta_cli.errors import NotInstalledError
    from medimeta_cli.store.status import locate, root_of

    where = root_of(locate(settings.root, settings.shared_roots, dataset_id))
    if where is None:
        roots = ", ".join(str(r) for r in (settings.root, *settings.shared_roots))
        raise NotInstalledError(dataset_id, roots)
    return where


def sample(
    dataset_id: str,
    *,
    task: str | None = None,
    ways: int | str | None = None,
    shots: int | str = 5,
    queries: int = 15,
    episodes: int = 1,
    seed: int = 0,
    split: str = "train",
    original_split: bool = False,
    classes: Sequence[str] | None = None,
    min_class_images: int = 0,
    root: PathLike | None = None,
) -> EpisodeSample:
    """``medimeta sample``: few-shot episodes of an installed dataset's task, the same ones
    the command draws for the same arguments and seed.

    ``ways`` is a number, ``"all"`` (every usable class, the paper's setting) or None (5;
    binary and multi-label tasks: all); ``shots`` a number or a range ``"1-10"`` drawn per
    episode; ``min_class_images`` leaves out classes (labels: positives or negatives) with
    fewer images (``result.left_out``). Returns the
    :class:`~medimeta_cli.sample.results.EpisodeSample`: ``result.episodes`` (each with
    ``support`` and ``query`` as (index, label) pairs), ``result.to_json()`` (what the
    command prints: every image's ``index``, ``position``, ``label`` and ``target``).
    Too few images for the request raise :class:`UsageError` with a hint.
    """
    from medimeta_cli.dataset.installed import open_installed
    from medimeta_cli.dataset.reader import DatasetReader
    from medimeta_cli.sample.usecase import SampleRequest, draw_sample

    _check("dataset_id", dataset_id, (str,), "a dataset id (str)")
    _root(root)
    for name, text in (("task", task),):
        if text is not None:
            _check(name, text, (str,), "a str or None")
    _check("split", split, (str,), "'train', 'val' or 'test'")
    if ways is not None:
        _check("ways", ways, (int, str), "a whole number, 'all' or None")
    _check("shots", shots, (int, str), "a whole number or a range 'A-B'")
    _check("queries", queries, (int,), "a whole number")
    _count("episodes", episodes)
    _check("seed", seed, (int,), "a whole number")
    _check("min_class_images", min_class_images, (int,), "a whole number")
    _flag("original_split", original_split)
    chosen_classes = None if classes is None else tuple(_ids(classes, "classes"))
    settings, catalog = _settings(root)
    installed = open_installed(catalog, settings.root, settings.shared_roots, dataset_id)
    request = SampleRequest(
        task=task,
        split=split,
        original=original_split,
        classes=chosen_classes,
        ways=ways,
        shots=shots,
        queries=queries,
        episodes=episodes,
        seed=seed,
        min_class_images=min_class_images,
    )
    with DatasetReader(installed.folder()) as reader:
        return draw_sample(reader, request)


def _sample_arg(drawn: object) -> None:
    from medimeta_cli.sample.results import EpisodeSample

    if not isinstance(drawn, EpisodeSample):
        raise _misuse("sample", drawn, "what api.sample() returns")


def write_episodes(
    drawn: EpisodeSample, out: PathLike, *, format: str = "json", root: PathLike | None = None
) -> Path:
    """``sample --out``: write the episodes to one file under ``out``, named as the official
    pipeline names its files (``<id>/<task>_<shots>_<queries>_<episodes>_<split>.json``),
    with the data's identity from its install record; returns the file's path.
    ``format`` is ``"json"`` (the default, which :func:`load_episodes` reads), ``"csv"`` or
    ``"torchcross"`` (the pickled task list ``medimeta.PickledMedIMetaTaskDataset`` loads,
    named as it opens it).
    """
    from medimeta_cli.dataset.installed import open_installed
    from medimeta_cli.sample.files import EpisodeFormat
    from medimeta_cli.sample.usecase import write_sample

    _sample_arg(drawn)
    _check("out", out, (str, os.PathLike), "a path (str or os.PathLike)")
    _check("format", format, (str,), "'json', 'csv' or 'torchcross'")
    _root(root)
    try:
        file_format = EpisodeFormat(format)
    except ValueError:
        choices = ", ".join(repr(f.value) for f in EpisodeFormat)
        raise UsageError(f"unknown episode format {format!r}", hint=f"Use {choices}.") from None
    settings, catalog = _settings(root)
    dataset_id = drawn.selection.dataset.id
    where = _data_root(settings, dataset_id)
    data = open_installed(catalog, settings.root, settings.shared_roots, dataset_id).folder()
    return write_sample(where, data, drawn, Path(out), file_format)


def export_episodes(
    drawn: EpisodeSample,
    out: PathLike,
    *,
    image_format: str = "png",
    color: str | None = None,
    overwrite: bool = False,
    root: PathLike | None = None,
) -> ExportResult:
    """``sample --export``: every episode's support and query images as class folders
    (``out/episode-000/support/<NN>_<class>/<id>_<index>.png``; multi-label: the images of
    each set with a ``metadata.csv`` of their targets) and the JSON episode file beside
    them (``out/episodes.json``), written in one commit: nothing is visible in ``out``
    before all of it is written. Returns the :class:`~medimeta_cli.export.ExportResult`.
    """
    from medimeta_cli.export import ExportOptions
    from medimeta_cli.sample.usecase import export_episodes as export_all

    _sample_arg(drawn)
    _check("out", out, (str, os.PathLike), "a path (str or os.PathLike)")
    _check("image_format", image_format, (str,), "a str")
    if color is not None:
        _check("color", color, (str,), "a str or None")
    _flag("overwrite", overwrite)
    _root(root)
    settings, _ = _settings(root)
    dataset_id = drawn.selection.dataset.id
    options = ExportOptions(
        image_format=image_format,  # type: ignore[arg-type]  # validated by ExportOptions
        color=color,  # type: ignore[arg-type]
        overwrite=overwrite,
        command=f"medimeta_cli.api.export_episodes({dataset_id!r})",
    )
    return export_all(
        _data_root(settings, dataset_id),
        drawn,
        Path(out).absolute(),
        options,
        roots=(settings.root, *settings.shared_roots),
    )


def load_episodes(path: PathLike) -> EpisodeFile:
    """A JSON episode file (``sample --out``, :func:`write_episodes`) parsed: its dataset,
    task, split, the data's identity and every image (episode, ``role`` support or query,
    ``index``, ``position``, ``label``). A malformed file raises :class:`IntegrityError`.
    For the whole document (targets, class names), read the file with :mod:`json`."""
    from medimeta_cli.sample.files import read_episode_file

    _check("path", path, (str, os.PathLike), "a path (str or os.PathLike)")
    return read_episode_file(Path(path))


def check_episodes(
    path: PathLike,
    *,
    task: str | None = None,
    split: str | None = None,
    root: PathLike | None = None,
) -> ReadFile:
    """``sample --check``: compare an episode file (JSON, or a torchcross ``.pkl``, read
    without running anything in it) with the installed data: every index in range, every
    label the installed one, every position the official loader's, and for JSON files the
    data's identity the one the file recorded. ``task`` and ``split`` override what a
    torchcross file's name says. Returns what was read (``.dataset``, ``.images``,
    ``.notes``: what the format cannot record) when it matches; raises
    :class:`IntegrityError` naming the differences otherwise."""
    from medimeta_cli.sample.formats import CheckOptions
    from medimeta_cli.sample.usecase import check_file

    _check("path", path, (str, os.PathLike), "a path (str or os.PathLike)")
    for name, text in (("task", task), ("split", split)):
        if text is not None:
            _check(name, text, (str,), "a str or None")
    _root(root)
    settings, catalog = _settings(root)
    return check_file(settings, catalog, Path(path), CheckOptions(task=task, split=split))
