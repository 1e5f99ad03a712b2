"""``medimeta list``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medimeta_cli.catalog.file import load_catalog
from medimeta_cli.cli.output import fit_columns
from tests.support.helpers import install_stub, invoke, invoke_json, run_cli


def test_json_lists_every_dataset_with_the_documented_keys(runner: CliRunner) -> None:
    items = invoke_json(runner, "list")
    assert [item["id"] for item in items] == list(load_catalog().ids)
    crc = next(item for item in items if item["id"] == "crc")
    assert crc["num_samples"] == 107180
    assert crc["splits"] == {"train": 85000, "val": 15000, "test": 7180}
    assert crc["tasks"][0]["name"] == "tissue class"
    assert crc["tasks"][0]["target"] == "multiclass"
    assert crc["tasks"][0]["labels"]["8"].startswith("colorectal adenocarcinoma")
    assert crc["license"].endswith("(CC BY-SA 4.0)")
    assert crc["state"] == "absent"
    for item in items:
        assert {
            "id",
            "name",
            "domain",
            "num_samples",
            "splits",
            "tasks",
            "license",
            "state",
        } <= set(item)


def test_domain_filter_with_alias(runner: CliRunner) -> None:
    ids = {item["id"] for item in invoke_json(runner, "list", "--domain", "ophthalmology")}
    assert ids == {"dr_regular", "dr_uwf", "fundus", "glaucoma", "oct"}
    ids = {item["id"] for item in invoke_json(runner, "list", "-d", "OCT", "-d", "pathology")}
    assert ids == {"oct", "crc", "aml", "pbc"}


def test_task_type_filter(runner: CliRunner) -> None:
    items = invoke_json(runner, "list", "--task-type", "multilabel")
    assert {item["id"] for item in items} == {"cxr", "fundus", "mammo_calc", "mammo_mass"}
    for item in invoke_json(runner, "list", "--task-type", "ordinal"):
        assert any(task["target"] == "ordinal" for task in item["tasks"])


def test_installed_filter_and_state(runner: CliRunner, data_root: Path) -> None:
    folder = install_stub(data_root, "bus")
    items = invoke_json(runner, "list", "--installed")
    assert [(item["id"], item["state"], item["path"]) for item in items] == [
        ("bus", "installed", str(folder))
    ]


def test_root_flag_beats_environment(runner: CliRunner, tmp_path: Path) -> None:
    install_stub(tmp_path / "other", "crc")
    items = invoke_json(runner, "list", "--installed", "--root", str(tmp_path / "other"))
    assert [item["id"] for item in items] == ["crc"]


def test_table_is_plain_text_when_not_a_terminal(runner: CliRunner) -> None:
    result = invoke(runner, "list", "--domain", "Abdominal CT")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "ID",
        "NAME",
        "DOMAIN",
        "IMAGES",
        "TASKS",
        "LICENSE",
        "STATE",
        "SIZE",
    ]
    assert len(lines) == 4
    assert "CC BY-NC-SA 4.0 (NC)" in lines[1]
    assert "\x1b[" not in result.stdout + result.stderr
    assert "non-commercial" in result.stderr


def test_quiet_keeps_stderr_empty(runner: CliRunner) -> None:
    result = invoke(runner, "list", "--domain", "Abdominal CT", "--quiet")
    assert result.exit_code == 0 and result.stderr == ""


def test_unknown_domain_is_a_usage_error(runner: CliRunner) -> None:
    result = invoke(runner, "list", "--domain", "radiolgy")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "did you mean 'radiology'" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_match_says_so(runner: CliRunner) -> None:
    result = invoke(runner, "list", "--domain", "OCT", "--task-type", "multilabel")
    assert result.exit_code == 0
    assert "no dataset matches" in result.stderr
    assert invoke_json(runner, "list", "--domain", "OCT", "--task-type", "multilabel") == []


def test_a_dataset_outside_the_catalog_with_a_broken_info_yaml_is_listed_damaged(
    runner: CliRunner, data_root: Path, tmp_path: Path
) -> None:
    """Before, list dropped it silently (even after verify marked it damaged) unless the
    gate refused a rule; an unreadable or inconsistent info.yaml is no less damage."""
    from tests.support.archives import tiny_spec
    from tests.support.helpers import write_installed

    folder, _ = write_installed(tiny_spec("lab_scans"), tmp_path / "source")
    [outcome] = invoke_json(runner, "download", "--from", str(folder))
    assert outcome["status"] == "installed", outcome
    info = data_root / "lab_scans" / "info.yaml"
    for broken in ("id: [unclosed\n", info.read_text().replace("lab_scans", "other_scans")):
        info.write_text(broken)
        for verified in (False, True):
            if verified:
                assert invoke(runner, "verify", "lab_scans").exit_code == 4
            [item] = [i for i in invoke_json(runner, "list") if i["id"] == "lab_scans"]
            assert item["in_catalog"] is False and "info.yaml" in item["refused"], item
            result = invoke(runner, "list", "--installed")
            assert "lab_scans" in result.stdout and "damaged" in result.stdout
            assert "lab_scans: info.yaml refused" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("columns", [60, 80, 100])
@pytest.mark.parametrize("terminal", [False, True], ids=["piped", "terminal"])
def test_ids_are_never_cut_at_any_width(columns: int, terminal: bool) -> None:
    code, stdout, _ = run_cli(
        "list", env={"COLUMNS": str(columns), "LINES": "50"}, terminal=terminal
    )
    assert code == 0, stdout
    words = set(re.sub(r"\x1b\[[0-9;]*m", "", stdout).split())
    ids = load_catalog().ids
    assert [i for i in ids if i not in words] == []
    if terminal and columns < 160:
        # Names and domains give way first, with an ellipsis.
        assert "Colorectal Cancer Histopathology" not in stdout
        assert "…" in stdout


def test_fit_columns_shortens_names_before_anything_and_never_the_first_column() -> None:
    headers = ["ID", "NAME", "LICENSE"]
    rows = [["organs_sagittal", "Sagittal Organ Slices", "CC BY-NC-SA 4.0"]]
    # Room for all: every column whole.
    assert fit_columns(headers, rows, 100, shrink_first=(1,)) == [15, 21, 15]
    # A little short: the name loses characters, the license none.
    assert fit_columns(headers, rows, 45, shrink_first=(1,)) == [15, 15, 15]
    # Shorter: the name stops at ten, then the license wraps between words.
    assert fit_columns(headers, rows, 36, shrink_first=(1,)) == [15, 10, 11]
    # Far too short: the id keeps every character.
    assert fit_columns(headers, rows, 10, shrink_first=(1,))[0] == 15
