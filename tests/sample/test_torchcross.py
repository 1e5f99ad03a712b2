"""torchcross episode files: what the official pipeline loads from ours, what our reader
makes of upstream's own files, and a reader that never runs what a pickle asks for."""

from __future__ import annotations

import importlib
import os
import pickle
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from medimeta_cli.dataset.gate import open_folder
from medimeta_cli.errors import IntegrityError, UsageError
from medimeta_cli.sample.episodes import Shots
from medimeta_cli.sample.results import EpisodeSample
from medimeta_cli.sample.torchcross import torchcross_file_name, write_torchcross_file
from medimeta_cli.sample.torchcross_check import read_torchcross_file, torchcross_differences
from tests.conftest import InstalledData
from tests.sample.test_episodes import selection_of

#: One task of every type in the fixture data: (dataset, task, --ways).
TASKS = [
    ("crc", "tissue class", 3),
    ("cxr", "patient sex", None),
    ("dr_regular", "DR level", 2),
    ("cxr", "disease labels", None),
]


def official(name: str) -> ModuleType:
    """A module of the official pipeline (``pip install ".[torch]"``); CI installs it
    (``.ci/run``), so there a missing one fails the test instead of skipping it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        if os.environ.get("CI"):
            raise AssertionError(
                f"{name} is not installed in CI (.ci/run installs .[torch])"
            ) from None
        pytest.skip(f"SKIPPED LOUDLY: {name} is not installed; pip install '.[torch]' (CI does)")


def _sample(installed: InstalledData, dataset: str, task: str, ways: int | None) -> EpisodeSample:
    selection = selection_of(installed, dataset, task=task, splits=("train",))
    return EpisodeSample.draw(
        selection, ways=ways, shots=Shots(1, 1), queries=1, episodes=3, seed=4
    )


def _upstream_task(installed: InstalledData, dataset: str, task: str) -> Any:
    """The first task upstream's sampler yields for this task (types, dtypes, shapes)."""
    medimeta, few_shot = official("medimeta"), official("torchcross.data.metadataset.few_shot")
    source = medimeta.MedIMeta(str(installed.root), dataset, task, split="train")
    np.random.seed(0)
    sampler = few_shot.FewShotMetaDataset(
        source, None, 1, 1, filter_classes_min_samples=0, length=1, output_indices=True
    )
    return next(iter(sampler))


@pytest.mark.slow
@pytest.mark.parametrize(("dataset", "task", "ways"), TASKS)
def test_the_official_loader_reads_our_files_with_the_installed_labels(
    installed: InstalledData, tmp_path: Path, dataset: str, task: str, ways: int | None
) -> None:
    torch, medimeta = official("torch"), official("medimeta")
    sample = _sample(installed, dataset, task, ways)
    data = open_folder(installed.root / dataset, dataset)
    write_torchcross_file(tmp_path, sample, data)
    loaded = medimeta.PickledMedIMetaTaskDataset(
        str(tmp_path), str(installed.root), dataset, task, 1, 1, 3, split="train"
    )
    assert len(loaded) == 3
    source, upstream = loaded.task_source, _upstream_task(installed, dataset, task)
    names = source.task_description.classes
    for episode, listed in zip(sample.episodes, loaded.task_list, strict=True):
        assert type(listed) is type(upstream)
        assert type(listed.description) is type(upstream.description)
        assert listed.description.task_target is source.task_target
        assert (listed.description.task_identifier, listed.description.domain_identifier) == (
            None,
            None,
        )
        pairs = list(listed.support) + list(listed.query)
        assert len(pairs) == len(episode.support) + len(episode.query)
        assert not {int(p) for p, _ in listed.support} & {int(p) for p, _ in listed.query}
        for position, label in pairs:
            # Types, dtypes and shapes as upstream's own sampler yields them.
            up_position, up_label = upstream.support[0]
            assert type(position) is type(up_position) is np.int64
            assert (label.dtype, label.shape) == (up_label.dtype, up_label.shape)
            installed_label = source.labels[position]
            classes = listed.description.classes
            if source.task_target.name == "MULTILABEL_CLASSIFICATION":
                used = [k for name in classes.values() for k, n in names.items() if n == name]
                assert torch.equal(label, torch.tensor(installed_label[used]))
            elif source.task_target.name == "BINARY_CLASSIFICATION":
                assert classes == {0: names[0], 1: names[1]}
                assert torch.equal(label, torch.tensor(installed_label))
            else:
                assert classes[int(label)] == names[int(installed_label)]
    # The official class also reads the images at those positions.
    image, _ = loaded[0].support[0]
    assert isinstance(image, torch.Tensor) and image.ndim == 3


@pytest.mark.slow
@pytest.mark.parametrize(("dataset", "task", "ways"), TASKS)
def test_check_reads_files_the_upstream_pipeline_wrote(
    installed: InstalledData, tmp_path: Path, dataset: str, task: str, ways: int | None
) -> None:
    medimeta = official("medimeta")
    few_shot = official("torchcross.data.metadataset.few_shot")
    source = medimeta.MedIMeta(str(installed.root), dataset, task, split="train")
    np.random.seed(1)
    tasks = list(
        few_shot.FewShotMetaDataset(
            source, None, 1, 1, filter_classes_min_samples=0, length=3, output_indices=True
        )
    )
    path = tmp_path / dataset / f"{task}_1_1_3_train.pkl"
    path.parent.mkdir()
    path.write_bytes(pickle.dumps(tasks))
    parsed = read_torchcross_file(path)
    assert (parsed.dataset, parsed.task, parsed.split) == (dataset, task, "train")
    assert len(parsed.episodes) == 3 and parsed.images > 0
    data = open_folder(installed.root / dataset, dataset)
    assert torchcross_differences(parsed, data) == []

    # The same file with one label changed is caught.
    first = tasks[0].support[0]
    torch = official("torch")
    tasks[0].support[0] = (first[0], torch.ones_like(first[1]) - first[1])
    path.write_bytes(pickle.dumps(tasks))
    differences = torchcross_differences(read_torchcross_file(path), data)
    assert len(differences) == 1 and f"task 0 support position {first[0]}:" in differences[0]


@pytest.mark.parametrize(("dataset", "task", "ways"), TASKS)
def test_our_reader_reads_back_what_we_write(
    installed: InstalledData, tmp_path: Path, dataset: str, task: str, ways: int | None
) -> None:
    sample = _sample(installed, dataset, task, ways)
    data = open_folder(installed.root / dataset, dataset)
    path = write_torchcross_file(tmp_path, sample, data)
    parsed = read_torchcross_file(path)
    assert parsed.images == sum(len(e.support) + len(e.query) for e in sample.episodes)
    positions = sample.positions_of([i for i, _ in sample.episodes[0].support])
    assert [p for p, _ in parsed.episodes[0].support] == [
        positions[i] for i, _ in sample.episodes[0].support
    ]
    assert torchcross_differences(parsed, data) == []


def test_check_catches_images_shared_by_support_and_query(
    installed: InstalledData, tmp_path: Path
) -> None:
    sample = _sample(installed, "crc", "tissue class", 3)
    first = sample.episodes[0]
    bad = replace(first, query=first.query + first.support[:1] + first.query[:1])
    data = open_folder(installed.root / "crc", "crc")
    path = write_torchcross_file(tmp_path, replace(sample, episodes=(bad,)), data)
    position = sample.position(first.support[0][0])
    assert torchcross_differences(read_torchcross_file(path), data) == [
        f"task 0: positions [{position}] are in both support and query",
        "task 0: an image appears twice in its query",
    ]


def test_the_reader_runs_nothing_a_pickle_asks_for(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    class EvalInside:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (eval, (f"open({str(marker)!r}, 'w')",))

    for payload in ([Evil()], {"support": [(0, EvalInside())]}):
        path = tmp_path / "crc" / "tissue class_1_1_1_train.pkl"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(pickle.dumps(payload))
        with pytest.raises(IntegrityError, match="not a torchcross episode file") as caught:
            read_torchcross_file(path)
        assert "nothing was run" in str(caught.value)
        assert not marker.exists()
    # The pickle is a real one: an ordinary unpickler would have run it.
    pickle.loads(pickle.dumps([Evil()]))
    assert marker.exists()


def test_file_names_are_the_ones_upstream_opens_and_never_paths() -> None:
    name = torchcross_file_name(
        "crc", "tissue class", shots=Shots(1, 10), queries=10, episodes=1000, split="test"
    )
    assert name == Path("crc/tissue class_1-10_10_1000_test.pkl")
    for task in ("../x", "a/b", "a\\b"):
        with pytest.raises(UsageError, match="cannot be a torchcross file name"):
            torchcross_file_name(task=task, dataset_id="x", shots=Shots(5, 5), queries=1,
                                 episodes=1, split="train")  # fmt: skip
