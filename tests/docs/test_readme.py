"""The README is the first screen: short, with the install CI runs, the path from nothing to
a training loader, and facts that agree with the catalog."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from medimeta_cli.catalog.file import load_catalog
from tests.support import docs
from tests.support.helpers import installed_script

if TYPE_CHECKING:
    from tests.conftest import InstalledData
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


#: The loaders the quick start's Python imports that the tests do not install (torch).
LOADERS = ("torchvision", "medimeta")


def _runnable(block: str) -> tuple[str, list[str]]:
    """A Python block as it can run here: verbatim where every module it imports is
    installed; else without the import of a loader that is not (torch is not a test
    dependency), and each call of that loader replaced by printing, as JSON, the arguments
    it would get. The names of the loaders left out are returned."""
    tree = ast.parse(block)
    missing: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            if top in LOADERS and importlib.util.find_spec(top) is None:
                missing += [alias.asname or alias.name for alias in node.names]
    if not missing:
        return block, []
    body: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and any(a.name in missing for a in node.names):
            continue
        call = node.value if isinstance(node, ast.Assign | ast.Expr) else None
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name)
            and call.func.id in missing
        ):
            args = ", ".join(ast.unparse(arg) for arg in call.args)
            shown = f"print(__import__('json').dumps([{call.func.id!r}, *map(str, ({args},))]))"
            body += ast.parse(shown).body
            continue
        body.append(node)
    return ast.unparse(ast.fix_missing_locations(ast.Module(body=body, type_ignores=[]))), missing


@pytest.mark.slow
def test_the_quick_start_runs_top_to_bottom(
    zenodo: ZenodoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quick start, every line in order, in a fresh data root against the loopback
    server: the shell lines in a shell, then each Python block in a fresh interpreter. The
    export holds the class folders the first loader opens, every class in its own folder;
    the second loader gets the data root that holds the installed dataset and its task."""
    quick = docs.section(README, "From nothing to a training loader")
    blocks = re.findall(r"```(\w+)\n(.*?)```", quick, re.S)
    assert [lang for lang, _ in blocks] == ["sh", "python", "python"]
    [(_, shell), (_, first), (_, second)] = blocks
    lines = shell.splitlines()
    # The install is this checkout, installed in this environment the way CI installs it.
    assert lines[0].split("#")[0].strip() == "pip install ."
    commands = lines[1:]
    assert [c.split()[:2] for c in commands] == [["medimeta", "download"], ["medimeta", "export"]]
    script = installed_script()
    monkeypatch.setenv("PATH", f"{Path(script).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("COLUMNS", "80")
    home = tmp_path / "fresh-root"
    monkeypatch.setenv("MEDIMETA_HOME", str(home))
    work = tmp_path / "work"
    work.mkdir()
    for command in commands:
        done = subprocess.run(
            ["bash", "-eu", "-c", command.split("#")[0]],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, command + done.stdout + done.stderr
    [folder] = re.findall(r'ImageFolder\("([^"]+)"', first)
    train = work / folder
    classes = sorted(p.name for p in train.iterdir() if p.is_dir())
    # ImageFolder numbers classes by sorting folder names: that order is the classes.json index.
    assert [int(name.split("_")[0]) for name in classes] == list(range(len(classes)))
    assert len(classes) == 9 and any(train.glob("*/*.png"))
    printed = []
    for block in (first, second):
        code, _ = _runnable(block)
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, code + done.stdout + done.stderr
        printed += done.stdout.splitlines()
    for line in printed:  # a loader that is not installed here: the arguments it was given
        name, *args = json.loads(line)
        if name == "ImageFolder":
            assert Path(work, args[0]) == train
        elif name == "MedIMeta":
            root, dataset_id, task = Path(args[0]), args[1], args[2]
            assert root == home and (root / dataset_id / "info.yaml").is_file()
            assert task in (root / dataset_id / "info.yaml").read_text(encoding="utf-8")
        else:
            raise AssertionError(f"unexpected output of the quick start: {line}")


def test_the_statistics_and_episodes_lines_run(
    installed: InstalledData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's lines for statistics and the paper's episodes, as a shell runs them,
    on the installed fixture datasets: stats gives a mean per channel, and the grid covers
    the first task of every installed dataset (the fixture's classes are far below the
    paper's 50 images, so its settings are skipped and named, and the run still succeeds)."""
    [block] = docs.code_blocks(docs.section(README, "Statistics and few-shot episodes"), "sh")
    stats_line, sample_line = block.splitlines()
    script = installed_script()
    monkeypatch.setenv("PATH", f"{Path(script).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MEDIMETA_HOME", str(installed.root))
    monkeypatch.setenv("MEDIMETA_CATALOG", str(installed.catalog_path))
    outputs = []
    for line in (stats_line, sample_line):
        done = subprocess.run(
            ["bash", "-eu", "-c", line + " --json" if "--json" not in line else line],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, line + done.stdout + done.stderr
        outputs.append(json.loads(done.stdout))
    stats, grid = outputs
    assert stats["id"] == "crc" and len(stats["pixels"]["mean"]) == 3
    firsts = {d.id: d.tasks[0].name for d in installed.catalog().datasets}
    assert {(t["dataset"], t["task"]) for t in grid["tasks"]} == set(firsts.items())
