"""What is on disk: the layout of a data root and the local state of each dataset.

A data root holds installed datasets exactly as the official loader reads them
(``<root>/<id>/info.yaml`` ...) and one hidden folder, ``<root>/.medimeta/``,
for the tool's own state, so dataset folders stay pristine::

    <root>/.medimeta/records/     saved record manifests
    <root>/.medimeta/partial/     partial downloads and their sidecars
    <root>/.medimeta/locks/       one lock file per dataset
    <root>/.medimeta/installed/   one install record per dataset
    <root>/.medimeta/tmp/         extraction folders, renamed into place when complete

Reading state is cheap (a few ``stat`` calls per dataset) so ``list`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any


class State(str, Enum):
    """Local state of one dataset in a data root."""

    ABSENT = "absent"
    INSTALLED = "installed"


@dataclass(frozen=True)
class RootLayout:
    """Paths inside one data root; creating them is left to the code that writes."""

    root: Path

    @property
    def state_dir(self) -> Path:
        """The hidden folder for the tool's own state."""
        return self.root / ".medimeta"

    def dataset_dir(self, dataset_id: str) -> Path:
        """The folder the official loader reads for this dataset."""
        return self.root / dataset_id


@dataclass(frozen=True)
class LocalStatus:
    """The state of one dataset and where it lives."""

    dataset_id: str
    state: State
    path: Path | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {"state": self.state.value, "path": str(self.path) if self.path else None}


def local_status(root: Path, dataset_id: str) -> LocalStatus:
    """Find out whether a dataset is installed in ``root``.

    A dataset counts as installed when its folder holds ``info.yaml``, as every
    unzipped upstream archive does.
    """
    folder = RootLayout(root).dataset_dir(dataset_id)
    if (folder / "info.yaml").is_file():
        return LocalStatus(dataset_id, State.INSTALLED, folder)
    return LocalStatus(dataset_id, State.ABSENT)
