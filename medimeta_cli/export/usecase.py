"""The export use case, shared by ``medimeta export`` and :func:`medimeta_cli.api.export`.

Both the command line and the Python API go through the same two steps:
:func:`plan_export` opens the installed dataset through the gate, refuses one that
``verify`` found damaged (unless forced; one wording, :func:`damaged_refusal`), chooses
the task and resolves the selection and the output folder; :func:`run_export` writes it.
Between the two, the caller says what it wants to say (notices, a progress display).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from medimeta_cli.catalog.datasets import Catalog, Dataset, Task
from medimeta_cli.dataset.gate import DatasetFolder
from medimeta_cli.dataset.installed import open_installed
from medimeta_cli.dataset.selection import ALL_TASKS, SelectionSpec, choose_task, wants_every_task
from medimeta_cli.errors import IntegrityError, UsageError
from medimeta_cli.export.formats import writer_for
from medimeta_cli.export.options import ExportFormat, ExportOptions, ExportResult, ProgressCallback
from medimeta_cli.export.run import export_folder
from medimeta_cli.export.target import default_out
from medimeta_cli.settings import Settings
from medimeta_cli.store.status import State, locate

__all__ = ["ExportPlan", "ExportRequest", "damaged_refusal", "plan_export", "run_export"]


@dataclass(frozen=True)
class ExportRequest:
    """What the caller asked to export, as given (the task may be None or abbreviated)."""

    dataset_id: str
    task: str | None = None
    splits: tuple[str, ...] = ("train", "val", "test")
    original: bool = False
    classes: tuple[str, ...] | None = None
    limit: int | None = None
    seed: int = 0
    shard: tuple[int, int] | None = None
    out: Path | None = None
    force: bool = False
    export_format: ExportFormat = ExportFormat.IMAGEFOLDER
    """Only names the default output folder here (``<id>-<task>-numpy``)."""


@dataclass(frozen=True)
class ExportPlan:
    """A resolved export: the validated dataset folder, the task, the selection and the
    absolute output folder; ``damaged`` says that ``verify`` found the dataset damaged
    and the export was forced (None otherwise)."""

    data: DatasetFolder
    task: Task
    spec: SelectionSpec
    out: Path
    roots: tuple[Path, ...]
    damaged: str | None = None

    @property
    def dataset(self) -> Dataset:
        """The dataset as its own ``info.yaml`` describes it."""
        return self.data.dataset

    @property
    def every_task(self) -> bool:
        """Whether the export holds the labels of every task (``--task all``); ``task``
        is then the first, which orders and names the classes."""
        return self.spec.task == ALL_TASKS


def damaged_finding(dataset_id: str, checked_at: str | None) -> str:
    """``crc was found damaged by verify (<when>)``: the one wording of that finding."""
    return f"{dataset_id} was found damaged by verify ({checked_at or 'undated'})"


def damaged_refusal(
    dataset_id: str, checked_at: str | None, *, in_catalog: bool = True
) -> IntegrityError:
    """The refusal to export a dataset that ``verify`` found damaged: one wording for the
    command line and the Python API (``verify --repair`` only for a catalog dataset: one
    from elsewhere has no record to fetch it from)."""
    fix = (
        f"Run `medimeta verify --repair {dataset_id}`"
        if in_catalog
        else f"Reinstall it from its source (`medimeta download --from ... --force`; "
        f"{dataset_id} is not in the catalog, so nothing can fetch it)"
    )
    return IntegrityError(
        f"{damaged_finding(dataset_id, checked_at)}; not exporting it",
        hint=f"{fix}, or export it anyway (--force on the command line, force=True in Python).",
    )


def plan_export(settings: Settings, catalog: Catalog, request: ExportRequest) -> ExportPlan:
    """Resolve an export request against the installed data.

    Raises :class:`~medimeta_cli.errors.NotInstalledError` when no root holds the dataset,
    :class:`~medimeta_cli.dataset.gate.InfoError` when the gate refuses it,
    :class:`IntegrityError` (:func:`damaged_refusal`) when ``verify`` found it damaged and
    the request is not forced, and the selection's usage errors (task, splits, classes).
    """
    installed = open_installed(catalog, settings.root, settings.shared_roots, request.dataset_id)
    data = installed.folder()
    dataset = data.dataset
    status = locate(settings.root, settings.shared_roots, dataset.id)
    damaged = None
    if status.state is State.DAMAGED:
        if not request.force:
            raise damaged_refusal(dataset.id, status.checked_at, in_catalog=installed.in_catalog)
        damaged = damaged_finding(dataset.id, status.checked_at)
    every_task = wants_every_task(dataset, request.task)
    task = dataset.tasks[0] if every_task else choose_task(dataset, request.task)
    if every_task and not writer_for(request.export_format).every_task:
        able = ", ".join(f.value for f in ExportFormat if writer_for(f).every_task)
        raise UsageError(
            f"--task all: the {request.export_format.value} format holds the labels of one task",
            hint=f"Name one --task, or export every task in another format ({able}).",
        )
    task_name = ALL_TASKS if every_task else task.name
    spec = SelectionSpec(
        task=task_name,
        splits=request.splits,
        original=request.original,
        classes=request.classes,
        limit=request.limit,
        seed=request.seed,
        shard=request.shard,
    )
    out = (request.out or default_out(dataset.id, task_name, request.export_format)).absolute()
    return ExportPlan(data, task, spec, out, (settings.root, *settings.shared_roots), damaged)


def run_export(
    plan: ExportPlan,
    options: ExportOptions,
    *,
    on_start: Callable[[int], None] | None = None,
    on_progress: ProgressCallback | None = None,
) -> ExportResult:
    """Write a planned export (whole, or one shard)."""
    return export_folder(
        plan.data,
        plan.spec,
        plan.out,
        options,
        on_start=on_start,
        on_progress=on_progress,
        roots=plan.roots,
    )
