"""The verify use case, shared by ``medimeta verify`` and :func:`medimeta_cli.api.verify`.

Which installed datasets to check (named ids, domains, or every installed one, those
outside the catalog included), where each lives (the data root or a shared root), and one
:class:`~medimeta_cli.dataset.verify.Report` each. Repairs are the caller's: the command
line reinstalls what is damaged and in its own data root.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from medimeta_cli.catalog.datasets import Catalog, Dataset
from medimeta_cli.dataset.gate import InfoError, read_info
from medimeta_cli.dataset.installed import catalog_entry_or_installed, installed_ids
from medimeta_cli.dataset.verify import (
    Problem,
    ProblemKind,
    Report,
    VerifyMode,
    VerifyStatus,
    verify_dataset,
)
from medimeta_cli.errors import NotInstalledError
from medimeta_cli.settings import Settings
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.status import locate, root_of

__all__ = ["VerifyRequest", "verify_installed"]


@dataclass(frozen=True)
class VerifyRequest:
    """What to verify: named ids (the catalog's, or installed ones outside it) and domains,
    or, with neither, every installed dataset."""

    dataset_ids: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    mode: VerifyMode = VerifyMode.FAST
    jobs: int | None = None


def verify_installed(
    settings: Settings,
    catalog: Catalog,
    request: VerifyRequest,
    *,
    on_start: Callable[[str, int], None] | None = None,
    on_bytes: Callable[[str, int], None] | None = None,
) -> list[Report]:
    """One report per chosen dataset, checked where it lives.

    A named dataset that is not installed raises :class:`NotInstalledError`; without ids
    or domains, datasets that are not installed are left out. A dataset outside the
    catalog is checked against its own ``info.yaml``; one whose ``info.yaml`` the gate
    refuses gets a damaged report (nothing else describes it). ``on_start(id, total)``
    and ``on_bytes(id, count)`` follow the hashing of a full or deep check.
    """
    roots = (settings.root, *settings.shared_roots)
    if request.dataset_ids or request.domains:
        entries = {
            i: catalog_entry_or_installed(catalog, settings.root, settings.shared_roots, i)
            for i in request.dataset_ids
        }
        local = [i for i, entry in entries.items() if entry is None]
        known = [entry.id for entry in entries.values() if entry is not None]
        # A dataset named by its id must be installed; one a domain brings need not be.
        for dataset_id in known:
            if root_of(locate(settings.root, settings.shared_roots, dataset_id)) is None:
                raise NotInstalledError(dataset_id, ", ".join(str(r) for r in roots))
        chosen: Sequence[Dataset] = (
            catalog.select(known, request.domains) if known or request.domains else ()
        )
    else:
        chosen = catalog.datasets
        local = [i for i in installed_ids(roots) if i not in set(catalog.ids)]
    reports: list[Report] = []
    for dataset_id, dataset in [*((d.id, d) for d in chosen), *((i, None) for i in local)]:
        where = root_of(locate(settings.root, settings.shared_roots, dataset_id))
        if where is None:
            continue  # brought by a domain, or by none: not installed, nothing to check
        layout = RootLayout(where)
        described = dataset or _described(layout, dataset_id, request.mode, reports)
        if described is None:
            continue
        reports.append(
            verify_dataset(
                layout,
                described,
                mode=request.mode,
                jobs=request.jobs,
                on_bytes=partial(on_bytes, dataset_id) if on_bytes else _ignore,
                on_start=partial(on_start, dataset_id) if on_start else None,
            )
        )
    return reports


def _ignore(count: int) -> None:
    """No one follows the hashing."""


def _described(
    layout: RootLayout, dataset_id: str, mode: VerifyMode, reports: list[Report]
) -> Dataset | None:
    """An installed dataset outside the catalog, as its info.yaml describes it; None (and
    a damaged report) when the gate refuses that, as nothing else describes it."""
    try:
        return read_info(layout.dataset_dir(dataset_id), dataset_id)
    except InfoError as error:
        problem = Problem("info.yaml", ProblemKind.STRUCTURE, error.reason)
        reports.append(Report(dataset_id, mode, VerifyStatus.DAMAGED, (problem,)))
        return None
