"""``export --format webdataset``: tar shards that ``tarfile`` and ``webdataset`` read back."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from medimeta_cli.dataset.selection import SelectionSpec
from medimeta_cli.errors import UsageError
from medimeta_cli.export.naming import task_column
from medimeta_cli.export.shardsize import ShardSize, parse_shard_size
from medimeta_cli.export.webdataset import SAMPLE_OVERHEAD, TAR_END
from tests.conftest import InstalledData
from tests.support import archives
from tests.support.exports import files_of, run_export

WDS = "webdataset"


def _manifest(out: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    return document


def _samples(out: Path, split: str) -> list[dict[str, bytes]]:
    """Every sample of a split, read with ``tarfile`` from its shards in manifest order."""
    samples: dict[str, dict[str, bytes]] = {}
    for shard in _manifest(out)["splits"][split]["shards"]:
        with tarfile.open(out / shard["file"]) as tar:
            for member in tar.getmembers():
                assert (member.mtime, member.uid, member.gid, member.mode) == (0, 0, 0, 0o644)
                assert (member.uname, member.gname) == ("", "")
                key, extension = member.name.split(".", 1)
                handle = tar.extractfile(member)
                assert handle is not None
                samples.setdefault(key, {})[extension] = handle.read()
    return list(samples.values())


def _pixels(data: bytes) -> npt.NDArray[np.uint8]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def test_every_sample_has_its_pixels_class_and_json(
    installed: InstalledData, tmp_path: Path
) -> None:
    spec = installed.specs["crc"]
    out = tmp_path / "out"
    result = run_export(installed, "crc", out, format=WDS, jobs=1, shard_size="7images")
    classes = json.loads((out / "classes.json").read_text(encoding="utf-8"))
    index_of_key = {int(key): index for key, index in classes["index_by_key"].items()}
    labels = archives.expected_labels(spec, "tissue class")
    images = archives.expected_images(spec)
    total = 0
    for split in ("train", "val", "test"):
        indices = archives.split_indices(spec, split)
        samples = _samples(out, split)
        assert len(samples) == len(indices) == _manifest(out)["splits"][split]["images"]
        for sample, index in zip(samples, indices, strict=True):
            assert set(sample) == {"png", "cls", "json"}
            document = json.loads(sample["json"])
            assert document == {
                "key": f"crc_{index:06d}",
                "index": int(index),
                "split": split,
                "labels_tissue_class": int(labels[index]),
            }
            assert int(sample["cls"]) == index_of_key[int(labels[index])]
            np.testing.assert_array_equal(_pixels(sample["png"]), images[index])
        total += len(samples)
    assert result.images == total
    # 20 train images at 7 per shard: three shards, the last one short.
    train = _manifest(out)["splits"]["train"]
    assert [s["samples"] for s in train["shards"]] == [7, 7, 6]
    assert train["urls"] == "crc-train-{000000..000002}.tar"
    assert [s["file"] for s in train["shards"]] == [f"crc-train-00000{n}.tar" for n in range(3)]


def test_cls_is_the_class_index_of_classes_json_not_the_upstream_key(
    installed: InstalledData, tmp_path: Path
) -> None:
    spec = installed.specs["crc"]
    out = tmp_path / "out"
    chosen = SelectionSpec(classes=("DEB", "TUM"), splits=("train", "test"))
    run_export(installed, "crc", out, chosen, format=WDS, jobs=1)
    labels = archives.expected_labels(spec, "tissue class")
    seen = set()
    for split in ("train", "test"):
        for sample in _samples(out, split):
            key = labels[json.loads(sample["json"])["index"]]
            assert int(sample["cls"]) == {2: 0, 8: 1}[int(key)]
            seen.add(int(sample["cls"]))
    assert seen == {0, 1}


def _require_webdataset() -> None:
    if importlib.util.find_spec("webdataset") is None:
        if os.environ.get("CI"):
            raise AssertionError("webdataset is not installed in CI (.ci/run installs it)")
        pytest.skip("needs webdataset (pip install webdataset; CI installs it)")


@pytest.mark.parametrize(("dataset_id", "decode"), [("crc", "rgb8"), ("cxr", "l8")])
def test_the_webdataset_library_reads_every_sample(
    installed: InstalledData, tmp_path: Path, dataset_id: str, decode: str
) -> None:
    _require_webdataset()
    import webdataset as wds  # type: ignore[import-untyped, import-not-found, unused-ignore]

    spec = installed.specs[dataset_id]
    task = "patient sex" if dataset_id == "cxr" else "tissue class"
    out = tmp_path / "out"
    run_export(installed, dataset_id, out, SelectionSpec(task=task), format=WDS, jobs=1)
    manifest = _manifest(out)
    labels = archives.expected_labels(spec, task)
    images = archives.expected_images(spec)
    for split in ("train", "val", "test"):
        urls = [str(out / shard["file"]) for shard in manifest["splits"][split]["shards"]]
        dataset = (
            wds.WebDataset(urls, shardshuffle=False).decode(decode).to_tuple("png", "cls", "json")
        )
        read = list(dataset)
        assert [doc["index"] for _, _, doc in read] == archives.split_indices(spec, split).tolist()
        for image, cls, doc in read:
            # The fixture's keys are 0..K-1, so the class index is the key.
            assert cls == labels[doc["index"]]
            np.testing.assert_array_equal(image, images[doc["index"]])


@pytest.mark.parametrize("dataset_id", ["dr_regular", "cxr"])
def test_every_task_json_labels_equal_the_installed_label_files(
    installed: InstalledData, tmp_path: Path, dataset_id: str
) -> None:
    """dr_regular: five tasks with keys that are not 0..K-1; cxr: a multi-label first task
    (no .cls; the keys of its positive labels) beside a binary one."""
    spec = installed.specs[dataset_id]
    dataset = installed.catalog().get(dataset_id)
    out = tmp_path / "out"
    run_export(installed, dataset_id, out, SelectionSpec(task="all"), format=WDS, jobs=1)
    multilabel_first = dataset_id == "cxr"
    for split in ("train", "val", "test"):
        samples = _samples(out, split)
        indices = archives.split_indices(spec, split)
        assert len(samples) == len(indices)
        for sample, index in zip(samples, indices, strict=True):
            assert ("cls" in sample) is not multilabel_first
            document = json.loads(sample["json"])
            assert document["index"] == index
            for task in dataset.tasks:
                expected = archives.expected_labels(spec, task.name)[index]
                found = document[task_column(task)]
                if expected.ndim == 1:  # a 0/1 row over the task's labels, in key order
                    keys = list(task.labels)
                    assert found == [keys[c] for c in np.flatnonzero(expected)]
                else:
                    assert found == int(expected)
    classes = json.loads((out / "classes.json").read_text(encoding="utf-8"))
    assert [entry["labels"] for entry in classes["tasks"]] == [
        task_column(task) for task in dataset.tasks
    ]


def test_multilabel_task_alone_lists_the_keys_of_the_kept_classes(
    installed: InstalledData, tmp_path: Path
) -> None:
    spec = installed.specs["cxr"]
    out = tmp_path / "out"
    chosen = SelectionSpec(task="disease labels", classes=("Effusion", "Mass"), splits=("train",))
    run_export(installed, "cxr", out, chosen, format=WDS, jobs=1)
    labels = archives.expected_labels(spec, "disease labels")
    samples = _samples(out, "train")
    assert samples
    for sample in samples:
        assert set(sample) == {"png", "json"}
        document = json.loads(sample["json"])
        row = labels[document["index"]]
        assert document["labels_disease_labels"] == [k for k in (2, 4) if row[k]]
        assert document["labels_disease_labels"]  # only images with a kept label


def test_manifest_gives_each_shards_samples_and_sha256(
    installed: InstalledData, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run_export(installed, "dr_regular", out, SelectionSpec(task="all"), format=WDS, jobs=1,
               shard_size="4images")  # fmt: skip
    manifest = _manifest(out)
    listed = []
    for split, entry in manifest["splits"].items():
        assert sum(s["samples"] for s in entry["shards"]) == entry["images"]
        for shard in entry["shards"]:
            data = (out / shard["file"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == shard["sha256"]
            with tarfile.open(out / shard["file"]) as tar:
                assert len(tar.getnames()) == 3 * shard["samples"]
            listed.append(shard["file"])
        assert all(
            name.startswith(f"dr_regular-{split}-") for name in listed[-len(entry["shards"]) :]
        )
    assert sorted(listed) == sorted(p.name for p in out.glob("*.tar"))
    assert manifest["images_per_shard"] == 4 and manifest["shard_size"] == "4images"


@pytest.mark.slow
def test_same_bytes_across_runs_and_in_three_shards(
    installed: InstalledData, tmp_path: Path
) -> None:
    """7 images per shard do not align with thirds of 20, 8 and 8 images: the jobs' slices
    cut through tar shards, and each tar is still written whole by one job."""
    common: dict[str, Any] = {"format": WDS, "shard_size": "7images"}
    run_export(installed, "crc", tmp_path / "a", jobs=1, **common)
    run_export(installed, "crc", tmp_path / "b", jobs=1, **common)
    reference = files_of(tmp_path / "a")
    assert files_of(tmp_path / "b") == reference
    sharded = tmp_path / "sharded"
    results = [
        run_export(installed, "crc", sharded, SelectionSpec(shard=(i, 3)), jobs=1, **common)
        for i in (2, 3, 1)
    ]
    assert [r.complete for r in results] == [False, False, True]
    assert sum(r.images for r in results) == sum(
        installed.specs["crc"].split_count(s) for s in ("train", "val", "test")
    )
    assert files_of(sharded) == reference


def test_every_task_in_two_shards_is_the_unsharded_export(
    installed: InstalledData, tmp_path: Path
) -> None:
    common: dict[str, Any] = {"format": WDS, "shard_size": "3images", "jobs": 1}
    run_export(installed, "cxr", tmp_path / "whole", SelectionSpec(task="all"), **common)
    for i in (1, 2):
        spec = SelectionSpec(task="all", shard=(i, 2))
        run_export(installed, "cxr", tmp_path / "sharded", spec, **common)
    assert files_of(tmp_path / "sharded") == files_of(tmp_path / "whole")


@pytest.mark.slow
def test_worker_processes_write_the_same_bytes(installed: InstalledData, tmp_path: Path) -> None:
    common: dict[str, Any] = {"format": WDS, "shard_size": "5images", "image_format": "jpeg"}
    run_export(installed, "crc", tmp_path / "one", jobs=1, **common)
    run_export(installed, "crc", tmp_path / "two", jobs=2, **common)
    assert files_of(tmp_path / "two") == files_of(tmp_path / "one")
    assert all(name.endswith((".jpg", ".cls", ".json")) for name in _names(tmp_path / "two"))


def _names(out: Path) -> list[str]:
    names = []
    for path in sorted(out.glob("*.tar")):
        with tarfile.open(path) as tar:
            names.extend(tar.getnames())
    return names


def test_image_format_and_colour_apply_to_the_samples(
    installed: InstalledData, tmp_path: Path
) -> None:
    spec = installed.specs["crc"]
    out = tmp_path / "out"
    train = SelectionSpec(splits=("train",))
    run_export(installed, "crc", out, train, format=WDS, jobs=1, image_format="tiff",
               color="grayscale")  # fmt: skip
    samples = _samples(out, "train")
    images = archives.expected_images(spec).astype(np.uint32)
    for sample in samples:
        index = json.loads(sample["json"])["index"]
        luma = (images[index] @ np.array([19595, 38470, 7471], dtype=np.uint32) + 0x8000) >> 16
        np.testing.assert_array_equal(_pixels(sample["tiff"]), luma.astype(np.uint8))
    provenance = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["format"]["image_format"] == "tiff"
    assert provenance["format"]["shard_size"] == "1000000000B"


def test_a_byte_size_gives_a_fixed_number_of_images_per_shard(
    installed: InstalledData, tmp_path: Path
) -> None:
    """The bound of a sample is its raw pixels (one PNG filter byte per row, zlib's and PNG's
    framing) plus the tar's overhead, so the shards are the same whatever the images
    compress to, and no shard exceeds the size."""
    spec = installed.specs["crc"]
    size = installed.catalog().get("crc").input_size
    raw = size.height * (size.width * size.channels + 1)
    limit = 3 * (raw + raw // 1024 + SAMPLE_OVERHEAD) + TAR_END + 5
    out = tmp_path / "out"
    run_export(installed, "crc", out, format=WDS, jobs=1, shard_size=f"{limit}B")
    manifest = _manifest(out)
    assert manifest["images_per_shard"] == 3
    counts = [s["samples"] for s in manifest["splits"]["train"]["shards"]]
    assert counts == [3] * 6 + [2] == [3] * (spec.split_count("train") // 3) + [2]
    for shard in manifest["splits"]["train"]["shards"]:
        assert (out / shard["file"]).stat().st_size <= limit


def test_the_default_folder_and_an_existing_export(
    installed: InstalledData, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = run_export(installed, "crc", out, format=WDS, jobs=1)
    again = run_export(installed, "crc", out, format=WDS, jobs=1)
    assert (first.status.value, again.status.value) == ("exported", "up to date")
    assert {p.name for p in out.iterdir()} == {
        "crc-train-000000.tar",
        "crc-val-000000.tar",
        "crc-test-000000.tar",
        "manifest.json",
        "classes.json",
        "provenance.json",
    }
    with pytest.raises(Exception, match="already exists"):
        run_export(installed, "crc", out, format=WDS, jobs=1, shard_size="2images")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1GB", ShardSize(bytes=10**9)),
        ("500MB", ShardSize(bytes=500 * 10**6)),
        ("64MiB", ShardSize(bytes=64 * 2**20)),
        (" 2 gib ", ShardSize(bytes=2 * 2**30)),
        ("5000images", ShardSize(images=5000)),
        ("1image", ShardSize(images=1)),
    ],
)
def test_shard_sizes_in_bytes_or_images(text: str, expected: ShardSize) -> None:
    assert parse_shard_size(text) == expected


@pytest.mark.parametrize("text", ["1000", "0images", "0GB", "1XB", "-5MB", "1.5GB", "images", ""])
def test_shard_sizes_that_say_neither_are_refused(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_shard_size(text)
    assert "5000images" in (caught.value.hint or "")


def test_a_bare_number_asks_bytes_or_images() -> None:
    with pytest.raises(UsageError, match=r"bytes or images\?"):
        parse_shard_size("1000")


def test_shard_size_is_refused_where_there_are_no_tar_shards(
    installed: InstalledData, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match="--shard-size"):
        run_export(installed, "crc", tmp_path / "o", format="numpy", shard_size="1GB")
    assert not (tmp_path / "o").exists()


def test_labels_note_and_classes_json(installed: InstalledData, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_export(installed, "crc", out, format=WDS, jobs=1)
    classes = json.loads((out / "classes.json").read_text(encoding="utf-8"))
    assert ".cls holds the index" in classes["labels"]
    assert all(entry["folder"] is None for entry in classes["classes"])
