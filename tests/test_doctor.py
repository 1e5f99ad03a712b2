"""The checks of ``medimeta doctor``, each against real conditions: the local Zenodo server, a
closed port, a 1 MiB tmpfs, a read-only bind mount and a real second process for locks."""

from __future__ import annotations

import errno
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from medimeta_cli import __version__
from medimeta_cli.catalog import Catalog, load_catalog
from medimeta_cli.doctor import (
    LOCK_CHILD_TIMEOUT,
    Check,
    RecordProbe,
    check_certificates,
    check_clock,
    check_disk_space,
    check_file_locks,
    check_proxy,
    check_shared_roots,
    check_versions,
    check_write_permission,
    mask_credentials,
    probe_record_api,
    run_checks,
)
from medimeta_cli.errors import PermissionDeniedError
from medimeta_cli.fsutil import human_bytes
from medimeta_cli.layout import RootLayout
from medimeta_cli.record import ArchiveInfo, Manifest, save_record
from medimeta_cli.settings import resolve_settings
from tests.conftest import FixtureData
from tests.helpers import install_stub, read_only_view, tmpfs
from tests.support.zenodo_server import RECORD, ZenodoServer, status


def closed_port_url() -> str:
    """An http URL nothing listens on: a port the kernel just handed out, closed again."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def all_files(root: Path) -> list[str]:
    """Every path below ``root``, for 'nothing left behind' assertions."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# ----------------------------------------------------------------------------- record API


def test_record_api_reports_latency_files_and_rate_limit(zenodo: ZenodoServer) -> None:
    probe = probe_record_api(resolve_settings())
    assert probe.check.status == "ok", probe.check
    assert probe.check.hint is None
    assert f"{len(zenodo.keys)} files" in probe.check.detail
    assert " ms" in probe.check.detail
    assert probe.manifest is not None and set(probe.manifest.files) == set(zenodo.keys)
    # The server's own headers were captured for the clock check and the detail.
    assert probe.server_date is not None and probe.server_date.endswith("GMT")
    assert probe.rate_remaining is not None
    assert f"{probe.rate_remaining} requests left" in probe.check.detail
    assert 0 < probe.check.seconds < 5
    assert len(zenodo.requests) == 1


def test_record_api_reports_a_retry(zenodo: ZenodoServer) -> None:
    zenodo.inject(RECORD, status(503, retry_after=0))
    probe = probe_record_api(resolve_settings())
    assert probe.check.status == "ok", probe.check
    assert "after 1 retry," in probe.check.detail
    assert len(zenodo.requests) == 2


def test_record_api_fails_with_a_hint_on_a_closed_port(monkeypatch: pytest.MonkeyPatch) -> None:
    url = closed_port_url()
    monkeypatch.setenv("MEDIMETA_BASE_URL", url)
    started = time.monotonic()
    probe = probe_record_api(resolve_settings())
    assert probe.check.status == "fail"
    assert url in probe.check.detail and "refused" in probe.check.detail.lower()
    assert probe.check.hint and "MEDIMETA_BASE_URL" in probe.check.hint
    assert probe.manifest is None and probe.server_date is None
    assert time.monotonic() - started < 5  # one short retry at most


def test_record_api_error_status_fails_with_the_servers_hint(
    zenodo: ZenodoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMETA_RECORD", "1")  # the server answers 404 for other records
    probe = probe_record_api(resolve_settings())
    assert probe.check.status == "fail"
    assert "HTTP 404" in probe.check.detail
    assert probe.check.hint and "MEDIMETA_RECORD" in probe.check.hint
    assert probe.server_date is not None  # the 404 still told us the server's time


def test_record_api_is_skipped_offline(zenodo: ZenodoServer) -> None:
    probe = probe_record_api(resolve_settings({"offline": True}))
    assert probe.check.status == "skip"
    assert "offline" in probe.check.detail
    assert zenodo.requests == []


# ----------------------------------------------------------------------------- clock


@pytest.mark.parametrize(
    ("offset", "status", "words"),
    [
        (0.0, "ok", "in step"),
        (120.0, "warn", "ahead of"),
        (-120.0, "warn", "behind"),
        (900.0, "fail", "ahead of"),
    ],
)
def test_clock_skew_against_the_servers_date_header(
    zenodo: ZenodoServer, offset: float, status: str, words: str
) -> None:
    # The server sends its real Date header; only our side of the comparison is shifted.
    probe = probe_record_api(resolve_settings(), clock=lambda: time.time() + offset)
    check = check_clock(probe)
    assert check.status == status, check
    assert words in check.detail
    if status == "ok":
        assert check.hint is None
    else:
        assert f"{abs(offset):.0f} s" in check.detail
        assert check.hint and "Retry-After" in check.hint


def test_clock_is_skipped_without_a_server_date() -> None:
    offline = RecordProbe(Check("record API", "skip", "offline"))
    assert check_clock(offline).status == "skip"
    failed = RecordProbe(Check("record API", "fail", "refused"))
    assert "no answer" in check_clock(failed).detail


# ----------------------------------------------------------------------------- proxy


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("http://alice:s3cret@proxy.example:3128", "http://alice:***@proxy.example:3128"),
        ("http://alice:s3cret@proxy.example:3128/x", "http://alice:***@proxy.example:3128/x"),
        ("alice:s3cret@proxy.example:3128", "alice:***@proxy.example:3128"),
        ("http://proxy.example:3128", "http://proxy.example:3128"),
        ("proxy.example:3128", "proxy.example:3128"),
    ],
)
def test_proxy_passwords_are_masked(value: str, shown: str) -> None:
    assert mask_credentials(value) == shown


def test_proxy_variables_in_any_case_are_listed_masked() -> None:
    environ = {
        "https_proxy": "http://alice:s3cret@proxy.example:3128",
        "NO_PROXY": "localhost,127.0.0.1",
        "PATH": "/usr/bin",
    }
    check = check_proxy(environ)
    assert check.status == "ok"
    assert "https_proxy=http://alice:***@proxy.example:3128" in check.detail
    assert "NO_PROXY=localhost,127.0.0.1" in check.detail
    assert "s3cret" not in check.detail and "PATH" not in check.detail


def test_proxy_is_suspected_when_the_record_api_failed() -> None:
    failed = Check("record API", "fail", "refused")
    check = check_proxy({"HTTPS_PROXY": "http://proxy.example:3128"}, record_check=failed)
    assert check.status == "warn" and check.hint and "NO_PROXY" in check.hint
    # NO_PROXY alone routes nothing through a proxy: no reason to blame one.
    assert check_proxy({"NO_PROXY": "*"}, record_check=failed).status == "ok"
    assert "no proxy" in check_proxy({}, record_check=failed).detail


# ----------------------------------------------------------------------------- certificates


def test_missing_certificate_file_fails(tmp_path: Path) -> None:
    missing = tmp_path / "corporate-ca.pem"
    check = check_certificates({"SSL_CERT_FILE": str(missing)})
    assert check.status == "fail"
    assert f"SSL_CERT_FILE={missing} does not exist" in check.detail
    assert check.hint and "SSL_CERT_FILE" in check.hint


def test_unloadable_certificate_file_fails(tmp_path: Path) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    check = check_certificates({"SSL_CERT_FILE": str(garbage)})
    assert check.status == "fail" and "cannot be loaded" in check.detail


def test_certificate_sources(tmp_path: Path) -> None:
    import certifi

    assert check_certificates({}).detail == f"certifi bundle {certifi.where()}"
    assert check_certificates({"SSL_CERT_FILE": certifi.where()}).status == "ok"
    assert check_certificates({"SSL_CERT_DIR": str(tmp_path)}).status == "ok"
    assert check_certificates({"SSL_CERT_DIR": str(tmp_path / "nope")}).status == "fail"
    # requests' variable does nothing for httpx: say so, and how to carry it over.
    ignored = check_certificates({"REQUESTS_CA_BUNDLE": "/etc/corp.pem"})
    assert ignored.status == "warn" and ignored.hint == "If the server needs that CA, set " + (
        "SSL_CERT_FILE=/etc/corp.pem too."
    )


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


# ----------------------------------------------------------------------------- versions, roots


def test_versions_come_from_metadata_without_importing_heavy_modules() -> None:
    probe = (
        "import json, sys\n"
        "from medimeta_cli.doctor import check_versions\n"
        "check = check_versions()\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'h5py', 'numpy', 'PIL'})\n"
        "print(json.dumps([check.status, check.detail, heavy]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    status, detail, heavy = json.loads(proc.stdout)
    assert heavy == []
    assert status == "ok"
    assert detail.startswith("Python ")
    assert f"medimeta-cli {__version__}" in detail
    for name in ("httpx", "h5py", "numpy", "Pillow", "pydantic", "typer", "rich", "filelock"):
        assert f"{name} " in detail
    assert check_versions().status == "ok"


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


# ----------------------------------------------------------------------------- all together


def test_run_checks_against_the_test_server(
    zenodo: ZenodoServer, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = data_root.parent / "shared"
    install_stub(shared, "crc")
    monkeypatch.setenv("MEDIMETA_PATH", str(shared))
    started = time.monotonic()
    checks = run_checks(resolve_settings(), environ={})
    assert time.monotonic() - started < 5
    statuses = {check.name: check.status for check in checks}
    assert statuses == {
        "record API": "ok",
        "proxy": "ok",
        "certificates": "ok",
        "disk space": "ok",
        "write permission": "ok",
        "file locks": "ok",
        "clock": "ok",
        "versions": "ok",
        "shared roots": "ok",
    }
    assert all(check.seconds >= 0 for check in checks)
    assert not data_root.exists()  # the doctor leaves the root as it found it
