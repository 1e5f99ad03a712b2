"""The paper's few-shot grid in one run: ``sample --protocol medimeta-paper``.

The grid is data (:data:`PROTOCOLS`): the settings of upstream's pre-sampling
(``medimeta/task_presampling.py``): shots 1, 2, 3, 5, 7, 10, 15, 20, 25 and 30 with 10
queries and 100 episodes each, and random shots 1-10 with 10 queries and 1000 episodes,
whose number of ways is drawn per episode from 2 to every usable class as upstream's
``SubTaskRandomFewShotMetaDataset`` draws it. :func:`plan_protocol` resolves the datasets
and tasks, :func:`run_protocol` writes one file per (dataset, task, setting) and reports
each task to a callback; a setting that cannot be met is skipped with its reason, never
shrunk. Each setting's seed is derived from the run's seed and (dataset, task, setting)
alone, so a run over one dataset writes the same files as a run over all of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medimeta_cli.catalog.datasets import Catalog, Task
from medimeta_cli.dataset.gate import DatasetFolder
from medimeta_cli.dataset.installed import InstalledDataset, installed_ids, open_installed
from medimeta_cli.dataset.reader import DatasetReader
from medimeta_cli.dataset.selection import Selection, SelectionSpec, select
from medimeta_cli.errors import UsageError
from medimeta_cli.sample.episodes import Shots, WayRange, usable_classes
from medimeta_cli.sample.files import EpisodeFormat, data_identity
from medimeta_cli.sample.formats import Setting as FileSetting
from medimeta_cli.sample.formats import episode_path, write_episode_file
from medimeta_cli.sample.results import EpisodeSample
from medimeta_cli.settings import Settings
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.records import read_install_record
from medimeta_cli.store.status import locate, root_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Setting:
    """One cell of a grid: episodes of every usable class (``ways`` None) or of a number of
    classes drawn per episode (a :class:`WayRange`)."""

    shots: Shots
    queries: int
    episodes: int
    ways: WayRange | None = None

    @property
    def name(self) -> str:
        """``<shots>_<queries>_<episodes>``, as upstream's file names say it."""
        return f"{self.shots}_{self.queries}_{self.episodes}"

    def seed(self, seed: int, dataset_id: str, task: str) -> int:
        """This setting's seed for one task: derived from the run's seed and (dataset, task,
        setting) only (SHA-256, the same on every machine)."""
        text = json.dumps([seed, dataset_id, task, self.name, str(self.ways)])
        return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "setting": self.name,
            "shots": str(self.shots),
            "queries": self.queries,
            "episodes": self.episodes,
            "ways": "all" if self.ways is None else str(self.ways),
        }


#: Upstream's pre-sampling grid (``save_few_shot_tasks``, ``save_random_few_shot_tasks``).
PAPER_GRID: tuple[Setting, ...] = (
    *(Setting(Shots(k, k), 10, 100) for k in (1, 2, 3, 5, 7, 10, 15, 20, 25, 30)),
    Setting(Shots(1, 10), 10, 1000, WayRange(2)),
)

#: ``--protocol`` names and their grids.
PROTOCOLS: dict[str, tuple[Setting, ...]] = {"medimeta-paper": PAPER_GRID}

#: The split the protocol's episodes are drawn from unless ``--split`` says otherwise:
#: the paper's pre-sampled episodes are meta-test episodes of target tasks.
PROTOCOL_SPLIT = "test"

#: Classes (binary and multi-label: positives and negatives) with fewer images are left
#: out, as upstream's ``FewShotMetaDataset(filter_classes_min_samples=50)``.
PROTOCOL_MIN_CLASS_IMAGES = 50


@dataclass(frozen=True)
class ProtocolRequest:
    """What a protocol run was asked for."""

    out: Path
    protocol: str = "medimeta-paper"
    dataset_ids: tuple[str, ...] = ()  # empty: every installed dataset
    first_task: bool = False
    split: str = PROTOCOL_SPLIT
    original: bool = False
    min_class_images: int = PROTOCOL_MIN_CLASS_IMAGES
    seed: int = 0
    file_format: EpisodeFormat = EpisodeFormat.JSON

    def grid(self) -> tuple[Setting, ...]:
        """The protocol's settings; :class:`UsageError` for an unknown name."""
        if self.protocol not in PROTOCOLS:
            raise UsageError(
                f"unknown protocol {self.protocol!r}",
                hint="Known: " + ", ".join(PROTOCOLS) + ".",
            )
        return PROTOCOLS[self.protocol]


@dataclass(frozen=True)
class SettingOutcome:
    """One setting of one task: the file written, or why it was skipped."""

    setting: Setting
    seed: int
    file: Path | None
    skipped: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            **self.setting.to_json(),
            "seed": self.seed,
            "file": None if self.file is None else str(self.file),
            "skipped": self.skipped,
        }


@dataclass(frozen=True)
class TaskOutcome:
    """Every setting of one task, and the classes the protocol leaves out."""

    dataset: str
    task: str
    task_type: str
    left_out: tuple[str, ...]
    settings: tuple[SettingOutcome, ...]

    @property
    def written(self) -> int:
        """Files written."""
        return sum(o.file is not None for o in self.settings)

    def reasons(self) -> dict[str, list[str]]:
        """Each reason a setting was skipped for, with the settings it skipped."""
        found: dict[str, list[str]] = {}
        for o in self.settings:
            if o.skipped is not None:
                found.setdefault(o.skipped, []).append(o.setting.name)
        return found

    def summary_line(self) -> str:
        """One progress line: the task and how many of its files were written."""
        line = f"{self.dataset} / {self.task}: {self.written} of {len(self.settings)} files"
        if self.left_out:
            line += f" (left out: {', '.join(self.left_out)})"
        return line

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "dataset": self.dataset,
            "task": self.task,
            "task_type": self.task_type,
            "left_out": list(self.left_out),
            "written": self.written,
            "settings": [o.to_json() for o in self.settings],
        }


@dataclass(frozen=True)
class ProtocolResult:
    """A whole protocol run: every task's settings, written or skipped."""

    request: ProtocolRequest
    tasks: tuple[TaskOutcome, ...]

    @property
    def files(self) -> list[Path]:
        """Every file written, in run order."""
        return [o.file for t in self.tasks for o in t.settings if o.file is not None]

    @property
    def skipped(self) -> int:
        """Settings skipped."""
        return sum(len(t.settings) - t.written for t in self.tasks)

    @property
    def complete(self) -> bool:
        """Whether every file of the grid was written."""
        return self.skipped == 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary: the parameters, the counts and every setting's outcome."""
        request = self.request
        return {
            "protocol": request.protocol,
            "out": str(request.out),
            "split": request.split,
            "original_split": request.original,
            "min_class_images": request.min_class_images,
            "seed": request.seed,
            "format": request.file_format.value,
            "complete": self.complete,
            "files_written": len(self.files),
            "settings_skipped": self.skipped,
            "tasks_without_files": sum(t.written == 0 for t in self.tasks),
            "tasks": [t.to_json() for t in self.tasks],
        }


@dataclass(frozen=True)
class PlannedDataset:
    """An installed dataset of the run, the tasks it samples and its data's identity."""

    installed: InstalledDataset
    tasks: tuple[Task, ...]
    identity: dict[str, Any] | None


def plan_protocol(
    settings: Settings, catalog: Catalog, request: ProtocolRequest
) -> list[PlannedDataset]:
    """The datasets and tasks of a run: the named ones (each must be installed), or every
    installed dataset; every task of each, or (``first_task``) the first, the paper's
    target task."""
    request.grid()
    roots = (settings.root, *settings.shared_roots)
    wanted = list(dict.fromkeys(request.dataset_ids)) or installed_ids(roots)
    if not wanted:
        raise UsageError(
            "no dataset is installed, so the protocol has nothing to sample",
            hint="Install datasets first, e.g. medimeta download crc.",
        )
    planned = []
    for dataset_id in wanted:
        installed = open_installed(catalog, settings.root, settings.shared_roots, dataset_id)
        dataset = installed.dataset
        where = root_of(locate(settings.root, settings.shared_roots, dataset.id))
        record = None if where is None else read_install_record(RootLayout(where), dataset.id)
        tasks = dataset.tasks[:1] if request.first_task else dataset.tasks
        planned.append(PlannedDataset(installed, tuple(tasks), data_identity(record)))
    return planned


def run_protocol(
    settings: Settings,
    catalog: Catalog,
    request: ProtocolRequest,
    on_task: Callable[[TaskOutcome], None] | None = None,
) -> ProtocolResult:
    """Write the protocol's grid for every planned task; ``on_task`` receives each task's
    outcome as it finishes. A setting that cannot be met is skipped with its reason."""
    grid = request.grid()
    outcomes = []
    for planned in plan_protocol(settings, catalog, request):
        with DatasetReader(planned.installed.folder()) as reader:
            for task in planned.tasks:
                outcome = _run_task(
                    reader, planned.installed.folder(), task, grid, request, planned.identity
                )
                logger.info("%s", outcome.summary_line())
                if on_task is not None:
                    on_task(outcome)
                outcomes.append(outcome)
    return ProtocolResult(request, tuple(outcomes))


def _run_task(
    reader: DatasetReader,
    data: DatasetFolder,
    task: Task,
    grid: Sequence[Setting],
    request: ProtocolRequest,
    identity: dict[str, Any] | None,
) -> TaskOutcome:
    dataset = reader.dataset
    spec = SelectionSpec(
        task=task.name, splits=(request.split,), original=request.original, seed=request.seed
    )
    seeds = [s.seed(request.seed, dataset.id, task.name) for s in grid]
    try:
        selection: Selection | None = select(reader, spec)
    except UsageError as error:  # e.g. an empty split: no setting can be met
        selection, reason = None, error.message
    left_out: tuple[str, ...] = ()
    if selection is not None:
        _, short = usable_classes(selection, needed=0, min_class_images=request.min_class_images)
        left_out = tuple(task.labels[c.key] for c in short)
    results = []
    for setting, seed in zip(grid, seeds, strict=True):
        if selection is None:
            results.append(SettingOutcome(setting, seed, None, reason))
            continue
        try:
            sample = EpisodeSample.draw(
                selection,
                ways=setting.ways,
                shots=setting.shots,
                queries=setting.queries,
                episodes=setting.episodes,
                seed=seed,
                min_class_images=request.min_class_images,
            )
        except UsageError as error:
            _drop_stale(request, dataset.id, task, setting)
            results.append(SettingOutcome(setting, seed, None, error.message))
            continue
        path = write_episode_file(request.out, sample, identity, data, request.file_format)
        results.append(SettingOutcome(setting, seed, path))
    return TaskOutcome(dataset.id, task.name, task.target.value, left_out, tuple(results))


def _drop_stale(request: ProtocolRequest, dataset_id: str, task: Task, setting: Setting) -> None:
    """A skipped setting leaves no file behind: an earlier run's file of that name (drawn
    from other data) would pass for this run's."""
    name = FileSetting(
        dataset_id,
        task.name,
        request.split,
        request.original,
        setting.shots,
        setting.queries,
        setting.episodes,
    )
    (request.out / episode_path(request.file_format, name)).unlink(missing_ok=True)
