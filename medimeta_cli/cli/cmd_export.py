"""``medimeta export ID``: a subset of an installed dataset as class folders, NumPy arrays
or WebDataset tar shards."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from medimeta_cli.cli._selection import split_values, task_name_notice
from medimeta_cli.cli.options import (
    ClassesOption,
    CommonOptions,
    DatasetArgument,
    OriginalSplitOption,
    SeedOption,
    with_common_options,
)
from medimeta_cli.cli.progress import ProgressDisplay
from medimeta_cli.cli.session import session
from medimeta_cli.export.options import Color, ExportFormat, ExportStatus, ImageFormat

#: Command lines the help shows under "Examples".
EXAMPLES = (
    'medimeta export cxr --task "patient sex" --split train,val --limit 1000',
    "medimeta export crc --format webdataset --shard-size 500MB",
    "medimeta export cxr --task all --format parquet",
    "medimeta export crc --format numpy --shard auto",
)


@with_common_options()
def export_command(
    common: CommonOptions,
    dataset_id: DatasetArgument,
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            help="Task name (case-insensitive, or a unique beginning); needed when the "
            "dataset has several. 'all': the labels of every task (the first orders the "
            "classes).",
            show_default=False,
        ),
    ] = None,
    split: Annotated[
        list[str] | None,
        typer.Option(
            "--split", help="train, val and/or test (repeat or comma-separate).", show_default="all"
        ),
    ] = None,
    original_split: OriginalSplitOption = False,
    classes: ClassesOption = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=1,
            help="At most N images per split, stratified by class.",
            show_default=False,
        ),
    ] = None,
    seed: SeedOption = 0,
    export_format: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            case_sensitive=False,
            help="Class folders, NumPy arrays, WebDataset tar shards or Parquet files "
            "(Hugging Face datasets).",
        ),
    ] = ExportFormat.IMAGEFOLDER,
    image_format: Annotated[
        ImageFormat,
        typer.Option(
            "--image-format",
            case_sensitive=False,
            help="imagefolder, webdataset, parquet: png is lossless.",
        ),
    ] = ImageFormat.PNG,
    rgb: Annotated[bool, typer.Option("--rgb", help="Write 3-channel images.")] = False,
    grayscale: Annotated[bool, typer.Option("--grayscale", help="Write 1-channel images.")] = False,
    npz: Annotated[
        bool, typer.Option("--npz", help="numpy: one .npz per split instead of .npy files.")
    ] = False,
    compress: Annotated[
        bool, typer.Option("--compress", help="numpy with --npz: compress the .npz files.")
    ] = False,
    shard_size: Annotated[
        str | None,
        typer.Option(
            "--shard-size",
            help="webdataset: bytes per tar shard at most, about (1GB, 500MB, 64MiB), or "
            "images per tar shard (5000images).",
            show_default="1GB",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output folder [default: ./<id>-<task>, ./<id>-<task>-numpy, -webdataset, "
            "-parquet].",
            show_default=False,
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="Encoding processes [default: all cores].",
            show_default=False,
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing output folder.")
    ] = False,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            help="Export part I of N (e.g. 3/8, counting from 1) of the selection; N jobs "
            "together write one complete export. 'auto': I and N of this task of a SLURM or "
            "LSF job array ('auto/N' under PBS).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Export even a dataset that verify found damaged."),
    ] = False,
) -> None:
    """Export a subset of an installed dataset as class folders, NumPy arrays or tar shards.

    Deterministic and idempotent: the same command writes the same bytes, and an
    export that is already complete is left alone (or replaced with --overwrite).
    """
    with session(common) as s:
        from medimeta_cli.catalog.datasets import TaskTarget
        from medimeta_cli.errors import UsageError
        from medimeta_cli.export import ExportOptions
        from medimeta_cli.export.shards import resolve_shard
        from medimeta_cli.export.shardsize import parse_shard_size
        from medimeta_cli.export.usecase import ExportRequest, plan_export, run_export

        if rgb and grayscale:
            raise UsageError("--rgb and --grayscale exclude each other", hint="Choose one.")
        # A bad --shard is a usage error whatever is installed: say so first.
        chosen_shard = resolve_shard(shard, os.environ) if shard else None
        chosen_size = parse_shard_size(shard_size) if shard_size is not None else None
        # The dataset's own info.yaml, not the catalog, says what is installed.
        request = ExportRequest(
            dataset_id=dataset_id,
            task=task,
            splits=split_values(split) or ("train", "val", "test"),
            original=original_split,
            classes=split_values(classes),
            limit=limit,
            seed=seed,
            shard=chosen_shard,
            out=out,
            force=force,
            export_format=export_format,
        )
        plan = plan_export(s.settings, s.catalog, request)
        dataset, chosen_task = plan.dataset, plan.task
        if plan.damaged is not None:
            s.out.warn(f"{plan.damaged}; exporting it anyway (--force)")
        if plan.every_task:
            s.out.status(
                f"exporting the labels of every task of {dataset.id} "
                f"({len(dataset.tasks)}); {chosen_task.name!r}, the first, orders the classes"
            )
        elif notice := task_name_notice(dataset.id, task, chosen_task):
            s.out.status(notice)
        options = ExportOptions(
            format=export_format,
            image_format=image_format,
            color=Color.RGB if rgb else Color.GRAYSCALE if grayscale else None,
            npz=npz,
            compress=compress,
            jobs=jobs or os.cpu_count() or 1,
            overwrite=overwrite,
            command=shlex.join(["medimeta", *sys.argv[1:]]),
            shard_size=chosen_size,
        )
        if (
            chosen_task.target is TaskTarget.MULTILABEL
            and export_format is ExportFormat.IMAGEFOLDER
        ):
            s.out.warn(
                f"{chosen_task.name!r} is multi-label: images go straight into each split "
                "folder, with their labels as 0/1 columns in metadata.csv"
            )
        with ProgressDisplay(s.out, verb="exporting", unit="images") as display:
            result = run_export(
                plan,
                options,
                on_start=lambda total: display.start(dataset.id, total),
                on_progress=lambda count: display.advance(dataset.id, count),
            )
        for split_name, folders in result.empty_class_folders.items():
            s.out.warn(
                f"the {split_name} split has no images of {len(folders)} "
                f"class{'es' if len(folders) > 1 else ''}: {', '.join(folders)}; their folders "
                "are left empty so that every split has the same class indices "
                "(torchvision: ImageFolder(..., allow_empty=True))"
            )
        if common.json:
            s.out.emit_json(result.to_json())
            return
        rate = result.images / max(result.seconds, 1e-6)
        s.out.emit_text(
            f"{result.status.value}: {result.out}  ({result.images:,} images"
            + (f", {rate:,.0f}/s)" if result.status is not ExportStatus.UP_TO_DATE else ")")
        )
        if not result.complete:
            s.out.status("other shards are still to come; the last one completes the export")
