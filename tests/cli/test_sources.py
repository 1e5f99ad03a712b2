"""``--sources-for TARGET`` in ``list``, ``download`` and ``verify``, and the Python API."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medimeta_cli.api import sources_for
from medimeta_cli.catalog.file import load_catalog
from tests.support import archives
from tests.support import zenodo_server as zs
from tests.support.helpers import invoke, invoke_json


def test_list_json_gives_the_sources_and_their_tasks(runner: CliRunner) -> None:
    items = invoke_json(runner, "list", "--sources-for", "cxr")
    catalog = load_catalog()
    assert [item["id"] for item in items] == [
        i for i in catalog.ids if i not in {"cxr", "pneumonia"}
    ]
    pairs = [(item["id"], task) for item in items for task in item["source_tasks"]]
    assert pairs == [
        (d.id, d.tasks[0].name) for d in catalog.datasets if d.id in {i["id"] for i in items}
    ]
    every = invoke_json(runner, "list", "--sources-for", "cxr", "--all-tasks")
    skinl = next(item for item in every if item["id"] == "skinl_derm")
    assert len(skinl["source_tasks"]) == 12


def test_list_table_says_what_was_left_out(runner: CliRunner) -> None:
    result = invoke(runner, "list", "--sources-for", "fundus")
    assert result.exit_code == 0, result.stderr
    assert "except fundus, dr_regular, dr_uwf, glaucoma" in result.stderr
    assert "as the catalog names them" in result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines()[1:] if line.strip()}
    assert "crc" in listed and not {"fundus", "dr_regular", "dr_uwf", "glaucoma"} & listed


def test_list_follows_the_installed_info_yaml(runner: CliRunner, data_root: Path) -> None:
    archives.write_dataset_dir(replace(archives.CRC, domain_overlaps=("aml", "pbc")), data_root)
    ids = {item["id"] for item in invoke_json(runner, "list", "--sources-for", "crc")}
    assert not {"crc", "aml", "pbc"} & ids and "bus" in ids
    assert (
        "as its installed info.yaml names them"
        in invoke(runner, "list", "--sources-for", "crc").stderr
    )


@pytest.mark.parametrize(
    ("command", "extra", "named"),
    [
        ("list", ("--domain", "xray"), "--domain"),
        ("download", ("crc",), "dataset ids"),
        ("download", ("--all",), "--all"),
        ("verify", ("crc",), "dataset ids"),
        ("verify", ("--domain", "radiology"), "--domain"),
    ],
)
def test_sources_for_with_another_selection_is_a_usage_error(
    runner: CliRunner, command: str, extra: tuple[str, ...], named: str
) -> None:
    result = invoke(runner, command, "--sources-for", "cxr", *extra)
    assert result.exit_code == 2
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: --sources-for cannot be combined with " + named)
    assert "it selects the datasets itself" in first


def test_all_tasks_without_sources_for_is_a_usage_error(runner: CliRunner) -> None:
    result = invoke(runner, "list", "--all-tasks")
    assert result.exit_code == 2
    assert "--all-tasks needs --sources-for" in result.stderr


def test_download_and_verify_take_the_sources(
    runner: CliRunner, zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    # The fixture catalog: crc, cxr, dr_regular, organs_axial; cxr overlaps pneumonia only.
    plan = invoke_json(runner, "download", "--sources-for", "cxr", "--dry-run")
    assert [item["id"] for item in plan["items"]] == ["crc", "dr_regular", "organs_axial"]
    outcomes = invoke_json(runner, "download", "--sources-for", "cxr")
    assert [(o["id"], o["status"]) for o in outcomes] == [
        ("crc", "installed"),
        ("dr_regular", "installed"),
        ("organs_axial", "installed"),
    ]
    assert not (data_root / "cxr").exists()
    reports = invoke_json(runner, "verify", "--sources-for", "cxr")
    assert [(r["id"], r["ok"]) for r in reports] == [
        ("crc", True),
        ("dr_regular", True),
        ("organs_axial", True),
    ]
    # crc's sources include cxr, which is not installed: said, with its exit code.
    missing = invoke(runner, "verify", "--sources-for", "crc")
    assert missing.exit_code == 8
    assert "'cxr' is not installed" in missing.stderr


def test_the_api_gives_the_pairs(data_root: Path) -> None:
    catalog = load_catalog()
    pairs = sources_for("fundus", root=data_root)
    assert pairs == [
        (d.id, d.tasks[0].name)
        for d in catalog.datasets
        if d.id not in {"fundus", "dr_regular", "dr_uwf", "glaucoma"}
    ]
    every = sources_for("crc", all_tasks=True, root=data_root)
    assert len(every) == sum(len(d.tasks) for d in catalog.datasets if d.id != "crc")
    archives.write_dataset_dir(replace(archives.CRC, subject_overlaps=("bus",)), data_root)
    assert "bus" not in {d for d, _ in sources_for("crc", root=data_root)}
