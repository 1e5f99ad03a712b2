"""Install records and file manifests: written, read back, and broken ones ignored."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.records import (
    ArchiveCheck,
    FileEntry,
    FileManifest,
    UnreadableRecordError,
    load_file_manifest,
    load_install_record,
    read_file_manifest,
    read_install_record,
    stage_install_record,
    write_install_record,
)
from tests.support.helpers import sample_install_record, tmpfs


def test_records_round_trip(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path)
    manifest = FileManifest((FileEntry("images/000001.tiff", 5, 123, ("ab",)),), block_size=4)
    write_install_record(layout, sample_install_record(), manifest)
    assert read_install_record(layout, "crc") == sample_install_record()
    assert read_file_manifest(layout, "crc") == manifest
    layout.install_record_path("crc").write_text("{broken")
    assert read_install_record(layout, "crc") is None


@pytest.mark.parametrize(
    "text",
    ["[1,2,3]", "{broken", '{"block_size": 4, "files": [["a", "5", 1, []]]}', "{}"],
    ids=["list", "not-json", "wrong-kinds", "empty-object"],
)
def test_an_unreadable_manifest_is_not_an_absent_one(tmp_path: Path, text: str) -> None:
    """#9 item 9: a manifest replaced by [1,2,3] read as "no record", switching checks off."""
    layout = RootLayout(tmp_path)
    manifest = FileManifest((FileEntry("LICENSE", 5, 123, ("ab",)),), block_size=4)
    write_install_record(layout, sample_install_record(), manifest)
    assert load_file_manifest(layout, "crc") == manifest
    assert load_file_manifest(layout, "cxr") is None  # absent: no error
    layout.file_manifest_path("crc").write_text(text)
    with pytest.raises(UnreadableRecordError, match=r"crc\.files\.json") as caught:
        load_file_manifest(layout, "crc")
    assert "--repair" in caught.value.hint
    assert read_file_manifest(layout, "crc") is None  # the tolerant reader, for listings


def test_an_unreadable_install_record_is_not_an_absent_one(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path)
    assert load_install_record(layout, "crc") is None
    for text in ("[1,2,3]", '{"dataset_id": 3}', "\x00"):
        layout.installed_dir.mkdir(parents=True, exist_ok=True)
        layout.install_record_path("crc").write_text(text)
        with pytest.raises(UnreadableRecordError):
            load_install_record(layout, "crc")


def test_records_say_what_was_checked_of_the_archive(tmp_path: Path) -> None:
    """#9 item 14: an hdf5-layout install checked members, not the archive's md5."""
    layout = RootLayout(tmp_path)
    full = sample_install_record()
    assert (full.archive_check, full.source_md5) == (ArchiveCheck.MD5.value, "0" * 32)
    members = replace(
        full,
        layout="hdf5",
        archive_md5=None,
        listed_md5="1" * 32,
        archive_check=ArchiveCheck.MEMBERS.value,
    )
    write_install_record(layout, members)
    assert read_install_record(layout, "crc") == members
    assert members.source_md5 == "1" * 32
    # A record written before the check was recorded claimed the listed md5 as checked.
    old = {k: v for k, v in full.to_json().items() if k not in ("archive_check", "listed_md5")}
    layout.install_record_path("crc").write_text(json.dumps({**old, "layout": "hdf5"}))
    read = read_install_record(layout, "crc")
    assert read is not None
    assert (read.archive_md5, read.listed_md5, read.archive_check) == (
        None,
        "0" * 32,
        ArchiveCheck.MEMBERS.value,
    )


def test_a_record_that_does_not_fit_is_staged_away_leaving_nothing(tmp_path: Path) -> None:
    """#9 item 6: the record is written in full before anything is renamed; when the disk
    is full, nothing of it is left, and the final names are untouched."""
    with tmpfs(tmp_path / "small", "size=64k") as small:
        layout = RootLayout(small)
        layout.installed_dir.mkdir(parents=True)
        (small / "filler").write_bytes(b"\0" * 56 * 1024)
        entries = tuple(FileEntry(f"images/{i:06d}.tiff", 5, 1, ("ab" * 32,)) for i in range(400))
        with pytest.raises(OSError, match="No space left"):
            stage_install_record(layout, sample_install_record(), FileManifest(entries))
        assert list(layout.installed_dir.iterdir()) == []
        (small / "filler").unlink()
        staged = stage_install_record(layout, sample_install_record(), FileManifest(entries))
        assert load_install_record(layout, "crc") is None  # nothing counts before the commit
        staged.commit()
        assert load_install_record(layout, "crc") == sample_install_record()
        manifest = load_file_manifest(layout, "crc")
        assert manifest is not None and len(manifest.files) == 400
        assert sorted(p.name for p in layout.installed_dir.iterdir()) == [
            "crc.files.json",
            "crc.json",
        ]


def test_an_install_record_that_is_a_link_is_unreadable_not_followed(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path / "root")
    write_install_record(layout, sample_install_record())
    outside = tmp_path / "outside.json"
    outside.write_bytes(layout.install_record_path("crc").read_bytes())
    layout.install_record_path("crc").unlink()
    layout.install_record_path("crc").symlink_to(outside)
    with pytest.raises(UnreadableRecordError):
        load_install_record(layout, "crc")
