"""``medimeta stats``'s core: class counts, the pixels' mean and std, and their cache."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from medimeta_cli.catalog.datasets import TaskTarget
from medimeta_cli.dataset.stats import DatasetStats, PixelSums, dataset_stats
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.records import write_install_record
from tests.conftest import InstalledData
from tests.support import archives
from tests.support.helpers import sample_install_record


def _numpy_stats(images: npt.NDArray[np.uint8]) -> tuple[list[float], list[float]]:
    """What a user computes by hand: float64 over the 0-1 scale, per channel."""
    scaled = images.astype(np.float64) / 255
    axes = tuple(range(images.ndim - 1)) if images.ndim == 4 else None
    mean, std = scaled.mean(axis=axes), scaled.std(axis=axes)
    return np.atleast_1d(mean).tolist(), np.atleast_1d(std).tolist()


def _split_images(spec: archives.DatasetSpec, split: str) -> npt.NDArray[np.uint8]:
    return archives.expected_images(spec)[archives.split_indices(spec, split)]


def _stats(installed: InstalledData, root: Path, dataset_id: str, **kw: str) -> DatasetStats:
    return dataset_stats(installed.catalog(), root, (), dataset_id, **kw)


@pytest.mark.parametrize("dataset_id", ["crc", "cxr"])
@pytest.mark.parametrize("split", ["train", "val"])
def test_mean_and_std_equal_numpy_on_the_same_split(
    installed: InstalledData, dataset_id: str, split: str
) -> None:
    """crc is RGB (3 channels), cxr grayscale (1)."""
    spec = installed.specs[dataset_id]
    result = _stats(installed, installed.root, dataset_id, split=split)
    mean, std = _numpy_stats(_split_images(spec, split))
    assert result.pixels.split == split
    assert result.pixels.sums.channels == len(mean) == (3 if dataset_id == "crc" else 1)
    assert result.pixels.sums.images == len(archives.split_indices(spec, split))
    np.testing.assert_allclose(result.pixels.mean, mean, rtol=1e-9)
    np.testing.assert_allclose(result.pixels.std, std, rtol=1e-9)


def test_sums_are_exact_and_merge_into_the_sums_of_one_pass() -> None:
    images = np.random.default_rng(3).integers(0, 256, (7, 5, 4, 3), dtype=np.uint8)
    whole, first, second = PixelSums(3), PixelSums(3), PixelSums(3)
    whole.add(images)
    first.add(images[:3])
    second.add(images[3:])
    wide = images.astype(np.int64).reshape(-1, 3)
    assert whole.sums == wide.sum(axis=0).tolist()
    assert whole.squares == (wide * wide).sum(axis=0).tolist()
    assert first.merged(second) == whole
    assert PixelSums.from_json(whole.to_json()) == whole
    assert PixelSums.from_json({**whole.to_json(), "sums": [-1, 0, 0]}) is None


@pytest.mark.parametrize("dataset_id", ["crc", "cxr", "dr_regular", "organs_axial"])
def test_counts_equal_the_label_counts_of_every_task_in_every_split(
    installed: InstalledData, dataset_id: str
) -> None:
    """Single-label: images per label key (keys that are not 0..K-1 in dr_regular);
    multi-label (cxr): positives per label."""
    spec = installed.specs[dataset_id]
    result = _stats(installed, installed.root, dataset_id)
    dataset = installed.catalog().get(dataset_id)
    assert [t.task.name for t in result.tasks] == [t.name for t in dataset.tasks]
    for counts in result.tasks:
        labels = archives.expected_labels(spec, counts.task.name)
        keys = list(counts.task.labels)
        assert [c.key for c in counts.classes] == keys
        for split in ("train", "val", "test"):
            chosen = labels[archives.split_indices(spec, split)]
            assert counts.images[split] == len(chosen)
            if counts.task.target is TaskTarget.MULTILABEL:
                expected = chosen.astype(np.int64).sum(axis=0).tolist()
            else:
                expected = [int((chosen == key).sum()) for key in keys]
            assert [c.counts[split] for c in counts.classes] == expected


def test_one_task_when_asked(installed: InstalledData) -> None:
    result = _stats(installed, installed.root, "dr_regular", task="DR")
    assert len(result.tasks) == 1
    assert result.tasks[0].task.name.lower().startswith("dr")


def _install(spec: archives.DatasetSpec, root: Path, md5: str = "0" * 32) -> None:
    archives.write_dataset_dir(spec, root)
    record = replace(sample_install_record(spec.id), archive_md5=md5)
    write_install_record(RootLayout(root), record)


def _blank_keeping_stamp(path: Path) -> None:
    """Overwrite every byte with zeros and put size, inode and stamps back: nothing but
    reading the file would tell (a pass over it now fails)."""
    info = path.stat()
    with open(path, "r+b") as handle:
        handle.write(bytes(info.st_size))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def test_the_cache_answers_without_reading_any_image(
    installed: InstalledData, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    spec = installed.specs["crc"]
    _install(spec, root)
    first = _stats(installed, root, "crc")
    assert not first.pixels.cached
    assert RootLayout(root).stats_cache_path("crc").is_file()
    _blank_keeping_stamp(root / "crc" / "images.hdf5")
    again = _stats(installed, root, "crc")
    assert again.pixels.cached
    assert again.pixels.sums == first.pixels.sums
    # Each split has its own entry: another split must read, and the blank file fails.
    from medimeta_cli.errors import IntegrityError

    with pytest.raises(IntegrityError):
        _stats(installed, root, "crc", split="val")


def test_the_cache_is_not_trusted_after_a_reinstall(
    installed: InstalledData, tmp_path: Path
) -> None:
    """Another archive (md5), and other images under the same name: computed again."""
    root = tmp_path / "root"
    spec = installed.specs["crc"]
    _install(spec, root)
    first = _stats(installed, root, "crc")
    other = replace(spec, seed=spec.seed + 1)
    (root / "crc").rename(tmp_path / "old")
    _install(other, root, md5="1" * 32)
    again = _stats(installed, root, "crc")
    assert not again.pixels.cached
    mean, std = _numpy_stats(_split_images(other, "train"))
    np.testing.assert_allclose(again.pixels.mean, mean, rtol=1e-9)
    np.testing.assert_allclose(again.pixels.std, std, rtol=1e-9)
    assert again.pixels.sums != first.pixels.sums
    assert _stats(installed, root, "crc").pixels.cached


def test_a_changed_images_file_is_read_again(installed: InstalledData, tmp_path: Path) -> None:
    """Same install record, images.hdf5 rewritten in place (its stamp moves on)."""
    root = tmp_path / "root"
    spec = installed.specs["crc"]
    _install(spec, root)
    _stats(installed, root, "crc")
    hdf5 = root / "crc" / "images.hdf5"
    info = hdf5.stat()
    os.utime(hdf5, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
    assert not _stats(installed, root, "crc").pixels.cached


def test_a_damaged_cache_file_is_ignored(installed: InstalledData, tmp_path: Path) -> None:
    root = tmp_path / "root"
    spec = installed.specs["cxr"]
    _install(spec, root)
    first = _stats(installed, root, "cxr")
    path = RootLayout(root).stats_cache_path("cxr")
    for text in ("{not json", '{"version": 1, "entries": {"train": {"key": 1}}}'):
        path.write_text(text, encoding="utf-8")
        again = _stats(installed, root, "cxr")
        assert not again.pixels.cached
        assert again.pixels.sums == first.pixels.sums


def test_a_shared_root_is_read_and_never_cached_in(
    installed: InstalledData, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    _install(installed.specs["crc"], shared)
    mine = tmp_path / "mine"
    for _ in range(2):
        result = dataset_stats(installed.catalog(), mine, (shared,), "crc")
        assert not result.pixels.cached
    assert not RootLayout(shared).stats_cache_path("crc").exists()
    assert not RootLayout(mine).stats_cache_path("crc").exists()


def test_an_install_without_a_record_is_not_cached(installed: InstalledData) -> None:
    """The session's fixture root has no install records: nothing is written into it."""
    _stats(installed, installed.root, "crc")
    assert not RootLayout(installed.root).stats_cache_path("crc").exists()
