"""Exports to class folders and NumPy arrays, from real installed datasets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import medimeta_cli.export as export_module
from medimeta_cli.catalog import Catalog
from medimeta_cli.errors import (
    DiskSpaceError,
    IntegrityError,
    NotInstalledError,
    OutputExistsError,
)
from medimeta_cli.export import (
    ExportOptions,
    convert_color,
    export_dataset,
    safe_folder_names,
)
from medimeta_cli.selection import SelectionSpec
from tests.conftest import InstalledData
from tests.helpers import read_only_view, tmpfs, write_installed
from tests.support import archives


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def run(
    installed: InstalledData,
    dataset_id: str,
    out: Path,
    spec: SelectionSpec | None = None,
    **options: object,
) -> export_module.ExportResult:
    dataset = installed.catalog().get(dataset_id)
    return export_dataset(
        installed.root,
        dataset,
        spec or SelectionSpec(),
        out,
        ExportOptions(**options),  # type: ignore[arg-type]
    )


def test_imagefolder_pixels_labels_and_metadata(installed: InstalledData, tmp_path: Path) -> None:
    spec = installed.specs["dr_regular"]
    out = tmp_path / "out"
    result = run(installed, "dr_regular", out, SelectionSpec(task="Clarity"), command="x")
    assert (result.status, result.complete, result.images) == ("exported", True, spec.num_images)
    images = archives.expected_images(spec)
    labels = archives.expected_labels(spec, "Clarity")
    task = installed.catalog().get("dr_regular").task("Clarity")
    folders = safe_folder_names(task, list(task.labels))
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
    run(installed, "cxr", out, SelectionSpec(task="disease labels", splits=("train",)))
    expected = archives.expected_labels(spec, "disease labels")
    with open(out / "train" / "metadata.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    names = list(installed.catalog().get("cxr").task("disease labels").labels.values())
    for row in rows:
        index = int(row["upstream_index"])
        assert row["file_name"] == f"cxr_{index:06d}.png"
        assert [int(row[name]) for name in names] == expected[index].tolist()
        assert (out / "train" / row["file_name"]).is_file()


@pytest.mark.parametrize("npz", [False, True])
def test_numpy_arrays_equal_the_hdf5_rows(
    installed: InstalledData, tmp_path: Path, npz: bool
) -> None:
    spec = installed.specs["cxr"]
    out = tmp_path / "out"
    run(
        installed,
        "cxr",
        out,
        SelectionSpec(task="patient sex"),
        format="numpy",
        npz=npz,
        compress=npz,
    )
    images = archives.expected_images(spec)
    labels = archives.expected_labels(spec, "patient sex")
    for split in ("train", "val", "test"):
        if npz:
            with np.load(out / f"{split}.npz") as bundle:
                arrays = {name: bundle[name] for name in ("images", "labels", "indices")}
        else:
            arrays = {n: np.load(out / split / f"{n}.npy") for n in ("images", "labels", "indices")}
        expected = np.array(sorted(archives.split_indices(spec, split)))
        np.testing.assert_array_equal(arrays["indices"], expected)
        np.testing.assert_array_equal(arrays["images"], images[expected])
        np.testing.assert_array_equal(arrays["labels"], labels[expected])
        assert arrays["images"].dtype == np.uint8 and arrays["images"].shape[1:] == (224, 224)


def test_npy_files_are_what_np_save_writes(installed: InstalledData, tmp_path: Path) -> None:
    run(installed, "crc", tmp_path / "out", format="numpy")
    images = np.load(tmp_path / "out" / "train" / "images.npy")
    np.save(tmp_path / "ref.npy", images)
    assert (tmp_path / "ref.npy").read_bytes() == (tmp_path / "out/train/images.npy").read_bytes()


@pytest.mark.parametrize("fmt", ["imagefolder", "numpy"])
def test_same_command_same_bytes(installed: InstalledData, tmp_path: Path, fmt: str) -> None:
    spec = SelectionSpec(limit=5, seed=2)
    run(installed, "crc", tmp_path / "a", spec, format=fmt, command="c")
    run(installed, "crc", tmp_path / "b", spec, format=fmt, command="c")
    assert files_of(tmp_path / "a") == files_of(tmp_path / "b")


def test_rerun_is_up_to_date_and_other_selections_need_overwrite(
    installed: InstalledData, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run(installed, "crc", out)
    stamp = (out / "provenance.json").stat().st_mtime_ns
    assert run(installed, "crc", out).status == "up to date"
    assert (out / "provenance.json").stat().st_mtime_ns == stamp
    with pytest.raises(OutputExistsError) as caught:
        run(installed, "crc", out, SelectionSpec(limit=3))
    assert "--overwrite" in caught.value.hint
    assert run(installed, "crc", out, SelectionSpec(limit=3), overwrite=True).status == "exported"
    assert sum(1 for _ in out.rglob("*.png")) == 9  # 3 per split


def test_an_interrupted_export_never_looks_complete(
    installed: InstalledData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real = export_module._encode

    def failing(image: np.ndarray, image_format: str) -> bytes:
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return real(image, image_format)

    monkeypatch.setattr(export_module, "_encode", failing)
    with pytest.raises(KeyboardInterrupt):
        run(installed, "crc", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["imagefolder", "numpy"])
def test_shards_make_exactly_one_full_export(
    installed: InstalledData, tmp_path: Path, fmt: str
) -> None:
    run(installed, "crc", tmp_path / "whole", format=fmt, command="c")
    out = tmp_path / "sharded"
    results = [
        run(installed, "crc", out, SelectionSpec(shard=(i, 3)), format=fmt, command="c")
        for i in (2, 3, 1)
    ]
    assert [r.complete for r in results] == [False, False, True]
    assert sum(r.images for r in results) == installed.specs["crc"].num_images
    assert files_of(out) == files_of(tmp_path / "whole")
    assert (
        run(installed, "crc", out, SelectionSpec(shard=(2, 3)), format=fmt, command="c").status
        == "shard up to date"
    )


def test_shard_images_do_not_overlap(installed: InstalledData, tmp_path: Path) -> None:
    out = tmp_path / "sharded"
    totals = [run(installed, "crc", out, SelectionSpec(shard=(i, 4))).images for i in (1, 2, 3, 4)]
    assert sum(totals) == installed.specs["crc"].num_images
    assert sum(1 for _ in out.rglob("*.png")) == installed.specs["crc"].num_images


def test_incomplete_shards_show_no_provenance(installed: InstalledData, tmp_path: Path) -> None:
    out = tmp_path / "sharded"
    run(installed, "crc", out, SelectionSpec(shard=(1, 2)))
    assert not (out / "provenance.json").exists()
    with pytest.raises(OutputExistsError, match="shards of another export"):
        run(installed, "crc", out, SelectionSpec(shard=(2, 2), limit=3))


def test_color_conversion(installed: InstalledData, tmp_path: Path) -> None:
    cxr, crc = installed.specs["cxr"], installed.specs["crc"]
    run(
        installed,
        "cxr",
        tmp_path / "rgb",
        SelectionSpec(task="patient sex", splits=("test",)),
        format="numpy",
        color="rgb",
    )
    gray_rgb = np.load(tmp_path / "rgb" / "test" / "images.npy")
    rows = np.array(sorted(archives.split_indices(cxr, "test")))
    np.testing.assert_array_equal(
        gray_rgb, np.repeat(archives.expected_images(cxr)[rows, ..., None], 3, axis=-1)
    )
    run(installed, "crc", tmp_path / "gray", SelectionSpec(splits=("test",)), color="grayscale")
    some = next((tmp_path / "gray" / "test").rglob("*.png"))
    index = int(some.stem.split("_")[1])
    expected = np.asarray(Image.fromarray(archives.expected_images(crc)[index]).convert("L"))
    np.testing.assert_array_equal(np.asarray(Image.open(some)), expected)
    np.testing.assert_array_equal(
        convert_color(archives.expected_images(crc)[:2], "grayscale"),
        np.stack(
            [np.asarray(Image.fromarray(a).convert("L")) for a in archives.expected_images(crc)[:2]]
        ),
    )


@pytest.mark.parametrize(("image_format", "suffix"), [("tiff", ".tiff"), ("jpeg", ".jpg")])
def test_other_image_formats(
    installed: InstalledData, tmp_path: Path, image_format: str, suffix: str
) -> None:
    spec = installed.specs["crc"]
    run(
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
    run(installed, "crc", tmp_path / "one", jobs=1, command="c")
    run(installed, "crc", tmp_path / "two", jobs=2, command="c")
    assert files_of(tmp_path / "one") == files_of(tmp_path / "two")


def test_safe_folder_names(installed: InstalledData) -> None:
    from medimeta_cli.catalog import Task, TaskTarget

    task = Task(
        "t", TaskTarget.MULTICLASS, {0: "a/b", 1: "..hidden", 2: "Same", 3: "same", 4: "x:y?"}
    )
    names = safe_folder_names(task, [0, 1, 2, 3, 4])
    assert names == {0: "a_b", 1: "hidden", 2: "Same_2", 3: "same_3", 4: "x_y_"}


def test_not_installed(installed: InstalledData, tmp_path: Path) -> None:
    catalog: Catalog = installed.catalog()
    with pytest.raises(NotInstalledError, match=r"'organs_axial' is not installed") as caught:
        export_dataset(
            tmp_path, catalog.get("organs_axial"), SelectionSpec(), tmp_path / "o", ExportOptions()
        )
    assert caught.value.hint == "Run `medimeta download organs_axial` first."
    assert not (tmp_path / "o").exists()


def test_damaged_hdf5_says_to_verify(installed: InstalledData, tmp_path: Path) -> None:
    folder, dataset = write_installed(installed.specs["crc"], tmp_path / "root")
    hdf5 = folder / "images.hdf5"
    hdf5.write_bytes(hdf5.read_bytes()[: hdf5.stat().st_size // 3])
    with pytest.raises(IntegrityError) as caught:
        export_dataset(
            tmp_path / "root",
            dataset,
            SelectionSpec(),
            tmp_path / "out",
            ExportOptions(format="numpy"),
        )
    assert "medimeta verify --full crc" in caught.value.hint
    assert not (tmp_path / "out").exists()


def test_disk_full_mid_export_leaves_nothing(
    installed: InstalledData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tmpfs(tmp_path / "small", "size=600k") as small:
        with pytest.raises(DiskSpaceError):
            run(installed, "crc", small / "out", format="numpy")  # fails the early check
        monkeypatch.setattr(export_module, "ensure_space", lambda *a, **k: None)
        with pytest.raises(DiskSpaceError, match="disk full"):
            run(installed, "crc", small / "out", format="numpy")
        assert list(small.iterdir()) == []


def test_read_only_root_can_be_exported(installed: InstalledData, tmp_path: Path) -> None:
    with read_only_view(installed.root, tmp_path / "ro") as ro:
        dataset = installed.catalog().get("crc")
        result = export_dataset(
            ro,
            dataset,
            SelectionSpec(original=True, splits=("train",)),
            tmp_path / "out",
            ExportOptions(format="numpy"),
        )
        assert result.images == installed.specs["crc"].split_count("train", original=True)
