"""Small helpers shared by test modules."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from medimeta_cli.cli.app import app


def install_stub(root: Path, dataset_id: str) -> Path:
    """Make a dataset look installed the way the official loader sees it (info.yaml present)."""
    folder = root / dataset_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "info.yaml").write_text(f"id: {dataset_id}\n", encoding="utf-8")
    return folder


def invoke(runner: CliRunner, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``medimeta ARGS`` in-process."""
    return runner.invoke(app, list(args), env=env, prog_name="medimeta")


def invoke_json(runner: CliRunner, *args: str) -> Any:
    """Run ``medimeta ARGS --json``, assert success and parse stdout."""
    result = invoke(runner, *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def installed_script() -> str:
    """Path of the installed ``medimeta`` script (this interpreter's first); skip if absent."""
    here = str(Path(sys.executable).parent)
    found = shutil.which("medimeta", path=here) or shutil.which("medimeta")
    if found is None:
        pytest.skip("the medimeta script is not installed")
    return found
