"""Class folders of image files, metadata.csv and classes.json (``export.imagefolder``)."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medimeta_cli.dataset.selection import SelectionSpec
from medimeta_cli.export import class_folder_names, safe_folder_names
from tests.conftest import InstalledData
from tests.support import archives
from tests.support.exports import files_of, run_export


def test_imagefolder_pixels_labels_and_metadata(installed: InstalledData, tmp_path: Path) -> None:
    spec = installed.specs["dr_regular"]
    out = tmp_path / "out"
    result = run_export(installed, "dr_regular", out, SelectionSpec(task="Clarity"), command="x")
    assert (result.status, result.complete, result.images) == ("exported", True, spec.num_images)
    images = archives.expected_images(spec)
    labels = archives.expected_labels(spec, "Clarity")
    task = installed.catalog().get("dr_regular").task("Clarity")
    folders = class_folder_names(task, sorted(task.labels))
    seen = 0
    for split in ("train", "val", "test"):
        with open(out / split / "metadata.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert [int(r["upstream_index"]) for r in rows] == sorted(
            archives.split_indices(spec, split)
        )
        for row in rows:
            index = int(row["upstream_index"])
            assert int(row["label_key"]) == labels[index]
            assert row["label_name"] == task.labels[labels[index]]
            assert row["file_name"] == f"{folders[labels[index]]}/dr_regular_{index:06d}.png"
            pixels = np.asarray(Image.open(out / split / row["file_name"]))
            np.testing.assert_array_equal(pixels, images[index])
            seen += 1
    assert seen == spec.num_images
    classes = json.loads((out / "classes.json").read_text())
    assert [c["key"] for c in classes["classes"]] == [1, 4, 6, 8, 10]
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["dataset"] == "dr_regular" and provenance["task"] == "Clarity"
    assert provenance["command"] == "x" and provenance["license"].startswith("Creative")
    assert provenance["counts"] == result.counts
    assert provenance["bibtex"].startswith("@article{woerner2025medimeta,")
    assert "@misc{dr_regular_source1," in provenance["bibtex"]
    assert provenance["selection"]["splits"] == ["train", "val", "test"]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_multilabel_imagefolder_has_a_label_table(installed: InstalledData, tmp_path: Path) -> None:
    spec = installed.specs["cxr"]
    out = tmp_path / "out"
    run_export(installed, "cxr", out, SelectionSpec(task="disease labels", splits=("train",)))
    expected = archives.expected_labels(spec, "disease labels")
    with open(out / "train" / "metadata.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    names = list(installed.catalog().get("cxr").task("disease labels").labels.values())
    for row in rows:
        index = int(row["upstream_index"])
        assert row["file_name"] == f"cxr_{index:06d}.png"
        assert [int(row[name]) for name in names] == expected[index].tolist()
        assert (out / "train" / row["file_name"]).is_file()


@pytest.mark.parametrize(("image_format", "suffix"), [("tiff", ".tiff"), ("jpeg", ".jpg")])
def test_other_image_formats(
    installed: InstalledData, tmp_path: Path, image_format: str, suffix: str
) -> None:
    spec = installed.specs["crc"]
    run_export(
        installed,
        "crc",
        tmp_path / "out",
        SelectionSpec(splits=("val",)),
        image_format=image_format,
    )
    files = sorted((tmp_path / "out" / "val").rglob(f"*{suffix}"))
    assert len(files) == spec.split_count("val")
    index = int(files[0].stem.split("_")[1])
    pixels = np.asarray(Image.open(files[0]))
    if image_format == "tiff":
        np.testing.assert_array_equal(pixels, archives.expected_images(spec)[index])
    else:
        assert pixels.shape == (224, 224, 3)


def test_parallel_workers_write_the_same_bytes(installed: InstalledData, tmp_path: Path) -> None:
    run_export(installed, "crc", tmp_path / "one", jobs=1, command="c")
    run_export(installed, "crc", tmp_path / "two", jobs=2, command="c")
    assert files_of(tmp_path / "one") == files_of(tmp_path / "two")


def test_safe_folder_names(installed: InstalledData) -> None:
    from medimeta_cli.catalog.datasets import Task, TaskTarget

    task = Task(
        "t", TaskTarget.MULTICLASS, {0: "a/b", 1: "..hidden", 2: "Same", 3: "same", 4: "x:y?"}
    )
    names = safe_folder_names(task, [0, 1, 2, 3, 4])
    assert names == {0: "a_b", 1: "hidden", 2: "Same_2", 3: "same_3", 4: "x_y_"}


def loader_class_indices(split_dir: Path) -> dict[str, int]:
    """The rule torchvision's ImageFolder and Keras' image_dataset_from_directory follow:
    a class's index is its position among the sorted names of the split's sub-folders."""
    folders = sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir())
    return {name: index for index, name in enumerate(folders)}


@pytest.mark.parametrize(
    ("dataset_id", "task", "keys", "lacking"),
    [
        # val lacks "background", test lacks "adipose": a per-split sort used to shift the rest
        ("crc", "tissue class", list(range(9)), {"val": [1], "test": [0]}),
        # ordinal with keys 1, 4, 6, 8, 10: sorting the names scrambled the grades
        ("dr_regular", "Clarity", [1, 4, 6, 8, 10], {}),
        ("dr_regular", "Artifact", [0, 1, 4, 6, 8, 10], {"val": [1], "test": [0]}),
    ],
)
def test_sorted_class_folders_give_the_classes_json_index_in_every_split(
    installed: InstalledData,
    tmp_path: Path,
    dataset_id: str,
    task: str,
    keys: list[int],
    lacking: dict[str, list[int]],
) -> None:
    spec = installed.specs[dataset_id]
    out = tmp_path / "out"
    result = run_export(installed, dataset_id, out, SelectionSpec(task=task))
    classes = json.loads((out / "classes.json").read_text())
    assert [c["key"] for c in classes["classes"]] == keys
    assert [c["index"] for c in classes["classes"]] == list(range(len(keys)))
    index_of_key = {int(key): index for key, index in classes["index_by_key"].items()}
    assert index_of_key == {c["key"]: c["index"] for c in classes["classes"]}
    labels = archives.expected_labels(spec, task)
    seen = 0
    for split in ("train", "val", "test"):
        by_folder = loader_class_indices(out / split)
        assert list(by_folder) == [c["folder"] for c in classes["classes"]]
        for folder, index in by_folder.items():
            for image in (out / split / folder).iterdir():
                upstream = int(image.stem.rsplit("_", 1)[1])
                assert index_of_key[int(labels[upstream])] == index, (split, image.name)
                seen += 1
        with open(out / split / "metadata.csv", newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                assert int(row["label"]) == index_of_key[int(row["label_key"])]
                assert int(row["label"]) == by_folder[row["file_name"].split("/")[0]]
    assert seen == spec.num_images
    folder_of = {c["key"]: c["folder"] for c in classes["classes"]}
    empty = {split: [folder_of[key] for key in missing] for split, missing in lacking.items()}
    assert result.empty_class_folders == empty
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["empty_class_folders"] == empty
    for split, folders in empty.items():
        assert all(not any((out / split / name).iterdir()) for name in folders)


def test_class_folders_carry_a_zero_padded_index() -> None:
    from medimeta_cli.catalog.datasets import Task, TaskTarget

    task = Task("t", TaskTarget.MULTICLASS, {10: "zebra", 4: "a/b", 1: "..dot", 6: "Zebra"})
    assert class_folder_names(task, [1, 4, 6, 10]) == {
        1: "00_dot",
        4: "01_a_b",
        6: "02_Zebra",
        10: "03_zebra",
    }
    many = Task("m", TaskTarget.MULTICLASS, {k: f"class {999 - k}" for k in range(120)})
    names = class_folder_names(many, list(range(120)))
    assert names[0] == "000_class 999" and names[119] == "119_class 880"
    assert sorted(names.values()) == [names[k] for k in range(120)]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("datasets") is None, reason="needs HF datasets")
def test_hugging_face_imagefolder_labels_are_the_classes_json_index(
    installed: InstalledData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets  # type: ignore[import-not-found, import-untyped, unused-ignore]

    out = tmp_path / "out"
    run_export(installed, "dr_regular", out, SelectionSpec(task="Artifact"), jobs=1)
    classes = json.loads((out / "classes.json").read_text())
    index_of_key = {int(key): index for key, index in classes["index_by_key"].items()}
    loaded = datasets.load_dataset("imagefolder", data_dir=str(out))
    assert set(loaded) == {"train", "validation", "test"}
    for split in loaded.values():
        assert split["label"] == [index_of_key[key] for key in split["label_key"]]
    # The dataset card makes `label` a ClassLabel with the names in classes.json order.
    carded = datasets.load_dataset(str(out))
    assert set(carded) == {"train", "validation", "test"}
    names = [entry["name"] for entry in classes["classes"]]
    for name, split in carded.items():
        feature = split.features["label"]
        assert isinstance(feature, datasets.ClassLabel)
        assert feature.names == names
        assert split["label"] == loaded[name]["label"]
        assert [feature.int2str(i) for i in split["label"]] == split["label_name"]
