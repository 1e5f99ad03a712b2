"""The ``medimeta`` application as a whole: help, version, entry points, start-up cost, errors,
options before the command."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medimeta_cli import __version__
from medimeta_cli.cli import cmd_info
from tests.support.helpers import installed_script, invoke

HEAVY = ("httpx", "h5py", "numpy", "PIL", "pyarrow")

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
    # The error and its hint; a job log wraps the long list of valid ids.
    first, second, *rest = plain.stderr.splitlines()
    assert first.startswith("error: ") and second.startswith("hint: ")
    assert all(line.startswith("    ") for line in rest)
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


# ----------------------------------------------------------------------------- help pages

_HELP_PROBE = """
import json, os
from typer.testing import CliRunner
from medimeta_cli.cli.app import COMMANDS, app
runner = CliRunner()
pages = {name: runner.invoke(app, [*name.split(), "--help"], prog_name="medimeta").output
         for name in ["", *COMMANDS]}
print(json.dumps(pages))
"""

#: A hint in brackets at the end of a help text: [env: ...], [default: ...].
_HINT = re.compile(r"\[(?:env|default):[^\]]*\]")


def _squeezed(text: str) -> str:
    """Text without whitespace and box lines: help pages wrap where the terminal says."""
    return re.sub(r"[\s│]+", "", text)


def _help_pages(rich: bool) -> dict[str, str]:
    """Every command's ``--help`` (the root's under ""), rendered as Typer renders it with
    rich (the default) or without (``TYPER_USE_RICH=0``: click's plain help)."""
    env = {**os.environ, "TYPER_USE_RICH": "1" if rich else "0", "COLUMNS": "160"}
    proc = subprocess.run(
        [sys.executable, "-c", _HELP_PROBE], capture_output=True, text=True, env=env, check=True
    )
    pages: dict[str, str] = json.loads(proc.stdout)
    return pages


@pytest.mark.parametrize("rich", [True, False], ids=["rich", "plain"])
def test_every_help_shows_its_hints_choices_and_examples(rich: bool) -> None:
    import typer.main

    from medimeta_cli.cli.app import COMMANDS, app

    group = typer.main.get_command(app)
    pages = _help_pages(rich)
    assert set(pages) == {"", *COMMANDS}
    for name, page in pages.items():
        command = group if not name else group.commands[name]  # type: ignore[attr-defined]
        shown = _squeezed(page)
        assert _squeezed("[env: MEDIMETA_HOME; default: the user cache folder]") in shown, name
        for param in command.params:
            for hint in _HINT.findall(getattr(param, "help", None) or ""):
                assert _squeezed(hint) in shown, (name, hint)
            for choice in getattr(param.type, "choices", ()):
                assert str(choice) in shown, (name, param.name, choice)
        lines = page.splitlines()
        [title] = [i for i, line in enumerate(lines) if line.strip(" │") == "Examples:"]
        examples = [line.strip() for line in lines[title + 1 :] if line.strip()]
        assert 2 <= len(examples) <= 4, (name, examples)
        assert all(line.startswith("$ medimeta ") for line in examples), examples
        # A command's examples run that command (the root's show options before one).
        assert not name or all(f" {name} " in f"{line} " for line in examples), examples


def test_choices_of_enum_options_are_listed(runner: CliRunner) -> None:
    download = invoke(runner, "download", "--help", env={"COLUMNS": "200"})
    export = invoke(runner, "export", "--help", env={"COLUMNS": "200"})
    assert "full|hdf5" in download.stdout
    assert "imagefolder|numpy|webdataset|parquet" in export.stdout
    assert "png|jpeg|tiff" in export.stdout


# ----------------------------------------------------------------------------- options first


def test_options_before_the_command_keep_the_lazy_import(data_root: Path) -> None:
    probe = (
        "import sys, json\n"
        "sys.argv=['medimeta','--root',sys.argv[1],'--lock-timeout','3','-q','list','--json']\n"
        "from medimeta_cli.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write('MODS=' + json.dumps(sorted(m for m in sys.modules "
        "if m.startswith('medimeta_cli.cli.cmd_'))) + '\\n')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(data_root / "elsewhere")],
        capture_output=True,
        text=True,
        env=_env(data_root),
        check=False,
    )
    assert json.loads(proc.stdout)[0]["id"] == "aml"
    line = next(x for x in proc.stderr.splitlines() if x.startswith("MODS="))
    assert json.loads(line.removeprefix("MODS=")) == ["medimeta_cli.cli.cmd_list"]


def test_the_invoked_command_skips_the_values_of_root_options() -> None:
    from medimeta_cli.cli.app import _invoked_command

    assert _invoked_command(["--root", "list", "info", "crc"]) == "info"
    assert _invoked_command(["--lock-timeout", "5", "-q", "download", "crc"]) == "download"
    assert _invoked_command(["--root=/data", "--json", "paths"]) == "paths"
    assert _invoked_command(["--root", "/data"]) is None
    assert _invoked_command(["--json", "nope"]) is None


def test_every_root_option_with_a_value_is_known_to_the_lazy_import() -> None:
    import typer.main

    from medimeta_cli.cli.app import _ROOT_VALUE_OPTIONS, app

    with_values = {
        opt
        for param in typer.main.get_command(app).params
        if not getattr(param, "is_flag", False)
        for opt in param.opts
    }
    assert with_values == _ROOT_VALUE_OPTIONS


def test_installed_script_takes_options_before_the_command(data_root: Path) -> None:
    proc = subprocess.run(
        [installed_script(), "--json", "--offline", "info", "crc"],
        capture_output=True,
        text=True,
        env=_env(data_root),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["id"] == "crc"


# ----------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    "args",
    [
        ["--json", "download", "crc", "--layout", "tiff"],
        ["download", "crc", "--layout", "tiff", "--json"],
        ["export", "crc", "--format", "bmp", "--json"],
        ["list", "--json", "--no-such-option"],
        ["--json", "nope"],
        ["--json", "--root"],
        ["sample", "--json"],
    ],
)
def test_with_json_a_usage_error_is_one_json_object(runner: CliRunner, args: list[str]) -> None:
    result = invoke(runner, *args)
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert (error["code"], error["exit_code"]) == ("USAGE", 2)
    assert error["message"] and "--help" in error["hint"]
    assert error["message"].split("'")[0] in result.stderr  # the message stays on stderr


def test_without_json_a_usage_error_leaves_stdout_empty(runner: CliRunner) -> None:
    result = invoke(runner, "download", "crc", "--layout", "tiff")
    assert result.exit_code == 2
    assert result.stdout == ""
    # After "--", --json is a value, not the option.
    assert invoke(runner, "info", "--", "--json").stdout == ""


def test_layout_is_case_insensitive(runner: CliRunner) -> None:
    result = invoke(runner, "download", "crc", "--layout", "HDF5", "--dry-run", "--offline")
    assert "Invalid value" not in result.stderr
    assert result.exit_code != 2


@pytest.mark.parametrize(
    ("args", "message", "where"),
    [
        (["bogus"], "No such command 'bogus'.", "medimeta --help"),
        (["list", "--nope"], "No such option: --nope", "medimeta list --help"),
        (["download", "crc", "--layout", "foo"], "'foo' is not one of", "medimeta download --help"),
    ],
)
def test_usage_errors_in_a_job_log_are_two_plain_lines(
    runner: CliRunner, args: list[str], message: str, where: str
) -> None:
    """A batch job's log gets the tool's `error:`/`hint:` lines, not a drawn box."""
    result = invoke(runner, *args)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0]
    assert lines[1] == f"hint: Run `{where}` to see the valid options and values."
    assert result.stdout == ""
