"""The README promises what CI does and documents every command."""

from __future__ import annotations

import re
from pathlib import Path

from medimeta_cli.cli.app import app

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
