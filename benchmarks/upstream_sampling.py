"""The paper's ten fixed-shot settings: our sampler against the upstream pre-sampling.

    python benchmarks/upstream_sampling.py [--upstream-ml-episodes 3] [--seed 0]

The settings are those of ``medimeta/task_presampling.py``: shots 1, 2, 3, 5, 7, 10, 15,
20, 25 and 30, 10 queries, 100 episodes, every class with at least 50 images (binary and
multi-label: 50 positives and 50 negatives). Two tasks, with synthetic labels (sampling
reads no pixels):

* a crc-sized multi-class task: 9 classes, the 85,000 images of crc's train split;
* a cxr-sized multi-label task: 14 labels, the 73,421 images of cxr's train split, each
  label positive with a ChestX-ray14-like prevalence (0.2 % to 18 %).

Both samplers get the SAME labels, in one run:

* ours: ``EpisodeSample.draw(..., ways=None, min_class_images=50)`` (``--ways all``);
* upstream: ``torchcross.data.metadataset.FewShotMetaDataset(task_source, None, k, 10,
  length=100, output_indices=True)``, iterated to the end, as ``task_presampling.py``
  does, on a minimal task source (``labels`` and ``task_description``: with
  ``output_indices=True`` it reads no image).

Upstream's multi-label sampler takes about 0.2 s an episode per set, so its 1,000
episodes would take minutes: it is timed on ``--upstream-ml-episodes`` episodes per
setting and extrapolated per episode (the figure says so). Goal: ours at least 50x faster.
Needs ``torch`` and ``torchcross`` (``pip install torch torchcross``); without them it
says so and exits 2.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from medimeta_cli.catalog.file import load_catalog
from medimeta_cli.dataset.selection import Selection, SelectionSpec, SplitPart
from medimeta_cli.sample.results import EpisodeSample

SHOTS = (1, 2, 3, 5, 7, 10, 15, 20, 25, 30)
QUERIES = 10
EPISODES = 100
MIN_IMAGES = 50
GOAL = 50.0

CRC_TRAIN = 85_000  # medimeta-info/crc.yaml, splits_num_samples.train
CXR_TRAIN = 73_421  # medimeta-info/cxr.yaml
#: Positive share of each cxr label (ChestX-ray14's published prevalences, rounded).
CXR_PREVALENCE = (
    0.103, 0.025, 0.119, 0.177, 0.052, 0.056, 0.013, 0.047, 0.042, 0.021, 0.022, 0.015,
    0.030, 0.002,
)  # fmt: skip


@dataclass
class _TaskSource:
    """What ``FewShotMetaDataset`` reads of a task source with ``output_indices=True``."""

    labels: npt.NDArray[Any]
    task_description: Any


def _selection(dataset_id: str, task_name: str, labels: npt.NDArray[Any]) -> Selection:
    dataset = load_catalog(None).get(dataset_id)
    task = dataset.task(task_name)
    part = SplitPart("train", np.arange(len(labels), dtype=np.int64), labels)
    return Selection(dataset, task, tuple(task.labels), (part,), SelectionSpec(task=task_name))


def _ours(selection: Selection, seed: int) -> float:
    started = time.perf_counter()
    for k in SHOTS:
        EpisodeSample.draw(
            selection,
            ways=None,
            shots=k,
            queries=QUERIES,
            episodes=EPISODES,
            seed=seed,
            min_class_images=MIN_IMAGES,
        )
    return time.perf_counter() - started


def _upstream(selection: Selection, seed: int, episodes: int) -> float:
    """Seconds for ``episodes`` episodes of every setting."""
    from torchcross.data.metadataset import FewShotMetaDataset
    from torchcross.data.task import TaskDescription, TaskTarget

    target = (
        TaskTarget.MULTILABEL_CLASSIFICATION
        if selection.multilabel
        else TaskTarget.MULTICLASS_CLASSIFICATION
    )
    source = _TaskSource(
        selection.parts[0].labels, TaskDescription(target, dict(selection.task.labels))
    )
    np.random.seed(seed)  # upstream draws from the global NumPy state
    started = time.perf_counter()
    for k in SHOTS:
        drawn = FewShotMetaDataset(source, None, k, QUERIES, length=episodes, output_indices=True)
        count = sum(1 for _ in drawn)
        assert count == episodes, f"upstream gave {count} episodes for {k} shots"
    return time.perf_counter() - started


def main() -> int:
    """Time both samplers on both tasks and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream-ml-episodes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        import torchcross  # noqa: F401
    except ImportError:
        print(
            "needs torch and torchcross (the official pipeline): pip install torch torchcross",
            file=sys.stderr,
        )
        return 2
    rng = np.random.default_rng(args.seed)
    crc = _selection("crc", "tissue class", rng.integers(0, 9, CRC_TRAIN).astype(np.int64))
    rows = (rng.random((CXR_TRAIN, len(CXR_PREVALENCE))) < CXR_PREVALENCE).astype(np.uint8)
    cxr = _selection("cxr", "disease labels", rows)
    random.seed(args.seed)
    print(f"{len(SHOTS)} settings (shots {SHOTS}), {QUERIES} queries, {EPISODES} episodes each")

    ours = _ours(crc, args.seed)
    theirs = _upstream(crc, args.seed, EPISODES)
    ratio = theirs / ours
    print(
        f"multi-class, {CRC_TRAIN} images, 9 classes: ours {ours:.2f} s, "
        f"upstream {theirs:.1f} s: {ratio:.0f}x faster "
        f"({'meets' if ratio >= GOAL else 'misses'} the {GOAL:.0f}x goal)"
    )

    ours_ml = _ours(cxr, args.seed)
    few = args.upstream_ml_episodes
    theirs_few = _upstream(cxr, args.seed, few)
    per_episode = theirs_few / (few * len(SHOTS))
    theirs_ml = per_episode * EPISODES * len(SHOTS)
    ratio_ml = theirs_ml / ours_ml
    print(
        f"multi-label, {CXR_TRAIN} images, 14 labels: ours {ours_ml:.2f} s, upstream "
        f"{per_episode:.3f} s an episode ({few} per setting timed), so about "
        f"{theirs_ml:.0f} s for the 1,000 episodes (extrapolated): {ratio_ml:.0f}x faster "
        f"({'meets' if ratio_ml >= GOAL else 'misses'} the {GOAL:.0f}x goal)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
