"""Resolving dataset ids on the command line: the catalog's, and installed ones outside it.

Commands that read installed data (``verify``, ``export``, ``sample``, ``info``) take the
dataset's description from its own ``info.yaml``; an id the catalog does not know is
accepted when a dataset of that (safe) id is installed in the data root or a shared root.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medimeta_cli.dataset.installed import (
    InstalledDataset,
    catalog_entry_or_installed,
    installed_ids,
)
from medimeta_cli.dataset.installed import open_installed as installed_dataset

if TYPE_CHECKING:
    from medimeta_cli.catalog.datasets import Dataset
    from medimeta_cli.cli.session import Session


def catalog_entry(s: Session, dataset_id: str) -> Dataset | None:
    """The catalog's entry for an id (case-insensitive), or None when the catalog lacks it
    but a dataset of that id is installed; :class:`UnknownDatasetError` otherwise."""
    settings = s.settings
    return catalog_entry_or_installed(s.catalog, settings.root, settings.shared_roots, dataset_id)


def open_installed(s: Session, dataset_id: str) -> InstalledDataset:
    """An installed dataset by id, as its own ``info.yaml`` describes it, next to its
    catalog entry. :class:`NotInstalledError` when it is not installed anywhere;
    :class:`~medimeta_cli.dataset.gate.InfoError` when the gate refuses its info.yaml."""
    settings = s.settings
    return installed_dataset(s.catalog, settings.root, settings.shared_roots, dataset_id)


def local_ids(s: Session) -> list[str]:
    """Ids of installed datasets (data root and shared roots) that the catalog lacks."""
    known = set(s.catalog.ids)
    roots = (s.settings.root, *s.settings.shared_roots)
    return [dataset_id for dataset_id in installed_ids(roots) if dataset_id not in known]


def catalog_note(version: str, messages: list[str]) -> str:
    """The notice that installed data differs from the catalog (not damage)."""
    return (
        f"installed data differs from catalog v{version}: {'; '.join(messages)}; "
        "the record may be newer"
    )
