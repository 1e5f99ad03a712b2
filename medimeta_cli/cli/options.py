"""Options shared by several commands, declared once.

Every command accepts the common options after its name (``medimeta list --json
--root DIR``), which is how shell scripts write them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medimeta_cli.catalog import TaskTarget


def complete_dataset_id(incomplete: str) -> list[str]:
    """Shell completion for dataset ids."""
    from medimeta_cli.catalog import load_catalog

    return [i for i in load_catalog().ids if i.startswith(incomplete.lower())]


def complete_domain(incomplete: str) -> list[str]:
    """Shell completion for --domain: aliases and dataset ids (domains contain spaces)."""
    from medimeta_cli.catalog import DOMAIN_ALIASES, load_catalog

    names = [*DOMAIN_ALIASES, *(d.lower().replace(" ", "-") for d in load_catalog().domains)]
    return [name for name in names if name.startswith(incomplete.lower())]


RootOption = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="Data root [env: MEDIMETA_HOME; default: the user cache folder].",
        show_default=False,
        file_okay=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print nothing on stderr but errors.")
]
DebugOption = Annotated[
    bool,
    typer.Option("--debug", help="Show tracebacks and debug logs [env: MEDIMETA_DEBUG]."),
]
OfflineOption = Annotated[
    bool,
    typer.Option("--offline", help="Never touch the network [env: MEDIMETA_OFFLINE]."),
]
DomainOption = Annotated[
    list[str] | None,
    typer.Option(
        "--domain",
        "-d",
        help="Domain, alias (ophthalmology, radiology, dermatology, pathology, ...) or "
        "dataset id; repeat for several.",
        autocompletion=complete_domain,
        show_default=False,
    ),
]
TaskTypeOption = Annotated[
    list[TaskTarget] | None,
    typer.Option(
        "--task-type",
        "-t",
        help="Only datasets with a task of this type; repeat for several.",
        case_sensitive=False,
        show_default=False,
    ),
]
DatasetArgument = Annotated[
    str, typer.Argument(help="Dataset id, e.g. crc.", autocompletion=complete_dataset_id)
]
DatasetIdsArgument = Annotated[
    list[str] | None,
    typer.Argument(
        help="Dataset ids, e.g. crc cxr.", autocompletion=complete_dataset_id, show_default=False
    ),
]
AllOption = Annotated[bool, typer.Option("--all", help="Every dataset of MedIMeta.")]
JobsOption = Annotated[
    int,
    typer.Option("--jobs", "-j", min=1, max=16, help="Datasets to download at once."),
]
LockTimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--lock-timeout",
        min=0,
        help="Seconds to wait for another job holding a dataset [env: MEDIMETA_LOCK_TIMEOUT].",
        show_default=False,
    ),
]
TaskOption = Annotated[
    str | None,
    typer.Option(
        "--task",
        help="Task name (case-insensitive); needed when the dataset has several.",
        show_default=False,
    ),
]
OriginalSplitOption = Annotated[
    bool,
    typer.Option(
        "--original-split",
        help="Use the source datasets' own splits (original_splits/) instead of MedIMeta's.",
    ),
]
ClassesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--classes",
        help="Only these classes: label names or keys, repeated or comma-separated.",
        show_default=False,
    ),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of every random choice.")]
