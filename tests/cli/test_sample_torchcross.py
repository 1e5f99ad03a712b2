"""``sample --out DIR --format torchcross`` and ``sample --check FILE.pkl``."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.cli.test_sample import CRC_ARGS, _own_root
from tests.conftest import InstalledData
from tests.support.helpers import invoke, medimeta_process, unwrapped

NAME = Path("crc") / "tissue class_1_1_4_train.pkl"


@pytest.mark.slow
def test_torchcross_files_are_byte_identical_across_processes(
    installed: InstalledData, tmp_path: Path
) -> None:
    runs = {
        folder: medimeta_process(
            *CRC_ARGS, "--seed", seed, "--out", str(tmp_path / folder), "--format", "torchcross"
        )
        for folder, seed in (("a", "5"), ("b", "5"), ("c", "6"))
    }
    assert all(run.returncode == 0 for run in runs.values()), runs["a"].stderr
    first = (tmp_path / "a" / NAME).read_bytes()
    assert first == (tmp_path / "b" / NAME).read_bytes()
    assert first != (tmp_path / "c" / NAME).read_bytes()


def test_check_confirms_a_torchcross_file_and_catches_a_changed_label_file(
    runner: CliRunner, installed: InstalledData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _own_root(installed, tmp_path, monkeypatch)
    out = tmp_path / "episodes"
    for fmt in ("torchcross", "json"):
        written = invoke(runner, *CRC_ARGS, "--out", str(out), "--format", fmt)
        assert written.exit_code == 0, written.stderr
    path = out / NAME
    ok = invoke(runner, "sample", "--check", str(path))
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout) == {"checked": [{"file": str(path), "images": 16}]}
    assert "records no data identity" in unwrapped(ok.stderr)

    # The same file under a name that says nothing: --task and --split say it.
    renamed = tmp_path / "crc" / "episodes.pkl"
    renamed.parent.mkdir()
    shutil.copy(path, renamed)
    unnamed = invoke(runner, "sample", "--check", str(renamed))
    assert unnamed.exit_code == 4 and "its name is not" in unwrapped(unnamed.stderr)
    told = invoke(
        runner, "sample", "--check", str(renamed), "--task", "tissue class", "--split", "train"
    )
    assert told.exit_code == 0, told.stderr
    wrong_split = invoke(runner, "sample", "--check", str(path), "--split", "test")
    assert wrong_split.exit_code == 4

    # The installed label of a sampled image changed.
    document = json.loads((out / "crc" / "tissue_class_1_1_4_train.json").read_text())
    image = document["episodes"][0]["query"][0]
    labels_path = root / "crc" / "task_labels" / "tissue class.npy"
    labels = np.load(labels_path)
    labels[image["index"]] = (labels[image["index"]] + 1) % 9
    np.save(labels_path, labels)
    changed = invoke(runner, "sample", "--check", str(path))
    assert changed.exit_code == 4
    assert f"task 0 query position {image['position']}: target" in unwrapped(changed.stderr)


def test_check_refuses_a_malicious_pickle_and_runs_nothing(
    runner: CliRunner, installed: InstalledData, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "crc" / "tissue class_1_1_4_train.pkl"
    path.parent.mkdir()
    path.write_bytes(pickle.dumps([Evil()]))
    result = invoke(runner, "sample", "--check", str(path))
    assert result.exit_code == 4
    assert "not a torchcross episode file" in unwrapped(result.stderr)
    assert not marker.exists()


def test_torchcross_refuses_an_original_split(
    runner: CliRunner, installed: InstalledData, tmp_path: Path
) -> None:
    result = invoke(
        runner, *CRC_ARGS, "--original-split", "--out", str(tmp_path), "--format", "torchcross"
    )
    assert result.exit_code == 2
    assert "original split" in unwrapped(result.stderr)


def test_torchcross_says_what_loads_it_when_the_pipeline_is_missing(
    runner: CliRunner, installed: InstalledData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medimeta_cli.sample import torchcross

    monkeypatch.setattr(torchcross, "OFFICIAL_MODULES", ("medimeta", "no_such_pipeline_module"))
    result = invoke(runner, *CRC_ARGS, "--out", str(tmp_path), "--format", "torchcross")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / NAME).is_file()
    stderr = unwrapped(result.stderr)
    missing = stderr.split("loading this file needs ", 1)[1].split(" (not installed here)")[0]
    assert "no_such_pipeline_module" in missing.split(", ")
    assert 'pip install ".[torch]" (in a clone of medimeta-cli)' in stderr
