"""Settings precedence: flag, then MEDIMETA_* variable, then default."""

from __future__ import annotations

from pathlib import Path

import pytest

from medimeta_cli.catalog.datasets import RECORD_ID
from medimeta_cli.errors import ConfigError
from medimeta_cli.settings import DEFAULT_BASE_URL, resolve_settings


def test_defaults_come_from_platformdirs() -> None:
    import platformdirs

    settings = resolve_settings({}, environ={})
    assert settings.root == Path(platformdirs.user_cache_dir("medimeta", appauthor=False))
    assert settings.base_url == DEFAULT_BASE_URL
    assert settings.record_id == RECORD_ID
    assert not settings.offline
    assert set(settings.sources.values()) == {"default"}


def test_environment_beats_default(tmp_path: Path) -> None:
    settings = resolve_settings(
        {},
        environ={
            "MEDIMETA_HOME": str(tmp_path),
            "MEDIMETA_BASE_URL": "http://127.0.0.1:8080/",
            "MEDIMETA_OFFLINE": "yes",
            "MEDIMETA_RECORD": "42",
        },
    )
    assert settings.root == tmp_path
    assert settings.base_url == "http://127.0.0.1:8080"
    assert settings.offline is True
    assert settings.record_id == 42
    assert settings.sources["root"] == "MEDIMETA_HOME environment variable"


def test_flag_beats_environment(tmp_path: Path) -> None:
    settings = resolve_settings(
        {"root": tmp_path / "flag", "offline": True},
        environ={"MEDIMETA_HOME": str(tmp_path / "env"), "MEDIMETA_OFFLINE": "0"},
    )
    assert settings.root == tmp_path / "flag"
    assert settings.offline is True
    assert settings.sources["root"] == "--root flag"


def test_relative_and_home_paths_become_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_settings({}, environ={"MEDIMETA_HOME": "data"}).root == tmp_path / "data"
    assert resolve_settings({}, environ={"MEDIMETA_HOME": "~/d"}).root == tmp_path / "home" / "d"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MEDIMETA_OFFLINE", "maybe"),
        ("MEDIMETA_BASE_URL", "zenodo.org"),
        ("MEDIMETA_RECORD", "-3"),
        ("MEDIMETA_TIMEOUT", "soon"),
        ("MEDIMETA_RETRIES", "-1"),
    ],
)
def test_bad_variable_is_a_config_error_naming_it(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name) as caught:
        resolve_settings({}, environ={name: value})
    assert name in caught.value.hint


def test_resolution_does_not_create_the_root(tmp_path: Path) -> None:
    resolve_settings({}, environ={"MEDIMETA_HOME": str(tmp_path / "new")})
    assert not (tmp_path / "new").exists()


def test_describe_lists_every_setting_with_its_source(tmp_path: Path) -> None:
    rows = resolve_settings({}, environ={"MEDIMETA_HOME": str(tmp_path)}).describe()
    by_name = {row["name"]: row for row in rows}
    assert by_name["root"]["value"] == str(tmp_path)
    assert by_name["root"]["env"] == "MEDIMETA_HOME"
    assert by_name["base_url"]["source"] == "default"


def test_a_data_root_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("")
    with pytest.raises(ConfigError, match="is not a folder") as caught:
        resolve_settings({"root": home})
    assert "--root flag" in str(caught.value)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert resolve_settings({"root": tmp_path / "link"}).root == tmp_path / "link"


def test_the_stall_window_is_a_positive_number_of_seconds() -> None:
    assert resolve_settings({}, environ={}).stall_seconds == 60.0
    assert resolve_settings({}, environ={"MEDIMETA_STALL_SECONDS": "2.5"}).stall_seconds == 2.5
    with pytest.raises(ConfigError, match="MEDIMETA_STALL_SECONDS"):
        resolve_settings({}, environ={"MEDIMETA_STALL_SECONDS": "0"})
