"""``medimeta sample ID``: few-shot episodes, per-class subsets and contact sheets."""

from __future__ import annotations

import csv
import io
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from medimeta_cli.cli.options import (
    ClassesOption,
    CommonOptions,
    DatasetArgument,
    OriginalSplitOption,
    QuietLongOption,
    SeedOption,
    TaskOption,
    with_common_options,
)
from medimeta_cli.cli.session import Session, session

if TYPE_CHECKING:
    from medimeta_cli.selection import Selection


@with_common_options(always_json=True, quiet=QuietLongOption)
def sample_command(
    common: CommonOptions,
    dataset_id: DatasetArgument,
    task: TaskOption = None,
    split: Annotated[str, typer.Option("--split", help="train, val or test.")] = "train",
    original_split: OriginalSplitOption = False,
    classes: ClassesOption = None,
    ways: Annotated[int, typer.Option("--ways", "-n", help="Classes per episode.")] = 5,
    shots: Annotated[int, typer.Option("--shots", "-k", help="Support images per class.")] = 5,
    queries: Annotated[int, typer.Option("--queries", "-q", help="Query images per class.")] = 15,
    episodes: Annotated[int, typer.Option("--episodes", "-e", help="Number of episodes.")] = 1,
    seed: SeedOption = 0,
    per_class: Annotated[
        int | None,
        typer.Option(
            "--per-class", help="Instead of episodes: K images of every class.", show_default=False
        ),
    ] = None,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="CSV (episode, set, class, index) instead of JSON.")
    ] = False,
    grid: Annotated[
        Path | None,
        typer.Option(
            "--grid", help="Also write a contact sheet PNG: one row per class.", show_default=False
        ),
    ] = None,
    export_dir: Annotated[
        Path | None,
        typer.Option(
            "--export",
            help="Also write the sampled images as class folders here.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Sample few-shot episodes (N-way K-shot with queries) or K images per class.

    Prints JSON (or --csv) with the upstream indices of every chosen image. The same
    seed gives the same episodes on any machine.
    """
    with session(common) as s:
        from medimeta_cli.cli._selection import split_values
        from medimeta_cli.reader import DatasetReader
        from medimeta_cli.sample import contact_sheet, sample_episodes, sample_per_class
        from medimeta_cli.selection import SelectionSpec, select

        dataset = s.catalog.get(dataset_id)
        with DatasetReader.open(s.installed_root(dataset.id), dataset) as reader:
            selection = select(
                reader,
                SelectionSpec(
                    task=task,
                    splits=(split,),
                    original=original_split,
                    classes=split_values(classes),
                    seed=seed,
                ),
            )
            labels = selection.task.labels
            header: dict[str, Any] = {
                "dataset": dataset.id,
                "task": selection.task.name,
                "split": split,
                "original_split": original_split,
                "seed": seed,
            }
            if per_class is not None:
                chosen = sample_per_class(selection, per_class=per_class, seed=seed)
                for key, indices in chosen.items():
                    if len(indices) < per_class:
                        s.out.warn(f"class {labels[key]!r} has only {len(indices)} images")
                document = {
                    **header,
                    "per_class": per_class,
                    "classes": [
                        {"key": key, "name": labels[key], "indices": indices}
                        for key, indices in chosen.items()
                    ],
                }
                table = [
                    ("0", "subset", str(k), labels[k], str(i))
                    for k, indices in chosen.items()
                    for i in indices
                ]
                picked = {k: indices for k, indices in chosen.items()}
            else:
                result = sample_episodes(
                    selection, ways=ways, shots=shots, queries=queries, episodes=episodes, seed=seed
                )
                document = {
                    **header,
                    "ways": ways,
                    "shots": shots,
                    "queries": queries,
                    "labels": {str(k): n for k, n in labels.items()},
                    "episodes": [episode.to_json() for episode in result],
                }
                table = [
                    (str(e.number), role, str(k), labels[k], str(i))
                    for e in result
                    for role, items in (("support", e.support), ("query", e.query))
                    for i, k in items
                ]
                first = result[0]
                picked = {key: [i for i, k in first.support if k == key] for key in first.classes}
            if grid is not None:
                contact_sheet(reader, [(labels[k], v) for k, v in picked.items()], grid)
                s.out.status(f"contact sheet written to {grid}")
        if export_dir is not None:
            _export_sample(s, selection, picked, export_dir)
        if as_csv:
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(["episode", "set", "class_key", "class_name", "index"])
            writer.writerows(table)
            s.out.emit_text(buffer.getvalue().rstrip("\n"))
        else:
            s.out.emit_json(document)


def _export_sample(
    s: Session, selection: Selection, picked: dict[int, list[int]], out: Path
) -> None:
    """Write the sampled images in the imagefolder layout of ``medimeta export``."""
    import numpy as np

    from medimeta_cli.export import ExportOptions, export_selection
    from medimeta_cli.selection import Selection, SplitPart

    pairs = sorted((index, key) for key, indices in picked.items() for index in indices)
    part = SplitPart(
        selection.parts[0].split,
        np.array([i for i, _ in pairs], dtype=np.int64),
        np.array([k for _, k in pairs], dtype=np.int64),
    )
    subset = Selection(
        selection.dataset, selection.task, selection.classes, (part,), selection.spec
    )
    options = ExportOptions(jobs=1, command=shlex.join(["medimeta", *sys.argv[1:]]))
    root = s.installed_root(selection.dataset.id)
    result = export_selection(root, subset, out.absolute(), options)
    s.out.status(f"sampled images {result.status} in {result.out}")
