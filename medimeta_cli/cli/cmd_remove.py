"""``medimeta remove``: delete installed datasets from the data root."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from medimeta_cli.cli.exit_codes import ExitCode
from medimeta_cli.cli.options import (
    CommonOptions,
    DatasetIdsArgument,
    DomainOption,
    with_common_options,
)
from medimeta_cli.cli.session import session
from medimeta_cli.errors import PermissionDeniedError, UsageError

if TYPE_CHECKING:
    from medimeta_cli.cli.output import Output
    from medimeta_cli.cli.session import Session
    from medimeta_cli.store.remove import DiskUsage, RemovedInfo


def stdin_is_terminal() -> bool:
    """Whether someone can answer a question (scripts and pipes cannot)."""
    return sys.stdin is not None and sys.stdin.isatty()


#: Command lines the help shows under "Examples".
EXAMPLES = (
    "medimeta remove crc",
    "medimeta remove --domain dermatology --yes",
)


@with_common_options()
def remove_command(
    common: CommonOptions,
    dataset_ids: DatasetIdsArgument = None,
    domain: DomainOption = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Remove without asking (needed in scripts).")
    ] = False,
) -> None:
    """Delete installed datasets from the data root, after showing what and how much.

    Asks first unless --yes. Datasets in shared roots (MEDIMETA_PATH) are never touched.
    """
    with session(common) as s:
        from medimeta_cli.fsutil import human_bytes
        from medimeta_cli.store.layout import RootLayout
        from medimeta_cli.store.remove import dataset_usage, remove_dataset

        targets = _targets(s, dataset_ids, domain)
        if not targets:
            s.out.status("nothing to remove")
            if common.json:
                s.out.emit_json([])
            return
        layout = RootLayout(s.settings.root)
        usages = {d.id: dataset_usage(layout, d.id) for d in targets}
        if not yes:
            _confirm(s.out, targets, usages, str(s.settings.root))
        results = []
        for dataset in targets:
            result = remove_dataset(
                layout,
                dataset.id,
                archive_key=dataset.archive,
                lock_timeout=s.settings.lock_timeout,
                locks=s.settings.locks,
                on_wait=s.out.status,
            )
            results.append(result)
            if not common.json:
                extra = ""
                if result.partial_bytes:
                    extra = f" + {human_bytes(result.partial_bytes)} of partial downloads"
                s.out.emit_text(
                    f"removed   {result.dataset_id:<17}{result.path}  "
                    f"({human_bytes(result.bytes_freed)}, {result.files:,} files{extra})"
                )
        if common.json:
            s.out.emit_json([result.to_json() for result in results])
        _report_leftovers(s.out, results)


@dataclass(frozen=True)
class _Target:
    """An installed dataset to remove: its id and the archive its partials belong to."""

    id: str
    archive: str


def _targets(s: Session, ids: list[str] | None, domains: list[str] | None) -> list[_Target]:
    """The datasets to remove; named ones must be installed in the data root itself. An id
    the catalog lacks names a dataset installed from elsewhere (``download --from``)."""
    from medimeta_cli.cli._installed import catalog_entry
    from medimeta_cli.cli._selection import select_datasets
    from medimeta_cli.errors import NotInstalledError
    from medimeta_cli.store.status import State, root_of

    if not ids and not domains:
        raise UsageError(
            "no datasets given",
            hint="Name dataset ids (medimeta remove crc) or use --domain NAME.",
        )
    # Ids outside the catalog: installed ones (in any root), else UnknownDatasetError.
    outside = [i for i in ids or () if catalog_entry(s, i) is None]
    known = [i for i in ids or () if i not in outside]
    named = {d.id for d in s.catalog.resolve(known)} | set(outside)
    chosen = select_datasets(s.out, s.catalog, known, domains, False) if known or domains else ()
    candidates = [_Target(d.id, d.archive) for d in chosen]
    candidates += [_Target(i, f"{i}.zip") for i in dict.fromkeys(outside)]
    targets = []
    for target in candidates:
        status = s.locate(target.id)
        if status.state in (State.ABSENT, State.PARTIAL):
            if target.id in named:
                error = NotInstalledError(target.id, str(s.settings.root))
                error.hint = (
                    "A partial download is all there is; `medimeta prune` deletes stale ones."
                    if status.state is State.PARTIAL
                    else "There is nothing to remove; `medimeta list --installed` shows what is."
                )
                raise error
            continue
        if status.shared:
            where = root_of(status)
            if target.id in named:
                raise PermissionDeniedError(
                    f"{target.id} is in the shared root {where}; "
                    "the tool never changes shared roots",
                    hint=f"Ask whoever manages {where} to remove it, or leave it out of "
                    "MEDIMETA_PATH.",
                )
            s.out.status(f"skipping {target.id}: it is in the shared root {where}")
            continue
        targets.append(target)
    return targets


def _confirm(out: Output, targets: list[_Target], usages: dict[str, DiskUsage], root: str) -> None:
    """Show what goes and ask; refuse to ask where nobody can answer."""
    from medimeta_cli.fsutil import human_bytes

    total = sum(usage.bytes for usage in usages.values())
    for dataset in targets:
        usage = usages[dataset.id]
        how = "" if usage.recorded else " (measured: not installed by this tool)"
        out.status(f"  {dataset.id:<17}{human_bytes(usage.bytes):>10}  {usage.files:,} files{how}")
    what = targets[0].id if len(targets) == 1 else f"{len(targets)} datasets"
    if not stdin_is_terminal():
        raise UsageError(
            f"not removing {what} without confirmation: standard input is not a terminal",
            hint="Pass --yes to remove without asking.",
        )
    if not typer.confirm(
        f"Remove {what} ({human_bytes(total)}) from {root}?", default=False, err=True
    ):
        out.status("nothing removed")
        raise typer.Exit(int(ExitCode.FAILURE))


def _report_leftovers(out: Output, results: list[RemovedInfo]) -> None:
    """Say what stays: kept archives, and files that could not be deleted."""
    failed = False
    for result in results:
        if result.kept_archive is not None:
            out.status(
                f"{result.dataset_id}: the kept archive {result.kept_archive} stays "
                "(`medimeta prune --archives` deletes kept archives)"
            )
        if result.leftover is not None:
            failed = True
            out.warn(
                f"{result.dataset_id} is gone from the root, but some of its files could not "
                f"be deleted ({result.error}); they are in {result.leftover}, which "
                "`medimeta prune` deletes once that is possible"
            )
    if failed:
        raise typer.Exit(int(ExitCode.PERMISSION))
