"""Each kind of failure has its own documented exit code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medimeta_cli import errors
from medimeta_cli.cli.exit_codes import DESCRIPTIONS, ExitCode, exit_code_for
from tests.support import docs
from tests.support.helpers import invoke


def test_each_error_family_maps_to_a_distinct_code() -> None:
    samples = {
        errors.UnknownDatasetError("x", ["crc"]): ExitCode.USAGE,
        errors.ConfigError("x"): ExitCode.USAGE,
        errors.NetworkError("x"): ExitCode.NETWORK,
        errors.RemoteDataError("x"): ExitCode.NETWORK,
        errors.NotInRecordError(1, "x.zip"): ExitCode.NOT_IN_RECORD,
        errors.IntegrityError("x"): ExitCode.INTEGRITY,
        errors.DiskSpaceError("x"): ExitCode.DISK_SPACE,
        errors.LockTimeoutError("x"): ExitCode.LOCK_TIMEOUT,
        errors.OfflineError("x"): ExitCode.OFFLINE,
        errors.NotInstalledError("crc", "/r"): ExitCode.NOT_INSTALLED,
        errors.PermissionDeniedError("x"): ExitCode.PERMISSION,
        errors.CatalogError("x"): ExitCode.USAGE,
        KeyboardInterrupt(): ExitCode.INTERRUPTED,
        RuntimeError("x"): ExitCode.FAILURE,
    }
    for error, code in samples.items():
        assert exit_code_for(error) is code, error


def test_codes_are_distinct_and_described() -> None:
    values = [int(code) for code in ExitCode]
    assert len(set(values)) == len(values)
    assert set(DESCRIPTIONS) == set(ExitCode)


@pytest.mark.parametrize(
    ("page", "heading"),
    [("README.md", "Exit codes"), ("docs/commands.md", "Output and exit codes")],
)
def test_the_documentation_tables_every_code(page: str, heading: str) -> None:
    """The README's brief table and the full one of the commands page: every code, by number
    and name, in order, and nothing else."""
    section = docs.section(docs.read(docs.REPO / page), heading)
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \| [^|]+ \|$", section, re.M)
    assert rows == [(str(int(code)), code.name) for code in sorted(ExitCode, key=int)]


def test_every_error_carries_a_hint() -> None:
    for error_class in (
        errors.NetworkError,
        errors.IntegrityError,
        errors.DiskSpaceError,
        errors.LockTimeoutError,
        errors.OfflineError,
        errors.PermissionDeniedError,
    ):
        assert error_class("x").hint
        assert issubclass(error_class, errors.MedimetaError)


def test_a_bad_catalog_file_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "catalog.json"
    bad.write_text('{"record": 1}')
    monkeypatch.setenv("MEDIMETA_CATALOG", str(bad))
    result = invoke(CliRunner(), "info", "crc")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


@pytest.mark.parametrize("kind", ["file", "dangling link"])
def test_a_data_root_that_is_no_folder_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    home = tmp_path / "home"
    if kind == "file":
        home.write_text("not a folder")
    else:
        home.symlink_to(tmp_path / "gone")
    monkeypatch.setenv("MEDIMETA_HOME", str(home))
    result = invoke(CliRunner(), "list")
    assert result.exit_code == 2, result.stderr
    what = "not a folder" if kind == "file" else "a dangling link"
    assert result.stderr.splitlines() == [
        f"error: the data root {home} (from the MEDIMETA_HOME environment variable) is {what}",
        "hint: Point MEDIMETA_HOME (or --root) at a folder; a missing one is created.",
    ]
