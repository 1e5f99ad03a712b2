"""``medimeta_cli.download.plan``: what a download fetches, its sizes, and the space it needs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from medimeta_cli.catalog.file import load_catalog
from medimeta_cli.dataset.layouts import ArchiveLayout, wanted_in_layout
from medimeta_cli.download.plan import (
    ItemState,
    PlanItem,
    UrlFormat,
    archive_sizes,
    space_needed,
    url_lines,
)
from medimeta_cli.errors import DiskSpaceError
from medimeta_cli.fsutil import human_bytes
from medimeta_cli.store.layout import RootLayout
from tests.conftest import FixtureData
from tests.support import zenodo_server as zs
from tests.support.helpers import make_downloader


def test_plan_reports_sizes_states_and_space(zenodo: zs.ZenodoServer, data_root: Path) -> None:
    zenodo.inject("crc.zip", zs.cut_after(3000))
    downloader, _ = make_downloader(retries=0)
    catalog = downloader.catalog
    downloader.download([catalog.get("crc")])
    downloader.download([catalog.get("cxr")])
    plan = make_downloader()[0].plan([catalog.get(i) for i in ("crc", "cxr", "dr_regular")])
    by_id = {item.dataset_id: item for item in plan.items}
    assert (by_id["crc"].state, by_id["crc"].partial_bytes) == ("partial", 3000)
    assert by_id["cxr"].state == "installed" and by_id["cxr"].to_fetch == 0
    assert by_id["dr_regular"].to_fetch == zenodo.file_size("dr_regular.zip")
    assert plan.to_fetch == zenodo.file_size("crc.zip") - 3000 + zenodo.file_size("dr_regular.zip")
    assert plan.free_bytes > 0 and plan.needed_bytes >= plan.to_fetch


def test_download_doctor_and_dry_run_agree_on_the_space_needed(
    zenodo: zs.ZenodoServer, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medimeta_cli.doctor.storage import check_disk_space
    from medimeta_cli.download import run as engine

    zenodo.inject("crc.zip", zs.cut_after(3000))  # a resumable partial counts in all three
    first, _ = make_downloader(retries=0)
    first.download([first.catalog.get("crc")])
    first.download([first.catalog.get("cxr")])  # installed: skipped by all three
    downloader, _ = make_downloader()
    datasets = list(downloader.catalog.datasets)
    planned = downloader.plan(datasets, jobs=2).needed_bytes
    checked: list[int] = []

    def refuse(path: Path, needed: int, what: str) -> None:
        checked.append(needed)
        raise DiskSpaceError("stop here")

    monkeypatch.setattr(engine, "ensure_space", refuse)
    with pytest.raises(DiskSpaceError, match="stop here"):
        downloader.download(datasets, jobs=2)
    doctor = check_disk_space(
        downloader.settings, downloader.catalog, downloader.manifest(), jobs=2
    )
    assert checked == [planned]
    assert f"needs {human_bytes(planned)} for 3 dataset(s)" in doctor.detail


def _item(dataset_id: str, size: int | None, state: ItemState, done: int = 0) -> PlanItem:
    return PlanItem(dataset_id, f"{dataset_id}.zip", "http://x", size, None, state, done)


def test_space_is_extraction_plus_the_largest_archives_at_once() -> None:
    items = [
        _item("a", 100, ItemState.ABSENT),
        _item("b", 50, ItemState.PARTIAL, done=20),
        _item("c", 70, ItemState.INSTALLED),
        _item("d", None, ItemState.ABSENT),
    ]
    assert [item.to_fetch for item in items] == [100, 30, 0, 0]
    assert space_needed(items, 1) == 150 + 100
    assert space_needed(items, 2) == 150 + 130


def test_layouts_and_states_keep_their_json_strings() -> None:
    item = replace(_item("a", 100, ItemState.PARTIAL, done=10), archive_layout=ArchiveLayout.HDF5)
    assert item.to_json()["state"] == "partial" and item.to_json()["layout"] == "hdf5"
    assert item.to_fetch == 90  # the hdf5 size is unknown: the whole archive counts
    assert replace(item, hdf5_size=40).to_fetch == 30
    assert wanted_in_layout("images/0.tiff", ArchiveLayout.FULL)
    assert not wanted_in_layout("images/0.tiff", ArchiveLayout.HDF5)
    assert wanted_in_layout("task_labels/a.npy", ArchiveLayout.HDF5)
    assert not wanted_in_layout("masks/0.png", ArchiveLayout.HDF5)
    assert wanted_in_layout("masks/0.png", ArchiveLayout.HDF5, with_masks=True)


def test_archive_sizes_are_estimated_until_a_download_reads_the_archive(
    fixture_data: FixtureData, data_root: Path
) -> None:
    from medimeta_cli.settings import resolve_settings
    from medimeta_cli.store.records import save_archive_sizes

    settings = resolve_settings()
    dataset = load_catalog(fixture_data.catalog).get("crc")
    assert archive_sizes(dataset, settings) == {"full": None, "hdf5": None, "hdf5_estimated": False}
    layout = RootLayout(settings.root)
    layout.records_dir.mkdir(parents=True)
    save_archive_sizes(layout, "crc.zip", "0" * 32, {"full": 10**9})
    estimate = archive_sizes(dataset, settings)
    assert estimate["full"] == 10**9 and estimate["hdf5_estimated"] is True
    assert estimate["hdf5"] < 10**9
    save_archive_sizes(layout, "crc.zip", "0" * 32, {"full": 10**9, "hdf5": 123})
    assert archive_sizes(dataset, settings) == {"full": 10**9, "hdf5": 123, "hdf5_estimated": False}


def _listed(dataset_id: str, state: ItemState, md5: str | None = "ab" * 16) -> PlanItem:
    url = f"https://zenodo.org/records/1/files/{dataset_id}.zip?download=1"
    return PlanItem(dataset_id, f"{dataset_id}.zip", url, 10, md5, state)


def test_url_lists_name_every_archive_for_each_downloader() -> None:
    items = [
        _listed("crc", ItemState.ABSENT),
        _listed("cxr", ItemState.PARTIAL, md5=None),
        _listed("gone", ItemState.NOT_IN_RECORD, md5=None),
    ]
    crc_url, cxr_url = items[0].url, items[1].url
    assert url_lines(items, UrlFormat.TSV) == [
        f"{crc_url}\t10\t{'ab' * 16}\tcrc.zip",
        f"{cxr_url}\t10\t\tcxr.zip",
    ]
    assert url_lines(items, UrlFormat.ARIA2C) == [
        crc_url,
        "  out=crc.zip",
        f"  checksum=md5={'ab' * 16}",
        cxr_url,
        "  out=cxr.zip",
    ]
    assert url_lines(items, UrlFormat.CURL) == [
        "continue-at = -",
        "location",
        f'url = "{crc_url}"',
        'output = "crc.zip"',
        f'url = "{cxr_url}"',
        'output = "cxr.zip"',
    ]
    assert url_lines(items, UrlFormat.WGET) == [crc_url, cxr_url]
    assert url_lines(items[2:], UrlFormat.CURL) == []


def test_an_archive_the_record_lacks_is_planned_as_such(
    zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    zenodo.remove_file("cxr.zip")
    downloader, _ = make_downloader(retries=0)
    plan = downloader.plan([downloader.catalog.get(i) for i in ("crc", "cxr")])
    assert [item.state for item in plan.items] == [ItemState.ABSENT, ItemState.NOT_IN_RECORD]
    assert [item.key for item in plan.not_in_record] == ["cxr.zip"]
    assert plan.manifest_known and plan.to_fetch == zenodo.file_size("crc.zip")
    assert plan.items[1].row()[4] == "not in the record"
