"""``medimeta verify``: check installed datasets, and repair them on request."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Annotated

import typer

from medimeta_cli.cli.exit_codes import ExitCode
from medimeta_cli.cli.options import (
    DatasetIdsArgument,
    DebugOption,
    DomainOption,
    JsonOption,
    QuietOption,
    RootOption,
)
from medimeta_cli.cli.output import ProgressDisplay
from medimeta_cli.cli.session import session
from medimeta_cli.errors import NotInstalledError

if TYPE_CHECKING:
    from medimeta_cli.cli.output import Output
    from medimeta_cli.verify import Report


def verify_command(
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
    root: RootOption = None,
    json: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Check installed datasets: files present with their recorded size and stamp (default),
    content hashes (--full) or the upstream structure too (--deep).

    With no ids, every installed dataset is checked. Exits with code 4 when anything is wrong.
    """
    with session(root=root, json_mode=json, quiet=quiet, debug=debug) as s:
        from medimeta_cli.cache import RootLayout
        from medimeta_cli.cli.cmd_download import event_sink, select_datasets
        from medimeta_cli.verify import bytes_to_hash, verify_dataset

        layout = RootLayout(s.settings.root)
        if dataset_ids or domain:
            datasets = select_datasets(s.catalog, dataset_ids, domain, False)
            named = {d.id for d in s.catalog.resolve(dataset_ids or ())}  # ids are case-insensitive
            for dataset in datasets:
                if (
                    dataset.id in named
                    and not (layout.dataset_dir(dataset.id) / "info.yaml").is_file()
                ):
                    raise NotInstalledError(dataset.id, str(s.settings.root))
            datasets = tuple(
                d for d in datasets if (layout.dataset_dir(d.id) / "info.yaml").is_file()
            )
        else:
            datasets = tuple(
                d for d in s.catalog.datasets if (layout.dataset_dir(d.id) / "info.yaml").is_file()
            )
        mode = "deep" if deep else "full" if full else "fast"
        reports = []
        with ProgressDisplay(s.out, verb="hashing") as display:
            for dataset in datasets:
                if mode != "fast":
                    display.start(dataset.id, bytes_to_hash(layout, dataset))
                reports.append(
                    verify_dataset(
                        layout,
                        dataset,
                        mode=mode,
                        jobs=jobs,
                        on_bytes=partial(display.advance, dataset.id),
                    )
                )
        if json:
            s.out.emit_json([report.to_json() for report in reports])
        else:
            _print_reports(s.out, reports)
        damaged = [r for r in reports if not r.ok]
        if repair and damaged:
            from medimeta_cli.download import Downloader

            downloader = Downloader(s.settings, s.catalog)
            try:
                with ProgressDisplay(s.out) as display:
                    downloader.on_event = event_sink(display)
                    outcomes = downloader.download(
                        [s.catalog.get(r.dataset_id) for r in damaged],
                        force=True,
                    )
            finally:
                downloader.close()
            for outcome in outcomes:
                if outcome.error is not None:
                    s.out.error(outcome.error)
                else:
                    s.out.status(f"repaired {outcome.dataset_id}")
            if any(outcome.error is not None for outcome in outcomes):
                raise typer.Exit(int(ExitCode.INTEGRITY))
            return
        if not reports:
            s.out.status("no installed datasets to verify")
        if damaged:
            raise typer.Exit(int(ExitCode.INTEGRITY))


def _print_reports(out: Output, reports: list[Report]) -> None:
    from medimeta_cli.fsutil import human_bytes

    for report in reports:
        speed = ""
        if report.bytes_hashed:
            rate = report.bytes_hashed / max(report.seconds, 1e-6)
            speed = f"  ({human_bytes(report.bytes_hashed)} at {human_bytes(rate)}/s)"
        out.emit_text(
            f"{report.status:<10}{report.dataset_id:<17}{report.files_checked} files{speed}"
        )
        shown = report.problems[:20]
        for problem in shown:
            out.emit_text(f"    {problem.describe()}")
        if len(report.problems) > len(shown):
            out.emit_text(f"    ... and {len(report.problems) - len(shown)} more")
