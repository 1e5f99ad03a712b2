"""The download engine against a real HTTP server on 127.0.0.1 and real upstream-layout archives."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from medimeta_cli.errors import DiskSpaceError, NotInRecordError, PermissionDeniedError
from medimeta_cli.events import BytesTransferred
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.records import read_file_manifest, read_install_record
from tests.conftest import FixtureData
from tests.support import archives
from tests.support import zenodo_server as zs
from tests.support.helpers import make_downloader, read_only_view, tmpfs


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


def test_disk_too_small_fails_early_and_loses_nothing(
    zenodo: zs.ZenodoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tmpfs(tmp_path / "small") as small:
        downloader, _ = make_downloader(root=small)
        with pytest.raises(DiskSpaceError, match=r"need .* free"):
            downloader.download([downloader.catalog.get("crc")])
        assert zenodo.requests_for("crc.zip", method="GET") == []


def test_read_only_root_is_a_permission_error(zenodo: zs.ZenodoServer, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    with read_only_view(source, tmp_path / "ro") as root:
        downloader, _ = make_downloader(root=root)
        with pytest.raises(PermissionDeniedError, match="cannot write"):
            downloader.download([downloader.catalog.get("cxr")])
    assert list(source.iterdir()) == []


def test_an_archive_the_record_lacks_fails_only_its_own_dataset(
    zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    zenodo.remove_file("crc.zip")
    downloader, _ = make_downloader()
    catalog = downloader.catalog
    crc, cxr = downloader.download([catalog.get("crc"), catalog.get("cxr")])
    assert crc.status == "not_in_record" and isinstance(crc.error, NotInRecordError)
    assert crc.error.key == "crc.zip" and crc.path is None
    assert cxr.status == "installed" and cxr.path == data_root / "cxr"
    assert zenodo.requests_for("crc.zip") == []
