"""The pages under ``docs/`` hold what they say: every command, the package as it is, and
examples that run as shown. (The SLURM templates of ``docs/hpc.md`` run in
``tests/cli/test_slurm.py``, on a real cluster.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import medimeta_cli
from medimeta_cli.cli.app import app
from tests.conftest import FixtureData
from tests.support import docs
from tests.support.helpers import installed_script

if TYPE_CHECKING:
    from tests.support.zenodo_server import ZenodoServer

PACKAGE = docs.REPO / "medimeta_cli"


def test_the_commands_page_documents_every_command() -> None:
    titles = [m.group(2) for m in docs.headings(docs.page("commands.md"))]
    for command in app.registered_commands:
        assert any(t.startswith(f"`medimeta {command.name}") for t in titles), command.name


def test_the_architecture_page_draws_the_layer_map_of_the_package() -> None:
    """The layer map is written twice, in the package docstring (checked against every import
    by tests/test_layers.py) and on the architecture page: the two must be equal."""
    [drawn] = docs.code_blocks(docs.section(docs.page("architecture.md"), "Layers"), "")
    assert medimeta_cli.__doc__
    in_code = medimeta_cli.__doc__.split("::\n\n", 1)[1]
    assert drawn.split() == in_code.split()


def test_the_architecture_page_names_every_subpackage() -> None:
    tree = docs.section(docs.page("architecture.md"), "The package tree")
    for package in sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py")):
        assert f"`{package}/`" in tree, package
    for module in sorted(PACKAGE.glob("*.py")):
        if not module.name.startswith("_"):
            assert module.stem in tree, module.name


def python_files_named(text: str, scripts: set[str]) -> list[str]:
    """The ``*.py`` files a page names in backquotes that exist nowhere in the repository
    (job scripts the page itself defines aside)."""
    names = set(re.findall(r"`(?:python )?([\w/.]+\.py)\b", text)) - scripts
    present = [str(p.relative_to(docs.REPO)) for p in docs.REPO.rglob("*.py")]
    return sorted(n for n in names if not any(p == n or p.endswith(f"/{n}") for p in present))


@pytest.mark.parametrize("page", docs.pages(), ids=lambda p: p.name)
def test_every_module_a_page_names_exists(page: Path) -> None:
    """Old module names (``largereads.py``, ``segments.py``) do not survive a move."""
    assert python_files_named(docs.read(page), {"train.py"}) == []


def test_a_module_that_moved_is_found() -> None:
    text = "`zenodo/transport.py`, `largereads.py`, `python benchmarks/sample.py`, `train.py`"
    assert python_files_named(text, {"train.py"}) == ["largereads.py"]


def _offline_recipe() -> tuple[list[str], str]:
    """The HPC page's offline recipe: its fetching lines (one per downloader) and its install
    line."""
    [recipe] = docs.code_blocks(docs.section(docs.page("hpc.md"), "Compute nodes"), "sh")
    lines = [line for line in recipe.splitlines() if not line.startswith("#")]
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
def test_the_offline_recipe_works_with_each_downloader(
    tool: str,
    zenodo: ZenodoServer,
    fixture_data: FixtureData,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Run the recipe's lines verbatim in a shell: each downloader saves every archive under
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
