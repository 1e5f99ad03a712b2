"""The README is the first screen: short, with the install CI runs, the path from nothing to
a training loader, and facts that agree with the catalog."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from medimeta_cli.catalog.file import load_catalog
from tests.support import docs
from tests.support.helpers import installed_script

if TYPE_CHECKING:
    from tests.support.zenodo_server import ZenodoServer

README = docs.read(docs.README)
CI_LINES = (docs.REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
BUNDLED = docs.REPO / "medimeta_cli" / "data" / "catalog.json"


def test_the_readme_is_a_first_screen() -> None:
    assert len(README.splitlines()) < 260


def test_ci_runs_the_readme_install_and_test_command() -> None:
    match = re.search(r"Run the tests.*?```sh\n(.+?)\n```", README, re.S)
    assert match, "README lost its test command"
    assert match.group(1) in CI_LINES


def test_ci_runs_the_readme_lint_command_before_the_tests() -> None:
    match = re.search(r"Lint, formatting and types.*?```sh\n(.+?)\n```", README, re.S)
    assert match, "README lost its lint command"
    for tool in ("ruff check", "ruff format --check", "mypy"):
        assert tool in match.group(1)
    assert match.group(1) in CI_LINES
    assert CI_LINES.index(match.group(1)) < next(
        i for i, line in enumerate(CI_LINES) if "pytest" in line
    )


def test_the_user_install_is_the_one_ci_installs_from() -> None:
    """CI installs the checkout with pip (``pip install ".[dev]"``); the README's user install
    is the same checkout without extras."""
    [install] = docs.code_blocks(docs.section(README, "Install"), "sh")[:1]
    assert install.splitlines()[0] == "pip install ."
    assert any(line.startswith('pip install ".[') for line in CI_LINES)


def test_the_dataset_table_agrees_with_the_bundled_catalog() -> None:
    table = docs.section(README, "The datasets")
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \| ([\d,]+) \| (\d+) \| ([^|]+) \|$", table, re.M)
    catalog = load_catalog(BUNDLED)
    assert [row[0] for row in rows] == [d.id for d in catalog.datasets]
    for (_, domain, images, tasks, licence), dataset in zip(rows, catalog.datasets, strict=True):
        assert domain == dataset.domain, dataset.id
        assert int(images.replace(",", "")) == dataset.num_samples, dataset.id
        assert int(tasks) == len(dataset.tasks), dataset.id
        assert ("non-commercial" in licence) == dataset.license.non_commercial, dataset.id
    domains = {d.domain for d in catalog.datasets}
    tasks_total = sum(len(d.tasks) for d in catalog.datasets)
    intro = README.split("\n## ", 1)[0]
    assert f"{len(catalog.datasets)} openly licensed" in intro
    assert f"from {len(domains)} domains with {tasks_total}" in intro
    images_total = sum(d.num_samples for d in catalog.datasets)
    assert f"The {images_total:,} images" in table


@pytest.mark.slow
def test_the_quick_start_ends_in_the_folder_its_loader_reads(
    zenodo: ZenodoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run the quick start's commands verbatim in a shell (the install aside): the export
    holds the class folders the loader snippet opens, every class in its own folder."""
    quick = docs.section(README, "From nothing to a training loader")
    [shell] = docs.code_blocks(quick, "sh")
    commands = [line for line in shell.splitlines() if not line.startswith("pip ")]
    assert [c.split()[:2] for c in commands] == [["medimeta", "download"], ["medimeta", "export"]]
    [loader, *_] = docs.code_blocks(quick, "python")
    [folder] = re.findall(r'ImageFolder\("([^"]+)"', loader)
    script = installed_script()
    monkeypatch.setenv("PATH", f"{Path(script).parent}{os.pathsep}{os.environ['PATH']}")
    for command in commands:
        done = subprocess.run(
            ["bash", "-eu", "-c", command.split("#")[0]],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, command + done.stdout + done.stderr
    train = tmp_path / folder
    classes = sorted(p.name for p in train.iterdir() if p.is_dir())
    # ImageFolder numbers classes by sorting folder names: that order is the classes.json index.
    assert [int(name.split("_")[0]) for name in classes] == list(range(len(classes)))
    assert len(classes) == 9 and any(train.glob("*/*.png"))
