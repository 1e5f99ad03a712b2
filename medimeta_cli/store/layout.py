"""Where things live inside one data root.

A data root holds installed datasets exactly as the official loader reads them
(``<root>/<id>/info.yaml`` ...) and one hidden folder, ``<root>/.medimeta/``,
for the tool's own state, so dataset folders stay pristine::

    <root>/.medimeta/records/<record>.json      saved record manifests
    <root>/.medimeta/records/sizes.json         sizes of each archive's layouts
    <root>/.medimeta/partial/<key>.<uniq>.part  partial downloads, one per process
    <root>/.medimeta/partial/<key>.<uniq>.json  their sidecars (url, size, md5)
    <root>/.medimeta/locks/<id>.lock            one lock per dataset (+ .owner.json)
    <root>/.medimeta/installed/<id>.json        install record (small; read by `list`)
    <root>/.medimeta/installed/<id>.files.json  size, stamp and hashes of every file
    <root>/.medimeta/installed/<id>.stats.json  cached pixel sums of `medimeta stats`
    <root>/.medimeta/tmp/                        extraction folders, renamed into place
    <root>/.medimeta/archives/<key>              archives kept with --keep-archive
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from medimeta_cli.fsutil import ensure_writable_dir


@dataclass(frozen=True)
class RootLayout:
    """Paths inside one data root; creating them is left to the code that writes."""

    root: Path

    @property
    def state_dir(self) -> Path:
        """The hidden folder for the tool's own state."""
        return self.root / ".medimeta"

    @property
    def records_dir(self) -> Path:
        """Saved record manifests."""
        return self.state_dir / "records"

    @property
    def partial_dir(self) -> Path:
        """Partial downloads and their sidecars."""
        return self.state_dir / "partial"

    @property
    def locks_dir(self) -> Path:
        """Lock files."""
        return self.state_dir / "locks"

    @property
    def archives_dir(self) -> Path:
        """Archives kept with ``download --keep-archive``."""
        return self.state_dir / "archives"

    @property
    def installed_dir(self) -> Path:
        """Install records."""
        return self.state_dir / "installed"

    @property
    def tmp_dir(self) -> Path:
        """Extraction folders; on the same file system as the datasets, so renames are atomic."""
        return self.state_dir / "tmp"

    @property
    def version_check_path(self) -> Path:
        """The last check for a newer version of the record (read by ``list``)."""
        return self.records_dir / "versions.json"

    def dataset_dir(self, dataset_id: str) -> Path:
        """The folder the official loader reads for this dataset."""
        return self.root / dataset_id

    def install_record_path(self, dataset_id: str) -> Path:
        """The small install record of a dataset."""
        return self.installed_dir / f"{dataset_id}.json"

    def file_manifest_path(self, dataset_id: str) -> Path:
        """The per-file sizes, stamps and hashes of an installed dataset."""
        return self.installed_dir / f"{dataset_id}.files.json"

    def stats_cache_path(self, dataset_id: str) -> Path:
        """The cached pixel sums of an installed dataset (``medimeta stats``)."""
        return self.installed_dir / f"{dataset_id}.stats.json"


def make_state_dir(layout: RootLayout) -> bool:
    """Create the root's state folder, proved writable, and the data root with it if needed.

    Returns whether the data root itself was created: a root that did not exist is worth
    a word to the user (an unset variable in ``MEDIMETA_HOME=$SCRATCH/medimeta`` makes a
    folder at the file-system root), which the caller gives once.
    """
    created = not os.path.lexists(layout.root)
    ensure_writable_dir(layout.state_dir)
    return created
