"""Removing a dataset in the core: measured sizes, untracked and linked dataset folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medimeta_cli.errors import NotInstalledError
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.remove import dataset_usage, remove_dataset
from tests.support.helpers import install_stub


def test_remove_untracked_and_linked_datasets(tmp_path: Path) -> None:
    root = tmp_path / "root"
    layout = RootLayout(root)
    folder = install_stub(root, "bus")
    (folder / "images").mkdir()
    (folder / "images" / "1.tiff").write_bytes(b"t" * 1000)
    usage = dataset_usage(layout, "bus")
    assert (usage.bytes, usage.files, usage.recorded) == (1000 + 8, 2, False)
    removed = remove_dataset(layout, "bus")
    assert (removed.bytes_freed, removed.files, removed.leftover) == (1008, 2, None)
    assert not folder.exists() and list(layout.tmp_dir.iterdir()) == []
    # A linked dataset folder: the link goes, what it points to stays.
    target = install_stub(tmp_path / "elsewhere", "crc")
    (root / "crc").symlink_to(target, target_is_directory=True)
    removed = remove_dataset(layout, "crc")
    assert removed.files == 1 and not os.path.lexists(root / "crc")
    assert (target / "info.yaml").is_file()
    with pytest.raises(NotInstalledError):
        remove_dataset(layout, "crc")
