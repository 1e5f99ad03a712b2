"""Turning command-line values into what the core takes: dataset selections and value lists."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from medimeta_cli.catalog.datasets import Catalog, Dataset, Task
from medimeta_cli.cli.output import Output
from medimeta_cli.errors import UsageError

if TYPE_CHECKING:
    from medimeta_cli.cli.session import Session
    from medimeta_cli.dataset.sources import Sources


def select_datasets(
    out: Output,
    catalog: Catalog,
    ids: list[str] | None,
    domains: list[str] | None,
    everything: bool,
) -> tuple[Dataset, ...]:
    """Datasets named by ids, ``--domain`` and ``--all``, without duplicates; a ``--domain``
    name that is also a dataset id is said once on stderr (:func:`in_domains`)."""
    chosen = catalog.select(
        ids or (),
        domains or (),
        everything,
        hint="Name dataset ids (medimeta download crc), or use --domain NAME or --all.",
    )
    warn_domain_ids(out, catalog, domains or ())
    return chosen


def sources_selection(
    s: Session,
    target: str | None,
    all_tasks: bool,
    *,
    ids: Sequence[str] | None = None,
    domains: Sequence[str] | None = None,
    everything: bool = False,
) -> Sources | None:
    """``--sources-for TARGET`` (with ``--all-tasks``): the target's meta-training sources
    (:func:`medimeta_cli.dataset.sources.sources_for`), or None without it. It is a
    selection of its own, so naming ids, ``--domain`` or ``--all`` beside it is refused,
    as is ``--all-tasks`` without it."""
    if target is None:
        if all_tasks:
            raise UsageError(
                "--all-tasks needs --sources-for",
                hint="Use --sources-for TARGET --all-tasks.",
            )
        return None
    given = [
        name
        for name, on in (("dataset ids", ids), ("--domain", domains), ("--all", everything))
        if on
    ]
    if given:
        raise UsageError(
            f"--sources-for cannot be combined with {' or '.join(given)}: it selects the "
            "datasets itself",
            hint="Use --sources-for TARGET alone, or name the datasets.",
        )
    from medimeta_cli.dataset.sources import sources_for

    settings = s.settings
    return sources_for(s.catalog, settings.root, settings.shared_roots, target, all_tasks=all_tasks)


def in_domains(out: Output, catalog: Catalog, domains: Sequence[str]) -> tuple[Dataset, ...]:
    """``--domain``: datasets in the named domains or aliases (they win over ids); a name
    that is also a dataset id is said once on stderr."""
    chosen = catalog.in_domains(domains)
    warn_domain_ids(out, catalog, domains)
    return chosen


def warn_domain_ids(out: Output, catalog: Catalog, domains: Sequence[str]) -> None:
    """One warning per ``--domain`` name that selects more than the dataset of that id."""
    for notice in catalog.domain_notices(domains):
        out.warn(notice)


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
