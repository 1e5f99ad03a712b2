"""The meta-training sources of a cross-domain target: the one rule for ``--sources-for``.

MedIMeta's paper trains a learner on every dataset that shares nothing with the target
task's dataset, then adapts it to the target: the sources of a target are the first task
of every dataset except the target itself and the datasets its own ``info.yaml`` names in
``domain_overlaps`` and ``subject_overlaps``. Where the target is installed, its own
``info.yaml`` (read through the gate) says which datasets overlap, as it does for the
official code; else the catalog does. ``list``, ``download``, ``verify`` and the Python
API all take their selection from :func:`sources_for`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medimeta_cli.catalog.datasets import Catalog, Dataset
from medimeta_cli.dataset.installed import InstalledDataset, catalog_entry_or_installed
from medimeta_cli.store.status import locate, root_of

__all__ = ["Sources", "sources_for"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sources:
    """The meta-training sources of one target dataset."""

    target: str
    """The target's dataset id."""
    overlaps_from: str
    """Where the overlaps were read: ``"installed"`` (its info.yaml) or ``"catalog"``."""
    excluded: tuple[str, ...]
    """The target and the datasets it overlaps with, in that order (as its info.yaml
    names them, known to the catalog or not)."""
    datasets: tuple[Dataset, ...]
    """The source datasets, in catalog order."""
    all_tasks: bool
    """Whether every task of a source is used (else its first)."""

    @property
    def ids(self) -> tuple[str, ...]:
        """The source dataset ids, in catalog order."""
        return tuple(dataset.id for dataset in self.datasets)

    def tasks_of(self, dataset: Dataset) -> tuple[str, ...]:
        """The task names used from one source: its first, or all with ``all_tasks``."""
        return dataset.task_names if self.all_tasks else dataset.task_names[:1]

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        """The (dataset id, task name) pairs to meta-train on, in catalog order."""
        return tuple((d.id, task) for d in self.datasets for task in self.tasks_of(d))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping: the target, what was left out and why, and the pairs."""
        return {
            "target": self.target,
            "overlaps_from": self.overlaps_from,
            "excluded": list(self.excluded),
            "all_tasks": self.all_tasks,
            "pairs": [{"dataset": d, "task": t} for d, t in self.pairs],
        }


def sources_for(
    catalog: Catalog,
    root: Path,
    shared_roots: Sequence[Path],
    target: str,
    *,
    all_tasks: bool = False,
) -> Sources:
    """The meta-training sources of ``target`` (a dataset id, case-insensitive).

    The overlaps come from the target's installed ``info.yaml`` when a data root (or a
    shared root) holds it, else from the catalog. Sources are the catalog's datasets.
    :class:`~medimeta_cli.errors.UnknownDatasetError` for an id neither the catalog nor a
    root knows; :class:`~medimeta_cli.dataset.gate.InfoError` when the gate refuses the
    installed ``info.yaml`` (what it says about overlaps cannot be trusted then).
    """
    entry = catalog_entry_or_installed(catalog, root, shared_roots, target)
    target_id = entry.id if entry is not None else target
    where = root_of(locate(root, shared_roots, target_id))
    if where is not None:
        described = InstalledDataset.read(where / target_id, entry, target_id).dataset
        overlaps_from = "installed"
    else:
        # catalog_entry_or_installed returns None only for an installed dataset.
        assert entry is not None
        described, overlaps_from = entry, "catalog"
    excluded = _unique((target_id, *described.domain_overlaps, *described.subject_overlaps))
    left_out = {name.casefold() for name in excluded}
    chosen = tuple(d for d in catalog.datasets if d.id.casefold() not in left_out)
    logger.debug("sources of %s (overlaps from %s): %s", target_id, overlaps_from, chosen)
    return Sources(target_id, overlaps_from, excluded, chosen, all_tasks)


def _unique(names: Sequence[str]) -> tuple[str, ...]:
    """Names in order, each once."""
    return tuple(dict.fromkeys(names))
