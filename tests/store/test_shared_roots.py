"""Shared read-only roots (MEDIMETA_PATH) seen by every command; written by none."""

from __future__ import annotations

import json
import os
from pathlib import Path

from typer.testing import CliRunner

from tests.support import zenodo_server as zs
from tests.support.helpers import invoke, invoke_json


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()
    }


def test_list_and_info_see_shared_datasets(runner: CliRunner, shared_root: Path) -> None:
    items = {item["id"]: item for item in invoke_json(runner, "list")}
    assert items["crc"]["state"] == "installed" and items["crc"]["shared"] is True
    assert items["crc"]["path"] == str(shared_root / "crc")
    assert items["dr_regular"]["state"] == "absent"
    table = invoke(runner, "list").stdout
    assert "installed (shared)" in table
    info = invoke_json(runner, "info", "cxr")
    assert (info["shared"], info["path"]) == (True, str(shared_root / "cxr"))


def test_paths_shows_every_root(runner: CliRunner, shared_root: Path, data_root: Path) -> None:
    report = invoke_json(runner, "paths")
    assert [(r["kind"], r["path"]) for r in report["roots"]] == [
        ("data root", str(data_root)),
        ("shared (read-only)", str(shared_root)),
    ]
    shared = report["roots"][1]
    assert (shared["exists"], shared["writable"], shared["datasets"]) == (
        True,
        False,
        ["crc", "cxr"],
    )


def test_download_skips_shared_datasets_and_writes_only_the_data_root(
    runner: CliRunner, shared_root: Path, data_root: Path, zenodo: zs.ZenodoServer
) -> None:
    before = snapshot(shared_root)
    outcomes = {o["id"]: o for o in invoke_json(runner, "download", "crc", "dr_regular")}
    assert outcomes["crc"]["status"] == "skipped"
    assert outcomes["crc"]["path"] == str(shared_root / "crc")
    assert outcomes["dr_regular"]["status"] == "installed"
    assert (data_root / "dr_regular" / "info.yaml").is_file()
    assert not (data_root / "crc").exists()
    assert zenodo.requests_for("crc.zip") == []
    assert snapshot(shared_root) == before
    plan = invoke_json(runner, "download", "crc", "--dry-run")
    assert plan["items"][0]["state"] == "installed"


def test_verify_export_and_sample_read_from_the_shared_root(
    runner: CliRunner, shared_root: Path, tmp_path: Path
) -> None:
    before = snapshot(shared_root)
    verified = invoke(runner, "verify", "--full", "--json")
    assert verified.exit_code == 0, verified.stderr
    assert {r["id"]: r["status"] for r in json.loads(verified.stdout)} == {"crc": "ok", "cxr": "ok"}
    exported = invoke(runner, "export", "crc", "--format", "numpy", "--out", str(tmp_path / "o"))
    assert exported.exit_code == 0, exported.stderr
    sampled = invoke(runner, "sample", "crc", "--per-class", "1")
    assert sampled.exit_code == 0, sampled.stderr
    assert snapshot(shared_root) == before


def test_damage_in_a_shared_root_is_reported_not_repaired(
    runner: CliRunner, shared_root: Path, tmp_path: Path, zenodo: zs.ZenodoServer
) -> None:
    source = tmp_path / "lab-data"  # the writable side of the read-only mount
    labels = source / "cxr" / "task_labels" / "patient sex.npy"
    os.truncate(labels, labels.stat().st_size - 8)
    result = invoke(runner, "verify", "cxr", "--repair")
    assert result.exit_code == 4
    assert "not repairing cxr: in a shared root" in result.stderr
    assert zenodo.requests_for("cxr.zip") == []
