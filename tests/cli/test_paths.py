"""``medimeta paths``."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tests.support.helpers import invoke, invoke_json


def test_shows_each_setting_and_its_source(runner: CliRunner, data_root: Path) -> None:
    report = invoke_json(runner, "paths")
    by_name = {row["name"]: row for row in report["settings"]}
    assert by_name["root"]["value"] == str(data_root)
    assert by_name["root"]["source"] == "MEDIMETA_HOME environment variable"
    assert by_name["offline"] == {**by_name["offline"], "value": False, "source": "default"}
    assert report["state_dir"] == str(data_root / ".medimeta")
    assert not data_root.exists()


def test_flags_are_reported_as_flags(runner: CliRunner, tmp_path: Path) -> None:
    report = invoke_json(runner, "paths", "--root", str(tmp_path), "--offline")
    by_name = {row["name"]: row for row in report["settings"]}
    assert by_name["root"]["source"] == "--root flag"
    assert by_name["offline"]["value"] is True
    assert by_name["offline"]["source"] == "--offline flag"


def test_bad_environment_is_a_usage_error(runner: CliRunner) -> None:
    result = invoke(runner, "paths", env={"MEDIMETA_TIMEOUT": "never"})
    assert result.exit_code == 2
    assert "MEDIMETA_TIMEOUT='never' is not valid" in result.stderr


def test_table(runner: CliRunner, data_root: Path) -> None:
    result = invoke(runner, "paths")
    assert result.exit_code == 0
    assert any(line.split()[:2] == ["root", str(data_root)] for line in result.stdout.splitlines())
