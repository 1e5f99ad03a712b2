"""``medimeta info``."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.helpers import install_stub, invoke, invoke_json, run_cli


def test_json_has_the_list_keys_plus_details(runner: CliRunner) -> None:
    listed = next(i for i in invoke_json(runner, "list") if i["id"] == "dr_regular")
    info = invoke_json(runner, "info", "dr_regular")
    assert set(listed) <= set(info)
    assert {key: info[key] for key in listed} == listed
    assert info["input_size"] == [3, 224, 224]
    assert info["original_splits"] == {"train": 1200, "val": 400, "test": 400}
    assert info["sources"][0]["name"] == "DeepDRiD"
    assert info["sources"][0]["citations"]
    assert info["archive"] == "dr_regular.zip"
    assert (
        info["download_url"] == "https://zenodo.org/records/7884735/files/dr_regular.zip?download=1"
    )
    assert info["doi"] == "10.5281/zenodo.7884735"
    assert info["summary"]


def test_task_filter_is_case_insensitive_and_prints_exact_name(runner: CliRunner) -> None:
    info = invoke_json(runner, "info", "dr_regular", "--task", "field DEFINITION")
    assert [t["name"] for t in info["tasks"]] == ["Field definition"]
    assert list(info["tasks"][0]["labels"]) == ["1", "4", "6", "8", "10"]
    text = invoke(runner, "info", "dr_regular", "--task", "clarity").stdout
    assert "Clarity  (ordinal, 5 labels)" in text
    assert "DR level" not in text


def test_text_output_has_the_facts(runner: CliRunner) -> None:
    result = invoke(runner, "info", "organs_axial")
    assert result.exit_code == 0
    text = result.stdout
    for expected in (
        "organs_axial: Axial Organ Slices",
        "Abdominal CT",
        "1,645 of 224x224, grayscale",
        "non-commercial",
        "organ label",
        "Sources",
        "state            absent",
    ):
        assert expected in text


def test_installed_state_and_path(runner: CliRunner, data_root: Path) -> None:
    folder = install_stub(data_root, "crc")
    info = invoke_json(runner, "info", "crc")
    assert (info["state"], info["path"]) == ("installed", str(folder))


def test_base_url_from_environment_is_used(runner: CliRunner) -> None:
    result = invoke(
        runner, "info", "crc", "--json", env={"MEDIMETA_BASE_URL": "http://127.0.0.1:9"}
    )
    assert '"http://127.0.0.1:9/records/7884735/files/crc.zip?download=1"' in result.stdout


def test_unknown_dataset_suggests(runner: CliRunner) -> None:
    result = invoke(runner, "info", "pneumonai")
    assert result.exit_code == 2
    assert (
        result.stderr.splitlines()[0]
        == "error: unknown dataset 'pneumonai'; did you mean 'pneumonia'?"
    )
    assert result.stderr.splitlines()[1].startswith("hint: Valid datasets: aml, bus")


def test_unknown_task_lists_the_tasks(runner: CliRunner) -> None:
    result = invoke(runner, "info", "cxr", "--task", "sex")
    assert result.exit_code == 2
    assert "unknown task 'sex' for dataset 'cxr'" in result.stderr
    assert "disease labels, patient sex" in result.stderr


def test_cite_prints_bibtex(runner: CliRunner) -> None:
    result = invoke(runner, "info", "mammo_calc", "--cite")
    assert result.exit_code == 0
    assert result.stdout.startswith("@article{woerner2025medimeta,")
    assert "@misc{mammo_calc_source1," in result.stdout
    data = invoke_json(runner, "info", "mammo_calc", "--cite")
    assert data["bibtex"] == result.stdout.rstrip("\n") + "\n"


def test_a_task_name_in_other_case_names_the_exact_one_on_stderr(runner: CliRunner) -> None:
    result = invoke(runner, "info", "dr_regular", "--task", "clarity")
    assert result.exit_code == 0
    assert "task 'clarity' is 'Clarity'" in result.stderr
    assert "MedIMeta(root, 'dr_regular', 'Clarity')" in result.stderr
    exact = invoke(runner, "info", "dr_regular", "--task", "Clarity")
    assert exact.exit_code == 0 and exact.stderr == ""


@pytest.mark.slow
def test_info_prints_short_citations_and_points_to_cite() -> None:
    # fundus's upstream citations are the bare words "data" and "paper".
    code, stdout, stderr = run_cli("info", "fundus", env={"COLUMNS": "80"})
    assert code == 0, stderr
    assert "cite: data" not in stdout and "cite: paper" not in stdout
    assert "medimeta info fundus --cite" in stdout
    assert "MedIMeta: Woerner et al." in stdout
    assert (
        "data:  Samiksha Pachade et al., Retinal Fundus Multi-disease Image Dataset, "
        "https://riadd.grand-challenge.org/download-all-classes/" in stdout
    )
    assert "paper: Samiksha Pachade et al., Retinal Fundus Multi-Disease Image Dataset (RFMiD)" in (
        stdout
    )
