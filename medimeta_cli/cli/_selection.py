"""Turning command-line values into what the core takes: dataset selections and value lists."""

from __future__ import annotations

from medimeta_cli.catalog import Catalog, Dataset, Task
from medimeta_cli.errors import UsageError


def select_datasets(
    catalog: Catalog, ids: list[str] | None, domains: list[str] | None, everything: bool
) -> tuple[Dataset, ...]:
    """Datasets named by ids, ``--domain`` and ``--all``, without duplicates."""
    if everything:
        return catalog.datasets
    chosen = list(catalog.resolve(ids or ()))
    if domains:
        chosen += catalog.in_domains(domains)
    if not chosen:
        raise UsageError(
            "no datasets given",
            hint="Name dataset ids (medimeta download crc), or use --domain NAME or --all.",
        )
    return tuple(dict.fromkeys(chosen))


def split_values(values: list[str] | None) -> tuple[str, ...] | None:
    """``["a,b", "c"]`` -> ``("a", "b", "c")``; None stays None."""
    if not values:
        return None
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())


def task_name_notice(dataset_id: str, asked: str | None, task: Task) -> str | None:
    """A line naming the exact task when ``asked`` matched it only case-insensitively.

    The command line accepts ``clarity`` for ``Clarity``; the official loader does not,
    so whoever copies the name into a script must see the exact one.
    """
    if asked is None or asked == task.name:
        return None
    return (
        f"task {asked!r} is {task.name!r}; the official loader needs the exact name: "
        f"MedIMeta(root, {dataset_id!r}, {task.name!r})"
    )
