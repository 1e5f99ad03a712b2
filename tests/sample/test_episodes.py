"""Few-shot episodes, per-class subsets and contact sheets."""

from __future__ import annotations

import random
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medimeta_cli.dataset.reader import DatasetReader
from medimeta_cli.dataset.selection import Selection, SelectionSpec, select
from medimeta_cli.errors import UsageError
from medimeta_cli.sample.cover import greedy_cover
from medimeta_cli.sample.episodes import (
    Episode,
    Shots,
    sample_episodes,
    sample_per_class,
)
from medimeta_cli.sample.results import ROW_COLUMNS, ClassSubset, EpisodeSample
from medimeta_cli.sample.sheets import (
    ELLIPSIS,
    GAP,
    LABEL_WIDTH,
    THUMB,
    contact_sheet,
    label_lines,
    sheet_size,
)
from tests.conftest import InstalledData
from tests.support import archives


def selection_of(installed: InstalledData, dataset_id: str, **spec: object) -> Selection:
    with DatasetReader.open(installed.root, installed.catalog().get(dataset_id)) as reader:
        return select(reader, SelectionSpec(**spec))  # type: ignore[arg-type]


def test_episodes_have_the_requested_shape(installed: InstalledData) -> None:
    spec = installed.specs["crc"]
    selection = selection_of(installed, "crc", splits=("train",))
    labels = archives.expected_labels(spec, "tissue class")
    train = set(archives.split_indices(spec, "train"))
    episodes = sample_episodes(selection, ways=3, shots=1, queries=1, episodes=20, seed=5)
    assert len(episodes) == 20
    for episode in episodes:
        assert len(set(episode.classes)) == 3
        assert len(episode.support) == 3 and len(episode.query) == 3
        support = {i for i, _ in episode.support}
        query = {i for i, _ in episode.query}
        assert not support & query
        for index, key in episode.support + episode.query:
            assert index in train and labels[index] == key and key in episode.classes


def test_same_seed_same_episodes(installed: InstalledData) -> None:
    selection = selection_of(installed, "crc", splits=("train",))
    first = sample_episodes(selection, ways=2, shots=1, queries=1, episodes=10, seed=9)
    again = sample_episodes(selection, ways=2, shots=1, queries=1, episodes=10, seed=9)
    other = sample_episodes(selection, ways=2, shots=1, queries=1, episodes=10, seed=10)
    assert first == again
    assert first != other


def test_seeded_draws_do_not_depend_on_this_machine(installed: InstalledData) -> None:
    """random.Random is specified: these draws are the same everywhere (and stay so)."""
    selection = selection_of(installed, "dr_regular", task="DR level", splits=("train",))
    [episode] = sample_episodes(selection, ways=2, shots=1, queries=0, episodes=1, seed=0)
    import random

    rng = random.Random(0)
    members = {
        k: sorted(selection.parts[0].indices[selection.parts[0].labels == k].tolist())
        for k in selection.classes
    }
    eligible = [k for k, m in members.items() if len(m) >= 1]
    classes = rng.sample(eligible, 2)
    assert episode.classes == tuple(classes)
    assert [i for i, _ in episode.support] == [rng.sample(members[k], 1)[0] for k in classes]


def test_too_few_images_names_the_classes(installed: InstalledData) -> None:
    selection = selection_of(installed, "crc", splits=("val",))
    with pytest.raises(UsageError) as caught:
        sample_episodes(selection, ways=5, shots=5, queries=15, episodes=1, seed=0)
    assert "20 images (5 shots + 15 queries)" in caught.value.message
    assert "adipose (ADI)" in caught.value.message


def test_multilabel_per_class_subsets_are_refused(installed: InstalledData) -> None:
    selection = selection_of(installed, "cxr", task="disease labels", splits=("train",))
    with pytest.raises(UsageError, match="multi-label") as caught:
        sample_per_class(selection, per_class=1, seed=0)
    assert "'patient sex'" in caught.value.hint


def test_per_class_subset(installed: InstalledData) -> None:
    spec = installed.specs["crc"]
    selection = selection_of(installed, "crc", splits=("train",))
    chosen = sample_per_class(selection, per_class=2, seed=1)
    labels = archives.expected_labels(spec, "tissue class")
    assert set(chosen) == set(range(9))
    for key, indices in chosen.items():
        assert len(indices) == 2 and indices == sorted(indices)
        assert all(labels[i] == key for i in indices)
    assert chosen == sample_per_class(selection, per_class=2, seed=1)


def test_contact_sheet_size_and_content(installed: InstalledData, tmp_path: Path) -> None:
    spec = installed.specs["crc"]
    path = tmp_path / "sheet.png"
    with DatasetReader.open(installed.root, installed.catalog().get("crc")) as reader:
        contact_sheet(reader, [("a", [0, 1, 2]), ("b", [3])], path)
    sheet = Image.open(path)
    assert sheet.size == sheet_size(2, 3)
    thumb = np.asarray(sheet.crop((LABEL_WIDTH + 4, 4, LABEL_WIDTH + 4 + THUMB, 4 + THUMB)))
    expected = np.asarray(Image.fromarray(archives.expected_images(spec)[0]).resize((THUMB, THUMB)))
    np.testing.assert_array_equal(thumb, expected)


def test_episode_document_rows_and_picked_images(installed: InstalledData) -> None:
    selection = selection_of(installed, "crc", splits=("train",), seed=4)
    result = EpisodeSample.draw(selection, ways=2, shots=1, queries=1, episodes=3, seed=4)
    assert result.episodes == tuple(
        sample_episodes(selection, ways=2, shots=1, queries=1, episodes=3, seed=4)
    )
    document = result.to_json()
    assert list(document) == [
        *("dataset", "task", "split", "original_split", "seed"),
        *("task_type", "ways", "shots", "queries", "labels", "min_class_images"),
        *("classes", "left_out", "episodes"),
    ]
    assert (document["dataset"], document["split"], document["seed"]) == ("crc", "train", 4)
    assert document["labels"]["0"] == selection.task.labels[0]
    assert document["episodes"] == [
        e.to_json(result.position, result.targets(e)) for e in result.episodes
    ]
    rows = result.rows()
    assert len(ROW_COLUMNS) == len(rows[0]) and len(rows) == 3 * (2 + 2)
    assert {row[-1] for row in rows} == {"0", "1"}  # targets within the episode
    assert [row[1] for row in rows[:4]] == ["support", "support", "query", "query"]
    first = result.episodes[0]
    assert result.picked() == {
        k: [i for i, key in first.support if key == k] for k in first.classes
    }
    picked = result.picked_selection()
    assert picked.parts[0].indices.tolist() == sorted(i for i, _ in first.support)
    assert picked.task == selection.task and picked.total == 2


def test_per_class_document_rows_and_short_classes(installed: InstalledData) -> None:
    selection = selection_of(installed, "crc", splits=("val",))
    result = ClassSubset.draw(selection, per_class=2, seed=1)
    assert result.chosen == sample_per_class(selection, per_class=2, seed=1)
    document = result.to_json()
    assert list(document)[-2:] == ["per_class", "classes"]
    assert document["original_split"] is False and document["per_class"] == 2
    assert [c["indices"] for c in document["classes"]] == list(result.chosen.values())
    labels = selection.task.labels
    assert result.short_classes() == [
        (labels[k], len(v)) for k, v in result.chosen.items() if len(v) < 2
    ]
    assert all(row[:2] == ("0", "subset") for row in result.rows())
    assert len(result.rows()) == sum(len(v) for v in result.chosen.values())
    assert result.sheet_rows() == [(f"{k}: {labels[k]}", v) for k, v in result.chosen.items()]


def _pillow_fits() -> Callable[[str], bool]:
    from PIL import ImageDraw

    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    return lambda line: draw.textlength(line) <= LABEL_WIDTH - GAP


def test_grid_labels_keep_the_key_and_the_whole_name(installed: InstalledData) -> None:
    """ "colorectal adenocarcinoma epithelium (TUM)" used to lose its end, and dr_regular's
    "Can identify Level 3 vascular arch and ..." rows read alike."""
    fits = _pillow_fits()
    for dataset_id, task in (("crc", "tissue class"), ("dr_regular", "Clarity")):
        selection = selection_of(installed, dataset_id, task=task, splits=("train",))
        rows = ClassSubset.draw(selection, per_class=1, seed=0).sheet_rows()
        texts = [text for text, _ in rows]
        assert texts == [f"{k}: {name}" for k, name in selection.task.labels.items()]
        for text in texts:
            lines = label_lines(text, fits)
            assert " ".join(lines) == text and all(fits(line) for line in lines)
    cut = [label_lines(text, lambda line: len(line) <= 34) for text in texts]
    assert len({tuple(lines) for lines in cut}) == len(texts)


def test_label_lines_shorten_the_middle_and_keep_the_end() -> None:
    text = "3: " + " ".join(f"word{i}" for i in range(40)) + " (END)"
    lines = label_lines(text, lambda line: len(line) <= 30, max_lines=4)
    assert len(lines) == 4 and lines[0].startswith("3: word0") and lines[2] == ELLIPSIS
    assert lines[-1].endswith("(END)")
    assert label_lines("1: " + "x" * 70, lambda line: len(line) <= 30) == [
        "1:",
        "x" * 30,
        "x" * 30,
        "x" * 10,
    ]


def test_contact_sheet_rows_of_similar_names_differ(
    installed: InstalledData, tmp_path: Path
) -> None:
    selection = selection_of(installed, "dr_regular", task="Clarity", splits=("train",))
    rows = ClassSubset.draw(selection, per_class=1, seed=0).sheet_rows()
    path = tmp_path / "sheet.png"
    with DatasetReader.open(installed.root, selection.dataset) as reader:
        contact_sheet(reader, rows, path)
    sheet = np.asarray(Image.open(path))
    labels = [
        sheet[GAP + row * (THUMB + GAP) : (row + 1) * (THUMB + GAP), :LABEL_WIDTH]
        for row in range(len(rows))
    ]
    assert len({label.tobytes() for label in labels}) == len(rows)
    assert (sheet[:, LABEL_WIDTH : LABEL_WIDTH + GAP] == 255).all()  # no text runs over


def _support_and_query_are_disjoint(episode: Episode) -> None:
    support = [i for i, _ in episode.support]
    query = [i for i, _ in episode.query]
    assert len(set(support)) == len(support) and len(set(query)) == len(query)
    assert not set(support) & set(query)


def test_binary_episodes_hold_k_positives_and_k_negatives(installed: InstalledData) -> None:
    spec = installed.specs["cxr"]
    labels = archives.expected_labels(spec, "patient sex")
    selection = selection_of(installed, "cxr", task="patient sex", splits=("train",))
    result = EpisodeSample.draw(selection, ways=None, shots=2, queries=1, episodes=10, seed=3)
    for episode in result.episodes:
        assert episode.classes == (0, 1)
        assert sorted(k for _, k in episode.support) == [0, 0, 1, 1]
        assert sorted(k for _, k in episode.query) == [0, 1]
        assert all(labels[i] == k for i, k in episode.support + episode.query)
        _support_and_query_are_disjoint(episode)
    with pytest.raises(UsageError, match="binary"):
        sample_episodes(selection, ways=3, shots=1, queries=1, episodes=1, seed=0)


def _criterion(rows: np.ndarray, count: int) -> bool:
    return bool((rows.sum(axis=0) >= count).all() and ((1 - rows).sum(axis=0) >= count).all())


def test_multilabel_episodes_cover_every_label_both_ways(installed: InstalledData) -> None:
    spec = installed.specs["cxr"]
    labels = archives.expected_labels(spec, "disease labels")
    selection = selection_of(installed, "cxr", task="disease labels", splits=("train",))
    result = EpisodeSample.draw(selection, ways=None, shots=1, queries=0, episodes=8, seed=1)
    for episode in result.episodes:
        assert episode.classes == tuple(range(14))
        rows = np.array([labels[i] for i, _ in episode.support])
        assert [tuple(r) for r in rows] == [row for _, row in episode.support]
        assert _criterion(rows, 1)
        # Built greedily, it is small: no image can go without breaking the criterion.
        for left in range(len(rows)):
            assert not _criterion(np.delete(rows, left, axis=0), 1)
    document = result.to_json()
    first = document["episodes"][0]["support"][0]
    assert first["target"] == first["label"] == labels[first["index"]].tolist()
    three = EpisodeSample.draw(selection, ways=3, shots=1, queries=1, episodes=5, seed=2)
    for episode in three.episodes:
        columns = list(episode.classes)
        assert len(columns) == 3
        _support_and_query_are_disjoint(episode)
        for items in (episode.support, episode.query):
            assert _criterion(np.array([labels[i][columns] for i, _ in items]), 1)
        target = three.targets(episode)
        assert all(target(row) == [row[c] for c in columns] for _, row in episode.support)


def test_greedy_cover_is_small_and_reports_what_it_cannot_cover() -> None:
    rows = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=np.uint8)
    free = np.ones(4, dtype=bool)
    assert greedy_cover(rows, free, 1, random.Random(0)) == [2, 3]
    assert greedy_cover(rows, free, 3, random.Random(0)) is None


def test_ways_all_and_min_class_images_leave_out_small_classes(installed: InstalledData) -> None:
    spec = installed.specs["crc"]
    selection = selection_of(installed, "crc", splits=("train",))
    counts = Counter(archives.expected_labels(spec, "tissue class")[selection.parts[0].indices])
    big = sorted(k for k, n in counts.items() if n >= 3)
    assert 2 <= len(big) < 9  # the fixture has classes on both sides
    result = EpisodeSample.draw(
        selection, ways=None, shots=1, queries=1, episodes=4, seed=0, min_class_images=3
    )
    assert all(e.classes == tuple(big) for e in result.episodes)
    document = result.to_json()
    assert document["ways"] == len(big) and document["min_class_images"] == 3
    assert [c["key"] for c in document["classes"]] == big
    assert document["left_out"] == [
        {"key": k, "name": selection.task.labels[k], "images": counts[k]}
        for k in range(9)
        if counts[k] < 3
    ]
    for episode in document["episodes"]:
        assert [item["target"] for item in episode["support"]] == list(range(len(big)))


def test_shots_ranges_are_drawn_per_episode(installed: InstalledData) -> None:
    selection = selection_of(installed, "crc", splits=("train",))
    shots = Shots.parse("1-2")
    first = sample_episodes(selection, ways=2, shots=shots, queries=0, episodes=30, seed=6)
    assert {e.shots for e in first} == {1, 2}
    for episode in first:
        assert len(episode.support) == 2 * episode.shots
    assert first == sample_episodes(selection, ways=2, shots=shots, queries=0, episodes=30, seed=6)
    assert (Shots.parse("5"), str(shots)) == (Shots(5, 5), "1-2")
    for bad in ("0-", "3-1", "x", "1-2-3"):
        with pytest.raises(UsageError, match="--shots"):
            Shots.parse(bad)


def test_index_position_label_and_target_agree_with_the_files(
    installed: InstalledData, tmp_path: Path
) -> None:
    """Positions are the official loader's: it sorts a split's indices, whatever the order
    of the split file, and numbers them from 0 (the split file of a copy is written
    backwards, so file order and index order really differ)."""
    root = tmp_path / "root"
    shutil.copytree(installed.root / "crc", root / "crc", symlinks=True)
    split_file = root / "crc" / "splits" / "train.txt"
    lines = split_file.read_text().splitlines()
    split_file.write_text("\n".join(reversed(lines)) + "\n")
    in_file = [int(line.split("/")[-1].split(".")[0]) for line in reversed(lines)]
    loader_order = sorted(in_file)  # what MedIMeta(..., split="train")[position] reads
    assert loader_order != in_file
    labels = np.load(root / "crc" / "task_labels" / "tissue class.npy")
    with DatasetReader.open(root, installed.catalog().get("crc")) as reader:
        selection = select(reader, SelectionSpec(splits=("train",)))
    result = EpisodeSample.draw(selection, ways=3, shots=1, queries=1, episodes=5, seed=2)
    for episode in result.to_json()["episodes"]:
        for item in episode["support"] + episode["query"]:
            assert loader_order[item["position"]] == item["index"]
            assert labels[item["index"]] == item["label"]
            assert episode["classes"][item["target"]] == item["label"]
