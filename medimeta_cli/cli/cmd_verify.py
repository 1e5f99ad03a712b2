"""``medimeta verify``: check installed datasets, and repair them on request."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Annotated

import typer

from medimeta_cli.cli.exit_codes import ExitCode
from medimeta_cli.cli.options import (
    CommonOptions,
    DatasetIdsArgument,
    DomainOption,
    with_common_options,
)
from medimeta_cli.cli.progress import ProgressDisplay
from medimeta_cli.cli.session import session

if TYPE_CHECKING:
    from medimeta_cli.catalog.datasets import Dataset
    from medimeta_cli.cli.output import Output
    from medimeta_cli.cli.session import Session
    from medimeta_cli.dataset.verify import Report, VerifyMode


#: Command lines the help shows under "Examples".
EXAMPLES = (
    "medimeta verify",
    "medimeta verify crc --full",
    "medimeta verify crc --repair",
)


@with_common_options()
def verify_command(
    common: CommonOptions,
    dataset_ids: DatasetIdsArgument = None,
    domain: DomainOption = None,
    full: Annotated[
        bool, typer.Option("--full", help="Re-hash every file against the install record.")
    ] = False,
    deep: Annotated[
        bool,
        typer.Option(
            "--deep",
            help="--full, plus the structure: info.yaml, images.hdf5, labels and splits.",
        ),
    ] = False,
    repair: Annotated[
        bool, typer.Option("--repair", help="Download again what is damaged.")
    ] = False,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", min=1, help="Threads hashing at once [default: all cores]."),
    ] = None,
) -> None:
    """Check installed datasets: files present with their recorded size and stamp (default),
    content hashes (--full) or the upstream structure too (--deep).

    With no ids, every installed dataset is checked. Exits with code 4 when anything is wrong.
    """
    with session(common) as s:
        from medimeta_cli.cli._installed import catalog_entry, local_ids
        from medimeta_cli.cli._selection import select_datasets
        from medimeta_cli.dataset.verify import VerifyMode, verify_dataset
        from medimeta_cli.store.layout import RootLayout
        from medimeta_cli.store.status import root_of

        local: list[str]  # installed datasets the catalog lacks, checked by their info.yaml
        if dataset_ids or domain:
            known = [i for i in dataset_ids or () if catalog_entry(s, i) is not None]
            local = [i for i in dataset_ids or () if i not in known]
            datasets = (
                select_datasets(s.out, s.catalog, known, domain, False) if known or domain else ()
            )
            for named in s.catalog.resolve(known):  # ids are case-insensitive
                s.installed_root(named.id)  # NotInstalledError for a named dataset
        else:
            datasets = s.catalog.datasets
            local = local_ids(s)
        # Each dataset is checked where it lives: the data root or a shared root.
        roots = {d.id: root for d in datasets if (root := root_of(s.locate(d.id))) is not None}
        datasets = tuple(d for d in datasets if d.id in roots)
        mode = VerifyMode.DEEP if deep else VerifyMode.FULL if full else VerifyMode.FAST
        reports: list[Report] = []
        with ProgressDisplay(s.out, verb="hashing") as display:
            for dataset in (*datasets, *(_local_dataset(s, i, mode, reports) for i in local)):
                if dataset is None:
                    continue
                root = roots.get(dataset.id) or s.installed_root(dataset.id)
                reports.append(
                    verify_dataset(
                        RootLayout(root),
                        dataset,
                        mode=mode,
                        jobs=jobs,
                        on_bytes=partial(display.advance, dataset.id),
                        on_start=partial(display.start, dataset.id),
                    )
                )
        if common.json:
            s.out.emit_json([report.to_json() for report in reports])
        else:
            _print_reports(s.out, reports, s.catalog.record.version)
        damaged = [r for r in reports if not r.ok]
        shared = [r.dataset_id for r in damaged if s.locate(r.dataset_id).shared]
        if repair and shared:
            s.out.warn(
                f"not repairing {', '.join(shared)}: in a shared root, which the tool never "
                "changes; tell whoever maintains it"
            )
        outside = [r.dataset_id for r in damaged if r.dataset_id in local]
        if repair and outside:
            s.out.warn(
                f"not repairing {', '.join(outside)}: not in the catalog, so there is no "
                "record to fetch it from; install it again with `medimeta download --from`"
            )
        repairable = [r for r in damaged if r.dataset_id not in (*shared, *outside)]
        if repair and repairable:
            _repair(s, [s.catalog.get(r.dataset_id) for r in repairable])
            damaged = [r for r in damaged if r.dataset_id in (*shared, *outside)]
        if not reports:
            s.out.status("no installed datasets to verify")
        if damaged:
            raise typer.Exit(int(ExitCode.INTEGRITY))


def _repair(s: Session, datasets: list[Dataset]) -> None:
    """Download damaged datasets again; exit with the integrity code if that fails."""
    from medimeta_cli.cli.progress import event_sink
    from medimeta_cli.download.run import Downloader

    downloader = Downloader(s.settings, s.catalog)
    try:
        with ProgressDisplay(s.out) as display:
            downloader.on_event = event_sink(display)
            outcomes = downloader.repair(datasets)
    finally:
        downloader.close()
    for outcome in outcomes:
        if outcome.error is not None:
            s.out.error(outcome.error)
        else:
            s.out.status(f"repaired {outcome.dataset_id}")
    if any(outcome.error is not None for outcome in outcomes):
        raise typer.Exit(int(ExitCode.INTEGRITY))


def _local_dataset(
    s: Session, dataset_id: str, mode: VerifyMode, reports: list[Report]
) -> Dataset | None:
    """An installed dataset outside the catalog, as its info.yaml describes it; None (and
    a damaged report) when that cannot be read, as nothing else describes it."""
    from medimeta_cli.dataset.gate import InfoError, read_info
    from medimeta_cli.dataset.verify import Problem, ProblemKind, Report, VerifyStatus

    folder = s.installed_root(dataset_id) / dataset_id
    try:
        return read_info(folder, dataset_id)
    except InfoError as error:
        problem = Problem("info.yaml", ProblemKind.STRUCTURE, error.reason)
        reports.append(Report(dataset_id, mode, VerifyStatus.DAMAGED, (problem,)))
        return None


def _print_reports(out: Output, reports: list[Report], version: str) -> None:
    from medimeta_cli.cli._installed import catalog_note
    from medimeta_cli.fsutil import human_bytes

    for report in reports:
        speed = ""
        if report.bytes_hashed:
            rate = report.bytes_hashed / max(report.seconds, 1e-6)
            speed = f"  ({human_bytes(report.bytes_hashed)} at {human_bytes(rate)}/s)"
        out.emit_text(
            f"{report.status.value:<10}{report.dataset_id:<17}{report.files_checked} files{speed}"
        )
        if report.catalog_differences:
            messages = [d.message for d in report.catalog_differences]
            out.emit_text(f"    note: {catalog_note(version, messages)}")
        shown = report.problems[:20]
        for problem in shown:
            out.emit_text(f"    {problem.describe()}")
        if len(report.problems) > len(shown):
            out.emit_text(f"    ... and {len(report.problems) - len(shown)} more")
