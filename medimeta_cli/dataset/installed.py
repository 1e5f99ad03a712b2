"""The description of an installed dataset: its own ``info.yaml``, and how it differs
from the catalog.

For installed data the dataset's own ``info.yaml`` is the authority, as it is for the
official loader: the reader, ``export``, ``sample`` and ``verify`` take counts, splits,
tasks and labels from it. The bundled catalog describes what the record held when this
tool was released; it is for browsing and planning before a download. A newer record, a
lab's subset or a dataset built with the upstream scripts differs from it, and that is a
notice (:func:`catalog_differences`), never damage. Damage is only a folder whose files
disagree with the ``info.yaml`` beside them (:mod:`medimeta_cli.dataset.structure`).
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

from medimeta_cli.catalog.build import dataset_from_info, parse_info_yaml
from medimeta_cli.catalog.datasets import SPLIT_NAMES, Catalog, Dataset, SplitCounts, Task
from medimeta_cli.errors import (
    CatalogError,
    IntegrityError,
    NotInstalledError,
    UnknownDatasetError,
    UsageError,
)
from medimeta_cli.fsutil import read_regular_file
from medimeta_cli.store.status import locate, root_of

__all__ = [
    "CatalogDifference",
    "InfoError",
    "InstalledDataset",
    "catalog_differences",
    "check_dataset_id",
    "dataset_in_archive",
    "describe_info",
    "installed_ids",
    "is_safe_id",
    "read_installed",
]

logger = logging.getLogger(__name__)

#: A dataset id that is safe as a folder name and a zip name: what the catalog allows.
_SAFE_ID: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")

#: The largest info.yaml read: upstream's are a few kilobytes; more is not an info file.
MAX_INFO_BYTES: Final = 1 << 20


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


class InfoError(IntegrityError):
    """The ``info.yaml`` of a dataset folder is missing, unreadable, malformed or names
    another dataset; ``reason`` says which, after the file name (``is missing``)."""

    def __init__(self, dataset_id: str, reason: str) -> None:
        super().__init__(
            f"info.yaml of {dataset_id!r} {reason}",
            hint=f"Run `medimeta verify --deep {dataset_id}` to see every problem, and "
            f"`medimeta verify --repair {dataset_id}` to fetch a fresh copy.",
        )
        self.reason = reason


def describe_info(raw: bytes, dataset_id: str, *, summary: str | None = None) -> Dataset:
    """The :class:`Dataset` an ``info.yaml``'s bytes describe; :class:`InfoError` when they
    cannot be read as one, or name another dataset than ``dataset_id``."""
    if len(raw) > MAX_INFO_BYTES:
        raise InfoError(dataset_id, f"is {len(raw):,} bytes, too large for an info file")
    try:
        info = parse_info_yaml(raw.decode("utf-8"), source="info.yaml")
        dataset = dataset_from_info(info, summary=summary)
    except UnicodeDecodeError:
        raise InfoError(dataset_id, "is not UTF-8 text") from None
    except CatalogError as exc:
        raise InfoError(dataset_id, _reason(exc.message)) from None
    except (AttributeError, TypeError, ValueError) as exc:
        # Shapes dataset_from_info does not anticipate (a list where a mapping belongs).
        raise InfoError(dataset_id, f"is malformed: {_one_line(str(exc))}") from None
    if dataset.id != dataset_id:
        raise InfoError(dataset_id, f"names dataset {dataset.id!r}, not {dataset_id!r}")
    return dataset


def read_installed(folder: Path, dataset_id: str, *, summary: str | None = None) -> Dataset:
    """The Dataset of an installed folder: what its own ``info.yaml`` says.

    ``info.yaml`` is read without following a link at its end, and must name
    ``dataset_id``. ``summary`` (our own wording, not upstream's) is kept from the
    catalog. Raises :class:`InfoError` naming what is wrong.
    """
    path = Path(folder) / "info.yaml"
    raw = read_regular_file(path)
    if raw is None:
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            raise InfoError(dataset_id, "is missing") from None
        except OSError as exc:
            raise InfoError(dataset_id, f"cannot be read: {exc.strerror}") from None
        if stat.S_ISLNK(mode):
            raise InfoError(dataset_id, "is a symbolic link (never followed)")
        if not stat.S_ISREG(mode):
            raise InfoError(dataset_id, "is not a regular file")
        raise InfoError(dataset_id, "cannot be read")
    return describe_info(raw, dataset_id, summary=summary)


def dataset_in_archive(path: Path, dataset_id: str) -> Dataset:
    """What the ``<id>/info.yaml`` inside an archive describes, read before extracting
    anything (it bounds what the archive may unpack to); :class:`IntegrityError` when the
    archive has none, or one that cannot be read or names another dataset."""
    import zipfile

    name = f"{dataset_id}/info.yaml"
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                member = archive.getinfo(name)
            except KeyError:
                raise IntegrityError(
                    f"refusing {path.name}: it holds no {name}, so it is no dataset "
                    "in the MedIMeta format",
                    hint="An archive <id>.zip must hold the folder <id>/ with its info.yaml.",
                ) from None
            if member.file_size > MAX_INFO_BYTES:
                raise IntegrityError(
                    f"refusing {path.name}: {name} declares {member.file_size:,} bytes, "
                    "too large for an info file",
                    hint="The archive is not in the MedIMeta format.",
                )
            with archive.open(member) as handle:
                raw = handle.read(MAX_INFO_BYTES + 1)
    except (zipfile.BadZipFile, OSError) as exc:
        raise IntegrityError(f"{path.name} is not a readable zip archive: {exc}") from exc
    try:
        return describe_info(raw, dataset_id)
    except InfoError as error:
        raise IntegrityError(
            f"refusing {path.name}: {name} {error.reason}",
            hint="The archive is not in the MedIMeta format; fix its info.yaml.",
        ) from None


def _reason(message: str) -> str:
    """A CatalogError message as the reason after ``info.yaml of 'x'``."""
    message = _one_line(message)
    for prefix in ("info.yaml of ", "info.yaml "):
        if message.startswith(prefix):
            rest = message[len(prefix) :]
            # "info.yaml of 'crc' lacks ..." -> "lacks ..."
            return re.sub(r"^'[^']*' ", "", rest) if prefix == "info.yaml of " else rest
    return message


def _one_line(text: str) -> str:
    return " ".join(text.split())


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
    entry (None for a dataset outside the catalog)."""

    dataset: Dataset
    catalog_entry: Dataset | None

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

    @classmethod
    def read(cls, folder: Path, catalog_entry: Dataset | None, dataset_id: str) -> InstalledDataset:
        """Read the folder's ``info.yaml`` (:func:`read_installed`)."""
        summary = catalog_entry.summary if catalog_entry is not None else None
        return cls(read_installed(folder, dataset_id, summary=summary), catalog_entry)


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
    :class:`InfoError` when its info.yaml cannot be read."""
    entry = catalog_entry_or_installed(catalog, root, shared_roots, dataset_id)
    dataset_id = entry.id if entry is not None else dataset_id
    where = root_of(locate(root, shared_roots, dataset_id))
    if where is None:
        raise NotInstalledError(dataset_id, ", ".join(str(r) for r in (root, *shared_roots)))
    return InstalledDataset.read(where / dataset_id, entry, dataset_id)
