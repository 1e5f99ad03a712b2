"""One invocation's session: settings, debug logs on stderr, errors turned into exit codes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medimeta_cli.catalog import file as catalog_file
from medimeta_cli.cli._logs import PACKAGE_LOGGER, log_level, log_to_stderr
from medimeta_cli.cli.exit_codes import ExitCode
from medimeta_cli.cli.options import CommonOptions
from medimeta_cli.cli.session import session
from medimeta_cli.errors import NotInstalledError
from tests.support.helpers import invoke

SETTING_LINE = "DEBUG medimeta_cli.settings: setting root = "


def test_debug_shows_debug_logs_on_stderr(
    runner: CliRunner, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog_file, "_CACHE", {})  # load the bundled catalog afresh
    result = invoke(runner, "paths", "--json", "--debug")
    assert result.exit_code == 0, result.stderr
    assert f"{SETTING_LINE}{data_root} (from MEDIMETA_HOME environment variable)" in result.stderr
    assert "DEBUG medimeta_cli.catalog.file: loading the bundled catalog" in result.stderr
    json.loads(result.stdout)  # stdout stays one JSON document


def test_debug_from_the_environment_shows_debug_logs(runner: CliRunner) -> None:
    result = invoke(runner, "list", "--json", env={"MEDIMETA_DEBUG": "1"})
    assert result.exit_code == 0
    assert SETTING_LINE in result.stderr


def test_without_debug_there_are_no_debug_logs(runner: CliRunner) -> None:
    result = invoke(runner, "paths", "--json")
    assert result.exit_code == 0
    assert result.stderr == ""


def test_the_log_handler_is_gone_after_the_command(runner: CliRunner) -> None:
    logger = logging.getLogger(PACKAGE_LOGGER)
    handlers, level = list(logger.handlers), logger.level
    invoke(runner, "paths", "--debug")
    invoke(runner, "info", "nope", "--debug")  # an error on the way out too
    assert (logger.handlers, logger.level) == (handlers, level)


def test_warnings_show_without_debug_and_not_with_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger("medimeta_cli.test")
    with log_to_stderr(debug=False):
        logger.debug("hidden")
        logger.warning("shown %s", "warning")
    with log_to_stderr(debug=False, quiet=True):
        logger.warning("quiet warning")
        logger.error("quiet error")
    err = capsys.readouterr().err
    assert "hidden" not in err and "quiet warning" not in err
    assert "WARNING medimeta_cli.test: shown warning" in err
    assert "ERROR medimeta_cli.test: quiet error" in err


def test_log_levels() -> None:
    assert log_level(debug=True, quiet=True) == logging.DEBUG
    assert log_level(debug=False, quiet=True) == logging.ERROR
    assert log_level(debug=False, quiet=False) == logging.WARNING


def test_importing_the_package_configures_no_logging() -> None:
    probe = (
        "import logging, medimeta_cli.cli.app, medimeta_cli.cli.session, medimeta_cli.settings\n"
        "from medimeta_cli.cli.app import build_app\n"
        "build_app()\n"
        "logger = logging.getLogger('medimeta_cli')\n"
        "print(len(logger.handlers), logger.level, len(logging.getLogger().handlers))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["0", "0", "0"]


def test_errors_become_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    with pytest.raises(typer.Exit) as caught, session(CommonOptions()):
        raise NotInstalledError("crc", "/nowhere")
    assert caught.value.exit_code == ExitCode.NOT_INSTALLED
    assert capsys.readouterr().err.startswith("error: ")


def test_unexpected_errors_exit_with_failure(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    with pytest.raises(typer.Exit) as caught, session():
        raise RuntimeError("boom")
    assert caught.value.exit_code == ExitCode.FAILURE
    assert "internal error: RuntimeError: boom" in capsys.readouterr().err


def test_session_resolves_the_options(tmp_path: Path) -> None:
    with session(CommonOptions(root=tmp_path, offline=True, lock_timeout=3.0)) as s:
        assert s.settings.root == tmp_path
        assert s.settings.offline is True
        assert s.settings.lock_timeout == 3.0
        assert s.settings.sources["lock_timeout"] == "--lock-timeout flag"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["info", "crx", "--json"], ExitCode.USAGE),
        (["--json", "info", "crx"], ExitCode.USAGE),
        (["verify", "nope", "--json"], ExitCode.USAGE),
        (["export", "crc", "--json"], ExitCode.NOT_INSTALLED),
        (["--json", "remove", "crc", "--yes"], ExitCode.NOT_INSTALLED),
        (["download", "crc", "--offline", "--json"], ExitCode.OFFLINE),
    ],
)
def test_with_json_an_error_is_one_json_object_on_stdout(
    runner: CliRunner, args: list[str], code: ExitCode
) -> None:
    result = invoke(runner, *args)
    assert result.exit_code == code, result.stderr
    error = json.loads(result.stdout)["error"]
    assert set(error) == {"code", "exit_code", "message", "hint"}
    assert (error["code"], error["exit_code"]) == (code.name, int(code))
    # The one-line message stays on stderr, with its hint (wrapped as a job log's lines).
    from medimeta_cli.cli.output import plain_lines

    expected = plain_lines(f"error: {error['message']}") + plain_lines(f"hint: {error['hint']}")
    if args[0] == "download":  # it made the data root first, and said so
        root = os.environ["MEDIMETA_HOME"]
        expected = plain_lines(f"created the data root {root} (MEDIMETA_HOME)") + expected
    assert result.stderr.splitlines() == expected


def test_without_json_an_error_leaves_stdout_empty(runner: CliRunner) -> None:
    result = invoke(runner, "export", "crc")
    assert result.exit_code == ExitCode.NOT_INSTALLED
    assert result.stdout == ""


_NUMERIC_WARNING = (
    "import numpy as np\n"
    "from medimeta_cli.cli.session import session\n"
    "with session():\n"
    "    values = np.array([1.0, np.nan])\n"
    "    print(values.astype(np.int64)[0], np.float64(1.0) / np.float64(0.0))\n"
)


@pytest.mark.parametrize("debug", [False, True])
def test_numeric_warnings_never_leak_raw_to_stderr(debug: bool, tmp_path: Path) -> None:
    """NumPy's RuntimeWarnings (with the source line that raised them) went to stderr;
    they are the package's debug records now, one line each."""
    env = {"PATH": "/usr/bin:/bin", "MEDIMETA_HOME": str(tmp_path)}
    if debug:
        env["MEDIMETA_DEBUG"] = "1"
    proc = subprocess.run(
        [sys.executable, "-c", _NUMERIC_WARNING],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    warned = [line for line in proc.stderr.splitlines() if "RuntimeWarning" in line]
    if debug:
        assert len(warned) == 2 and all(" DEBUG " in line for line in warned), proc.stderr
    else:
        assert proc.stderr == ""
    assert "astype" not in proc.stderr and "np.float64(1.0)" not in proc.stderr


def test_error_and_warning_lines_of_a_job_log_are_wrapped(tmp_path: Path) -> None:
    """An unknown id of 5,000 characters, and the hint naming every dataset: each line
    of a job log stays under the progress lines' limit."""
    from medimeta_cli.cli.output import MAX_LINE

    env = {"PATH": "/usr/bin:/bin", "MEDIMETA_HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "medimeta_cli", "info", "x" * 5000],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("error: unknown dataset")
    assert any(line.startswith("hint: Valid datasets") for line in lines)
    assert max(len(line) for line in lines) <= MAX_LINE, max(len(line) for line in lines)
