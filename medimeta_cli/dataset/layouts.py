"""The install layouts of an archive: which of its files each one holds.

``full`` holds the whole archive; ``hdf5`` only what the official loader reads. Only
the standard library is imported: ``info`` and ``list`` use this.
"""

from __future__ import annotations

from enum import Enum


class ArchiveLayout(str, Enum):
    """Which files of an archive an install holds."""

    FULL = "full"  # the whole archive
    HDF5 = "hdf5"  # only what the official loader reads (about half)


#: What the official loader reads; the TIFF copies of the images are not among it.
LOADER_FILES = frozenset({"info.yaml", "LICENSE", "annotations.csv", "images.hdf5"})
LOADER_FOLDERS = ("task_labels/", "splits/", "original_splits/")


def wanted_in_layout(path: str, layout: ArchiveLayout, *, with_masks: bool = False) -> bool:
    """Whether a dataset file (its path inside the dataset folder) belongs to an install of
    this layout."""
    if layout is ArchiveLayout.FULL:
        return True
    if path in LOADER_FILES or path.startswith(LOADER_FOLDERS):
        return True
    return with_masks and path.startswith("masks/")


def sizes_key(layout: ArchiveLayout, *, with_masks: bool = False) -> str:
    """The key of a layout's size in the saved sizes (``sizes.json``)."""
    if layout is ArchiveLayout.HDF5 and with_masks:
        return "hdf5_with_masks"
    return layout.value
