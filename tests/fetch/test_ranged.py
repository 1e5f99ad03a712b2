"""The hdf5 layout: only the members the loader reads, fetched with range requests."""

from __future__ import annotations

import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from medimeta_cli.dataset.layouts import ArchiveLayout
from medimeta_cli.dataset.verify import VerifyMode, verify_dataset
from medimeta_cli.errors import IntegrityError, NetworkError
from medimeta_cli.events import Notice
from medimeta_cli.fetch.ranged import _runs
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.records import read_install_record
from tests.conftest import FixtureData
from tests.support import archives
from tests.support import zenodo_server as zs
from tests.support.helpers import make_downloader

LOADER_FILES = {"info.yaml", "LICENSE", "annotations.csv", "images.hdf5"}


def installed_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def loader_files(spec: archives.DatasetSpec, *, masks: bool = False) -> set[str]:
    return {
        path
        for path in archives.expected_files(spec)
        if path in LOADER_FILES
        or path.startswith(("task_labels/", "splits/", "original_splits/"))
        or (masks and path.startswith("masks/"))
    }


def test_hdf5_layout_installs_what_the_loader_reads_with_half_the_bytes(
    zenodo: zs.ZenodoServer, data_root: Path, fixture_data: FixtureData
) -> None:
    downloader, _ = make_downloader()
    [outcome] = downloader.download(
        [downloader.catalog.get("crc")], archive_layout=ArchiveLayout.HDF5
    )
    assert outcome.status == "installed", outcome
    spec = fixture_data.specs["crc"]
    folder = data_root / "crc"
    assert installed_files(folder) == loader_files(spec)
    with h5py.File(folder / "images.hdf5") as handle:
        np.testing.assert_array_equal(handle["images"][:], archives.expected_images(spec))
    np.testing.assert_array_equal(
        np.load(folder / "task_labels" / "tissue class.npy"),
        archives.expected_labels(spec, "tissue class"),
    )
    size = zenodo.file_size("crc.zip")
    gets = zenodo.requests_for("crc.zip", method="GET")
    assert all(g.range is not None for g in gets)
    assert len(gets) <= 5
    assert zenodo.bytes_sent("crc.zip") <= 0.55 * size
    layout = RootLayout(data_root)
    record = read_install_record(layout, "crc")
    assert record is not None and record.layout == "hdf5"
    catalog = downloader.catalog
    assert verify_dataset(layout, catalog.get("crc"), mode=VerifyMode.DEEP).status == "ok"
    assert not any(layout.partial_dir.iterdir())


def test_masks_only_when_asked(
    zenodo: zs.ZenodoServer, data_root: Path, fixture_data: FixtureData
) -> None:
    downloader, _ = make_downloader()
    downloader.download(
        [downloader.catalog.get("organs_axial")], archive_layout=ArchiveLayout.HDF5, with_masks=True
    )
    files = installed_files(data_root / "organs_axial")
    assert files == loader_files(fixture_data.specs["organs_axial"], masks=True)
    assert any(f.startswith("masks/") for f in files)
    assert not any(f.startswith(("images/", "images_bboxes/")) for f in files)


def _data_start(archive: Path, member: str) -> int:
    with zipfile.ZipFile(archive) as handle:
        info = handle.getinfo(member)
        with open(archive, "rb") as raw:
            raw.seek(info.header_offset + 26)
            name_len, extra_len = np.frombuffer(raw.read(4), dtype="<u2")
        return info.header_offset + 30 + int(name_len) + int(extra_len)


def pass_listing_requests(zenodo: zs.ZenodoServer, archive: Path) -> None:
    """Queue no-op faults for the requests that read the end records and the central
    directory (one request when the directory fits in the tail read), so that the next
    fault hits the first request for member data."""
    from medimeta_cli.fetch.zipdir import _TAIL

    with zipfile.ZipFile(archive) as handle:
        directory = handle.start_dir
    size = archive.stat().st_size
    for _ in range(1 if directory >= size - _TAIL else 2):
        zenodo.inject(archive.name, zs.delay(0))


def test_a_cut_inside_images_hdf5_resumes_inside_it(
    zenodo: zs.ZenodoServer, data_root: Path, fixture_data: FixtureData
) -> None:
    archive = fixture_data.archive("crc")
    start = _data_start(archive, "crc/images.hdf5")
    downloader, events = make_downloader()
    pass_listing_requests(zenodo, archive)
    zenodo.inject("crc.zip", zs.cut_after(100_000))
    [outcome] = downloader.download(
        [downloader.catalog.get("crc")], archive_layout=ArchiveLayout.HDF5
    )
    assert outcome.status == "installed", outcome
    starts = [
        int(g.range.split("=")[1].split("-")[0])
        for g in zenodo.requests_for("crc.zip", method="GET")
        if g.range
    ]
    assert start + 50_000 < starts[-2] <= start + 100_000 + 16, starts  # inside images.hdf5
    assert any(isinstance(e, Notice) and "cut" in e.message for e in events)


def test_a_killed_run_is_resumed_by_the_next(
    zenodo: zs.ZenodoServer, data_root: Path, fixture_data: FixtureData
) -> None:
    archive = fixture_data.archive("crc")
    start = _data_start(archive, "crc/images.hdf5")
    pass_listing_requests(zenodo, archive)
    zenodo.inject("crc.zip", zs.cut_after(3_000_000))
    first, _ = make_downloader(retries=0)
    [failed] = first.download([first.catalog.get("crc")], archive_layout=ArchiveLayout.HDF5)
    assert isinstance(failed.error, NetworkError)
    assert not (data_root / "crc").exists()
    assert list((data_root / ".medimeta" / "partial").glob("crc.zip.members.*"))
    sent_first = zenodo.bytes_sent("crc.zip")
    zenodo.clear_log()
    second, _ = make_downloader()
    [outcome] = second.download([second.catalog.get("crc")], archive_layout=ArchiveLayout.HDF5)
    assert outcome.status == "installed", outcome
    starts = [
        int(g.range.split("=")[1].split("-")[0])
        for g in zenodo.requests_for("crc.zip", method="GET")
        if g.range
    ]
    # The second run asked for images.hdf5 from where the first run was cut, not from its start.
    assert any(start + 2_000_000 < s < start + 3_000_000 for s in starts), (start, starts)
    total = sent_first + zenodo.bytes_sent("crc.zip")
    assert total <= 0.55 * zenodo.file_size("crc.zip") + (1 << 20)


def test_server_without_ranges_falls_back_to_the_whole_archive(
    zenodo: zs.ZenodoServer, data_root: Path, fixture_data: FixtureData
) -> None:
    zenodo.ranges_enabled = False
    downloader, events = make_downloader()
    [outcome] = downloader.download(
        [downloader.catalog.get("cxr")], archive_layout=ArchiveLayout.HDF5
    )
    assert outcome.status == "installed", outcome
    assert any(isinstance(e, Notice) and "byte ranges" in e.message for e in events)
    assert installed_files(data_root / "cxr") == loader_files(fixture_data.specs["cxr"])
    record = read_install_record(RootLayout(data_root), "cxr")
    assert record is not None and record.layout == "hdf5"


def test_a_corrupted_member_is_refused(
    zenodo: zs.ZenodoServer, data_root: Path, fixture_data: FixtureData
) -> None:
    archive = fixture_data.archive("cxr")
    start = _data_start(archive, "cxr/images.hdf5")
    pass_listing_requests(zenodo, archive)
    # The first data request starts at some member; corrupt a byte well inside images.hdf5.
    zenodo.inject("cxr.zip", zs.corrupt(offset=start + 5000 - _first_data_request(archive)))
    downloader, _ = make_downloader()
    [outcome] = downloader.download(
        [downloader.catalog.get("cxr")], archive_layout=ArchiveLayout.HDF5
    )
    assert isinstance(outcome.error, IntegrityError)
    assert "CRC-32" in outcome.error.message
    assert not (data_root / "cxr").exists()


def _first_data_request(archive: Path) -> int:
    with zipfile.ZipFile(archive) as handle:
        infos = sorted(handle.infolist(), key=lambda i: i.header_offset)
    from medimeta_cli.dataset.layouts import wanted_in_layout
    from medimeta_cli.install.archive import member_path

    return next(
        i.header_offset
        for i in infos
        if not i.is_dir() and wanted_in_layout(member_path(i), ArchiveLayout.HDF5)
    )


def test_deflated_archives_work_too(
    zenodo: zs.ZenodoServer, data_root: Path, fixture_data: FixtureData, tmp_path: Path
) -> None:
    source = fixture_data.archive("cxr")
    deflated = archives.deflated_copy(source, tmp_path / "cxr.zip")
    zenodo.replace_file("cxr.zip", deflated)
    pass_listing_requests(zenodo, deflated)
    zenodo.inject("cxr.zip", zs.cut_after(50_000))  # a cut inside a deflated member
    downloader, _ = make_downloader()
    [outcome] = downloader.download(
        [downloader.catalog.get("cxr")], archive_layout=ArchiveLayout.HDF5
    )
    assert outcome.status == "installed", outcome
    with h5py.File(data_root / "cxr" / "images.hdf5") as handle:
        np.testing.assert_array_equal(
            handle["images"][:], archives.expected_images(fixture_data.specs["cxr"])
        )


@pytest.mark.parametrize("kind", ["zip_slip", "symlink"])
def test_malicious_members_are_refused_before_fetching(
    zenodo: zs.ZenodoServer, data_root: Path, tmp_path: Path, kind: archives.MaliciousKind
) -> None:
    zenodo.replace_file("cxr.zip", archives.build_malicious_archive(tmp_path, "cxr", kind))
    downloader, _ = make_downloader()
    [outcome] = downloader.download(
        [downloader.catalog.get("cxr")], archive_layout=ArchiveLayout.HDF5
    )
    assert isinstance(outcome.error, IntegrityError)
    assert not (data_root / "cxr").exists()


def test_neighbouring_members_share_a_request() -> None:
    class Info:
        def __init__(self, name: str) -> None:
            self.filename = name

    spans = [(Info("a"), 0, 10), (Info("b"), 10, 20), (Info("c"), 5_000_000, 5_000_010)]
    runs = _runs(spans)  # type: ignore[arg-type]
    assert [[s[0].filename for s in run] for run in runs] == [["a", "b"], ["c"]]


def _cut_members_run(zenodo: zs.ZenodoServer, fixture_data: FixtureData, data_root: Path) -> Path:
    """A first hdf5-layout run cut inside images.hdf5; the members folder it leaves."""
    pass_listing_requests(zenodo, fixture_data.archive("crc"))
    zenodo.inject("crc.zip", zs.cut_after(3_000_000))
    first, _ = make_downloader(retries=0)
    [failed] = first.download([first.catalog.get("crc")], archive_layout=ArchiveLayout.HDF5)
    assert isinstance(failed.error, NetworkError)
    [folder] = (data_root / ".medimeta" / "partial").glob("crc.zip.members.*")
    return folder


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_link_in_a_members_folder_is_never_appended_to(
    zenodo: zs.ZenodoServer, data_root: Path, fixture_data: FixtureData, tmp_path: Path
) -> None:
    folder = _cut_members_run(zenodo, fixture_data, data_root)
    half = folder / "data" / "images.hdf5"
    victim = tmp_path / "outside.bin"
    victim.write_bytes(half.read_bytes()[:1000])
    half.unlink()
    half.symlink_to(victim)
    before = {"": (victim.read_bytes(), victim.stat().st_mtime_ns)}
    downloader, _ = make_downloader()
    [outcome] = downloader.download(
        [downloader.catalog.get("crc")], archive_layout=ArchiveLayout.HDF5
    )
    assert outcome.status == "installed", outcome
    assert {"": (victim.read_bytes(), victim.stat().st_mtime_ns)} == before
    assert not (data_root / "crc" / "images.hdf5").is_symlink()
    assert list((data_root / ".medimeta" / "partial").glob("crc.zip.set-aside.*"))


def test_a_symlinked_members_folder_is_set_aside(
    zenodo: zs.ZenodoServer, data_root: Path, fixture_data: FixtureData, tmp_path: Path
) -> None:
    folder = _cut_members_run(zenodo, fixture_data, data_root)
    outside = tmp_path / "outside"
    folder.rename(outside)
    folder.symlink_to(outside)
    before = _snapshot(outside)
    downloader, _ = make_downloader()
    [outcome] = downloader.download(
        [downloader.catalog.get("crc")], archive_layout=ArchiveLayout.HDF5
    )
    assert outcome.status == "installed", outcome
    assert _snapshot(outside) == before
    [aside] = (data_root / ".medimeta" / "partial").glob("crc.zip.set-aside.*")
    assert aside.is_symlink()
