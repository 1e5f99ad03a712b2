"""Shared fixtures: every test runs with a private data root and a clean environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

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
