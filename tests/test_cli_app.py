"""The ``medimeta`` application as a whole: help, version, entry points, start-up cost, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medimeta_cli import __version__
from medimeta_cli.cli import cmd_info
from tests.helpers import installed_script, invoke

HEAVY = ("httpx", "h5py", "numpy", "PIL")

_PROBE = """
import json, sys
watched = set(json.loads(sys.argv[2]))
sys.argv = ["medimeta", *json.loads(sys.argv[1])]
from medimeta_cli.cli.app import main
try:
    main()
except SystemExit:
    pass
heavy = sorted({m.split(".")[0] for m in sys.modules} & watched)
sys.stderr.write("HEAVY=" + json.dumps(heavy) + "\\n")
"""


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIMETA_")}
    env["MEDIMETA_HOME"] = str(root)
    return env


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["list"],
        ["list", "--json"],
        ["info", "crc"],
        ["info", "cxr", "--json", "--task", "patient sex"],
        ["list", "--help"],
        ["paths", "--json"],
    ],
)
def test_light_commands_import_no_heavy_modules(args: list[str], data_root: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        env=_env(data_root),
        check=False,
    )
    line = next(x for x in proc.stderr.splitlines() if x.startswith("HEAVY="))
    assert json.loads(line.removeprefix("HEAVY=")) == [], proc.stderr


def test_help_lists_the_commands(runner: CliRunner) -> None:
    result = invoke(runner, "--help")
    assert result.exit_code == 0
    for command in ("list", "info", "paths"):
        assert command in result.stdout


def test_no_arguments_shows_help(runner: CliRunner) -> None:
    result = invoke(runner)
    assert "Usage" in result.stdout + result.stderr


def test_version(runner: CliRunner) -> None:
    result = invoke(runner, "--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"medimeta-cli {__version__}"


def test_unknown_option_is_a_usage_error(runner: CliRunner) -> None:
    assert invoke(runner, "list", "--no-such-option").exit_code == 2


def test_debug_shows_a_traceback_only_when_asked(runner: CliRunner) -> None:
    plain = invoke(runner, "info", "nope")
    assert "Traceback" not in plain.stderr
    assert len(plain.stderr.splitlines()) == 2
    debug = invoke(runner, "info", "nope", "--debug")
    assert debug.exit_code == 2
    assert "Traceback" in debug.stderr and "UnknownDatasetError" in debug.stderr
    by_env = invoke(runner, "info", "nope", env={"MEDIMETA_DEBUG": "1"})
    assert "Traceback" in by_env.stderr


def test_unexpected_errors_are_one_line_with_exit_code_1(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: object, **kwargs: object) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(cmd_info, "render_info", explode)
    result = invoke(runner, "info", "crc")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == "error: internal error: RuntimeError: boom"
    assert "Traceback" not in result.stderr


def test_python_dash_m_runs_the_same_app(data_root: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "medimeta_cli", "info", "crc", "--json"],
        capture_output=True,
        text=True,
        env=_env(data_root),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["id"] == "crc"


def test_installed_script_pipes_json_and_keeps_stderr_clean(data_root: Path) -> None:
    proc = subprocess.run(
        [installed_script(), "list", "--json", "--domain", "dermatology"],
        capture_output=True,
        text=True,
        env=_env(data_root),
        check=False,
    )
    assert proc.returncode == 0
    assert {item["id"] for item in json.loads(proc.stdout)} == {"derm", "skinl_derm", "skinl_photo"}
    assert proc.stderr == ""


def test_installed_script_exit_code_for_unknown_dataset(data_root: Path) -> None:
    proc = subprocess.run(
        [installed_script(), "info", "crx"],
        capture_output=True,
        text=True,
        env=_env(data_root),
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "did you mean" in proc.stderr


def test_no_color_in_pipes_even_with_force(data_root: Path) -> None:
    env = {**_env(data_root), "NO_COLOR": "1"}
    proc = subprocess.run(
        [installed_script(), "info", "crx"], capture_output=True, text=True, env=env, check=False
    )
    assert "\x1b[" not in proc.stderr


def test_a_command_imports_no_other_command_module(data_root: Path) -> None:
    probe = (
        "import sys, json; sys.argv=['medimeta','list','--json']\n"
        "from medimeta_cli.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write('MODS=' + json.dumps(sorted(m for m in sys.modules "
        "if m.startswith('medimeta_cli.cli.cmd_'))) + '\\n')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=_env(data_root),
        check=False,
    )
    line = next(x for x in proc.stderr.splitlines() if x.startswith("MODS="))
    assert json.loads(line.removeprefix("MODS=")) == ["medimeta_cli.cli.cmd_list"]


def test_help_of_the_script_lists_every_command(data_root: Path) -> None:
    from medimeta_cli.cli.app import COMMANDS

    proc = subprocess.run(
        [installed_script(), "--help"],
        capture_output=True,
        text=True,
        env={**_env(data_root), "COLUMNS": "200"},
        check=False,
    )
    assert proc.returncode == 0
    for name in COMMANDS:
        assert name in proc.stdout, name
