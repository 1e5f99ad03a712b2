"""``medimeta verify``: check installed datasets, and repair them on request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from medimeta_cli.cli.exit_codes import ExitCode
from medimeta_cli.cli.options import (
    AllTasksOption,
    CommonOptions,
    DatasetIdsArgument,
    DomainOption,
    SourcesForOption,
    with_common_options,
)
from medimeta_cli.cli.progress import ProgressDisplay
from medimeta_cli.cli.session import session

if TYPE_CHECKING:
    from medimeta_cli.catalog.datasets import Dataset
    from medimeta_cli.cli.output import Output
    from medimeta_cli.cli.session import Session
    from medimeta_cli.dataset.verify import Report


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
    sources_for: SourcesForOption = None,
    all_tasks: AllTasksOption = False,
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

    With no ids, every installed dataset is checked; with --sources-for, the meta-training
    sources of that target (each must be installed). Exits with code 4 when anything is
    wrong.
    """
    with session(common) as s:
        from medimeta_cli.cli._selection import sources_selection, warn_domain_ids
        from medimeta_cli.dataset.verify import VerifyMode
        from medimeta_cli.dataset.verify_installed import VerifyRequest, verify_installed

        mode = VerifyMode.DEEP if deep else VerifyMode.FULL if full else VerifyMode.FAST
        sources = sources_selection(s, sources_for, all_tasks, ids=dataset_ids, domains=domain)
        named = sources.ids if sources is not None else tuple(dataset_ids or ())
        request = VerifyRequest(named, tuple(domain or ()), mode, jobs)
        warn_domain_ids(s.out, s.catalog, domain or ())
        with ProgressDisplay(s.out, verb="hashing") as display:
            reports = verify_installed(
                s.settings, s.catalog, request, on_start=display.start, on_bytes=display.advance
            )
        local = {r.dataset_id for r in reports} - set(s.catalog.ids)
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
            outcomes = downloader.reinstall(datasets)
    finally:
        downloader.close()
    for outcome in outcomes:
        if outcome.error is not None:
            s.out.error(outcome.error)
        else:
            s.out.status(f"repaired {outcome.dataset_id}")
    if any(outcome.error is not None for outcome in outcomes):
        raise typer.Exit(int(ExitCode.INTEGRITY))


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
