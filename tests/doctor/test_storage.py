"""The storage checks of ``medimeta doctor`` (disk space, write permission, file locks, shared
roots), against a 1 MiB tmpfs, a read-only bind mount and a real second process for locks."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from medimeta_cli.catalog.datasets import Catalog
from medimeta_cli.catalog.file import load_catalog
from medimeta_cli.doctor.network import probe_record_api
from medimeta_cli.doctor.storage import (
    LOCK_CHILD_TIMEOUT,
    check_disk_space,
    check_file_locks,
    check_shared_roots,
    check_write_permission,
)
from medimeta_cli.errors import PermissionDeniedError
from medimeta_cli.fsutil import human_bytes
from medimeta_cli.settings import resolve_settings
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.zenodo.record import ArchiveInfo, Manifest, save_record
from tests.conftest import FixtureData
from tests.support.helpers import install_stub, read_only_view, tmpfs
from tests.support.zenodo_server import ZenodoServer


def all_files(root: Path) -> list[str]:
    """Every path below ``root``, for 'nothing left behind' assertions."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# ----------------------------------------------------------------------------- disk space


def _manifest(catalog: Catalog, size: int) -> Manifest:
    files = {
        d.archive: ArchiveInfo(d.archive, size, "0" * 32, f"http://x/{d.archive}")
        for d in catalog.datasets
    }
    return Manifest(record_id=7884735, version="1.0", doi=None, files=files, fetched_at="then")


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs."""
    with tmpfs(tmp_path / "tiny") as mount_point:
        yield mount_point


def test_disk_space_fails_with_the_numbers_on_a_small_file_system(
    tiny_fs: Path, fixture_data: FixtureData
) -> None:
    catalog = load_catalog(fixture_data.catalog)
    save_record(RootLayout(tiny_fs), _manifest(catalog, 10 * 2**20))
    settings = resolve_settings({"root": tiny_fs})
    check = check_disk_space(settings, catalog, None)
    assert check.status == "fail", check
    # 4 archives extracted plus the 2 downloading at once: 6 x 10 MiB.
    assert "needs 60.0 MiB for 4 dataset(s)" in check.detail
    assert f"{human_bytes(shutil.disk_usage(tiny_fs).free)} free" in check.detail
    assert "saved record (then)" in check.detail
    assert check.hint and "MEDIMETA_HOME" in check.hint


def test_disk_space_warns_with_little_to_spare(tiny_fs: Path, fixture_data: FixtureData) -> None:
    catalog = load_catalog(fixture_data.catalog)
    layout = RootLayout(tiny_fs)
    save_record(layout, _manifest(catalog, 100_000))  # a placeholder, to measure what is left
    free = shutil.disk_usage(tiny_fs).free
    size = int(free / 6 / 1.1)  # needs 6 x size: fits, but with less than 20% to spare
    save_record(layout, _manifest(catalog, size))
    assert shutil.disk_usage(tiny_fs).free == free  # the record did not grow by a block
    check = check_disk_space(resolve_settings({"root": tiny_fs}), catalog, None)
    assert check.status == "warn", check
    assert "little room" in check.detail


def test_disk_space_ok_uses_the_fetched_record_and_skips_installed(
    zenodo: ZenodoServer, fixture_data: FixtureData, data_root: Path
) -> None:
    catalog = load_catalog(fixture_data.catalog)
    settings = resolve_settings()
    probe = probe_record_api(settings)
    install_stub(data_root, "crc")
    check = check_disk_space(settings, catalog, probe.manifest)
    assert check.status == "ok", check
    assert f"for {len(catalog.datasets) - 1} dataset(s)" in check.detail
    assert "record fetched now" in check.detail
    # What a shared root (MEDIMETA_PATH) holds is not downloaded either.
    shared = data_root.parent / "shared"
    install_stub(shared, "cxr")
    with_shared = replace(settings, shared_roots=(shared,))
    assert "for 2 dataset(s)" in check_disk_space(with_shared, catalog, probe.manifest).detail
    for dataset_id in ("cxr", "dr_regular", "organs_axial"):
        install_stub(data_root, dataset_id)
    done = check_disk_space(settings, catalog, probe.manifest)
    assert done.status == "ok" and "nothing left to download" in done.detail


def test_disk_space_warns_when_the_record_lacks_catalog_datasets(
    fixture_data: FixtureData, data_root: Path
) -> None:
    catalog = load_catalog(fixture_data.catalog)
    manifest = _manifest(catalog, 1000)
    partial = replace(manifest, files={k: v for k, v in manifest.files.items() if k != "crc.zip"})
    check = check_disk_space(resolve_settings(), catalog, partial)
    assert check.status == "warn", check
    assert (
        "for 3 dataset(s)" in check.detail and "1 dataset(s) of the catalog missing" in check.detail
    )
    assert check.hint and "MEDIMETA_CATALOG" in check.hint


def test_disk_space_unknown_without_any_record(fixture_data: FixtureData) -> None:
    check = check_disk_space(resolve_settings(), load_catalog(fixture_data.catalog), None)
    assert check.status == "warn" and "unknown" in check.detail


# ----------------------------------------------------------------------------- write permission


def test_write_permission_on_a_missing_root_leaves_nothing_behind(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b" / "root"
    check = check_write_permission(root)
    assert check.status == "ok" and "does not exist yet" in check.detail
    assert all_files(tmp_path) == []


def test_write_permission_keeps_existing_state(tmp_path: Path) -> None:
    records = RootLayout(tmp_path).records_dir
    records.mkdir(parents=True)
    assert check_write_permission(tmp_path).status == "ok"
    assert all_files(tmp_path) == [".medimeta", ".medimeta/records"]


def test_write_permission_fails_on_a_read_only_mount(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    with read_only_view(source, tmp_path / "ro") as target:
        check = check_write_permission(target)
    assert check.status == "fail", check
    assert "Read-only file system" in check.detail
    assert check.hint == PermissionDeniedError.default_hint
    assert all_files(source) == []


# ----------------------------------------------------------------------------- file locks


class NeverBlocks:
    """A lock that takes nothing: what flock amounts to on some network file systems."""

    def __init__(self, path: str) -> None:
        self.path = path

    def acquire(self, timeout: float) -> object:
        return self

    def release(self) -> object:
        return None


class Refused(NeverBlocks):
    """A lock whose flock call is refused by the file system."""

    def acquire(self, timeout: float) -> object:
        raise OSError(errno.ENOLCK, "No locks available")


def test_file_locks_work_between_two_processes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    check = check_file_locks(root)
    assert check.status == "ok", check
    assert "second process waits" in check.detail
    assert check.seconds < LOCK_CHILD_TIMEOUT
    assert all_files(tmp_path) == []  # the root did not exist: nothing is left


def test_file_locks_keep_an_existing_locks_folder(tmp_path: Path) -> None:
    locks = RootLayout(tmp_path).locks_dir
    locks.mkdir(parents=True)
    (locks / "crc.lock").touch()
    assert check_file_locks(tmp_path).status == "ok"
    assert [p.name for p in locks.iterdir()] == ["crc.lock"]


def test_broken_locks_fail_with_the_medimeta_locks_hint(tmp_path: Path) -> None:
    # We "hold" a lock that holds nothing; the real second process then gets it.
    check = check_file_locks(tmp_path, lock_factory=NeverBlocks)
    assert check.status == "fail", check
    assert "took the lock" in check.detail
    assert check.hint and "MEDIMETA_LOCKS=0" in check.hint
    assert all_files(tmp_path) == []  # probe lock and folders removed


def test_broken_locks_do_not_matter_when_locks_are_off(tmp_path: Path) -> None:
    check = check_file_locks(tmp_path, lock_factory=NeverBlocks, enabled=False)
    assert check.status == "ok" and "MEDIMETA_LOCKS=0" in check.detail


def test_refused_flock_warns_with_the_hint(tmp_path: Path) -> None:
    check = check_file_locks(tmp_path, lock_factory=Refused)
    assert check.status == "warn", check
    assert "No locks available" in check.detail
    assert check.hint and "MEDIMETA_LOCKS=0" in check.hint


def test_shared_roots(tmp_path: Path) -> None:
    assert check_shared_roots(()).status == "skip"
    shared = tmp_path / "shared"
    install_stub(shared, "crc")
    install_stub(shared, "cxr")
    (shared / "not-a-dataset").mkdir()
    ok = check_shared_roots((shared,))
    assert ok.status == "ok" and ok.detail == f"{shared}: 2 dataset(s)"
    missing = tmp_path / "gone"
    bad = check_shared_roots((shared, missing))
    assert bad.status == "warn"
    assert f"{missing}: missing" in bad.detail
    assert bad.hint and str(missing) in bad.hint and "MEDIMETA_PATH" in bad.hint
