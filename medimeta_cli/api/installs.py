"""Installed data for scripts: ``ensure``, ``download``, ``verify`` and ``sources_for``."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from medimeta_cli.errors import IntegrityError, UsageError
from medimeta_cli.events import LoggedEvents

if TYPE_CHECKING:
    from medimeta_cli.catalog.datasets import Catalog, Dataset
    from medimeta_cli.dataset.layouts import ArchiveLayout
    from medimeta_cli.dataset.verify import Report
    from medimeta_cli.events import EventSink, Outcome
    from medimeta_cli.settings import Settings

from medimeta_cli.api._arguments import (
    PathLike,
    _check,
    _count,
    _flag,
    _ids,
    _layout,
    _misuse,
    _root,
    _settings,
)

logger = logging.getLogger(__name__)


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
