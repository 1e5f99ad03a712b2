"""Shared fixtures: every test runs with a private data root and a clean environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import CliRunner

if TYPE_CHECKING:
    from tests.support.zenodo_server import ZenodoServer

REPO = Path(__file__).resolve().parents[1]
REFERENCE_INFO = Path(
    os.environ.get(
        "MEDIMETA_REFERENCE_INFO", REPO.parent / "shared" / "reference" / "medimeta-info"
    )
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Drop every MEDIMETA_* variable and NO_COLOR; point MEDIMETA_HOME at a fresh folder."""
    for name in list(os.environ):
        if name.startswith("MEDIMETA_") or name == "NO_COLOR":
            monkeypatch.delenv(name)
    root = tmp_path / "root"
    monkeypatch.setenv("MEDIMETA_HOME", str(root))
    yield root


@pytest.fixture
def data_root(clean_env: Path) -> Path:
    """The data root every command of this test uses (not created yet)."""
    return clean_env


@pytest.fixture
def runner() -> CliRunner:
    """A CLI runner keeping stdout and stderr apart."""
    return CliRunner()


@pytest.fixture
def reference_info() -> Path:
    """The upstream info.yaml files of the v1.0 release (shared reference data)."""
    if not REFERENCE_INFO.is_dir():
        pytest.skip(f"reference info files not found at {REFERENCE_INFO}")
    return REFERENCE_INFO


# ----------------------------------------------------------------------------- data fixtures


@dataclass(frozen=True)
class FixtureData:
    """Small real archives in the upstream layout, and a catalog that describes them."""

    archives: Path
    catalog: Path
    specs: dict[str, Any]

    def archive(self, dataset_id: str) -> Path:
        return self.archives / f"{dataset_id}.zip"


@pytest.fixture(scope="session")
def fixture_data(tmp_path_factory: pytest.TempPathFactory) -> FixtureData:
    """Build crc (RGB), cxr (grayscale, multi-label), dr_regular (keys not 0..K-1) and
    organs_axial (masks) once per test session, plus a catalog built from their info.yaml."""
    from medimeta_cli.catalog.build import build_catalog
    from medimeta_cli.catalog.file import catalog_to_json
    from tests.support import archives

    base = tmp_path_factory.mktemp("fixture-data")
    info_dir = base / "info"
    info_dir.mkdir()
    for spec in archives.ALL_SPECS.values():
        archives.build_archive(spec, base / "archives")
        (info_dir / f"{spec.id}.yaml").write_text(archives.info_yaml(spec), encoding="utf-8")
    catalog = base / "catalog.json"
    catalog.write_text(catalog_to_json(build_catalog(info_dir)), encoding="utf-8")
    return FixtureData(base / "archives", catalog, dict(archives.ALL_SPECS))


@pytest.fixture
def zenodo(fixture_data: FixtureData, monkeypatch: pytest.MonkeyPatch) -> Iterator[ZenodoServer]:
    """A Zenodo-compatible server on 127.0.0.1 serving the fixture archives; the tool
    under test is pointed at it (and at the fixture catalog) through its environment."""
    from tests.support.zenodo_server import ZenodoServer

    files = {path.name: path for path in sorted(fixture_data.archives.glob("*.zip"))}
    with ZenodoServer(files) as server:
        monkeypatch.setenv("MEDIMETA_BASE_URL", server.url)
        monkeypatch.setenv("MEDIMETA_CATALOG", str(fixture_data.catalog))
        monkeypatch.setenv("MEDIMETA_TIMEOUT", "10")
        yield server


@dataclass(frozen=True)
class InstalledData:
    """The fixture datasets unpacked in a data root, as the official loader reads them."""

    root: Path
    catalog_path: Path
    specs: dict[str, Any]

    def catalog(self) -> Any:
        from medimeta_cli.catalog.file import load_catalog

        return load_catalog(self.catalog_path)


@pytest.fixture(scope="session")
def installed_session(
    fixture_data: FixtureData, tmp_path_factory: pytest.TempPathFactory
) -> InstalledData:
    from tests.support import archives

    root = tmp_path_factory.mktemp("installed")
    for spec in fixture_data.specs.values():
        archives.write_dataset_dir(spec, root)
    return InstalledData(root, fixture_data.catalog, fixture_data.specs)


@pytest.fixture
def installed(installed_session: InstalledData, monkeypatch: pytest.MonkeyPatch) -> InstalledData:
    """Commands of this test read the installed fixture datasets (and must not change them)."""
    monkeypatch.setenv("MEDIMETA_HOME", str(installed_session.root))
    monkeypatch.setenv("MEDIMETA_CATALOG", str(installed_session.catalog_path))
    return installed_session


@pytest.fixture
def shared_root(
    zenodo: ZenodoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A lab's shared root: crc and cxr installed by the tool, then mounted read-only and
    listed in MEDIMETA_PATH; the personal data root stays empty."""
    from tests.support.helpers import install_from_server, read_only_view

    source = tmp_path / "lab-data"
    install_from_server("crc", "cxr", root=source)
    with read_only_view(source, tmp_path / "shared") as shared:
        monkeypatch.setenv("MEDIMETA_PATH", str(shared))
        zenodo.clear_log()
        yield shared


class _SlowWatch:
    """Names, at the end of a run, the tests that took longer than :data:`SLOW_SECONDS`
    without the ``slow`` marker, so that ``pytest -m "not slow"`` stays the quick loop."""

    def __init__(self) -> None:
        self.unmarked: list[tuple[str, float]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        slow = report.when == "call" and report.duration > SLOW_SECONDS
        if slow and "slow" not in report.keywords:
            self.unmarked.append((report.nodeid, report.duration))

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.unmarked:
            terminalreporter.section(f"slower than {SLOW_SECONDS} s without the slow marker")
            for nodeid, seconds in sorted(self.unmarked, key=lambda item: -item[1]):
                terminalreporter.write_line(f"{seconds:5.1f} s  {nodeid}")


#: A test slower than this should carry ``@pytest.mark.slow``.
SLOW_SECONDS = 1.5


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_SlowWatch(), "medimeta-slow-watch")
