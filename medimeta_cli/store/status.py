"""The local state of a dataset: absent, partial, installed, verified or damaged."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.partials import partial_progress
from medimeta_cli.store.records import UnreadableRecordError, load_install_record

if TYPE_CHECKING:
    from medimeta_cli.catalog.datasets import Dataset
    from medimeta_cli.settings import Settings


class State(str, Enum):
    """Local state of one dataset in a data root."""

    ABSENT = "absent"
    PARTIAL = "partial"
    INSTALLED = "installed"
    VERIFIED = "verified"
    DAMAGED = "damaged"


@dataclass(frozen=True)
class LocalStatus:
    """The state of one dataset and where it lives."""

    dataset_id: str
    state: State
    path: Path | None = None
    percent: float | None = None
    checked_at: str | None = None
    shared: bool = False
    size_bytes: int | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "state": self.state.value,
            "path": str(self.path) if self.path else None,
            "percent": self.percent,
            "checked_at": self.checked_at,
            "shared": self.shared,
            "size_bytes": self.size_bytes,
        }

    def describe(self) -> str:
        """Short text for tables: ``partial 42%``, ``verified 2026-11-28``."""
        if self.state is State.PARTIAL and self.percent is not None:
            return f"partial {self.percent:.0f}%"
        text = self.state.value
        if self.state in (State.VERIFIED, State.DAMAGED) and self.checked_at:
            text = f"{text} {self.checked_at[:10]}"
        return f"{text} (shared)" if self.shared else text


def local_status(root: Path, dataset_id: str) -> LocalStatus:
    """Find out whether a dataset is absent, partly downloaded, installed, verified or damaged.

    A dataset counts as installed when its folder holds ``info.yaml``, as every
    unzipped upstream archive does, whether or not this tool installed it.
    """
    layout = RootLayout(root)
    folder = layout.dataset_dir(dataset_id)
    if (folder / "info.yaml").is_file():
        try:
            record = load_install_record(layout, dataset_id)
        except UnreadableRecordError:
            # An install record that exists but cannot be read is damage, not "installed".
            return LocalStatus(dataset_id, State.DAMAGED, folder)
        check = record.last_check if record else None
        size = record.total_bytes if record else None
        if check is None:
            return LocalStatus(dataset_id, State.INSTALLED, folder, size_bytes=size)
        state = State.VERIFIED if check.ok else State.DAMAGED
        return LocalStatus(dataset_id, state, folder, checked_at=check.at, size_bytes=size)
    progress = partial_progress(layout, f"{dataset_id}.zip")
    if progress is not None:
        done, expected = progress
        percent = 100.0 * done / expected if expected else 0.0
        return LocalStatus(dataset_id, State.PARTIAL, percent=round(percent, 1))
    return LocalStatus(dataset_id, State.ABSENT)


def locate(root: Path, shared_roots: Iterable[Path], dataset_id: str) -> LocalStatus:
    """The state of a dataset in the data root or, failing that, in the first shared root
    (``MEDIMETA_PATH``) that holds it installed."""
    status = local_status(root, dataset_id)
    if status.state not in (State.ABSENT, State.PARTIAL):
        return status
    for shared in shared_roots:
        found = local_status(shared, dataset_id)
        if found.state not in (State.ABSENT, State.PARTIAL):
            return replace(found, shared=True)
    return status


def root_of(status: LocalStatus) -> Path | None:
    """The data root holding an installed dataset (the parent of its folder)."""
    return status.path.parent if status.path is not None else None


def is_installed(root: Path, dataset_id: str) -> bool:
    """Whether a data root holds the dataset installed: its folder holds ``info.yaml``, as
    every unzipped upstream archive does, whoever installed it."""
    return (RootLayout(root).dataset_dir(dataset_id) / "info.yaml").is_file()


def installed_copy(settings: Settings, dataset: Dataset) -> Path | None:
    """The folder holding the dataset installed: in the data root, else in the first shared
    root (``MEDIMETA_PATH``) holding it; None when neither does."""
    for root in (settings.root, *settings.shared_roots):
        if is_installed(root, dataset.id):
            return RootLayout(root).dataset_dir(dataset.id)
    return None
