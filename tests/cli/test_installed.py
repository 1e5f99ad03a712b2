"""Installed data describes itself: every command reads a dataset's own info.yaml.

Two kinds of data the bundled catalog does not describe: a newer record (or a lab's
subset) whose counts differ from the catalog, and a dataset outside the catalog installed
with ``download --from``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import FixtureData
from tests.support import archives
from tests.support.archives import CRC, DatasetSpec, with_num_images
from tests.support.helpers import invoke, invoke_json
from tests.support.zenodo_server import ZenodoServer

#: The record now holds 90 crc images; the fixture catalog says 36.
NEWER_CRC = with_num_images(CRC, 90)


def _run(runner: CliRunner, *args: str) -> str:
    result = invoke(runner, *args)
    assert result.exit_code == 0, (args, result.stdout, result.stderr)
    return result.stdout


@pytest.mark.slow
def test_every_command_reads_data_whose_info_yaml_differs_from_the_catalog(
    runner: CliRunner, zenodo: ZenodoServer, fixture_data: FixtureData, tmp_path: Path
) -> None:
    """Before, export refused it ("has 90 rows, expected 36"), verify --deep called it
    damaged, and the record's own archive could not even be installed."""
    assert NEWER_CRC.num_images != CRC.num_images == 36
    zenodo.replace_file("crc.zip", archives.build_archive(NEWER_CRC, tmp_path / "newer"))
    _run(runner, "download", "crc")

    listed = {item["id"]: item for item in invoke_json(runner, "list")}
    crc = listed["crc"]
    assert crc["num_samples"] == 90 and crc["state"] == "installed"
    assert crc["splits"] == {s: NEWER_CRC.split_count(s) for s in ("train", "val", "test")}
    assert crc["catalog"]["num_samples"] == 36
    assert crc["catalog_differences"][0] == "90 images (catalog: 36)"
    assert listed["cxr"]["catalog"] == {} and listed["cxr"]["catalog_differences"] == []
    assert "90 (catalog 36)" in _run(runner, "list")

    info = invoke_json(runner, "info", "crc")
    assert info["num_samples"] == 90 and info["catalog"]["num_samples"] == 36
    text = _run(runner, "info", "crc")
    assert "installed data differs from catalog v1.0: 90 images (catalog: 36)" in text
    assert "the record may be newer" in text

    for mode in ((), ("--full",), ("--deep",)):
        [report] = invoke_json(runner, "verify", "crc", *mode)
        assert report["status"] == "ok", report
        assert report["problems"] == []
        assert report["catalog_differences"][0]["message"] == "90 images (catalog: 36)"
        text = _run(runner, "verify", "crc", *mode)
        assert text.startswith("ok") and "note: installed data differs from catalog" in text

    for export_format in ("imagefolder", "numpy"):
        out = tmp_path / export_format
        result = invoke_json(
            runner, "export", "crc", "--format", export_format, "--out", str(out), "-j", "1"
        )
        assert result["images"] == 90, result
    labels = np.load(tmp_path / "numpy" / "train" / "labels.npy")
    assert len(labels) == NEWER_CRC.split_count("train")

    rows = _run(runner, "sample", "crc", "--per-class", "1", "--csv").splitlines()[1:]
    assert rows and all(0 <= int(row.split(",")[-1]) < 90 for row in rows)
    grid = tmp_path / "grid.png"
    episodes = json.loads(
        _run(runner, "sample", "crc", "-n", "2", "-k", "1", "-Q", "1", "--grid", str(grid))
    )
    assert episodes["episodes"] and grid.is_file()


def test_data_unpacked_by_hand_is_read_by_its_info_yaml(
    runner: CliRunner,
    fixture_data: FixtureData,
    tmp_path: Path,
    data_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As the issue found it: an unzipped newer crc (no install record). Before, export
    said "task_labels/tissue class.npy of 'crc' has 90 rows, expected 36" and
    verify --deep called it damaged."""
    monkeypatch.setenv("MEDIMETA_CATALOG", str(fixture_data.catalog))
    archives.write_dataset_dir(NEWER_CRC, data_root)
    [report] = invoke_json(runner, "verify", "--deep", "crc")
    assert report["status"] == "untracked" and report["ok"] is True, report
    assert [p["kind"] for p in report["problems"]] == ["untracked"]  # no structure problem
    assert report["catalog_differences"][0]["field"] == "num_samples"
    for export_format in ("imagefolder", "numpy"):
        out = tmp_path / export_format
        result = invoke_json(runner, "export", "crc", "--format", export_format, "-o", str(out))
        assert result["images"] == 90
    assert _run(runner, "sample", "crc", "--per-class", "2", "--csv")


def test_a_newer_record_differing_from_the_catalog_installs(
    runner: CliRunner, zenodo: ZenodoServer, tmp_path: Path, data_root: Path
) -> None:
    """The quick check of an install measures the archive against its own info.yaml."""
    zenodo.replace_file("crc.zip", archives.build_archive(NEWER_CRC, tmp_path / "newer"))
    result = invoke(runner, "download", "crc")
    assert result.exit_code == 0, result.stderr
    assert (data_root / "crc" / "images.hdf5").is_file()


# --------------------------------------------------------------------------- outside the catalog

LAB = DatasetSpec(
    id="lab_scans",
    name="A Lab's Own Scans",
    domain="Synthetic",
    channels=1,
    splits={"train": 8, "val": 2, "test": 2},
    original_splits={"train": 10, "val": 0, "test": 2},
    tasks=(archives.TaskSpec("finding", "ORDINAL_REGRESSION", {1: "low", 4: "mid", 6: "high"}),),
    seed=7,
)


def test_a_dataset_outside_the_catalog_installs_from_an_archive_and_works_everywhere(
    runner: CliRunner, zenodo: ZenodoServer, tmp_path: Path, data_root: Path
) -> None:
    archive = archives.build_archive(LAB, tmp_path / "lab")
    [outcome] = invoke_json(runner, "download", "--from", str(archive))
    assert outcome["status"] == "installed", outcome
    assert (data_root / "lab_scans" / "info.yaml").is_file()

    listed = {item["id"]: item for item in invoke_json(runner, "list")}
    assert listed["lab_scans"]["in_catalog"] is False
    assert listed["lab_scans"]["num_samples"] == 12
    assert "[local]" in _run(runner, "list", "--installed")
    info = invoke_json(runner, "info", "lab_scans")
    assert info["name"] == "A Lab's Own Scans" and info["download_url"] is None

    for mode in ((), ("--full",), ("--deep",)):
        [report] = invoke_json(runner, "verify", "lab_scans", *mode)
        assert report["status"] == "ok" and report["catalog_differences"] == [], report
    everything = {r["id"]: r for r in invoke_json(runner, "verify")}
    assert everything["lab_scans"]["status"] == "ok"

    for export_format in ("imagefolder", "numpy"):
        out = tmp_path / export_format
        result = invoke_json(
            runner, "export", "lab_scans", "--format", export_format, "--out", str(out)
        )
        assert result["images"] == 12
    _run(runner, "sample", "lab_scans", "--per-class", "1")

    # Damage is still damage outside the catalog.
    np.save(data_root / "lab_scans" / "task_labels" / "finding.npy", np.zeros(12, np.int64))
    result = invoke(runner, "verify", "--deep", "lab_scans")
    assert result.exit_code == 4
    assert "values that are not label keys (1, 4, 6)" in result.stdout


def test_an_archive_outside_the_catalog_must_describe_itself(
    runner: CliRunner, tmp_path: Path, data_root: Path
) -> None:
    """No info.yaml naming the id, an unsafe name: refused, and nothing is installed.
    These need no record at all (no server is running)."""
    other = archives.build_archive(LAB, tmp_path / "lab")
    renamed = other.with_name("other_scans.zip")
    other.rename(renamed)
    result = invoke(runner, "download", "--from", str(renamed))
    assert result.exit_code == 4
    assert "holds no other_scans/info.yaml" in result.stderr

    bad = tmp_path / "Bad-Name.zip"
    with zipfile.ZipFile(bad, "w") as handle:
        handle.writestr("Bad-Name/info.yaml", "id: Bad-Name\n")
    result = invoke(runner, "download", "--from", str(bad))
    assert result.exit_code == 2
    assert "not a valid dataset id" in result.stderr
    assert not any(p.name in ("other_scans", "Bad-Name") for p in data_root.glob("*"))


def test_an_unknown_id_that_is_not_installed_is_still_unknown(runner: CliRunner) -> None:
    for command in ("info", "export", "sample", "verify"):
        result = invoke(runner, command, "lab_scans")
        assert result.exit_code == 2, (command, result.stderr)
        assert "unknown dataset" in result.stderr.lower(), result.stderr


def test_hints_for_a_dataset_outside_the_catalog_never_promise_a_repair(
    runner: CliRunner, tmp_path: Path, data_root: Path
) -> None:
    """verify --repair cannot fetch a dataset the record lacks: the hints used to promise
    it; they say how to install it again instead."""
    archive = archives.build_archive(LAB, tmp_path / "lab")
    [outcome] = invoke_json(runner, "download", "--from", str(archive))
    assert outcome["status"] == "installed", outcome

    with open(data_root / "lab_scans" / "LICENSE", "ab") as handle:
        handle.write(b"changed")
    assert invoke(runner, "verify", "lab_scans").exit_code == 4
    result = invoke(runner, "export", "lab_scans", "--out", str(tmp_path / "out"))
    assert result.exit_code == 4, result.stderr
    assert "found damaged by verify" in result.stderr
    assert "download --from" in result.stderr and "verify --repair" not in result.stderr

    (data_root / "lab_scans" / "info.yaml").write_text("id: [unclosed\n")
    for command in (("info", "lab_scans"), ("sample", "lab_scans", "--per-class", "1")):
        result = invoke(runner, *command)
        assert result.exit_code == 4, (command, result.stderr)
        assert "download --from" in result.stderr and "verify --repair" not in result.stderr
    result = invoke(runner, "verify", "--repair", "lab_scans")
    assert result.exit_code == 4
    assert "not repairing lab_scans" in result.stderr and "download --from" in result.stderr
