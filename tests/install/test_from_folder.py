"""``medimeta_cli.install.from_folder``: installing an unzipped dataset folder
(``--from <id>/``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from medimeta_cli.errors import DiskSpaceError, IntegrityError, UsageError
from medimeta_cli.install.from_folder import is_dataset_folder, list_dataset_folder
from medimeta_cli.install.offers import archive_id, find_archives
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.records import ArchiveCheck, read_file_manifest, read_install_record
from tests.conftest import FixtureData
from tests.support import archives
from tests.support import zenodo_server as zs
from tests.support.archives import CRC, tiny_spec
from tests.support.helpers import make_downloader, tmpfs, write_installed


def snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry below ``folder`` (links not followed): mode, size and mtime."""
    found = {}
    for path in [folder, *folder.rglob("*")]:
        info = os.lstat(path)
        found[str(path.relative_to(folder))] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return found


@pytest.fixture
def catalog_env(fixture_data: FixtureData, monkeypatch: pytest.MonkeyPatch) -> FixtureData:
    """The fixture catalog, no server: a folder install needs no record."""
    monkeypatch.setenv("MEDIMETA_CATALOG", str(fixture_data.catalog))
    return fixture_data


def test_a_catalog_dataset_folder_installs_offline_and_is_left_unchanged(
    catalog_env: FixtureData, data_root: Path, tmp_path: Path
) -> None:
    folder, _ = write_installed(CRC, tmp_path / "copy")
    before = snapshot(folder)
    offline, _ = make_downloader(offline=True)
    [outcome] = offline.install_from([folder])
    assert (outcome.dataset_id, outcome.status) == ("crc", "installed"), outcome
    assert outcome.archive_md5 is None  # there is no archive
    assert snapshot(folder) == before

    layout = RootLayout(data_root)
    record = read_install_record(layout, "crc")
    assert record is not None
    assert record.archive_check == ArchiveCheck.FOLDER.value
    assert (record.archive_md5, record.listed_md5, record.archive_key) == (None, None, "crc/")
    manifest = read_file_manifest(layout, "crc")
    assert manifest is not None
    copied = {entry.path: entry.size for entry in manifest.files}
    assert copied == {
        str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()
    }
    for entry in manifest.files:
        assert (data_root / "crc" / entry.path).read_bytes() == (folder / entry.path).read_bytes()
    assert not any(layout.tmp_dir.iterdir())

    [again] = offline.install_from([folder])
    assert (again.status, again.detail) == ("skipped", "already installed")
    [forced] = offline.install_from([folder], force=True)
    assert forced.status == "installed"


def test_a_folder_outside_the_catalog_installs(
    catalog_env: FixtureData, data_root: Path, tmp_path: Path
) -> None:
    folder, _ = write_installed(tiny_spec("lab_scans"), tmp_path / "lab")
    offline, _ = make_downloader(offline=True)
    [outcome] = offline.install_from([folder])
    assert (outcome.dataset_id, outcome.status) == ("lab_scans", "installed"), outcome
    assert (data_root / "lab_scans" / "images.hdf5").is_file()


def _plant(folder: Path, kind: str, outside: Path) -> Path:
    """Put an entry the tool must refuse into a dataset folder; return its path."""
    if kind == "link to a file outside":
        target = folder / "images" / "extra.png"
        target.symlink_to(outside)
    elif kind == "link to a folder outside":
        target = folder / "more"
        target.symlink_to(outside.parent)
    elif kind == "info.yaml is a link":
        target = folder / "info.yaml"
        real = folder.parent / "info.yaml.real"
        target.rename(real)
        target.symlink_to(real)
    elif kind == "fifo":
        target = folder / "task_labels" / "pipe"
        os.mkfifo(target)
    else:  # a link where a required file belongs
        target = folder / "images.hdf5"
        target.unlink()
        target.symlink_to(outside)
    return target


@pytest.mark.parametrize(
    "kind",
    [
        "link to a file outside",
        "link to a folder outside",
        "info.yaml is a link",
        "fifo",
        "images.hdf5 is a link",
    ],
)
def test_links_and_special_files_refuse_the_folder_and_install_nothing(
    catalog_env: FixtureData, data_root: Path, tmp_path: Path, kind: str
) -> None:
    outside = tmp_path / "secret" / "outside.bin"
    outside.parent.mkdir()
    outside.write_bytes(b"not part of any dataset")
    outside_before = snapshot(outside.parent)
    folder, _ = write_installed(CRC, tmp_path / "copy")
    planted = _plant(folder, kind, outside)
    before = snapshot(folder)

    offline, _ = make_downloader(offline=True)
    [outcome] = offline.install_from([folder])
    assert outcome.status == "failed" and isinstance(outcome.error, IntegrityError), outcome
    assert "is not a dataset in the MedIMeta format" in outcome.detail
    assert str(planted) in outcome.detail or "info.yaml" in outcome.detail
    assert not (data_root / "crc").exists()
    assert read_install_record(RootLayout(data_root), "crc") is None
    tmp_dir = RootLayout(data_root).tmp_dir
    assert not tmp_dir.exists() or not any(tmp_dir.iterdir())
    assert snapshot(folder) == before
    assert snapshot(outside.parent) == outside_before
    assert outside.read_bytes() == b"not part of any dataset"


def test_the_walk_names_the_entry_and_never_follows_it(tmp_path: Path) -> None:
    folder, _ = write_installed(tiny_spec(), tmp_path)
    (folder / "nested").mkdir()
    (folder / "nested" / "link").symlink_to("/dev/null")
    with pytest.raises(IntegrityError, match=r"nested/link is a symbolic link \(never followed\)"):
        list_dataset_folder(folder)
    (folder / "nested" / "link").unlink()
    folders, files = list_dataset_folder(folder)
    assert "nested" in folders and "info.yaml" in {f.relative for f in files}


def test_a_folder_must_be_named_after_its_info_yaml_id(
    catalog_env: FixtureData, data_root: Path, tmp_path: Path
) -> None:
    folder, _ = write_installed(tiny_spec("lab_scans"), tmp_path / "a")
    renamed = folder.with_name("other_scans")
    folder.rename(renamed)
    offline, _ = make_downloader(offline=True)
    [outcome] = offline.install_from([renamed])
    assert isinstance(outcome.error, IntegrityError), outcome
    assert "names dataset 'lab_scans', not 'other_scans'" in outcome.detail

    # A catalog id holding another dataset's info.yaml is refused the same way.
    crc = renamed.with_name("crc")
    renamed.rename(crc)
    [outcome] = offline.install_from([crc])
    assert isinstance(outcome.error, IntegrityError), outcome

    unsafe = crc.with_name("Bad-Name")
    crc.rename(unsafe)
    [outcome] = offline.install_from([unsafe])
    assert isinstance(outcome.error, UsageError), outcome
    assert not any(
        p.name in ("lab_scans", "other_scans", "crc", "Bad-Name") for p in data_root.glob("*")
    )


def test_a_folder_of_zips_keeps_its_meaning(fixture_data: FixtureData, tmp_path: Path) -> None:
    assert not is_dataset_folder(fixture_data.archives)
    folder, _ = write_installed(tiny_spec(), tmp_path)
    assert is_dataset_folder(folder)
    assert not is_dataset_folder(folder / "info.yaml")


def test_the_installed_folder_itself_is_not_installed_over_itself(
    catalog_env: FixtureData, data_root: Path
) -> None:
    folder, _ = write_installed(tiny_spec("lab_scans"), data_root)
    before = snapshot(folder)
    offline, _ = make_downloader(offline=True)
    [outcome] = offline.install_from([folder], force=True)
    assert isinstance(outcome.error, UsageError), outcome
    assert snapshot(folder) == before


def test_not_enough_space_is_told_before_copying(
    catalog_env: FixtureData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _ = write_installed(archives.with_num_images(CRC, 60), tmp_path / "copy")
    with tmpfs(tmp_path / "small", "size=64k") as small:
        monkeypatch.setenv("MEDIMETA_HOME", str(small))
        offline, _ = make_downloader(offline=True)
        [outcome] = offline.install_from([folder])
        assert isinstance(outcome.error, DiskSpaceError), outcome
        assert not (small / "crc").exists()


def test_an_install_from_a_folder_is_no_upstream_change(
    zenodo: zs.ZenodoServer, data_root: Path, tmp_path: Path
) -> None:
    """The record's md5 for crc.zip cannot be compared with a copy from a folder; the
    check used to report "installed copy came from md5 None"."""
    from medimeta_cli.zenodo.record import upstream_changes

    folder, _ = write_installed(CRC, tmp_path / "copy")
    downloader, _ = make_downloader()
    [outcome] = downloader.install_from([folder])
    assert outcome.status == "installed", outcome
    manifest = downloader.manifest()
    assert upstream_changes(RootLayout(data_root), {"crc": "crc.zip"}, manifest, None) == []


def test_from_takes_archives_saved_under_their_url_name(tmp_path: Path) -> None:
    """wget saves a Zenodo URL as `<id>.zip?download=1`: that is an archive too, unless the
    plain `<id>.zip` stands beside it (the names only: the contents are checked later)."""
    for name in ("crc.zip", "crc.zip?download=1", "cxr.zip?download=1", "notes.txt"):
        (tmp_path / name).write_bytes(b"PK")
    found = find_archives([tmp_path])
    assert [p.name for p in found] == ["crc.zip", "cxr.zip?download=1"]
    assert [archive_id(p) for p in found] == ["crc", "cxr"]


# --------------------------------------------------------------------------- at any moment


def _swap_on_first_bytes(
    folder: Path, swapped: str, kind: str, outside: Path
) -> tuple[list[str], Callable[[object], None]]:
    """An event sink that, when the copy has its first bytes (of LICENSE, the first file),
    puts a link (or another real folder) where the sub-folder ``swapped`` was: the same
    files, so that following it would install them without a complaint."""
    done: list[str] = []

    def on_event(event: object) -> None:
        if done or type(event).__name__ != "BytesTransferred":
            return
        original = folder / swapped
        shutil.copytree(original, outside)
        original.rename(original.with_name(original.name + ".aside"))
        if kind == "link":
            original.symlink_to(outside, target_is_directory=True)
        else:
            shutil.copytree(outside, original)
        done.append(swapped)

    return done, on_event


@pytest.mark.parametrize("swapped", ["task_labels", "extra/deeper"])
@pytest.mark.parametrize("kind", ["link", "another folder"])
def test_a_sub_folder_swapped_during_the_copy_is_refused_not_followed(
    catalog_env: FixtureData, data_root: Path, tmp_path: Path, swapped: str, kind: str
) -> None:
    """Before, only the last component of each path was opened without following links:
    a folder swapped for a link after the walk was followed and its files installed."""
    folder, _ = write_installed(CRC, tmp_path / "copy")
    (folder / "extra" / "deeper").mkdir(parents=True)
    (folder / "extra" / "deeper" / "notes.txt").write_text("a lab's notes\n")
    outside = tmp_path / "attacker" / "planted"
    done, on_event = _swap_on_first_bytes(folder, swapped, kind, outside)

    offline, _ = make_downloader(offline=True)
    offline.on_event = on_event
    [outcome] = offline.install_from([folder])
    assert done == [swapped]
    assert outcome.status == "failed" and isinstance(outcome.error, IntegrityError), outcome
    if kind == "link":
        assert f"{folder / swapped} is a symbolic link (never followed)" in outcome.detail
    else:
        assert f"{folder / swapped} changed while it was being copied" in outcome.detail
    assert not (data_root / "crc").exists()
    assert read_install_record(RootLayout(data_root), "crc") is None
    tmp_dir = RootLayout(data_root).tmp_dir
    assert not tmp_dir.exists() or not any(tmp_dir.iterdir())


@pytest.mark.parametrize(
    ("name", "shown"),
    [(b"images/\xff\xfe.tiff", r"images/\udcff\udcfe.tiff"), (b"notes\x1b[2J.txt", r"\x1b")],
)
def test_a_name_that_is_not_plain_utf8_is_refused_in_one_line(
    catalog_env: FixtureData, data_root: Path, tmp_path: Path, name: bytes, shown: str
) -> None:
    """Before, a name that is not UTF-8 ended in an internal UnicodeEncodeError."""
    folder, _ = write_installed(CRC, tmp_path / "copy")
    with open(os.path.join(os.fsencode(folder), name), "wb") as handle:
        handle.write(b"x")
    offline, _ = make_downloader(offline=True)
    [outcome] = offline.install_from([folder])
    assert outcome.status == "failed" and isinstance(outcome.error, IntegrityError), outcome
    assert shown in outcome.detail and "\n" not in outcome.detail
    assert "\x1b" not in outcome.detail
    assert not (data_root / "crc").exists()
