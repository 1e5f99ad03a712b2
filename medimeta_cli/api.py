"""The Python API: datasets for scripts and training jobs, as the command line gets them.

::

    from medimeta_cli import ensure
    from medimeta import MedIMeta  # the official loader

    folder = ensure("crc")["crc"]            # <root>/crc, installed and checked
    data = MedIMeta(folder.parent, "crc", "tissue class")

Settings resolve as for the command line: an argument given here (not None) wins, then
the ``MEDIMETA_*`` variable, then the default (:mod:`medimeta_cli.settings`). Nothing
is printed: results come back as the objects the commands render (``to_json()``),
errors are raised from :mod:`medimeta_cli.errors` with a ``hint``, and the engine logs
with :mod:`logging` under ``medimeta_cli`` (no handler is configured here).

Many processes may call :func:`ensure` at once (every rank of a ``torchrun`` or
``srun`` job): each dataset is fetched under its lock by one of them while the others
wait, then all return the same folder.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medimeta_cli.errors import IntegrityError, UsageError
from medimeta_cli.events import LoggedEvents

if TYPE_CHECKING:
    from medimeta_cli.catalog.datasets import Catalog, Dataset
    from medimeta_cli.dataset.layouts import ArchiveLayout
    from medimeta_cli.dataset.stats import DatasetStats
    from medimeta_cli.dataset.verify import Report
    from medimeta_cli.events import EventSink, Outcome
    from medimeta_cli.export.options import ExportResult
    from medimeta_cli.sample.files import EpisodeFile
    from medimeta_cli.sample.formats import ReadFile
    from medimeta_cli.sample.protocol import ProtocolResult, TaskOutcome
    from medimeta_cli.sample.results import EpisodeSample
    from medimeta_cli.settings import Settings

__all__ = [
    "check_episodes",
    "download",
    "ensure",
    "export",
    "export_episodes",
    "load_episodes",
    "sample",
    "sample_protocol",
    "sources_for",
    "stats",
    "verify",
    "write_episodes",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


def _settings(root: PathLike | None, **flags: Any) -> tuple[Settings, Catalog]:
    """The settings (flags given here win over the variables) and the catalog in use."""
    from medimeta_cli.catalog.file import load_catalog
    from medimeta_cli.settings import resolve_settings

    settings = resolve_settings({"root": root, **flags})
    return settings, load_catalog(settings.catalog)


def _misuse(name: str, value: object, wanted: str) -> UsageError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return UsageError(
        f"{name} must be {wanted}, not {type(value).__name__} {shown}",
        hint="See help(medimeta_cli.api) for the arguments each function takes.",
    )


def _check(name: str, value: object, kinds: tuple[type, ...], wanted: str) -> None:
    """Refuse an argument of the wrong type with a :class:`UsageError` (never a plain
    TypeError or AttributeError from deep inside); ``bool`` is no number here."""
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise _misuse(name, value, wanted)


def _count(name: str, value: object, *, optional: bool = False) -> None:
    """A positive whole number (or None when ``optional``)."""
    if optional and value is None:
        return
    _check(name, value, (int,), "a whole number of at least 1")
    assert isinstance(value, int)
    if value < 1:
        raise _misuse(name, value, "a whole number of at least 1")


def _flag(name: str, value: object, *, optional: bool = False) -> None:
    if not (optional and value is None):
        _check(name, value, (bool,), "True or False" + (" (or None)" if optional else ""))


def _root(root: object) -> None:
    if root is not None:
        _check("root", root, (str, os.PathLike), "a path (str or os.PathLike) or None")


def _ids(ids: str | Iterable[str] | None, name: str = "ids") -> list[str]:
    if ids is None:
        return []
    if isinstance(ids, str):
        return [ids]
    if isinstance(ids, bytes | bytearray) or not isinstance(ids, Iterable):
        raise _misuse(name, ids, "a dataset id (str) or several (a list of str)")
    found = list(ids)
    for item in found:
        if not isinstance(item, str):
            raise _misuse(name, item, "a dataset id (str) or several (a list of str)")
    return found


def _layout(layout: str | ArchiveLayout) -> ArchiveLayout:
    from medimeta_cli.dataset.layouts import ArchiveLayout

    if not isinstance(layout, str):  # an ArchiveLayout is a str too
        raise _misuse("layout", layout, "'full' or 'hdf5'")
    try:
        return ArchiveLayout(str(getattr(layout, "value", layout)).lower())
    except ValueError:
        choices = " or ".join(repr(choice.value) for choice in ArchiveLayout)
        raise UsageError(f"unknown layout {layout!r}", hint=f"Use {choices}.") from None


def _healthy_copy(settings: Settings, dataset: Dataset) -> Path | None:
    """The folder of an installed copy (data root, then shared roots), after the checks
    that need no network and read no data: not found damaged by the last ``verify``, and
    every file the loader reads there as a regular file of the size its install recorded
    (a ``stat`` each). None when not installed;
    :class:`IntegrityError` when the copy is broken (:class:`LinkRefusedError` when its
    folder is a symbolic link)."""
    from medimeta_cli.store.status import installed_copy

    folder = installed_copy(settings, dataset)
    if folder is None:
        return None
    return _checked_copy(settings, dataset, folder)


def _checked_copy(settings: Settings, dataset: Dataset, folder: Path) -> Path:
    """:func:`_healthy_copy` of a copy found in ``folder``."""
    from medimeta_cli.dataset.essentials import required_file_problems
    from medimeta_cli.dataset.gate import read_info
    from medimeta_cli.fsutil import require_real_folders
    from medimeta_cli.store.status import State, locate

    # The loader would follow a linked folder out of the root; it is refused, never returned.
    require_real_folders([folder])
    fix = f"Run `medimeta verify --repair {dataset.id}`"
    if folder.parent != settings.root:
        fix = "It is in a shared root, which the tool never changes: tell whoever maintains it"
    if locate(settings.root, settings.shared_roots, dataset.id).state is State.DAMAGED:
        raise IntegrityError(f"{dataset.id} in {folder} was found damaged", hint=fix + ".")
    # The gate reads the copy's own info.yaml, and refuses one it cannot trust.
    problems = [str(p) for p in required_file_problems(folder, read_info(folder, dataset.id))]
    # A file cut short (or grown) since the install: its size is no longer the recorded one.
    problems += _size_problems(folder)
    if problems:
        listed = "; ".join(problems[:3])
        raise IntegrityError(f"{dataset.id} in {folder} is incomplete: {listed}", hint=fix + ".")
    return folder


def _size_problems(folder: Path) -> list[str]:
    """Files the loader reads whose size differs from the one the file manifest recorded
    (one ``lstat`` each, nothing read); none for a copy without a manifest."""
    from medimeta_cli.dataset.layouts import ArchiveLayout, wanted_in_layout
    from medimeta_cli.store.layout import RootLayout
    from medimeta_cli.store.records import read_file_manifest

    manifest = read_file_manifest(RootLayout(folder.parent), folder.name)
    if manifest is None:
        return []
    problems = []
    for entry in manifest.files:
        if not wanted_in_layout(entry.path, ArchiveLayout.HDF5):
            continue
        try:
            size = os.lstat(folder / entry.path).st_size
        except OSError:
            continue  # a missing file is told by the check of the required files
        if size != entry.size:
            problems.append(f"{entry.path} has {size:,} bytes, not the {entry.size:,} installed")
    return problems


def ensure(
    ids: str | Iterable[str],
    root: PathLike | None = None,
    layout: str | ArchiveLayout = "full",
    *,
    offline: bool | None = None,
    connections: int | None = None,
    jobs: int = 2,
) -> dict[str, Path]:
    """Block until the datasets are installed and checked; return each one's folder.

    ``ids`` is one dataset id or several (case-insensitive); the result maps each
    catalog id to its folder ``<root>/<id>`` (or the folder in a shared root of
    ``MEDIMETA_PATH`` that holds it), so that ``MedIMeta(folder.parent, id, task)``
    loads it. Installed datasets are checked without the network (recorded damage, the
    files the loader reads); missing ones are downloaded (``layout`` ``"full"`` or
    ``"hdf5"``), md5-verified and installed, each under its lock: concurrent callers
    wait for one transfer. Raises :class:`~medimeta_cli.errors.MedimetaError`
    subclasses: e.g. ``UnknownDatasetError``, ``OfflineError``, ``NetworkError``,
    ``IntegrityError`` (for the first dataset that failed; the others are installed).
    """
    from medimeta_cli.download.run import Downloader

    wanted = _ids(ids)
    if not wanted:
        raise UsageError("ensure() needs at least one dataset id", hint='For example "crc".')
    chosen = _layout(layout)
    _root(root)
    _flag("offline", offline, optional=True)
    _count("connections", connections, optional=True)
    _count("jobs", jobs)
    settings, catalog = _settings(root, offline=offline, connections=connections)
    logger.info("ensure: checking %s in %s", ", ".join(wanted), settings.root)
    datasets, folders = _installed_or_in_catalog(settings, catalog, wanted)
    folders.update({d.id: found for d in datasets if (found := _healthy_copy(settings, d))})
    missing = [d for d in datasets if d.id not in folders]
    for dataset_id in folders:
        logger.info("%s: installed and checked, %s", dataset_id, folders[dataset_id])
    if missing:
        logger.info("ensure: fetching %s", ", ".join(d.id for d in missing))
        # The steps, and the bytes every progress interval, go to the package's logger:
        # a program's logging.basicConfig(level=logging.INFO) shows them.
        sink = LoggedEvents(logger, interval=settings.progress_interval)
        downloader = Downloader(settings, catalog, on_event=sink)
        try:
            outcomes = downloader.download(missing, jobs=jobs, archive_layout=chosen)
        finally:
            downloader.close()
        failed = [o.error for o in outcomes if o.error is not None]
        if failed:
            raise failed[0]
        for outcome in outcomes:
            assert outcome.path is not None  # an installed or skipped dataset has its folder
            folders[outcome.dataset_id] = outcome.path
            logger.info("%s: %s, %s", outcome.dataset_id, outcome.status.label, outcome.path)
    return {dataset_id: folders[dataset_id] for dataset_id in _order(wanted, datasets, folders)}


def _installed_or_in_catalog(
    settings: Settings, catalog: Catalog, wanted: list[str]
) -> tuple[list[Dataset], dict[str, Path]]:
    """The catalog's datasets among ``wanted``, and the checked folders of those outside
    the catalog that are installed (described by their own ``info.yaml``). An id neither
    knows raises :class:`~medimeta_cli.errors.UnknownDatasetError`, saying that a dataset
    outside the catalog cannot be downloaded."""
    from medimeta_cli.dataset.gate import read_info
    from medimeta_cli.dataset.installed import catalog_entry_or_installed
    from medimeta_cli.errors import UnknownDatasetError
    from medimeta_cli.store.status import locate, root_of

    datasets: list[Dataset] = []
    outside: dict[str, Path] = {}
    for dataset_id in wanted:
        try:
            entry = catalog_entry_or_installed(
                catalog, settings.root, settings.shared_roots, dataset_id
            )
        except UnknownDatasetError as error:
            error.hint = (
                f"{error.hint} A dataset outside the catalog cannot be downloaded: install "
                "it once with `medimeta download --from PATH`, then ensure() finds it."
            )
            raise
        if entry is not None:
            datasets.append(entry)
            continue
        where = root_of(locate(settings.root, settings.shared_roots, dataset_id))
        assert where is not None  # catalog_entry_or_installed found it installed
        folder = where / dataset_id
        outside[dataset_id] = _checked_copy(settings, read_info(folder, dataset_id), folder)
    return list(dict.fromkeys(datasets)), outside


def _order(wanted: list[str], datasets: list[Dataset], folders: dict[str, Path]) -> list[str]:
    """The ids of the result in the order asked for, catalog ids as the catalog spells them."""
    from medimeta_cli.catalog.datasets import fold_name

    # Ids are spelt as domains may be (dr-regular is dr_regular), as the catalog finds them.
    ids = {fold_name(k): k for k in folders} | {fold_name(d.id): d.id for d in datasets}
    return list(dict.fromkeys(ids[fold_name(w)] for w in wanted if fold_name(w) in ids))


def download(
    ids: str | Iterable[str] | None = None,
    *,
    root: PathLike | None = None,
    domains: Sequence[str] | None = None,
    everything: bool = False,
    force: bool = False,
    keep_archive: bool = False,
    jobs: int = 2,
    connections: int | None = None,
    layout: str | ArchiveLayout = "full",
    with_masks: bool = False,
    offline: bool | None = None,
    on_event: EventSink | None = None,
) -> list[Outcome]:
    """``medimeta download``: one :class:`~medimeta_cli.events.Outcome` per dataset.

    A dataset that fails has its error in its outcome (the others go on); errors that
    concern every dataset (offline, no space, unreachable record) are raised.
    ``on_event`` receives the engine's progress events.
    """
    from medimeta_cli.download.run import Downloader

    _root(root)
    named, in_domains = _ids(ids), _ids(domains, "domains")
    for name, value in (
        ("everything", everything),
        ("force", force),
        ("keep_archive", keep_archive),
        ("with_masks", with_masks),
    ):
        _flag(name, value)
    _flag("offline", offline, optional=True)
    _count("jobs", jobs)
    _count("connections", connections, optional=True)
    if on_event is not None and not callable(on_event):
        raise _misuse("on_event", on_event, "a callable taking an event (or None)")
    archive_layout = _layout(layout)
    settings, catalog = _settings(root, offline=offline, connections=connections)
    datasets = catalog.select(
        named, in_domains, everything, hint="Name dataset ids, domains, or everything."
    )
    for notice in catalog.domain_notices(in_domains):
        logger.warning("%s", notice)
    # Without a sink of the caller's, the steps go to the package's logger, as in ensure().
    sink = on_event if on_event is not None else LoggedEvents(logger, settings.progress_interval)
    downloader = Downloader(settings, catalog, on_event=sink)
    try:
        return downloader.download(
            datasets,
            force=force,
            keep_archive=keep_archive,
            jobs=jobs,
            archive_layout=archive_layout,
            with_masks=with_masks,
        )
    finally:
        downloader.close()


def verify(
    ids: str | Iterable[str] | None = None,
    *,
    root: PathLike | None = None,
    mode: str = "fast",
    jobs: int | None = None,
) -> list[Report]:
    """``medimeta verify``: one :class:`~medimeta_cli.dataset.verify.Report` per dataset.

    ``mode`` is ``"fast"`` (sizes and stamps), ``"full"`` (every byte hashed against
    the install record) or ``"deep"`` (full, plus the upstream structure). Without
    ``ids``, every installed dataset of the catalog is checked; a named one that is not
    installed raises :class:`~medimeta_cli.errors.NotInstalledError`. Damage is in the
    reports (``report.ok``), not raised.
    """
    from medimeta_cli.dataset.verify import VerifyMode
    from medimeta_cli.dataset.verify_installed import VerifyRequest, verify_installed

    _root(root)
    _check("mode", mode, (str,), "'fast', 'full' or 'deep'")
    _count("jobs", jobs, optional=True)
    named = _ids(ids)
    try:
        checked = VerifyMode(mode)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in VerifyMode)
        raise UsageError(f"unknown verify mode {mode!r}", hint=f"Use {choices}.") from None
    settings, catalog = _settings(root)
    return verify_installed(settings, catalog, VerifyRequest(tuple(named), (), checked, jobs))


def sources_for(
    target: str, *, all_tasks: bool = False, root: PathLike | None = None
) -> list[tuple[str, str]]:
    """The meta-training sources of a cross-domain target, as (dataset id, task name) pairs.

    The first task of every dataset except ``target`` and the datasets its ``info.yaml``
    names in ``domain_overlaps`` and ``subject_overlaps`` (its installed one when a data
    root holds it, else the catalog's); ``all_tasks`` uses every task of each source.
    The same rule as ``medimeta list --sources-for``.
    """
    from medimeta_cli.dataset.sources import sources_for as select_sources

    _root(root)
    _check("target", target, (str,), "a dataset id")
    _flag("all_tasks", all_tasks)
    settings, catalog = _settings(root)
    chosen = select_sources(
        catalog, settings.root, settings.shared_roots, target, all_tasks=all_tasks
    )
    return list(chosen.pairs)


def export(
    dataset_id: str,
    out: PathLike | None = None,
    *,
    root: PathLike | None = None,
    task: str | None = None,
    splits: Sequence[str] = ("train", "val", "test"),
    original_split: bool = False,
    classes: Sequence[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    format: str = "imagefolder",
    image_format: str = "png",
    color: str | None = None,
    npz: bool = False,
    compress: bool = False,
    jobs: int | None = None,
    overwrite: bool = False,
    shard: tuple[int, int] | None = None,
    force: bool = False,
    shard_size: str | None = None,
) -> ExportResult:
    """``medimeta export``: a selection of an installed dataset as class folders
    (``format="imagefolder"``), NumPy arrays (``"numpy"``), WebDataset tar shards
    (``"webdataset"``, ``shard_size`` as ``--shard-size``: ``"1GB"``, ``"5000images"``) or
    Parquet files that Hugging Face ``datasets`` loads (``"parquet"``, needs the ``parquet``
    extra), into
    ``out`` (default ``./<id>-<task>``); returns the :class:`~medimeta_cli.export.ExportResult`.

    Deterministic and idempotent like the command; a dataset that ``verify`` found
    damaged raises :class:`~medimeta_cli.errors.IntegrityError` unless ``force``.
    """
    from medimeta_cli.dataset.selection import parse_shard
    from medimeta_cli.export import ExportFormat, ExportOptions
    from medimeta_cli.export.shardsize import parse_shard_size
    from medimeta_cli.export.usecase import ExportRequest, plan_export, run_export

    _check("dataset_id", dataset_id, (str,), "a dataset id (str)")
    _root(root)
    if out is not None:
        _check("out", out, (str, os.PathLike), "a path (str or os.PathLike) or None")
    for name, text in (("task", task), ("color", color), ("shard_size", shard_size)):
        if text is not None:
            _check(name, text, (str,), "a str or None")
    for name, text in (("format", format), ("image_format", image_format)):
        _check(name, text, (str,), "a str")
    chosen_splits = _ids(splits, "splits")
    chosen_classes = None if classes is None else _ids(classes, "classes")
    _count("limit", limit, optional=True)
    _count("jobs", jobs, optional=True)
    _check("seed", seed, (int,), "a whole number")
    for name, value in (
        ("original_split", original_split),
        ("npz", npz),
        ("compress", compress),
        ("overwrite", overwrite),
        ("force", force),
    ):
        _flag(name, value)
    if shard is not None and not (
        isinstance(shard, tuple | list)
        and len(shard) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) for n in shard)
    ):
        raise _misuse("shard", shard, "(I, N), two whole numbers, or None")
    settings, catalog = _settings(root)
    request = ExportRequest(
        dataset_id=dataset_id,
        task=task,
        splits=tuple(chosen_splits),
        original=original_split,
        classes=None if chosen_classes is None else tuple(chosen_classes),
        limit=limit,
        seed=seed,
        shard=None if shard is None else parse_shard(f"{shard[0]}/{shard[1]}"),
        out=None if out is None else Path(out),
        force=force,
        # Names the default folder only; a wrong name is refused with a hint below.
        export_format=next(
            (f for f in ExportFormat if f.value == format), ExportFormat.IMAGEFOLDER
        ),
    )
    plan = plan_export(settings, catalog, request)
    if plan.damaged is not None:
        logger.warning("%s; exporting it anyway (force=True)", plan.damaged)
    options = ExportOptions(
        format=format,  # type: ignore[arg-type]  # validated (with a hint) by ExportOptions
        image_format=image_format,  # type: ignore[arg-type]
        color=color,  # type: ignore[arg-type]
        npz=npz,
        compress=compress,
        jobs=jobs or os.cpu_count() or 1,
        overwrite=overwrite,
        command=f"medimeta_cli.export({plan.dataset.id!r}, task={plan.task.name!r})",
        shard_size=None if shard_size is None else parse_shard_size(shard_size),
    )
    return run_export(plan, options)


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


# ----------------------------------------------------------------------------- few-shot episodes


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


def stats(
    dataset_id: str,
    *,
    root: PathLike | None = None,
    task: str | None = None,
    split: str = "train",
) -> DatasetStats:
    """``medimeta stats``: the class counts of every task (or ``task``) in every split,
    and the per-channel mean and std (0-1 scale) of ``split``'s pixels; returns the
    :class:`~medimeta_cli.dataset.stats.DatasetStats` (``.pixels.mean``, ``.pixels.std``,
    ``to_json()``).

    The pixels are read in one pass and cached beside the install record until the data
    changes; a dataset in a shared root is read, never cached in.
    """
    from medimeta_cli.dataset.stats import dataset_stats

    _check("dataset_id", dataset_id, (str,), "a dataset id (str)")
    _root(root)
    if task is not None:
        _check("task", task, (str,), "a str or None")
    _check("split", split, (str,), "a split name (train, val or test)")
    settings, catalog = _settings(root)
    return dataset_stats(
        catalog, settings.root, settings.shared_roots, dataset_id, task=task, split=split
    )
