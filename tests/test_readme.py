"""The README promises what CI does and documents every command."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from medimeta_cli.cli.app import app
from tests.conftest import FixtureData
from tests.support.helpers import installed_script

if TYPE_CHECKING:
    from tests.support.zenodo_server import ZenodoServer

REPO = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"Run the tests.*?```sh\n(.+?)\n```", readme, re.S)
    assert match, "README lost its test command"
    ci_lines = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert match.group(1) in ci_lines


def test_ci_runs_the_readme_lint_command_before_the_tests() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"Lint, formatting and types.*?```sh\n(.+?)\n```", readme, re.S)
    assert match, "README lost its lint command"
    for tool in ("ruff check", "ruff format --check", "mypy"):
        assert tool in match.group(1)
    ci_lines = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert match.group(1) in ci_lines
    assert ci_lines.index(match.group(1)) < next(
        i for i, line in enumerate(ci_lines) if "pytest" in line
    )


def test_readme_documents_every_command() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for command in app.registered_commands:
        assert f"### `medimeta {command.name}" in readme, command.name


def _offline_recipe() -> tuple[list[str], str]:
    """The README's offline recipe: its fetching lines (one per downloader) and its install
    line."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"Compute nodes without internet:\s*```sh\n(.+?)\n```", readme, re.S)
    assert match, "README lost its offline recipe"
    lines = [line for line in match.group(1).splitlines() if not line.startswith("#")]
    fetching = [line for line in lines if "--print-urls" in line]
    [install] = [line for line in lines if "--from" in line]
    return fetching, install.split("#")[0].strip()


def _require(tool: str) -> None:
    """A downloader the recipe names: CI installs them (.ci/tools) and must have them."""
    if shutil.which(tool) is None:
        if os.environ.get("CI"):
            raise AssertionError(f"{tool} is not installed in CI (.ci/tools installs it)")
        pytest.skip(f"SKIPPED LOUDLY: {tool} is not installed; `.ci/tools` installs it (CI does)")


@pytest.mark.slow
@pytest.mark.parametrize("tool", ["aria2c", "curl", "wget"])
def test_the_readme_offline_recipe_works_with_each_downloader(
    tool: str,
    zenodo: ZenodoServer,
    fixture_data: FixtureData,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Run the README's lines verbatim in a shell: each downloader saves every archive under
    its own name (resuming one already begun), and the offline install takes them all."""
    _require(tool)
    fetching, install = _offline_recipe()
    [line] = [line for line in fetching if f"&& {tool} " in line]
    script = installed_script()
    monkeypatch.setenv("PATH", f"{Path(script).parent}{os.pathsep}{os.environ['PATH']}")
    node = tmp_path / "node"
    node.mkdir()
    begun = fixture_data.archive("crc").read_bytes()[:5000]
    (node / "crc.zip").write_bytes(begun)  # an earlier run was cut
    for attempt in ("first", "again"):  # run again, everything there: still fine
        done = subprocess.run(
            ["bash", "-eu", "-o", "pipefail", "-c", line],
            cwd=node,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{attempt}: {done.stdout}{done.stderr}"
    ids = sorted(fixture_data.specs)
    for dataset_id in ids:
        archive = node / f"{dataset_id}.zip"
        assert archive.read_bytes() == fixture_data.archive(dataset_id).read_bytes(), dataset_id
    if tool != "aria2c":  # aria2c resumes its own way (its first request has no range)
        ranges = [r.range for r in zenodo.requests_for("crc.zip", method="GET")]
        assert ranges[0] == "bytes=5000-"  # the begun archive was resumed, not fetched afresh
    zenodo.clear_log()
    done = subprocess.run(
        ["bash", "-eu", "-c", install], cwd=node, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert zenodo.requests == []
    root = Path(os.environ["MEDIMETA_HOME"])
    assert sorted(p.parent.name for p in root.glob("*/info.yaml")) == ids
