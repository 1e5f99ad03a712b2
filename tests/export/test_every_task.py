"""``export --task all``: the labels of every task of a dataset in one export."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medimeta_cli.dataset.selection import SelectionSpec
from medimeta_cli.export.naming import task_column
from tests.conftest import InstalledData
from tests.support import archives
from tests.support.exports import files_of, run_export
from tests.support.helpers import invoke, invoke_json, unwrapped

ALL = SelectionSpec(task="all")


def _tasks(installed: InstalledData, dataset_id: str) -> list[str]:
    return [task.name for task in installed.catalog().get(dataset_id).tasks]


@pytest.mark.parametrize("dataset_id", ["dr_regular", "cxr"])
@pytest.mark.parametrize("npz", [False, True])
def test_numpy_export_of_every_task_holds_each_tasks_installed_labels(
    installed: InstalledData, tmp_path: Path, dataset_id: str, npz: bool
) -> None:
    """dr_regular: five tasks with keys that are not 0..K-1; cxr: a multi-label first task
    (its 0/1 rows) beside a binary one."""
    spec = installed.specs[dataset_id]
    dataset = installed.catalog().get(dataset_id)
    out = tmp_path / "out"
    run_export(installed, dataset_id, out, ALL, format="numpy", npz=npz)
    for split in ("train", "val", "test"):
        if npz:
            with np.load(out / f"{split}.npz") as bundle:
                arrays = {name: bundle[name] for name in bundle.files}
        else:
            arrays = {p.stem: np.load(p) for p in (out / split).glob("*.npy")}
        for task in dataset.tasks:
            expected = archives.expected_labels(spec, task.name)[arrays["indices"]]
            np.testing.assert_array_equal(arrays[task_column(task)], expected)
        assert len(arrays) == len(dataset.tasks) + (3 if dataset_id == "cxr" else 4)
    classes = json.loads((out / "classes.json").read_text(encoding="utf-8"))
    assert [t["task"] for t in classes["tasks"]] == _tasks(installed, dataset_id)
    for entry, task in zip(classes["tasks"], dataset.tasks, strict=True):
        assert entry["labels"] == task_column(task)
        assert [c["key"] for c in entry["classes"]] == sorted(task.labels)
        names = [task.labels[k] for k in sorted(task.labels)]
        assert [c["name"] for c in entry["classes"]] == names
    provenance = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["tasks"] == _tasks(installed, dataset_id)
    assert provenance["selection"]["task"] == "all"


def test_image_folder_export_of_every_task_has_a_column_per_task(
    installed: InstalledData, tmp_path: Path
) -> None:
    spec = installed.specs["dr_regular"]
    dataset = installed.catalog().get("dr_regular")
    out = tmp_path / "out"
    run_export(installed, "dr_regular", out, ALL, jobs=1)
    for split in ("train", "val", "test"):
        with open(out / split / "metadata.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert rows
        for task in dataset.tasks:
            labels = archives.expected_labels(spec, task.name)
            order = sorted(task.labels)
            for row in rows:
                key = int(labels[int(row["upstream_index"])])
                assert row[task_column(task)] == str(order.index(key))
        # The class folders are the first task's.
        first = archives.expected_labels(spec, dataset.tasks[0].name)
        assert all(int(row["label_key"]) == first[int(row["upstream_index"])] for row in rows)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert all(task_column(task) in card for task in dataset.tasks)


def test_multilabel_columns_list_the_positive_labels(
    installed: InstalledData, tmp_path: Path
) -> None:
    spec = installed.specs["cxr"]
    out = tmp_path / "out"
    run_export(installed, "cxr", out, ALL, jobs=1)
    rows_of = archives.expected_labels(spec, "disease labels")
    sex = archives.expected_labels(spec, "patient sex")
    with open(out / "train" / "metadata.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows
    for row in rows:
        index = int(row["upstream_index"])
        positives = [str(c) for c in np.flatnonzero(rows_of[index])]
        assert row["labels_disease_labels"] == " ".join(positives)
        assert row["labels_patient_sex"] == str(int(sex[index]))


def test_shards_of_an_every_task_export_join_into_the_whole_one(
    installed: InstalledData, tmp_path: Path
) -> None:
    run_export(installed, "dr_regular", tmp_path / "whole", ALL, format="numpy", command="c")
    for i in (1, 2, 3):
        run_export(
            installed,
            "dr_regular",
            tmp_path / "sharded",
            replace(ALL, shard=(i, 3)),
            format="numpy",
            command="c",
        )
    assert files_of(tmp_path / "sharded") == files_of(tmp_path / "whole")


def test_the_command_line_exports_every_task_to_its_own_folder(
    runner: CliRunner, installed: InstalledData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(runner, "export", "dr_regular", "--task", "all", "--format", "numpy")
    assert result.exit_code == 0, result.stderr
    assert "every task of dr_regular (5)" in unwrapped(result.stderr)
    assert (tmp_path / "dr_regular-all-numpy" / "train" / "labels_Clarity.npy").is_file()


def test_every_task_takes_no_classes_and_sampling_takes_one_task(
    runner: CliRunner, installed: InstalledData, tmp_path: Path
) -> None:
    out = str(tmp_path / "out")
    refused = invoke(runner, "export", "crc", "--task", "all", "--classes", "ADI", "--out", out)
    assert refused.exit_code == 2
    assert "--task all exports every task" in unwrapped(refused.stderr)
    # Sampling draws from one task: "all" is no task there.
    sampled = invoke(runner, "sample", "dr_regular", "--task", "all")
    assert sampled.exit_code != 0
    assert "unknown task 'all'" in unwrapped(sampled.stderr)
    assert invoke_json(runner, "export", "crc", "--task", "all", "--out", out, "-j", "1")[
        "complete"
    ]
