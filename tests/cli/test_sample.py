"""``medimeta sample``: JSON and CSV output, grids and exports of the sampled images."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import medimeta_cli
from medimeta_cli.sample.sheets import sheet_size
from tests.conftest import InstalledData
from tests.support.helpers import invoke, medimeta_process, unwrapped


def test_episodes_as_json(runner: CliRunner, installed: InstalledData) -> None:
    result = invoke(
        runner,
        "sample",
        "crc",
        "--ways",
        "3",
        "--shots",
        "1",
        "--queries",
        "1",
        "--episodes",
        "4",
        "--seed",
        "7",
    )
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["dataset"], document["task"], document["split"]) == (
        "crc",
        "tissue class",
        "train",
    )
    assert len(document["episodes"]) == 4
    for episode in document["episodes"]:
        assert len(episode["classes"]) == 3
        assert len(episode["support"]) == 3 and len(episode["query"]) == 3
    again = invoke(
        runner,
        "sample",
        "crc",
        "--ways",
        "3",
        "--shots",
        "1",
        "--queries",
        "1",
        "--episodes",
        "4",
        "--seed",
        "7",
    )
    assert again.stdout == result.stdout


def test_episodes_as_csv(runner: CliRunner, installed: InstalledData) -> None:
    result = invoke(
        runner,
        "sample",
        "dr_regular",
        "--task",
        "clarity",
        "--ways",
        "2",
        "--shots",
        "1",
        "--queries",
        "0",
        "--episodes",
        "3",
        "--csv",
    )
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 3 * 2
    assert {row["set"] for row in rows} == {"support"}
    assert {int(row["class_key"]) for row in rows} <= {1, 4, 6, 8, 10}


def test_per_class_with_grid_and_export(
    runner: CliRunner, installed: InstalledData, tmp_path: Path
) -> None:
    grid, out = tmp_path / "grid.png", tmp_path / "subset"
    result = invoke(
        runner, "sample", "crc", "--per-class", "2", "--grid", str(grid), "--export", str(out)
    )
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert [len(c["indices"]) for c in document["classes"]] == [2] * 9
    assert Image.open(grid).size == sheet_size(9, 2)
    exported = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    expected = sorted(
        f"train/{position:02d}_{c['name']}/crc_{i:06d}.png"
        for position, c in enumerate(document["classes"])
        for i in c["indices"]
    )
    assert exported == expected


def test_errors(runner: CliRunner, installed: InstalledData) -> None:
    too_many = invoke(runner, "sample", "crc", "--ways", "5", "--shots", "5", "--queries", "15")
    assert too_many.exit_code == 2 and "an episode needs" in too_many.stderr
    multilabel = invoke(runner, "sample", "cxr", "--task", "disease labels", "--per-class", "1")
    assert multilabel.exit_code == 2 and "multi-label" in multilabel.stderr
    empty = invoke(runner, "sample", "organs_axial", "--split", "val", "--original-split")
    assert empty.exit_code == 2 and "has no images" in empty.stderr


def test_a_task_name_in_other_case_names_the_exact_one(
    runner: CliRunner, installed: InstalledData
) -> None:
    result = invoke(runner, "sample", "dr_regular", "--task", "CLARITY", "--per-class", "1")
    assert result.exit_code == 0, result.stderr
    assert "task 'CLARITY' is 'Clarity'" in result.stderr
    assert json.loads(result.stdout)["task"] == "Clarity"


def test_dash_q_is_quiet_as_in_every_command(runner: CliRunner, installed: InstalledData) -> None:
    args = ["sample", "dr_regular", "--task", "CLARITY", "--ways", "2", "--shots", "1"]
    quiet = invoke(runner, *args, "-Q", "1", "-q")
    assert quiet.exit_code == 0, quiet.stderr
    assert quiet.stderr == ""  # the task-name notice is a status line
    episode = json.loads(quiet.stdout)["episodes"][0]
    assert len(episode["query"]) == 2
    assert invoke(runner, *args, "--queries", "1").stdout == quiet.stdout


def test_errors_are_a_json_object_unless_csv(runner: CliRunner, installed: InstalledData) -> None:
    too_many = invoke(runner, "sample", "crc", "--ways", "50")
    assert too_many.exit_code == 2
    error = json.loads(too_many.stdout)["error"]
    assert (error["code"], error["exit_code"]) == ("USAGE", 2)
    assert error["message"] in unwrapped(too_many.stderr)
    as_csv = invoke(runner, "sample", "crc", "--ways", "50", "--csv")
    assert as_csv.exit_code == 2
    assert as_csv.stdout == ""


def test_every_task_type_with_ways_all_min_class_images_and_shot_ranges(
    runner: CliRunner, installed: InstalledData
) -> None:
    args = ["--shots", "1-2", "--queries", "1", "--episodes", "6", "--seed", "3"]
    crc = invoke(runner, "sample", "crc", "--ways", "all", "--min-class-images", "3", *args)
    assert crc.exit_code == 0, crc.stderr
    document = json.loads(crc.stdout)
    assert document["task_type"] == "multiclass" and document["shots"] == "1-2"
    assert document["left_out"] and all(c["images"] < 3 for c in document["left_out"])
    for left in document["left_out"]:
        assert f"left out {left['name']!r}: fewer than 3 images" in unwrapped(crc.stderr)
    used = [c["key"] for c in document["classes"]]
    assert {e["shots"] for e in document["episodes"]} == {1, 2}
    for episode in document["episodes"]:
        assert episode["classes"] == used
        assert len(episode["support"]) == episode["shots"] * len(used)
    binary = json.loads(invoke(runner, "sample", "cxr", "--task", "patient sex", *args).stdout)
    assert binary["task_type"] == "binary" and binary["ways"] == 2
    multilabel = invoke(
        runner, "sample", "cxr", "--task", "disease labels", "--shots", "1", "-Q", "0"
    )
    assert multilabel.exit_code == 0, multilabel.stderr
    episode = json.loads(multilabel.stdout)["episodes"][0]
    assert len(episode["classes"]) == 14
    assert all(len(item["target"]) == 14 for item in episode["support"])
    bad = invoke(runner, "sample", "crc", "--ways", "some")
    assert bad.exit_code == 2 and "'all'" in bad.stderr


def test_a_multilabel_episode_exports_and_shows_its_support(
    runner: CliRunner, installed: InstalledData, tmp_path: Path
) -> None:
    grid, out = tmp_path / "grid.png", tmp_path / "episode"
    args = ["sample", "cxr", "--task", "disease labels", "--shots", "1", "-Q", "0"]
    result = invoke(runner, *args, "--grid", str(grid), "--export", str(out))
    assert result.exit_code == 0, result.stderr
    support = json.loads(result.stdout)["episodes"][0]["support"]
    assert Image.open(grid).size[1] == sheet_size(14, 1)[1]
    exported = {int(p.stem.split("_")[-1]) for p in out.rglob("*.png")}
    assert exported == {item["index"] for item in support}


def test_same_seed_same_episodes_in_two_processes(installed: InstalledData) -> None:
    args = ("sample", "cxr", "--task", "disease labels", "--shots", "1-2", "--queries", "0")
    first = medimeta_process(*args, "--episodes", "3", "--seed", "11")
    second = medimeta_process(*args, "--episodes", "3", "--seed", "11")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout and json.loads(first.stdout)["episodes"]
    other = medimeta_process(*args, "--episodes", "3", "--seed", "12")
    assert other.stdout != first.stdout


def _own_root(installed: InstalledData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data root of this test's own with a copy of crc and an install record for it (the
    shared ``installed`` fixture is never changed)."""
    from medimeta_cli.store.layout import RootLayout
    from medimeta_cli.store.records import InstallRecord, write_install_record

    root = tmp_path / "root"
    shutil.copytree(installed.root / "crc", root / "crc")
    record = InstallRecord(
        dataset_id="crc",
        archive_key="crc.zip",
        archive_size=1234,
        archive_md5="0" * 31 + "1",
        record_id=7654321,
        record_version="1.0",
        installed_at="2026-01-01T00:00:00+00:00",
        tool_version="0.0.0",
        file_count=1,
        total_bytes=1,
        listed_md5="0" * 31 + "1",
    )
    write_install_record(RootLayout(root), record)
    monkeypatch.setenv("MEDIMETA_HOME", str(root))
    return root


CRC_ARGS = ("sample", "crc", "--ways", "2", "--shots", "1", "--queries", "1", "--episodes", "4")


def test_out_writes_a_file_named_as_upstream_with_a_header(
    runner: CliRunner, installed: InstalledData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _own_root(installed, tmp_path, monkeypatch)
    out = tmp_path / "episodes"
    result = invoke(runner, *CRC_ARGS, "--seed", "3", "--out", str(out))
    assert result.exit_code == 0, result.stderr
    path = out / "crc" / "tissue_class_1_1_4_train.json"
    assert json.loads(result.stdout) == {"file": str(path)}
    document = json.loads(path.read_text())
    assert document["format"] == "medimeta-episodes" and document["format_version"] == 1
    assert document["data"] == {
        "record_id": 7654321,
        "record_version": "1.0",
        "archive_md5": "0" * 31 + "1",
        "listed_md5": "0" * 31 + "1",
    }
    assert (document["dataset"], document["task"], document["task_type"]) == (
        "crc",
        "tissue class",
        "multiclass",
    )
    assert (document["split"], document["seed"], document["shots"]) == ("train", 3, 1)
    assert document["tool_version"] == medimeta_cli.__version__
    assert all(c["name"] for c in document["classes"]) and len(document["episodes"]) == 4
    ranged = invoke(
        runner,
        *CRC_ARGS[:5],
        "1-2",
        "--queries",
        "0",
        *CRC_ARGS[8:],
        "--out",
        str(out),
        "--format",
        "csv",
    )
    assert ranged.exit_code == 0, ranged.stderr
    rows = list(
        csv.reader(io.StringIO((out / "crc" / "tissue_class_1-2_0_4_train.csv").read_text()))
    )
    assert rows[0] == ["episode", "set", "class_key", "class_name", "index", "position", "target"]
    # The torchcross file is named exactly as PickledMedIMetaTaskDataset opens it: the raw
    # task name, its space kept.
    torch = invoke(runner, *CRC_ARGS, "--out", str(out), "--format", "torchcross")
    assert torch.exit_code == 0, torch.stderr
    assert json.loads(torch.stdout) == {"file": str(out / "crc" / "tissue class_1_1_4_train.pkl")}


def test_out_files_are_byte_identical_across_processes(
    installed: InstalledData, tmp_path: Path
) -> None:
    first = medimeta_process(*CRC_ARGS, "--seed", "5", "--out", str(tmp_path / "a"))
    second = medimeta_process(*CRC_ARGS, "--seed", "5", "--out", str(tmp_path / "b"))
    assert first.returncode == second.returncode == 0, first.stderr
    name = Path("crc") / "tissue_class_1_1_4_train.json"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_check_confirms_a_fresh_file_and_catches_changed_data(
    runner: CliRunner, installed: InstalledData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _own_root(installed, tmp_path, monkeypatch)
    out = tmp_path / "episodes"
    assert invoke(runner, *CRC_ARGS, "--out", str(out)).exit_code == 0
    path = out / "crc" / "tissue_class_1_1_4_train.json"
    ok = invoke(runner, "sample", "--check", str(path))
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout)["checked"][0]["file"] == str(path)

    # An index changed by hand: its label and position no longer match.
    document = json.loads(path.read_text())
    first = document["episodes"][0]["support"][0]
    tampered = tmp_path / "tampered.json"
    first["index"] = 10**6
    tampered.write_text(json.dumps(document))
    result = invoke(runner, "sample", "--check", str(tampered))
    assert result.exit_code == 4
    assert "index 1000000: out of range" in unwrapped(result.stderr)

    # The installed label of a sampled image changed.
    labels_path = root / "crc" / "task_labels" / "tissue class.npy"
    labels = np.load(labels_path)
    index = json.loads(path.read_text())["episodes"][0]["query"][0]["index"]
    labels[index] = (labels[index] + 1) % 9
    np.save(labels_path, labels)
    changed = invoke(runner, "sample", "--check", str(path))
    assert changed.exit_code == 4
    assert f"index {index}: label" in unwrapped(changed.stderr)


def test_check_refuses_malformed_files(
    runner: CliRunner, installed: InstalledData, tmp_path: Path
) -> None:
    for text in ("not json", "[]", '{"format": "medimeta-episodes", "format_version": 1}'):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        result = invoke(runner, "sample", "--check", str(bad))
        assert result.exit_code == 4, result.stderr
        assert "is not a valid episode file" in unwrapped(result.stderr)
