"""``export --format parquet``: what Hugging Face ``datasets`` loads from it, and its bytes."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medimeta_cli.dataset.selection import SelectionSpec
from medimeta_cli.export import parquet
from medimeta_cli.export.naming import task_column
from tests.conftest import InstalledData
from tests.support import archives
from tests.support.exports import files_of, run_export

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pyarrow") is None or importlib.util.find_spec("datasets") is None,
    reason="needs pyarrow and Hugging Face datasets",
)

HF_SPLITS = {"train": "train", "val": "validation", "test": "test"}


@pytest.fixture
def hf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Hugging Face ``datasets``, offline, with its cache in the test's folder."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets

    return datasets


def _load(hf: Any, out: Path) -> Any:
    """``load_dataset(out)`` with a cache of this test's own: ``datasets`` reads its cache
    directory once, at import, and tells local files apart by name and mtime only, so two
    exports written in one second would share a cached copy."""
    return hf.load_dataset(str(out), cache_dir=str(out.parent / "hf-cache"))


@pytest.mark.slow
@pytest.mark.parametrize(("dataset_id", "task"), [("crc", None), ("cxr", "disease labels")])
def test_load_dataset_gives_every_split_with_class_labels_labels_and_pixels(
    installed: InstalledData, tmp_path: Path, hf: Any, dataset_id: str, task: str | None
) -> None:
    spec = installed.specs[dataset_id]
    dataset = installed.catalog().get(dataset_id)
    chosen = dataset.tasks[0] if task is None else next(t for t in dataset.tasks if t.name == task)
    out = tmp_path / "out"
    run_export(installed, dataset_id, out, SelectionSpec(task=chosen.name), format="parquet")
    classes = json.loads((out / "classes.json").read_text(encoding="utf-8"))
    names = [entry["name"] for entry in classes["classes"]]
    loaded = _load(hf, out)
    assert set(loaded) == set(HF_SPLITS.values())
    expected_labels = archives.expected_labels(spec, chosen.name)
    for split, hf_split in HF_SPLITS.items():
        rows = loaded[hf_split]
        indices = archives.split_indices(spec, split)
        assert rows["upstream_index"] == sorted(int(i) for i in indices)
        feature = rows.features["label"]
        if chosen.target.value == "multilabel":
            assert isinstance(feature.feature, hf.ClassLabel)
            assert feature.feature.names == names
            expected = [np.flatnonzero(expected_labels[i]).tolist() for i in rows["upstream_index"]]
        else:
            assert isinstance(feature, hf.ClassLabel)
            assert feature.names == names
            index_of_key = {int(k): v for k, v in classes["index_by_key"].items()}
            expected = [index_of_key[int(expected_labels[i])] for i in rows["upstream_index"]]
        assert rows["label"] == expected
        assert isinstance(rows.features["image"], hf.Image)
        for row in rows:
            image = row["image"]
            assert image.format == "PNG"
            wanted = archives.expected_image(spec, row["upstream_index"])
            np.testing.assert_array_equal(np.asarray(image), wanted)
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        f"{split}-00000-of-00001.parquet" for split in ("test", "train", "val")
    ]


@pytest.mark.slow
@pytest.mark.parametrize("dataset_id", ["dr_regular", "cxr"])
def test_every_task_columns_equal_the_installed_label_files(
    installed: InstalledData, tmp_path: Path, hf: Any, dataset_id: str
) -> None:
    spec = installed.specs[dataset_id]
    dataset = installed.catalog().get(dataset_id)
    out = tmp_path / "out"
    run_export(installed, dataset_id, out, SelectionSpec(task="all"), format="parquet")
    loaded = _load(hf, out)
    classes = json.loads((out / "classes.json").read_text(encoding="utf-8"))
    assert [entry["labels"] for entry in classes["tasks"]] == [
        task_column(t) for t in dataset.tasks
    ]
    for hf_split in HF_SPLITS.values():
        rows = loaded[hf_split]
        assert len(rows) > 0
        for task in dataset.tasks:
            column = task_column(task)
            labels = archives.expected_labels(spec, task.name)[rows["upstream_index"]]
            names = [task.labels[k] for k in sorted(task.labels)]
            feature = rows.features[column]
            if labels.ndim == 2:
                assert feature.feature.names == names
                # Each row's positive labels, back as the 0/1 rows of task_labels/.
                back = np.zeros_like(labels)
                for n, positives in enumerate(rows[column]):
                    back[n, positives] = 1
                np.testing.assert_array_equal(back, labels)
            else:
                assert feature.names == names
                keys = [sorted(task.labels)[i] for i in rows[column]]
                assert keys == labels.tolist()


def test_jpeg_images_and_the_dataset_card(installed: InstalledData, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "out"
    run_export(installed, "crc", out, format="parquet", image_format="jpeg", jobs=1)
    table = pq.read_table(out / "data" / "train-00000-of-00001.parquet")
    first = table.column("image")[0].as_py()
    assert first["path"].endswith(".jpg")
    from PIL import Image

    assert Image.open(io.BytesIO(first["bytes"])).format == "JPEG"
    provenance = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["format"]["image_format"] == "jpeg"
    card = (out / "README.md").read_text(encoding="utf-8")
    header = card.split("---\n")[1]
    assert "license: cc-by-sa-4.0" in header  # CC BY-SA 4.0, as the Hugging Face id
    assert "path: data/train-*.parquet" in header and "split: validation" in header
    assert provenance["bibtex"].strip() in card


@pytest.mark.slow
def test_same_bytes_across_runs_jobs_and_shards(
    installed: InstalledData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Units of 4 images, so that two worker processes share every split.
    monkeypatch.setattr(parquet, "UNIT", 4)
    spec = SelectionSpec(task="all")
    run_export(installed, "cxr", tmp_path / "a", spec, format="parquet", command="c", jobs=1)
    run_export(installed, "cxr", tmp_path / "b", spec, format="parquet", command="c", jobs=2)
    # Five shards of splits of four images (val, test): some shards' slices are empty.
    for i in (1, 2, 3, 4, 5):
        run_export(
            installed,
            "cxr",
            tmp_path / "sharded",
            replace(spec, shard=(i, 5)),
            format="parquet",
            command="c",
            jobs=1,
        )
    whole = files_of(tmp_path / "a")
    assert any(name.endswith(".parquet") for name in whole)
    assert files_of(tmp_path / "b") == whole
    assert files_of(tmp_path / "sharded") == whole


@pytest.mark.slow
def test_small_row_groups_and_files_still_join_and_load(
    installed: InstalledData, tmp_path: Path, hf: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files of a few row groups each: a split spans several files, cut at the same rows
    whether one run or three shards wrote them."""
    import pyarrow.parquet as pq

    pixels = installed.catalog().get("crc").input_size
    one = pixels.height * pixels.width * pixels.channels
    monkeypatch.setattr(parquet, "GROUP_PIXEL_BYTES", 3 * one)
    monkeypatch.setattr(parquet, "FILE_PIXEL_BYTES", 7 * one)
    run_export(installed, "crc", tmp_path / "whole", format="parquet", command="c", jobs=1)
    for i in (1, 2, 3):
        spec = SelectionSpec(shard=(i, 3))
        run_export(installed, "crc", tmp_path / "sharded", spec, format="parquet", command="c")
    whole = files_of(tmp_path / "whole")
    assert files_of(tmp_path / "sharded") == whole
    train = sorted((tmp_path / "whole" / "data").glob("train-*"))
    count = len(archives.split_indices(installed.specs["crc"], "train"))
    assert len(train) == -(-count // 6) > 1
    assert train[0].name == f"train-00000-of-{len(train):05d}.parquet"
    assert [pq.ParquetFile(p).metadata.num_row_groups for p in train[:-1]] == [2] * (len(train) - 1)
    loaded = _load(hf, tmp_path / "whole")
    assert len(loaded["train"]) == count


def _without_pyarrow(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``medimeta ARGS`` in a real interpreter in which pyarrow cannot be imported (as
    where it is not installed)."""
    blocker = tmp_path / "blocker"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class _NoPyarrow:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'pyarrow' or name.startswith('pyarrow.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, _NoPyarrow())\n",
        encoding="utf-8",
    )
    return subprocess.run(
        [sys.executable, "-m", "medimeta_cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(blocker)},
        check=False,
    )


@pytest.mark.slow
def test_without_pyarrow_the_command_says_what_to_install(
    installed: InstalledData, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    proc = _without_pyarrow(tmp_path, "export", "crc", "--format=parquet", f"-o{out}")
    assert proc.returncode == 2, proc.stderr
    assert parquet.NEEDS_PYARROW in proc.stderr
    assert not out.exists()


@pytest.mark.slow
def test_other_formats_need_no_pyarrow(installed: InstalledData, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _without_pyarrow(tmp_path, "export", "crc", "--format=numpy", f"-o{out}", "-j1")
    assert proc.returncode == 0, proc.stderr
    assert (out / "provenance.json").is_file()
