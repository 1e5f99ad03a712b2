"""Selections: task, splits, classes, stratified limits and shards."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from medimeta_cli.dataset.reader import DatasetReader
from medimeta_cli.dataset.selection import (
    SelectionSpec,
    choose_task,
    parse_shard,
    resolve_classes,
    select,
    shard_bounds,
    stratified_subset,
)
from medimeta_cli.errors import UnknownClassError, UnknownSplitError, UnknownTaskError, UsageError
from tests.conftest import InstalledData
from tests.support import archives


def reader_for(installed: InstalledData, dataset_id: str) -> DatasetReader:
    return DatasetReader.open(installed.root, installed.catalog().get(dataset_id))


def test_whole_selection_matches_the_split_files(installed: InstalledData) -> None:
    spec = installed.specs["dr_regular"]
    with reader_for(installed, "dr_regular") as reader:
        selection = select(reader, SelectionSpec(task="clarity"))
    assert selection.task.name == "Clarity"
    labels = archives.expected_labels(spec, "Clarity")
    for part in selection.parts:
        expected = np.array(sorted(archives.split_indices(spec, part.split)))
        np.testing.assert_array_equal(part.indices, expected)
        np.testing.assert_array_equal(part.labels, labels[expected])
    assert set(np.unique(np.concatenate([p.labels for p in selection.parts]))) <= {1, 4, 6, 8, 10}


def test_task_is_required_when_there_are_several(installed: InstalledData) -> None:
    dataset = installed.catalog().get("cxr")
    with pytest.raises(UsageError, match="has 2 tasks; choose one with --task") as caught:
        choose_task(dataset, None)
    assert "'disease labels'" in caught.value.hint
    assert choose_task(installed.catalog().get("crc"), None).name == "tissue class"
    with pytest.raises(UnknownTaskError):
        choose_task(dataset, "sex")


def test_classes_by_name_or_key(installed: InstalledData) -> None:
    task = installed.catalog().get("dr_regular").task("Clarity")
    assert resolve_classes(task, ["10", "only level 1 vascular arch can be identified"]) == (1, 10)
    with pytest.raises(UnknownClassError) as caught:
        resolve_classes(task, ["11"])
    assert caught.value.hint.startswith("Valid classes: 1 (Only Level 1")
    assert "unknown class '11' in task 'Clarity'" in caught.value.message


def test_classes_by_abbreviation_or_unique_beginning(installed: InstalledData) -> None:
    task = installed.catalog().get("crc").task("tissue class")
    assert resolve_classes(task, ["ADI", "lymph", "Debris (DEB)"]) == (0, 2, 3)
    with pytest.raises(UnknownClassError):  # "c" begins two names: not unique
        resolve_classes(task, ["c"])


def test_class_filter_keeps_only_those_labels(installed: InstalledData) -> None:
    with reader_for(installed, "crc") as reader:
        selection = select(reader, SelectionSpec(classes=("0", "debris (DEB)")))
    assert selection.classes == (0, 2)
    for part in selection.parts:
        assert set(part.labels.tolist()) <= {0, 2}
    assert set(selection.counts()["train"]) == {"adipose (ADI)", "debris (DEB)"}


def test_multilabel_class_filter_keeps_rows_with_any_of_them(installed: InstalledData) -> None:
    spec = installed.specs["cxr"]
    with reader_for(installed, "cxr") as reader:
        selection = select(reader, SelectionSpec(task="disease labels", classes=("Hernia", "Mass")))
    full = archives.expected_labels(spec, "disease labels")
    for part in selection.parts:
        assert part.labels.shape == (len(part.indices), 2)
        np.testing.assert_array_equal(part.labels, full[part.indices][:, [4, 13]])
        assert part.labels.any(axis=1).all()


def test_unknown_and_empty_splits(installed: InstalledData) -> None:
    with reader_for(installed, "cxr") as reader:
        with pytest.raises(UnknownSplitError, match="did you mean 'train'"):
            select(reader, SelectionSpec(task="patient sex", splits=("trian",)))
        with pytest.raises(UsageError, match="original split 'val' of cxr has no images"):
            select(reader, SelectionSpec(task="patient sex", splits=("val",), original=True))


def test_limit_is_stratified_seeded_and_per_split(installed: InstalledData) -> None:
    with reader_for(installed, "crc") as reader:
        full = select(reader, SelectionSpec())
        limited = select(reader, SelectionSpec(limit=9, seed=3))
        again = select(reader, SelectionSpec(limit=9, seed=3))
        other = select(reader, SelectionSpec(limit=9, seed=4))
    train_full = full.parts[0]
    train = limited.parts[0]
    assert len(train.indices) == 9
    assert set(train.indices) <= set(train_full.indices)
    assert all(Counter(train.labels.tolist())[k] == 1 for k in range(9))  # 9 classes, 1 each
    np.testing.assert_array_equal(train.indices, again.parts[0].indices)
    assert not np.array_equal(train.indices, other.parts[0].indices)


def test_stratified_subset_keeps_proportions() -> None:
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    kept = stratified_subset(labels, 10, seed=0, multilabel=False)
    assert Counter(labels[kept].tolist()) == {0: 6, 1: 3, 2: 1}
    assert list(kept) == sorted(kept)
    assert len(stratified_subset(labels, 500, seed=0, multilabel=False)) == 100


def test_shards_partition_the_selection(installed: InstalledData) -> None:
    with reader_for(installed, "crc") as reader:
        whole = select(reader, SelectionSpec(limit=10))
        shards = [select(reader, SelectionSpec(limit=10, shard=(i, 3))) for i in (1, 2, 3)]
    for position, part in enumerate(whole.parts):
        joined = np.concatenate([s.parts[position].indices for s in shards])
        np.testing.assert_array_equal(joined, part.indices)


def test_parse_shard() -> None:
    assert parse_shard("2/8") == (2, 8)
    for bad in ("0/3", "4/3", "x", "1-3"):
        with pytest.raises(UsageError):
            parse_shard(bad)
    assert [shard_bounds(10, (i, 3)) for i in (1, 2, 3)] == [(0, 3), (3, 6), (6, 10)]


@pytest.mark.parametrize("text", ["1/0", "0/0", "2/-1"])
def test_a_shard_count_below_one_gets_a_usable_hint(text: str) -> None:
    with pytest.raises(UsageError, match="the number of shards must be at least 1") as caught:
        parse_shard(text)
    assert caught.value.hint == "For example --shard 3/8 (shards 1 to 8)."


def test_classes_come_in_key_order_whatever_order_the_labels_are_listed_in() -> None:
    """A class's position is its index in every export; info.yaml may list labels in any
    order, and for ordinal tasks the key order is the order of the grades."""
    from medimeta_cli.catalog.datasets import Task, TaskTarget

    task = Task("Clarity", TaskTarget.ORDINAL, {10: "all", 4: "small", 1: "level 1", 8: "most"})
    assert resolve_classes(task, None) == (1, 4, 8, 10)
    assert resolve_classes(task, ["most", "1", "all"]) == (1, 8, 10)
