"""The description of an installed dataset: its own ``info.yaml``, and how it differs
from the catalog.

For installed data the dataset's own ``info.yaml`` is the authority, as it is for the
official loader: the reader, ``export``, ``sample`` and ``verify`` take counts, splits,
tasks and labels from it. The bundled catalog describes what the record held when this
tool was released; it is for browsing and planning before a download. A newer record, a
lab's subset or a dataset built with the upstream scripts differs from it, and that is a
notice (:func:`catalog_differences`), never damage. Damage is only a folder whose files
disagree with the ``info.yaml`` beside them (:mod:`medimeta_cli.dataset.structure`).
What an ``info.yaml`` says is read and checked by the gate (:mod:`medimeta_cli.dataset.gate`).
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from medimeta_cli.catalog.datasets import SPLIT_NAMES, Catalog, Dataset, SplitCounts, Task
from medimeta_cli.dataset.gate import DatasetFolder, InfoError, open_folder
from medimeta_cli.errors import NotInstalledError, UnknownDatasetError, UsageError
from medimeta_cli.store.status import locate, root_of

__all__ = [
    "CatalogDifference",
    "InstalledDataset",
    "catalog_differences",
    "check_dataset_id",
    "installed_ids",
    "is_safe_id",
    "open_installed",
    "outside_catalog_hint",
]

logger = logging.getLogger(__name__)

#: A dataset id that is safe as a folder name and a zip name: what the catalog allows.
_SAFE_ID: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")


def is_safe_id(name: str) -> bool:
    """Whether ``name`` is a safe dataset id: lower-case letters, digits and ``_``,
    starting with a letter (never a path, never hidden)."""
    return _SAFE_ID.fullmatch(name) is not None


def check_dataset_id(name: str) -> str:
    """``name`` if it is a safe dataset id; :class:`UsageError` otherwise."""
    if not is_safe_id(name):
        raise UsageError(
            f"{name!r} is not a valid dataset id",
            hint="Dataset ids are lower-case letters, digits and _, starting with a letter.",
        )
    return name


def outside_catalog_hint(dataset_id: str) -> str:
    """What can be done about a damaged dataset outside the catalog: there is no record to
    fetch it from, so ``verify --repair`` cannot; it is installed again from its source."""
    return (
        f"Run `medimeta verify --deep {dataset_id}` to see every problem. {dataset_id} is not "
        "in the catalog, so nothing can fetch it again: reinstall it from its source with "
        f"`medimeta download --from <{dataset_id}.zip or {dataset_id}/> --force`."
    )


def installed_ids(roots: Iterable[Path]) -> list[str]:
    """Ids of the dataset folders in the given data roots, sorted: folders (not links)
    with a safe name that hold an ``info.yaml`` file."""
    found: set[str] = set()
    for root in roots:
        try:
            entries = list(os.scandir(root))
        except OSError:
            continue
        for entry in entries:
            if not is_safe_id(entry.name) or not entry.is_dir(follow_symlinks=False):
                continue
            try:
                if stat.S_ISREG(os.lstat(Path(entry.path) / "info.yaml").st_mode):
                    found.add(entry.name)
            except OSError:
                continue
    return sorted(found)


# --------------------------------------------------------------------------- differences


@dataclass(frozen=True)
class CatalogDifference:
    """One field in which installed data differs from the catalog's entry."""

    field: str
    """The ``info --json`` key: ``num_samples``, ``splits``, ``tasks``, ..."""
    installed: Any
    """The installed value, JSON-ready."""
    catalog: Any
    """The catalog's value, JSON-ready."""
    message: str
    """For people: ``90 images (catalog: 780)``."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "field": self.field,
            "installed": self.installed,
            "catalog": self.catalog,
            "message": self.message,
        }


def catalog_differences(installed: Dataset, catalog: Dataset) -> list[CatalogDifference]:
    """Every way an installed dataset's own description differs from the catalog's entry
    (our own ``summary`` aside); empty when they agree."""
    here, there = installed.to_json(), catalog.to_json()
    here.update(installed.details_json())
    there.update(catalog.details_json())
    found: list[CatalogDifference] = []
    if installed.num_samples != catalog.num_samples:
        message = f"{installed.num_samples:,} images (catalog: {catalog.num_samples:,})"
        found.append(_difference("num_samples", here, there, message))
    for field, what in (("splits", "split"), ("original_splits", "original split")):
        mine, theirs = getattr(installed, field), getattr(catalog, field)
        if mine != theirs:
            found.append(_difference(field, here, there, _describe_counts(mine, theirs, what)))
    if installed.input_size != catalog.input_size:
        message = (
            f"image size {_size(installed.input_size.as_list())} "
            f"(catalog: {_size(catalog.input_size.as_list())})"
        )
        found.append(_difference("input_size", here, there, message))
    if installed.tasks != catalog.tasks:
        found.append(
            _difference("tasks", here, there, _describe_tasks(installed.tasks, catalog.tasks))
        )
    for field in ("name", "domain", "license"):
        if here[field] != there[field]:
            found.append(_difference(field, here, there, f"{field} {here[field]!r}"))
    for field in ("sources", "domain_overlaps", "subject_overlaps"):
        if here[field] != there[field]:
            found.append(_difference(field, here, there, f"other {field.replace('_', ' ')}"))
    return found


def _difference(
    field: str, here: dict[str, Any], there: dict[str, Any], message: str
) -> CatalogDifference:
    return CatalogDifference(field, here[field], there[field], message)


def _size(values: list[int]) -> str:
    return "x".join(str(value) for value in values)


def _describe_counts(mine: SplitCounts, theirs: SplitCounts, what: str) -> str:
    """``train split 60 images (catalog: 520), test split ...``: the splits that differ."""
    parts = [
        f"{name} {what} {getattr(mine, name):,} images (catalog: {getattr(theirs, name):,})"
        for name in SPLIT_NAMES
        if getattr(mine, name) != getattr(theirs, name)
    ]
    return ", ".join(parts)


def _describe_tasks(here: tuple[Task, ...], catalog: tuple[Task, ...]) -> str:
    found = {task.name: task for task in here}
    expected = {task.name: task for task in catalog}
    parts = [f"no task {name!r}" for name in expected if name not in found]
    parts += [f"task {name!r} is not in the catalog" for name in found if name not in expected]
    for name, task in expected.items():
        other = found.get(name)
        if other is None:
            continue
        if other.target != task.target:
            parts.append(f"task {name!r} is {other.target.value} (catalog: {task.target.value})")
        if other.labels != task.labels:
            if sorted(other.labels) != sorted(task.labels):
                keys = ", ".join(str(key) for key in sorted(other.labels))
                expected_keys = ", ".join(str(key) for key in sorted(task.labels))
                parts.append(f"task {name!r} has label keys {keys} (catalog: {expected_keys})")
            else:
                parts.append(f"task {name!r} has other label names")
    if not parts:
        parts.append("tasks are in another order")
    return ", ".join(parts)


# --------------------------------------------------------------------------- both together


@dataclass(frozen=True)
class InstalledDataset:
    """An installed dataset as its own ``info.yaml`` describes it, next to its catalog
    entry (None for a dataset outside the catalog). ``data`` is the validated folder when
    the dataset is installed (None for the catalog's view of one that is not)."""

    dataset: Dataset
    catalog_entry: Dataset | None
    data: DatasetFolder | None = None

    @property
    def in_catalog(self) -> bool:
        """Whether the catalog knows this dataset id."""
        return self.catalog_entry is not None

    def differences(self) -> list[CatalogDifference]:
        """How the installed data differs from the catalog (nothing outside it)."""
        if self.catalog_entry is None:
            return []
        return catalog_differences(self.dataset, self.catalog_entry)

    def to_json(self) -> dict[str, Any]:
        """What ``list``/``info --json`` add: whether the catalog knows the dataset, the
        catalog's values of the fields that differ, and the differences for people."""
        differences = self.differences()
        return {
            "in_catalog": self.in_catalog,
            "catalog": {d.field: d.catalog for d in differences},
            "catalog_differences": [d.message for d in differences],
        }

    def folder(self) -> DatasetFolder:
        """The validated folder; :class:`NotInstalledError` for the catalog's view of a
        dataset that is not installed."""
        if self.data is None:
            raise NotInstalledError(self.dataset.id, "any data root")
        return self.data

    @classmethod
    def read(cls, folder: Path, catalog_entry: Dataset | None, dataset_id: str) -> InstalledDataset:
        """Read the folder through the gate (:func:`~medimeta_cli.dataset.gate.open_folder`);
        :class:`~medimeta_cli.dataset.gate.InfoError` when it refuses the folder."""
        summary = catalog_entry.summary if catalog_entry is not None else None
        try:
            data = open_folder(folder, dataset_id, summary=summary)
        except InfoError as error:
            if catalog_entry is None:  # no record to fetch it from: say what can be done
                error.hint = outside_catalog_hint(dataset_id)
            raise
        return cls(data.dataset, catalog_entry, data)


def catalog_entry_or_installed(
    catalog: Catalog, root: Path, shared_roots: Sequence[Path], dataset_id: str
) -> Dataset | None:
    """The catalog's entry for an id (case-insensitive), or None when the catalog lacks it
    but a dataset of that (safe) id is installed in the data root or a shared root;
    :class:`~medimeta_cli.errors.UnknownDatasetError` otherwise."""
    try:
        return catalog.get(dataset_id)
    except UnknownDatasetError:
        if is_safe_id(dataset_id) and root_of(locate(root, shared_roots, dataset_id)):
            return None
        raise


def open_installed(
    catalog: Catalog, root: Path, shared_roots: Sequence[Path], dataset_id: str
) -> InstalledDataset:
    """An installed dataset by id, as its own ``info.yaml`` describes it, next to its
    catalog entry; read from the data root, else the first shared root holding it.
    :class:`~medimeta_cli.errors.NotInstalledError` when no root holds it;
    :class:`~medimeta_cli.dataset.gate.InfoError` when the gate refuses its info.yaml."""
    entry = catalog_entry_or_installed(catalog, root, shared_roots, dataset_id)
    dataset_id = entry.id if entry is not None else dataset_id
    where = root_of(locate(root, shared_roots, dataset_id))
    if where is None:
        raise NotInstalledError(dataset_id, ", ".join(str(r) for r in (root, *shared_roots)))
    return InstalledDataset.read(where / dataset_id, entry, dataset_id)
