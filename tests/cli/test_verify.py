"""``medimeta verify`` on datasets installed from the test server by the real engine."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import h5py
import numpy as np
from typer.testing import CliRunner

from medimeta_cli.fsutil import human_bytes
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.records import read_install_record
from tests.conftest import FixtureData
from tests.support import archives
from tests.support import zenodo_server as zs
from tests.support.helpers import (
    flip_byte,
    install_from_server,
    installed_script,
    invoke,
    invoke_json,
)

LABELS = "task_labels/disease labels.npy"


def states(runner: CliRunner) -> dict[str, str]:
    return {item["id"]: item["state"] for item in invoke_json(runner, "list")}


def test_clean_install_exits_0(runner: CliRunner, zenodo: zs.ZenodoServer, data_root: Path) -> None:
    install_from_server("cxr")
    result = invoke(runner, "verify", "cxr")
    assert result.exit_code == 0, result.stderr
    [line] = result.stdout.splitlines()
    record = read_install_record(RootLayout(data_root), "cxr")
    assert record is not None
    assert line.split() == ["ok", "cxr", str(record.file_count), "files"]


def test_installed_script_exit_codes(zenodo: zs.ZenodoServer, data_root: Path) -> None:
    script = installed_script()
    install_from_server("cxr")
    clean = subprocess.run([script, "verify", "cxr"], capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.startswith("ok")
    (data_root / "cxr" / "LICENSE").unlink()
    damaged = subprocess.run(
        [script, "verify", "--json"], capture_output=True, text=True, timeout=60
    )
    assert damaged.returncode == 4, damaged.stderr
    [report] = json.loads(damaged.stdout)
    assert (report["id"], report["status"]) == ("cxr", "damaged")
    assert report["problems"] == [{"path": "LICENSE", "kind": "missing", "detail": ""}]


def test_damage_exits_4_with_a_report_per_dataset(
    runner: CliRunner, zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    install_from_server("crc", "cxr")
    (data_root / "cxr" / "images" / "000001.tiff").unlink()
    (data_root / "cxr" / "stray.txt").write_text("?")
    result = invoke(runner, "verify")
    assert result.exit_code == 4, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["ok", "crc"]
    cxr_at = next(i for i, line in enumerate(lines) if line.split()[1:2] == ["cxr"])
    assert lines[cxr_at].split()[0] == "damaged"
    assert {line.strip() for line in lines[cxr_at + 1 :]} == {
        "missing: images/000001.tiff",
        "extra: stray.txt",
    }
    assert states(runner) == {
        **{d: "absent" for d in ("dr_regular", "organs_axial")},
        "crc": "verified",
        "cxr": "damaged",
    }


def test_json_report_shape(runner: CliRunner, zenodo: zs.ZenodoServer, data_root: Path) -> None:
    install_from_server("cxr", "crc")
    with open(data_root / "cxr" / LABELS, "r+b") as handle:
        handle.truncate(40)
    result = invoke(runner, "verify", "cxr", "crc", "--json")
    assert result.exit_code == 4
    reports = json.loads(result.stdout)
    # One report per id, in the order given.
    assert [r["id"] for r in reports] == ["cxr", "crc"]
    cxr, crc = reports
    assert {"id", "mode", "status", "ok", "problems"} <= set(cxr)
    assert (cxr["mode"], cxr["status"], cxr["ok"]) == ("fast", "damaged", False)
    assert (crc["mode"], crc["status"], crc["ok"], crc["problems"]) == ("fast", "ok", True, [])
    [problem] = cxr["problems"]
    assert (problem["path"], problem["kind"]) == (LABELS, "changed")
    assert "40 bytes" in problem["detail"]


def test_no_ids_checks_every_installed_dataset(
    runner: CliRunner, zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    assert invoke_json(runner, "verify") == []
    empty = invoke(runner, "verify")
    assert empty.exit_code == 0 and "no installed datasets" in empty.stderr
    install_from_server("organs_axial", "crc")
    reports = invoke_json(runner, "verify")
    assert sorted(r["id"] for r in reports) == ["crc", "organs_axial"]
    assert all(r["ok"] for r in reports)


def test_dataset_not_installed_exits_8_with_a_download_hint(
    runner: CliRunner, zenodo: zs.ZenodoServer
) -> None:
    install_from_server("crc")
    result = invoke(runner, "verify", "crc", "cxr")
    assert result.exit_code == 8
    assert "medimeta download cxr" in result.stderr
    assert result.stdout == ""
    # Ids are case-insensitive everywhere, so this is the same dataset.
    upper = invoke(runner, "verify", "CXR")
    assert upper.exit_code == 8, upper.stdout + upper.stderr
    assert "medimeta download cxr" in upper.stderr
    assert invoke(runner, "verify", "CRC").exit_code == 0


def test_full_reports_throughput(
    runner: CliRunner, zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    install_from_server("cxr")
    record = read_install_record(RootLayout(data_root), "cxr")
    assert record is not None
    fast = invoke(runner, "verify", "cxr")
    assert "/s" not in fast.stdout
    result = invoke(runner, "verify", "--full", "cxr")
    assert result.exit_code == 0, result.stderr
    match = re.search(r"\((.+) at (\d+(?:\.\d)? [KMGT]?i?B)/s\)", result.stdout)
    assert match, result.stdout
    assert match.group(1) == human_bytes(record.total_bytes)


def test_full_and_deep_find_what_fast_cannot(
    runner: CliRunner, zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    install_from_server("cxr")
    hdf5 = data_root / "cxr" / "images.hdf5"
    flip_byte(hdf5, hdf5.stat().st_size - 10)
    assert invoke(runner, "verify", "cxr").exit_code == 0
    full = invoke(runner, "verify", "--full", "cxr")
    assert full.exit_code == 4
    assert "changed: images.hdf5" in full.stdout
    deep = invoke(runner, "verify", "--deep", "cxr", "--json")
    assert deep.exit_code == 4
    [report] = json.loads(deep.stdout)
    assert report["mode"] == "deep"
    assert {(p["path"], p["kind"]) for p in report["problems"]} >= {("images.hdf5", "changed")}


def test_deep_catches_a_truncated_label_file(
    runner: CliRunner, zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    install_from_server("cxr")
    with open(data_root / "cxr" / LABELS, "r+b") as handle:
        handle.truncate(100)
    result = invoke(runner, "verify", "--deep", "cxr")
    assert result.exit_code == 4
    assert f"structure: {LABELS}" in result.stdout


def test_repair_downloads_the_damaged_dataset_again(
    runner: CliRunner, zenodo: zs.ZenodoServer, data_root: Path, fixture_data: FixtureData
) -> None:
    install_from_server("crc", "cxr")
    hdf5 = data_root / "cxr" / "images.hdf5"
    flip_byte(hdf5, 4096)
    (data_root / "cxr" / "LICENSE").unlink()
    zenodo.clear_log()

    result = invoke(runner, "verify", "--full", "--repair")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "repaired cxr" in result.stderr
    assert len(zenodo.requests_for("cxr.zip", method="GET")) == 1
    assert zenodo.requests_for("crc.zip", method="GET") == []  # only the damaged one

    spec = fixture_data.specs["cxr"]
    with h5py.File(hdf5) as handle:
        np.testing.assert_array_equal(handle["images"][:], archives.expected_images(spec))
    again = invoke(runner, "verify", "--full")
    assert again.exit_code == 0, again.stdout
    assert states(runner)["cxr"] == "verified"


def test_a_corrupt_manifest_exits_4_in_every_mode_and_repair_rebuilds_it(
    runner: CliRunner, zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    """#9 item 9: with `.files.json` replaced by [1,2,3] and a file deleted, verify, --full
    and --repair all said "untracked ... 0 files" and exited 0."""
    install_from_server("cxr")
    layout = RootLayout(data_root)
    layout.file_manifest_path("cxr").write_text("[1,2,3]")
    (data_root / "cxr" / "images" / "000001.tiff").unlink()
    for flags in ([], ["--full"], ["--deep"]):
        result = invoke(runner, "verify", "cxr", *flags)
        assert result.exit_code == 4, (flags, result.stdout)
        assert result.stdout.startswith("damaged"), result.stdout
        assert "unreadable record: cxr.files.json" in result.stdout
    assert states(runner)["cxr"] == "damaged"
    zenodo.clear_log()
    repaired = invoke(runner, "verify", "cxr", "--repair")
    assert repaired.exit_code == 0, repaired.stdout + repaired.stderr
    assert "repaired cxr" in repaired.stderr
    assert len(zenodo.requests_for("cxr.zip", method="GET")) == 1
    assert (data_root / "cxr" / "images" / "000001.tiff").is_file()
    again = invoke_json(runner, "verify", "cxr", "--full")
    assert [(r["status"], r["problems"]) for r in again] == [("ok", [])]


def test_repair_keeps_the_layout_each_dataset_was_installed_in(
    runner: CliRunner, zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    """An hdf5-layout install is repaired in the hdf5 layout (with its masks when it had
    them), never as the full layout twice its size."""
    for args in (("cxr", "--layout", "hdf5"), ("organs_axial", "--layout", "hdf5", "--with-masks")):
        assert invoke(runner, "download", *args).exit_code == 0
    for dataset_id in ("cxr", "organs_axial"):
        flip_byte(data_root / dataset_id / "images.hdf5", 4096)
    result = invoke(runner, "verify", "--full", "--repair")
    assert result.exit_code == 0, result.stdout + result.stderr
    layout = RootLayout(data_root)
    for dataset_id in ("cxr", "organs_axial"):
        record = read_install_record(layout, dataset_id)
        assert record is not None and record.layout == "hdf5"
        assert not (data_root / dataset_id / "images").exists()
    assert (data_root / "organs_axial" / "masks").is_dir()
    assert not (data_root / "cxr" / "masks").exists()
    assert invoke(runner, "verify", "--full").exit_code == 0
