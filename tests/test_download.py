"""The download engine against a real HTTP server on 127.0.0.1 and real upstream-layout archives."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from medimeta_cli.catalog import load_catalog
from medimeta_cli.errors import (
    DiskSpaceError,
    IntegrityError,
    NetworkError,
    OfflineError,
    PermissionDeniedError,
    RemoteDataError,
)
from medimeta_cli.events import BytesTransferred, Notice
from medimeta_cli.layout import RootLayout
from medimeta_cli.records import read_file_manifest, read_install_record
from tests.conftest import FixtureData
from tests.helpers import make_downloader, read_only_view, tmpfs
from tests.support import archives
from tests.support import zenodo_server as zs


def test_fresh_download_installs_the_upstream_layout(
    zenodo: zs.ZenodoServer, data_root: Path, fixture_data: FixtureData
) -> None:
    downloader, events = make_downloader()
    catalog = downloader.catalog
    [outcome] = downloader.download([catalog.get("cxr")])
    assert outcome.status == "installed", outcome
    folder = data_root / "cxr"
    spec = fixture_data.specs["cxr"]
    assert sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
    ) == archives.expected_files(spec)
    with h5py.File(folder / "images.hdf5") as handle:
        np.testing.assert_array_equal(handle["images"][:], archives.expected_images(spec))
    np.testing.assert_array_equal(
        np.load(folder / "task_labels" / "disease labels.npy"),
        archives.expected_labels(spec, "disease labels"),
    )
    record = read_install_record(RootLayout(data_root), "cxr")
    assert record is not None
    assert record.archive_md5 == zenodo.file_md5("cxr.zip")
    assert record.archive_size == zenodo.file_size("cxr.zip")
    assert record.record_version == "1.0"
    manifest = read_file_manifest(RootLayout(data_root), "cxr")
    assert manifest is not None and len(manifest.files) == record.file_count
    # Archive and partial files are gone; no temporary folders are left behind.
    layout = RootLayout(data_root)
    assert list(layout.partial_dir.iterdir()) == []
    assert list(layout.tmp_dir.iterdir()) == []
    assert sum(e.count for e in events if isinstance(e, BytesTransferred)) == zenodo.file_size(
        "cxr.zip"
    )
    # A polite client: names itself, and used the URL that honours ranges.
    [get] = zenodo.requests_for("cxr.zip", method="GET")
    assert get.user_agent is not None and get.user_agent.startswith("medimeta-cli/")
    assert get.path.startswith("/records/7884735/files/cxr.zip")


def test_installed_datasets_are_skipped_without_network(zenodo: zs.ZenodoServer) -> None:
    downloader, _ = make_downloader()
    downloader.download([downloader.catalog.get("cxr")])
    zenodo.clear_log()
    again, _ = make_downloader(offline=True)
    [outcome] = again.download([again.catalog.get("cxr")])
    assert (outcome.status, outcome.detail) == ("skipped", "already installed")
    assert zenodo.requests == []


def test_keep_archive(zenodo: zs.ZenodoServer, data_root: Path) -> None:
    downloader, _ = make_downloader()
    downloader.download([downloader.catalog.get("cxr")], keep_archive=True)
    kept = data_root / ".medimeta" / "archives" / "cxr.zip"
    assert archives.md5_of(kept) == zenodo.file_md5("cxr.zip")


def test_resume_after_a_cut_fetches_only_the_missing_bytes(zenodo: zs.ZenodoServer) -> None:
    size = zenodo.file_size("crc.zip")
    cut = size // 3
    zenodo.inject("crc.zip", zs.cut_after(cut))
    downloader, events = make_downloader()
    [outcome] = downloader.download([downloader.catalog.get("crc")])
    assert outcome.status == "installed"
    gets = zenodo.requests_for("crc.zip", method="GET")
    assert [g.range for g in gets] == [None, f"bytes={cut}-"]
    assert zenodo.bytes_sent("crc.zip") == size
    assert any(isinstance(e, Notice) and "interrupted" in e.message for e in events)


def test_resume_across_runs(zenodo: zs.ZenodoServer, data_root: Path) -> None:
    size = zenodo.file_size("crc.zip")
    cut = size // 2
    zenodo.inject("crc.zip", zs.cut_after(cut))
    first, _ = make_downloader(retries=0)
    [failed] = first.download([first.catalog.get("crc")])
    assert isinstance(failed.error, NetworkError)
    assert not (data_root / "crc").exists()
    [part] = (data_root / ".medimeta" / "partial").glob("crc.zip.*.part")
    assert part.stat().st_size == cut
    second, _ = make_downloader()
    [outcome] = second.download([second.catalog.get("crc")])
    assert outcome.status == "installed"
    assert outcome.resumed_from == cut
    assert outcome.downloaded_bytes == size - cut
    assert zenodo.requests_for("crc.zip", method="GET")[-1].range == f"bytes={cut}-"
    assert zenodo.bytes_sent("crc.zip") == size


def test_server_ignoring_ranges_restarts_cleanly(zenodo: zs.ZenodoServer) -> None:
    zenodo.inject("crc.zip", zs.cut_after(1000))
    zenodo.inject("crc.zip", zs.ignore_range())
    downloader, events = make_downloader()
    [outcome] = downloader.download([downloader.catalog.get("crc")])
    assert outcome.status == "installed"
    assert any(isinstance(e, Notice) and "ignored the range" in e.message for e in events)


def test_retry_honours_retry_after(zenodo: zs.ZenodoServer) -> None:
    zenodo.inject("cxr.zip", zs.status(503, retry_after=1))
    zenodo.inject("cxr.zip", zs.status(429, retry_after=zs.http_date(1)))
    downloader, _ = make_downloader()
    waits: list[float] = []
    downloader.sleep = waits.append
    [outcome] = downloader.download([downloader.catalog.get("cxr")])
    assert outcome.status == "installed"
    assert [g.status for g in zenodo.requests_for("cxr.zip", method="GET")] == [503, 429, 200]
    assert waits[0] == 1.0
    assert 0.0 <= waits[1] <= 1.5


def test_gives_up_after_the_retries(zenodo: zs.ZenodoServer, data_root: Path) -> None:
    zenodo.inject("cxr.zip", zs.status(502), times=10)
    downloader, _ = make_downloader(retries=2)
    [outcome] = downloader.download([downloader.catalog.get("cxr")])
    assert isinstance(outcome.error, NetworkError)
    assert "giving up after 3 attempts" in outcome.error.message
    assert not (data_root / "cxr").exists()


def test_corrupted_bytes_are_an_integrity_error_and_nothing_is_installed(
    zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    zenodo.inject("cxr.zip", zs.corrupt(5000))
    downloader, _ = make_downloader()
    [outcome] = downloader.download([downloader.catalog.get("cxr")])
    assert isinstance(outcome.error, IntegrityError)
    assert "does not match the record" in outcome.error.message
    assert not (data_root / "cxr").exists()
    assert list((data_root / ".medimeta" / "partial").iterdir()) == []
    # The next run starts afresh and succeeds.
    [retry] = make_downloader()[0].download([downloader.catalog.get("cxr")])
    assert retry.status == "installed"


@pytest.mark.parametrize(
    ("fault", "message"),
    [(zs.html(), "HTML page instead of cxr.zip"), (zs.json_error(200), "JSON message instead")],
)
def test_error_pages_are_named_as_such(
    zenodo: zs.ZenodoServer, data_root: Path, fault: object, message: str
) -> None:
    zenodo.inject("cxr.zip", fault)
    downloader, _ = make_downloader()
    [outcome] = downloader.download([downloader.catalog.get("cxr")])
    assert isinstance(outcome.error, RemoteDataError)
    assert message in outcome.error.message
    assert not (data_root / "cxr").exists()


def test_record_api_shapes(zenodo: zs.ZenodoServer) -> None:
    for shape in ("legacy", "entries", "current"):
        zenodo.record_shape = shape
        downloader, _ = make_downloader()
        manifest = downloader.manifest()
        assert manifest.archive("crc.zip").md5 == zenodo.file_md5("crc.zip"), shape
        assert manifest.archive("crc.zip").size == zenodo.file_size("crc.zip"), shape


def test_manifest_is_saved_and_used_offline(zenodo: zs.ZenodoServer, data_root: Path) -> None:
    online, _ = make_downloader()
    fetched = online.manifest()
    saved = json.loads((data_root / ".medimeta" / "records" / "7884735.json").read_text())
    assert saved["fetched_at"] and saved["files"]["crc.zip"]["md5"] == zenodo.file_md5("crc.zip")
    offline, _ = make_downloader(offline=True)
    assert offline.manifest().files == fetched.files


def test_offline_without_data_is_an_offline_error(zenodo: zs.ZenodoServer) -> None:
    downloader, _ = make_downloader(offline=True)
    with pytest.raises(OfflineError):
        downloader.download([downloader.catalog.get("crc")])
    assert zenodo.requests == []


def test_upstream_change_is_reported_and_nothing_is_mixed(
    zenodo: zs.ZenodoServer, data_root: Path, fixture_data: FixtureData, tmp_path: Path
) -> None:
    downloader, _ = make_downloader()
    downloader.download([downloader.catalog.get("cxr")])
    before = read_install_record(RootLayout(data_root), "cxr")
    changed = archives.DatasetSpec(**{**vars(fixture_data.specs["cxr"]), "seed": 99})
    zenodo.replace_file("cxr.zip", archives.build_archive(changed, tmp_path))
    again, events = make_downloader()
    # Installed datasets are skipped without a fetch; fetching for another one reveals it.
    cxr, crc = again.download([again.catalog.get("cxr"), again.catalog.get("crc")])
    assert (cxr.status, crc.status) == ("skipped", "installed")
    warnings = [e.message for e in events if isinstance(e, Notice) and e.warning]
    assert any("upstream changed" in w and "cxr.zip" in w for w in warnings)
    assert read_install_record(RootLayout(data_root), "cxr") == before


def test_partial_of_an_old_version_is_discarded(
    zenodo: zs.ZenodoServer, data_root: Path, fixture_data: FixtureData, tmp_path: Path
) -> None:
    zenodo.inject("crc.zip", zs.cut_after(4000))
    make_downloader(retries=0)[0].download([load_catalog(fixture_data.catalog).get("crc")])
    changed = archives.DatasetSpec(**{**vars(fixture_data.specs["crc"]), "seed": 7})
    zenodo.replace_file("crc.zip", archives.build_archive(changed, tmp_path))
    downloader, events = make_downloader()
    [outcome] = downloader.download([downloader.catalog.get("crc")])
    assert outcome.status == "installed" and outcome.resumed_from == 0
    assert any("another version" in e.message for e in events if isinstance(e, Notice))
    record = read_install_record(RootLayout(data_root), "crc")
    assert record is not None and record.archive_md5 == zenodo.file_md5("crc.zip")


@pytest.mark.parametrize("kind", ["zip_slip", "absolute", "symlink", "wrong_id"])
def test_malicious_archives_are_refused(
    zenodo: zs.ZenodoServer, data_root: Path, tmp_path: Path, kind: str
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


def test_disk_too_small_fails_early_and_loses_nothing(
    zenodo: zs.ZenodoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tmpfs(tmp_path / "small") as small:
        downloader, _ = make_downloader(root=small)
        with pytest.raises(DiskSpaceError, match=r"need .* free"):
            downloader.download([downloader.catalog.get("crc")])
        assert zenodo.requests_for("crc.zip", method="GET") == []


def test_disk_filling_up_mid_transfer_keeps_the_partial(
    zenodo: zs.ZenodoServer, tmp_path: Path, fixture_data: FixtureData
) -> None:
    size = zenodo.file_size("crc.zip")
    with tmpfs(tmp_path / "small", f"size={size // 2}") as small:
        downloader, _ = make_downloader(root=small)
        # Pretend the space check passed, as it may when another job fills the disk meanwhile.
        import medimeta_cli.download as engine

        original = engine.ensure_space
        engine.ensure_space = lambda *a, **k: None  # type: ignore[assignment]
        try:
            [outcome] = downloader.download([downloader.catalog.get("crc")])
        finally:
            engine.ensure_space = original
        assert isinstance(outcome.error, DiskSpaceError)
        [part] = (small / ".medimeta" / "partial").glob("crc.zip.*.part")
        assert 0 < part.stat().st_size < size


def test_read_only_root_is_a_permission_error(zenodo: zs.ZenodoServer, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    with read_only_view(source, tmp_path / "ro") as root:
        downloader, _ = make_downloader(root=root)
        with pytest.raises(PermissionDeniedError, match="cannot write"):
            downloader.download([downloader.catalog.get("cxr")])
    assert list(source.iterdir()) == []
