"""The common options: declared once, listed by every command, accepted after its name
and before it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer.core
import typer.main
from typer.testing import CliRunner

from medimeta_cli.cli import session as session_module
from medimeta_cli.cli.app import COMMANDS, app
from medimeta_cli.cli.exit_codes import ExitCode
from medimeta_cli.cli.options import (
    COMMON_OPTIONS,
    CommonOptions,
    QuietOption,
    common_parameters,
    merge_common,
    split_commas,
    with_common_options,
)
from medimeta_cli.cli.output import Output
from medimeta_cli.errors import LockTimeoutError
from tests.support.helpers import invoke, run_cli

#: The fewest arguments each command needs to get as far as its session.
ARGUMENTS: dict[str, list[str]] = {
    "list": [],
    "info": ["crc"],
    "download": ["crc"],
    "verify": [],
    "export": ["crc"],
    "sample": ["crc"],
    "stats": ["crc"],
    "paths": [],
    "remove": ["crc"],
    "prune": [],
    "doctor": [],
}

#: Each common option, and a command line's way of giving it (values are this test's).
EVERY_COMMON_OPTION: dict[str, list[str]] = {
    "root": ["--root", "ROOT"],
    "json": ["--json"],
    "quiet": ["--quiet"],
    "debug": ["--debug"],
    "offline": ["--offline"],
    "lock_timeout": ["--lock-timeout", "5"],
}

#: Flags and help text of the options every command has.
COMMON_HELP: dict[str, tuple[list[str], str]] = {
    "root": (["--root"], "Data root [env: MEDIMETA_HOME; default: the user cache folder]."),
    "json": (["--json"], "Print the result as JSON on stdout."),
    "quiet": (["--quiet", "-q"], "Print nothing on stderr but errors."),
    "debug": (["--debug"], "Show tracebacks and debug logs [env: MEDIMETA_DEBUG]."),
}


def _params(name: str) -> dict[str, Any]:
    """The parsed parameters of one command, by name, as Typer builds them."""
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return {str(param.name): param for param in group.commands[name].params}


def test_every_command_is_checked() -> None:
    assert set(ARGUMENTS) == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_declares_the_common_options(name: str) -> None:
    params = _params(name)
    for option, (flags, help_text) in COMMON_HELP.items():
        param = params[option]
        assert isinstance(param, typer.core.TyperOption)
        assert param.opts + param.secondary_opts == flags, (name, option)
        assert param.help == help_text
    assert {"offline", "lock_timeout"} <= set(params)


def test_every_common_option_is_checked() -> None:
    assert [p.name for p in common_parameters()] == [name for name, _, _ in COMMON_OPTIONS]
    assert set(EVERY_COMMON_OPTION) == {name for name, _, _ in COMMON_OPTIONS}


@pytest.mark.parametrize("option", sorted(EVERY_COMMON_OPTION))
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_takes_every_common_option_after_its_name(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, option: str
) -> None:
    flags, outputs = _record_session(monkeypatch)
    given = [str(tmp_path) if word == "ROOT" else word for word in EVERY_COMMON_OPTION[option]]
    result = invoke(runner, name, *ARGUMENTS[name], *given)
    assert result.exit_code == ExitCode.LOCK_TIMEOUT, (name, option, result.stderr)
    assert "No such option" not in result.stderr
    [out] = outputs
    reached = {
        "root": flags["root"] == tmp_path,
        "json": out.json_mode,
        "quiet": out.quiet,
        "debug": flags["debug"] is True,
        "offline": flags["offline"] is True,
        "lock_timeout": flags["lock_timeout"] == 5.0,
    }
    assert reached[option], (name, option)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_lists_the_common_options_in_help(runner: CliRunner, name: str) -> None:
    result = invoke(runner, name, "--help", env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in ("--root", "--json", "--quiet", "--debug", "Print the result as JSON on stdout."):
        assert flag in result.stdout, (name, flag)


def _record_session(monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], list[Output]]:
    """Record the flags a command's session resolves settings from, and its outputs; the
    session then stops with a lock timeout (exit 6) before the command does anything."""
    flags: dict[str, Any] = {}
    outputs: list[Output] = []

    def resolve(given: dict[str, Any]) -> None:
        flags.update(given)
        raise LockTimeoutError("stop here")

    class RecordedOutput(Output):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            outputs.append(self)

    monkeypatch.setattr(session_module, "resolve_settings", resolve)
    monkeypatch.setattr(session_module, "Output", RecordedOutput)
    return flags, outputs


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_common_options_after_the_command_reach_the_session(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    flags, outputs = _record_session(monkeypatch)
    extra = ["--offline", "--lock-timeout", "5"]
    result = invoke(
        runner,
        name,
        *ARGUMENTS[name],
        "--root",
        str(tmp_path),
        "--json",
        "--quiet",
        "--debug",
        *extra,
    )
    assert result.exit_code == ExitCode.LOCK_TIMEOUT, result.stderr
    assert "error: stop here" in result.stderr
    assert flags["root"] == tmp_path
    assert flags["debug"] is True
    assert flags["offline"] is True
    assert flags["lock_timeout"] == 5.0
    [out] = outputs
    assert (out.json_mode, out.quiet, out.debug) == (True, True, True)


def test_options_not_given_are_not_flags() -> None:
    assert CommonOptions().setting_flags() == {
        "root": None,
        "offline": None,
        "debug": None,
        "lock_timeout": None,
    }


def test_common_parameters_come_in_help_order() -> None:
    names = [p.name for p in common_parameters()]
    assert names == ["lock_timeout", "offline", "root", "json", "quiet", "debug"]
    assert common_parameters()[4].annotation is QuietOption


def test_decorated_command_gets_the_options_first() -> None:
    seen: list[tuple[CommonOptions, int]] = []

    @with_common_options(always_json=True)
    def command(common: CommonOptions, count: int = 1) -> None:
        seen.append((common, count))

    command(count=3, root=None, json=False, quiet=True, debug=False)
    assert seen == [(CommonOptions(json=True, quiet=True), 3)]


def test_a_command_must_take_the_options_first() -> None:
    def no_options(count: int) -> None:
        pass

    with pytest.raises(TypeError, match="first parameter"):
        with_common_options()(no_options)  # type: ignore[arg-type]


def test_a_command_cannot_declare_a_common_option_itself() -> None:
    def declares_root(common: CommonOptions, root: str = "") -> None:
        pass

    with pytest.raises(TypeError, match="root"):
        with_common_options()(declares_root)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_common_options_before_the_command_reach_the_session(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    flags, outputs = _record_session(monkeypatch)
    before = ["--root", str(tmp_path), "--json", "-q", "--debug", "--offline"]
    result = invoke(runner, *before, "--lock-timeout", "5", name, *ARGUMENTS[name])
    assert result.exit_code == ExitCode.LOCK_TIMEOUT, result.stderr
    assert "error: stop here" in result.stderr
    assert flags["root"] == tmp_path
    assert flags["debug"] is True
    # Given before the command, a setting reaches the session whatever the command.
    assert flags["offline"] is True
    assert flags["lock_timeout"] == 5.0
    [out] = outputs
    assert (out.json_mode, out.quiet, out.debug) == (True, True, True)


def test_root_before_the_command_is_the_data_root(runner: CliRunner, tmp_path: Path) -> None:
    result = invoke(runner, "--root", str(tmp_path / "before"), "paths", "--json")
    assert result.exit_code == 0, result.stderr
    root = next(s for s in json.loads(result.stdout)["settings"] if s["name"] == "root")
    assert (root["value"], root["source"]) == (str(tmp_path / "before"), "--root flag")


def test_the_option_after_the_command_wins(runner: CliRunner, tmp_path: Path) -> None:
    result = invoke(
        runner, "--root", str(tmp_path / "before"), "paths", "--root", str(tmp_path / "after")
    )
    assert result.exit_code == 0, result.stderr
    assert str(tmp_path / "after") in result.stdout
    assert str(tmp_path / "before") not in result.stdout


def test_json_and_quiet_before_the_command(runner: CliRunner) -> None:
    result = invoke(runner, "--json", "--quiet", "info", "crc")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["id"] == "crc"
    assert result.stderr == ""


def test_merging_keeps_what_was_given_before_and_lets_after_win(tmp_path: Path) -> None:
    before = CommonOptions(root=tmp_path, json=True, offline=True, lock_timeout=30.0)
    after = CommonOptions(root=tmp_path / "after", quiet=True, lock_timeout=0.0)
    assert merge_common(before, after) == CommonOptions(
        root=tmp_path / "after", json=True, quiet=True, offline=True, lock_timeout=0.0
    )
    assert merge_common(None, after) == after
    assert merge_common(before, CommonOptions()) == before


def test_version_with_options_before_it(runner: CliRunner, tmp_path: Path) -> None:
    result = invoke(runner, "--root", str(tmp_path), "--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("medimeta-cli ")


@pytest.mark.parametrize("name", ["list", "download", "verify", "remove"])
def test_domain_takes_comma_separated_values(runner: CliRunner, name: str) -> None:
    command = next(
        command
        for command in typer.main.get_command(app).commands.values()  # type: ignore[attr-defined]
        if command.name == name
    )
    with command.make_context(name, ["--domain", "dermatology,crc", "-d", " oct "]) as context:
        assert context.params["domain"] == ["dermatology", "crc", "oct"]


def test_domain_list_selects_like_repeated_domains(runner: CliRunner) -> None:
    comma = invoke(runner, "list", "--json", "--domain", "dermatology,ophthalmology")
    repeated = invoke(
        runner, "list", "--json", "--domain", "dermatology", "--domain", "ophthalmology"
    )
    assert comma.exit_code == 0, comma.stderr
    assert json.loads(comma.stdout) == json.loads(repeated.stdout)
    assert {"derm", "skinl_derm", "fundus"} <= {d["id"] for d in json.loads(comma.stdout)}


def test_split_commas() -> None:
    assert split_commas(None) is None
    assert split_commas(["a,b", " c ", ",,"]) == ["a", "b", "c"]


@pytest.mark.slow
def test_a_common_option_a_command_has_no_use_for_is_accepted_in_a_real_process() -> None:
    # The command line: export never touches the network, and --offline after
    # its name used to fail with "No such option".
    code, _, stderr = run_cli("export", "oct", "--offline", "--lock-timeout", "1")
    assert "No such option" not in stderr
    assert code == ExitCode.NOT_INSTALLED, stderr
    assert "oct" in stderr
