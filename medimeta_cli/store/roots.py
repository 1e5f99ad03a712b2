"""The data roots of one invocation and what is on disk in each (``medimeta paths``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from medimeta_cli.settings import Settings


class RootKind(str, Enum):
    """Whether the tool installs into a root or only reads from it."""

    DATA = "data root"
    SHARED = "shared (read-only)"


@dataclass(frozen=True)
class RootState:
    """Whether a root exists, can be written, and which datasets it holds."""

    path: Path
    kind: RootKind
    exists: bool
    writable: bool
    datasets: tuple[str, ...]

    @classmethod
    def probe(cls, path: Path, kind: RootKind, dataset_ids: tuple[str, ...]) -> RootState:
        """Look at ``path`` now: a dataset counts when its ``info.yaml`` is there."""
        exists = path.is_dir()
        return cls(
            path=path,
            kind=kind,
            exists=exists,
            writable=exists and os.access(path, os.W_OK),
            datasets=tuple(i for i in dataset_ids if (path / i / "info.yaml").is_file())
            if exists
            else (),
        )

    @property
    def access(self) -> str:
        """``missing``, ``writable`` or ``read-only``."""
        if not self.exists:
            return "missing"
        return "writable" if self.writable else "read-only"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "path": str(self.path),
            "kind": self.kind.value,
            "exists": self.exists,
            "writable": self.writable,
            "datasets": list(self.datasets),
        }

    def row(self) -> list[str]:
        """The row of the ``paths`` table: path, kind, access and number of datasets."""
        return [str(self.path), self.kind.value, self.access, str(len(self.datasets))]


def root_states(settings: Settings, dataset_ids: tuple[str, ...]) -> list[RootState]:
    """The data root, then every shared root, as they are on disk now."""
    return [
        RootState.probe(settings.root, RootKind.DATA, dataset_ids),
        *(
            RootState.probe(shared, RootKind.SHARED, dataset_ids)
            for shared in settings.shared_roots
        ),
    ]
