"""``medimeta stats ID``: class counts per split and task, and the pixels' mean and std."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from medimeta_cli.cli.options import CommonOptions, DatasetArgument, with_common_options
from medimeta_cli.cli.session import session

if TYPE_CHECKING:
    from medimeta_cli.dataset.stats import DatasetStats, TaskCounts

#: Command lines the help shows under "Examples".
EXAMPLES = (
    "medimeta stats crc",
    'medimeta stats cxr --task "patient sex" --split val',
    "medimeta stats crc --json",
)

#: Width of the longest bar of the chart (in a terminal).
_BAR_WIDTH = 24


@with_common_options()
def stats_command(
    common: CommonOptions,
    dataset_id: DatasetArgument,
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            help="Count only this task (case-insensitive, or a unique beginning) "
            "[default: every task].",
            show_default=False,
        ),
    ] = None,
    split: Annotated[
        str,
        typer.Option("--split", help="The split whose pixels give the mean and std."),
    ] = "train",
) -> None:
    """Show class counts per split and task, and the per-channel mean and standard
    deviation of a split's pixels (0-1 scale), as torchvision's Normalize takes them.

    The pixels are read in one pass, then cached beside the install record until the
    data changes.
    """
    with session(common) as s:
        from medimeta_cli.dataset.stats import dataset_stats

        settings = s.settings
        result = dataset_stats(
            s.catalog,
            settings.root,
            settings.shared_roots,
            dataset_id,
            task=task,
            split=split.strip().lower(),
        )
        if common.json:
            s.out.emit_json(result.to_json())
            return
        if not s.out.stdout_color:
            s.out.emit_text(render(result))
            return
        for counts in result.tasks:
            headers = ["key", "label", "train", "val", "test", "train share"]
            rows = [
                [*row, bar]
                for row, bar in zip(result.count_rows(counts), _bars(counts), strict=True)
            ]
            s.out.emit_table(headers, rows, title=_title(counts), shrink_first=(1,))
        s.out.emit_text("\n".join(result.pixel_lines()))


def _title(counts: TaskCounts) -> str:
    images = ", ".join(f"{split} {n:,}" for split, n in counts.images.items())
    return f"{counts.task.name} ({counts.task.target.value}; images: {images})"


def _bars(counts: TaskCounts) -> list[str]:
    """A bar per class, its length the class's share of the largest train count."""
    train = [c.counts["train"] for c in counts.classes]
    top = max(train, default=0) or 1
    return [
        "█" * round(_BAR_WIDTH * n / top) + f" {100 * n / max(1, sum(train)):.0f}%" for n in train
    ]


def render(result: DatasetStats) -> str:
    """The plain-text report (what a pipe gets), for tests and scripts."""
    from medimeta_cli.cli.output import plain_table

    parts = []
    for counts in result.tasks:
        headers = ["key", "label", "train", "val", "test"]
        parts.append(_title(counts) + "\n" + plain_table(headers, result.count_rows(counts)))
    parts.append("\n".join(result.pixel_lines()))
    return "\n\n".join(parts)
