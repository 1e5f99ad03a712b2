"""``medimeta_cli.install.installer``: installing archives safely, and archives fetched by
other means."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from medimeta_cli.dataset.layouts import ArchiveLayout
from medimeta_cli.errors import IntegrityError, OutputExistsError
from medimeta_cli.install.installer import Target, inspect_target
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.records import ArchiveCheck, read_install_record
from tests.conftest import FixtureData
from tests.support import archives
from tests.support import zenodo_server as zs
from tests.support.helpers import invoke, make_downloader, point_images_outside


@pytest.mark.parametrize("kind", ["zip_slip", "absolute", "symlink", "wrong_id"])
def test_malicious_archives_are_refused(
    zenodo: zs.ZenodoServer, data_root: Path, tmp_path: Path, kind: archives.MaliciousKind
) -> None:
    bad = archives.build_malicious_archive(tmp_path, "cxr", kind)
    zenodo.replace_file("cxr.zip", bad)
    downloader, _ = make_downloader()
    [outcome] = downloader.download([downloader.catalog.get("cxr")])
    assert isinstance(outcome.error, IntegrityError), outcome
    assert not (data_root / "cxr").exists()
    assert not (tmp_path.parent / "evil.txt").exists()
    assert not any((data_root / ".medimeta" / "tmp").glob("*"))


def test_install_from_folder_and_single_zip(
    zenodo: zs.ZenodoServer, data_root: Path, fixture_data: FixtureData
) -> None:
    make_downloader()[0].manifest()  # saves the record, as `--print-urls` does online
    zenodo.clear_log()
    offline, _ = make_downloader(offline=True)
    outcomes = offline.install_from([fixture_data.archives])
    assert {o.dataset_id: o.status for o in outcomes} == {
        "crc": "installed",
        "cxr": "installed",
        "dr_regular": "installed",
        "organs_axial": "installed",
    }
    assert zenodo.requests == []
    assert (data_root / "organs_axial" / "masks").is_dir()
    assert fixture_data.archive("crc").exists()  # the user's copy is left alone
    [again] = offline.install_from([fixture_data.archive("crc")])
    assert again.status == "skipped"


def test_install_from_rejects_a_damaged_copy(
    zenodo: zs.ZenodoServer, data_root: Path, fixture_data: FixtureData, tmp_path: Path
) -> None:
    copy = tmp_path / "cxr.zip"
    data = bytearray(fixture_data.archive("cxr").read_bytes())
    data[3000] ^= 0xFF
    copy.write_bytes(bytes(data))
    downloader, _ = make_downloader()
    [outcome] = downloader.install_from([copy])
    assert isinstance(outcome.error, IntegrityError) and "md5" in outcome.error.message
    assert not (data_root / "cxr").exists()


# ----------------------------------------------------------------------------- quick check


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([("crc/images.hdf5/", None)], "crc/images.hdf5 is missing"),
        (
            [("crc/images.hdf5/", None), ("crc/images.hdf5/inner", b"x")],
            "crc/images.hdf5 is a folder, not a regular file",
        ),
        ([("crc/images.hdf5", b"not hdf5 at all")], "crc/images.hdf5 cannot be opened as HDF5"),
    ],
    ids=["folder-entry", "folder-with-a-file", "not-hdf5"],
)
def test_an_archive_without_a_usable_images_hdf5_is_refused(
    zenodo: zs.ZenodoServer,
    data_root: Path,
    fixture_data: FixtureData,
    tmp_path: Path,
    extra: list[tuple[str, bytes | None]],
    message: str,
) -> None:
    """#9 item 8: images.hdf5 as a folder installed with exit 0 and passed verify --full."""
    bad = archives.rewrite_archive(
        fixture_data.archive("crc"), tmp_path / "bad", drop={"crc/images.hdf5"}, extra=extra
    )
    zenodo.replace_file("crc.zip", bad)
    downloader, _ = make_downloader()
    [outcome] = downloader.download([downloader.catalog.get("crc")])
    assert isinstance(outcome.error, IntegrityError), outcome
    assert message in outcome.error.message
    assert not (data_root / "crc").exists()
    assert read_install_record(RootLayout(data_root), "crc") is None
    assert not any((data_root / ".medimeta" / "tmp").iterdir())


@pytest.mark.parametrize("kind", ["external", "virtual"])
def test_images_stored_outside_the_archive_are_refused_at_install(
    runner: CliRunner, zenodo: zs.ZenodoServer, data_root: Path, tmp_path: Path, kind: str
) -> None:
    """#9 item 5 at install time: exit 4, nothing installed, the outside file never read."""
    folder = archives.write_dataset_dir(archives.CRC, tmp_path / "made")
    outside = tmp_path / "outside.bin"
    point_images_outside(folder, outside, kind)
    zenodo.replace_file("crc.zip", archives.archive_from_folder(folder, tmp_path / "zips"))
    before = outside.stat().st_atime_ns
    result = invoke(runner, "download", "crc")
    assert result.exit_code == 4, result.stderr
    assert "refusing crc.zip: crc/images.hdf5 'images'" in result.stderr
    assert "whose data lives in other files" in result.stderr
    assert not (data_root / "crc").exists()
    assert read_install_record(RootLayout(data_root), "crc") is None
    assert outside.stat().st_atime_ns == before


# ----------------------------------------------------------------------------- stray entries


def test_what_lies_where_a_dataset_belongs(tmp_path: Path) -> None:
    """#9 item 7: only an absent path, an empty folder or a dataset folder is accepted;
    links are never followed, and nothing is deleted."""
    target = tmp_path / "cxr"
    assert inspect_target(target) is Target.ABSENT
    target.mkdir()
    assert inspect_target(target) is Target.EMPTY_FOLDER
    (target / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match=r"holding files but no info\.yaml"):
        inspect_target(target)
    (target / "info.yaml").write_text("id: cxr\n")
    assert inspect_target(target) is Target.DATASET
    elsewhere = target.rename(tmp_path / "elsewhere")
    target.symlink_to(elsewhere)  # a link to a real dataset folder
    with pytest.raises(OutputExistsError, match="is a symbolic link") as caught:
        inspect_target(target)
    assert str(elsewhere) in caught.value.message and "Move" in caught.value.hint
    target.unlink()
    target.write_text("a file")
    with pytest.raises(OutputExistsError, match="is a regular file, not a dataset folder"):
        inspect_target(target)
    assert (elsewhere / "notes.txt").read_text() == "mine"


# ----------------------------------------------------------------------------- what was checked


def test_records_claim_an_archive_md5_only_when_it_was_checked(
    zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    """#9 item 14: the hdf5 layout checks members' CRC-32 and sizes, never the archive's
    md5, yet the record stored the listed md5 as if it had been checked."""
    downloader, _ = make_downloader()
    [members] = downloader.download(
        [downloader.catalog.get("cxr")], archive_layout=ArchiveLayout.HDF5
    )
    [whole] = downloader.download([downloader.catalog.get("crc")])
    layout = RootLayout(data_root)
    hdf5 = read_install_record(layout, "cxr")
    assert hdf5 is not None and members.status == "installed"
    assert (hdf5.archive_md5, hdf5.archive_check) == (None, ArchiveCheck.MEMBERS.value)
    assert hdf5.listed_md5 == hdf5.source_md5 == zenodo.file_md5("cxr.zip")
    assert members.archive_md5 is None and members.to_json()["archive_md5"] is None
    full = read_install_record(layout, "crc")
    assert full is not None
    assert (full.archive_md5, full.archive_check) == (
        zenodo.file_md5("crc.zip"),
        ArchiveCheck.MD5.value,
    )
    assert whole.archive_md5 == zenodo.file_md5("crc.zip")
    # The upstream check still compares the md5 the record listed, checked or not.
    from medimeta_cli.zenodo.record import upstream_changes

    manifest = downloader.manifest()
    assert upstream_changes(layout, {"cxr": "cxr.zip"}, manifest, manifest) == []
