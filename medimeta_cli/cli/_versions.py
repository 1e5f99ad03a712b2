"""What ``list`` and ``info`` say of a newer version of the record: the last check's answer
for an installed dataset (read from the data root, never asked of the server here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medimeta_cli.store.status import LocalStatus, State

if TYPE_CHECKING:
    from medimeta_cli.zenodo.versions import LatestCheck


def newer_version(
    versions: LatestCheck | None, dataset_id: str, status: LocalStatus
) -> dict[str, Any] | None:
    """``newer_version`` of a dataset installed in the data root, or None (not installed,
    or no check saved)."""
    if versions is None or status.state is State.ABSENT:
        return None
    return versions.newer_version(dataset_id)
