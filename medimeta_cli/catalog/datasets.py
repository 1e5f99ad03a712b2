"""The bundled catalog of MedIMeta: 19 datasets, their tasks, splits, licenses and sources.

The catalog is modelled as frozen dataclasses that pydantic validates strictly
(unknown fields are rejected, every field is typed, invariants are checked).
The bundled ``data/catalog.json`` is validated by the test suite and when it is
generated (``medimeta_cli.catalog.build``); at run time it is read by a plain
constructor so that ``medimeta list`` starts without paying for pydantic's
schema machinery. A catalog from any other file is always validated.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from medimeta_cli.errors import (
    UnknownDatasetError,
    UnknownDomainError,
    UnknownTaskError,
    UsageError,
)

logger = logging.getLogger(__name__)

#: The Zenodo record MedIMeta is published in, and its DOI.
RECORD_ID = 7884735
DOI = f"10.5281/zenodo.{RECORD_ID}"

BUNDLED_CATALOG = Path(__file__).parent.parent / "data" / "catalog.json"

# pydantic reads this on stdlib dataclasses; a plain dict keeps pydantic out of the import.
_STRICT: dict[str, Any] = {"extra": "forbid"}

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")

#: How people speak about the domains, mapped to the upstream domain names.
DOMAIN_ALIASES: dict[str, tuple[str, ...]] = {
    "ophthalmology": ("Retinal fundus", "OCT"),
    "radiology": ("Chest X-ray", "Mammography", "Abdominal CT", "Breast ultrasound"),
    "dermatology": ("Dermatoscopy", "Clinical skin photography"),
    "pathology": ("Histopathology", "Microscopy"),
    "hematology": ("Microscopy",),
    "xray": ("Chest X-ray",),
    "ct": ("Abdominal CT",),
    "ultrasound": ("Breast ultrasound",),
    "fundus": ("Retinal fundus",),
    "derm": ("Dermatoscopy", "Clinical skin photography"),
}


class TaskTarget(str, Enum):
    """The kind of prediction a task asks for."""

    BINARY = "binary"
    MULTICLASS = "multiclass"
    MULTILABEL = "multilabel"
    ORDINAL = "ordinal"

    @property
    def upstream(self) -> str:
        """The name upstream ``info.yaml`` files use for this target."""
        return _UPSTREAM_TARGETS[self]

    @classmethod
    def from_upstream(cls, name: str) -> TaskTarget:
        """Map an upstream ``task_target`` (``BINARY_CLASSIFICATION``, ...) to a target."""
        for target, upstream in _UPSTREAM_TARGETS.items():
            if upstream == name:
                return target
        raise ValueError(f"unknown task target {name!r}")


_UPSTREAM_TARGETS: dict[TaskTarget, str] = {
    TaskTarget.BINARY: "BINARY_CLASSIFICATION",
    TaskTarget.MULTICLASS: "MULTICLASS_CLASSIFICATION",
    TaskTarget.MULTILABEL: "MULTILABEL_CLASSIFICATION",
    TaskTarget.ORDINAL: "ORDINAL_REGRESSION",
}


@dataclass(frozen=True)
class Task:
    """One classification task of a dataset.

    ``labels`` maps label keys, as stored in the task's label file (which
    :func:`medimeta_cli.dataset.gate.label_path` finds), to label
    names. Keys are not always ``0..K-1`` (``dr_regular`` uses 1, 4, 6, 8, 10).
    For multi-label tasks the keys are column indices of the ``(N, C)`` array.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    name: str
    target: TaskTarget
    labels: dict[int, str]

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("task name must not be empty")
        if len(self.labels) < 2:
            raise ValueError(f"task {self.name!r} needs at least two labels")
        if self.target is TaskTarget.BINARY and len(self.labels) != 2:
            raise ValueError(f"binary task {self.name!r} must have exactly two labels")

    def __hash__(self) -> int:
        return hash((self.name, self.target))

    @property
    def num_classes(self) -> int:
        """Number of labels (classes, or columns of a multi-label array)."""
        return len(self.labels)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping (label keys become strings, as JSON requires)."""
        return {
            "name": self.name,
            "target": self.target.value,
            "labels": {str(key): name for key, name in self.labels.items()},
        }


@dataclass(frozen=True)
class SplitCounts:
    """Number of samples in each of the train, val and test splits."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    train: int
    val: int
    test: int

    def __post_init__(self) -> None:
        for name in SPLIT_NAMES:
            if getattr(self, name) < 0:
                raise ValueError(f"split {name!r} cannot have a negative count")

    @property
    def total(self) -> int:
        """Sum over the three splits."""
        return self.train + self.val + self.test

    def as_dict(self) -> dict[str, int]:
        """``{"train": ..., "val": ..., "test": ...}``."""
        return {name: getattr(self, name) for name in SPLIT_NAMES}


@dataclass(frozen=True)
class InputSize:
    """Shape of one image: channels first, as upstream writes it."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    channels: int
    height: int
    width: int

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError("channels must be 1 or 3")
        if self.height <= 0 or self.width <= 0:
            raise ValueError("height and width must be positive")

    def as_list(self) -> list[int]:
        """``[channels, height, width]``."""
        return [self.channels, self.height, self.width]


@dataclass(frozen=True)
class License:
    """The license of a MedIMeta dataset."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    name: str
    non_commercial: bool

    @property
    def short(self) -> str:
        """The abbreviation in the license name's last parentheses, e.g. ``CC BY-SA 4.0``."""
        match = re.search(r"\(([^()]+)\)\s*$", self.name)
        return match.group(1) if match else self.name


@dataclass(frozen=True)
class Source:
    """A dataset that a MedIMeta dataset was derived from, and how to cite it."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    name: str
    title: str | None = None
    url: str | None = None
    other_urls: tuple[str, ...] = ()
    license: str | None = None
    authors: str | None = None
    paper_title: str | None = None
    paper_url: str | None = None
    citations: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "name": self.name,
            "title": self.title,
            "url": self.url,
            "other_urls": list(self.other_urls),
            "license": self.license,
            "authors": self.authors,
            "paper_title": self.paper_title,
            "paper_url": self.paper_url,
            "citations": list(self.citations),
        }


@dataclass(frozen=True)
class Dataset:
    """One of the 19 datasets of MedIMeta, as described by its upstream ``info.yaml``."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    id: str
    name: str
    domain: str
    input_size: InputSize
    num_samples: int
    splits: SplitCounts
    original_splits: SplitCounts
    tasks: tuple[Task, ...]
    license: License
    archive: str
    summary: str | None = None
    sources: tuple[Source, ...] = ()
    domain_overlaps: tuple[str, ...] = ()
    subject_overlaps: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.id):
            raise ValueError(f"dataset id {self.id!r} must be lower-case letters, digits and _")
        if self.archive != f"{self.id}.zip":
            raise ValueError(f"archive of {self.id!r} must be {self.id}.zip")
        if not self.tasks:
            raise ValueError(f"dataset {self.id!r} has no tasks")
        for kind, counts in (("splits", self.splits), ("original_splits", self.original_splits)):
            if counts.total != self.num_samples:
                raise ValueError(
                    f"{kind} of {self.id!r} sum to {counts.total}, "
                    f"not num_samples={self.num_samples}"
                )
        names = [task.name for task in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"dataset {self.id!r} has duplicate task names")

    def __hash__(self) -> int:
        # The generated hash would fail on the label dicts; the id identifies a dataset.
        return hash(self.id)

    @property
    def task_names(self) -> tuple[str, ...]:
        """Exact (upstream) names of the tasks, in upstream order."""
        return tuple(task.name for task in self.tasks)

    @property
    def targets(self) -> frozenset[TaskTarget]:
        """The kinds of task this dataset offers."""
        return frozenset(task.target for task in self.tasks)

    def task(self, name: str) -> Task:
        """Find a task by name, case-insensitively, or by a unique beginning (``disease``
        for ``disease labels``), as ``--classes`` finds classes; exact names win over
        folded ones, whole names over beginnings.

        Raises :class:`UsageError` listing the candidates when a beginning fits several
        tasks, :class:`UnknownTaskError` naming the closest task when it fits none.
        """
        for task in self.tasks:
            if task.name == name:
                return task
        folded = name.casefold().strip()
        for task in self.tasks:
            if task.name.casefold() == folded:
                return task
        starting = [
            task for task in self.tasks if folded and task.name.casefold().startswith(folded)
        ]
        if len(starting) == 1:
            return starting[0]
        if starting:
            raise UnknownTaskError.ambiguous(
                name,
                [task.name for task in starting],
                context=f"of dataset {self.id!r}",
                hint=f"Give more of the name, for example --task {starting[0].name!r}.",
            )
        raise UnknownTaskError(
            name,
            self.task_names,
            suggestion=closest(name, self.task_names),
            context=f"for dataset {self.id!r}",
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON summary shared by ``list --json`` and ``info --json``."""
        return {
            "id": self.id,
            "name": self.name,
            "domain": self.domain,
            "num_samples": self.num_samples,
            "splits": self.splits.as_dict(),
            "original_splits": self.original_splits.as_dict(),
            "input_size": self.input_size.as_list(),
            "tasks": [task.to_json() for task in self.tasks],
            "license": self.license.name,
            "non_commercial": self.license.non_commercial,
            "archive": self.archive,
        }

    def details_json(self) -> dict[str, Any]:
        """What ``info --json`` tells about the dataset beyond :meth:`to_json`."""
        return {
            "summary": self.summary,
            "channels": self.input_size.channels,
            "sources": [source.to_json() for source in self.sources],
            "domain_overlaps": list(self.domain_overlaps),
            "subject_overlaps": list(self.subject_overlaps),
        }


@dataclass(frozen=True)
class Record:
    """Where MedIMeta is published."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    record_id: int
    doi: str
    base_url: str
    version: str
    project_url: str | None = None


@dataclass(frozen=True)
class Catalog:
    """All datasets of one MedIMeta release, and the record they are published in."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    record: Record
    datasets: tuple[Dataset, ...]

    def __post_init__(self) -> None:
        if len(self._by_id) != len(self.datasets):
            raise ValueError("dataset ids must be unique")
        if len(self._by_folded_id) != len(self.datasets):
            # Ids are matched like domains (case, spaces, - and _ do not matter).
            raise ValueError("dataset ids must differ in more than case, spaces, - and _")

    @cached_property
    def _by_id(self) -> dict[str, Dataset]:
        return {dataset.id: dataset for dataset in self.datasets}

    @cached_property
    def _by_folded_id(self) -> dict[str, Dataset]:
        return {fold_name(dataset.id): dataset for dataset in self.datasets}

    @property
    def ids(self) -> tuple[str, ...]:
        """Dataset ids in catalog order."""
        return tuple(self._by_id)

    @property
    def domains(self) -> tuple[str, ...]:
        """Distinct domain names, in catalog order."""
        return tuple(dict.fromkeys(dataset.domain for dataset in self.datasets))

    def get(self, dataset_id: str) -> Dataset:
        """The dataset with this id, spelt as a domain may be (case, spaces, ``-`` and ``_``
        do not matter: ``DR-Regular`` is ``dr_regular``); :class:`UnknownDatasetError` if
        none."""
        dataset = self._by_id.get(dataset_id) or self._by_folded_id.get(fold_name(dataset_id))
        if dataset is None:
            raise UnknownDatasetError(
                dataset_id, self.ids, suggestion=closest(dataset_id, self.ids)
            )
        return dataset

    def resolve(self, dataset_ids: Iterable[str]) -> tuple[Dataset, ...]:
        """Datasets for a list of ids, in the order given, without duplicates."""
        found = [self.get(dataset_id) for dataset_id in dataset_ids]
        return tuple(dict.fromkeys(found))

    def select(
        self,
        dataset_ids: Iterable[str],
        domains: Iterable[str] = (),
        everything: bool = False,
        *,
        hint: str = "Name dataset ids or domains.",
    ) -> tuple[Dataset, ...]:
        """Datasets named by ids and domains (or every one), without duplicates;
        :class:`UsageError` with ``hint`` when that names none."""
        if everything:
            return self.datasets
        chosen = [*self.resolve(dataset_ids), *self.in_domains(domains)]
        if not chosen:
            raise UsageError("no datasets given", hint=hint)
        return tuple(dict.fromkeys(chosen))

    def in_domains(self, names: Iterable[str]) -> tuple[Dataset, ...]:
        """Datasets in any of the named domains, in catalog order.

        A name may be a domain (``"Chest X-ray"``, ``chest-x-ray``), an alias from
        :data:`DOMAIN_ALIASES` (``ophthalmology``) or a dataset id (``crc``); case,
        spaces, ``-`` and ``_`` do not matter. Domains and aliases win over ids:
        ``fundus`` is every retinal fundus dataset, not only the dataset ``fundus``
        (:meth:`domain_notices` says so).
        """
        lookup = self._selection_lookup()
        wanted: set[str] = set()
        for name in names:
            ids = lookup.get(fold_name(name))
            if ids is None:
                choices = (*self.domains, *DOMAIN_ALIASES)
                raise UnknownDomainError(
                    name, choices, suggestion=closest(name, (*choices, *self.ids))
                )
            wanted.update(ids)
        return tuple(dataset for dataset in self.datasets if dataset.id in wanted)

    def _selection_lookup(self) -> dict[str, frozenset[str]]:
        """Folded domain names, aliases and ids, each mapped to the dataset ids it selects."""
        by_domain: dict[str, set[str]] = {}
        for dataset in self.datasets:
            by_domain.setdefault(dataset.domain, set()).add(dataset.id)
        lookup = {fold_name(domain): frozenset(ids) for domain, ids in by_domain.items()}
        for alias, domains in DOMAIN_ALIASES.items():
            lookup[fold_name(alias)] = frozenset().union(*(by_domain.get(d, ()) for d in domains))
        for dataset_id in self.ids:
            lookup.setdefault(fold_name(dataset_id), frozenset({dataset_id}))
        return lookup

    def domain_notices(self, names: Iterable[str]) -> tuple[str, ...]:
        """One line per name given as a domain that is also a dataset id but selects more
        than that dataset (``fundus``): the user who meant the dataset alone learns how."""
        notices: dict[str, str] = {}
        lookup = self._selection_lookup()
        for name in names:
            dataset = self._by_folded_id.get(fold_name(name))
            ids = lookup.get(fold_name(name))
            if dataset is None or ids is None or ids == {dataset.id}:
                continue
            notices.setdefault(
                dataset.id,
                f"{name!r} is also a dataset id; give it as an argument for that dataset alone "
                f"(--domain {name} selects {len(ids)} datasets)",
            )
        return tuple(notices.values())


def fold_name(name: str) -> str:
    """Fold a name (a domain, an alias, a dataset id) for lenient matching: lower case, no
    spaces, dashes or underscores."""
    return re.sub(r"[\s_\-]+", "", name.casefold())


def closest(name: str, choices: Sequence[str]) -> str | None:
    """The choice most like ``name``, or None when nothing is close enough."""
    import difflib  # only needed on the error path

    folded = {fold_name(choice): choice for choice in choices}
    match = difflib.get_close_matches(fold_name(name), list(folded), n=1, cutoff=0.6)
    if match:
        return folded[match[0]]
    # A prefix is a good guess too: "organs" -> "organs_axial".
    prefix = fold_name(name)
    prefixed = [choice for key, choice in folded.items() if prefix and key.startswith(prefix)]
    return prefixed[0] if prefixed else None


# --------------------------------------------------------------------------- record URLs


def record_api_url(base_url: str, record_id: int) -> str:
    """``GET`` this for the record's JSON: files with key, size and md5."""
    return f"{base_url.rstrip('/')}/api/records/{record_id}"


def file_download_url(base_url: str, record_id: int, key: str) -> str:
    """The URL of one archive that honours byte ranges (the API ``/content`` URL does not)."""
    from urllib.parse import quote

    return f"{base_url.rstrip('/')}/records/{record_id}/files/{quote(key)}?download=1"
