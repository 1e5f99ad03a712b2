"""Where a data root keeps datasets and its own state."""

from __future__ import annotations

from pathlib import Path

from medimeta_cli.store.layout import RootLayout


def test_layout_keeps_state_out_of_dataset_folders(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path)
    assert layout.dataset_dir("crc") == tmp_path / "crc"
    for folder in (layout.partial_dir, layout.locks_dir, layout.installed_dir, layout.tmp_dir):
        assert folder.parent == tmp_path / ".medimeta"
