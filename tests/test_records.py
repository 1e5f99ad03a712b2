"""Install records and file manifests: written, read back, and broken ones ignored."""

from __future__ import annotations

from pathlib import Path

from medimeta_cli.layout import RootLayout
from medimeta_cli.records import (
    FileEntry,
    FileManifest,
    read_file_manifest,
    read_install_record,
    write_install_record,
)
from tests.helpers import sample_install_record


def test_records_round_trip(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path)
    manifest = FileManifest((FileEntry("images/000001.tiff", 5, 123, ("ab",)),), block_size=4)
    write_install_record(layout, sample_install_record(), manifest)
    assert read_install_record(layout, "crc") == sample_install_record()
    assert read_file_manifest(layout, "crc") == manifest
    layout.install_record_path("crc").write_text("{broken")
    assert read_install_record(layout, "crc") is None
