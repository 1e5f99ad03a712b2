"""``medimeta download``: fetch, verify and install dataset archives."""

from __future__ import annotations

import signal
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from medimeta_cli.cli._selection import select_datasets, sources_selection
from medimeta_cli.cli.exit_codes import exit_code_for
from medimeta_cli.cli.options import (
    AllOption,
    AllTasksOption,
    CommonOptions,
    DatasetIdsArgument,
    DomainOption,
    SourcesForOption,
    with_common_options,
)
from medimeta_cli.cli.output import Output
from medimeta_cli.cli.progress import ProgressDisplay, event_sink
from medimeta_cli.cli.session import session
from medimeta_cli.dataset.layouts import ArchiveLayout
from medimeta_cli.download.plan import UrlFormat

if TYPE_CHECKING:
    from medimeta_cli.catalog.datasets import Catalog
    from medimeta_cli.download.plan import Plan
    from medimeta_cli.events import Outcome
    from medimeta_cli.install.offers import Offered
    from medimeta_cli.settings import Settings


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Let SIGTERM (scancel, kill) stop a transfer as cleanly as Ctrl-C does."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


#: Command lines the help shows under "Examples".
EXAMPLES = (
    "medimeta download crc",
    "medimeta download --domain radiology --dry-run",
    "medimeta download cxr --layout hdf5 --jobs 2",
    "medimeta download --from ~/Downloads/medimeta/",
)


@with_common_options()
def download_command(
    common: CommonOptions,
    dataset_ids: DatasetIdsArgument = None,
    domain: DomainOption = None,
    everything: AllOption = False,
    sources_for: SourcesForOption = None,
    all_tasks: AllTasksOption = False,
    force: Annotated[
        bool, typer.Option("--force", help="Download and reinstall even if installed.")
    ] = False,
    keep_archive: Annotated[
        bool,
        typer.Option("--keep-archive", help="Keep the zip in <root>/.medimeta/archives/."),
    ] = False,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs", "-j", min=1, max=16, help="Datasets to download at once [default: 2]."
        ),
    ] = None,
    connections: Annotated[
        int | None,
        typer.Option(
            "--connections",
            min=1,
            help="HTTP connections of the whole run, shared by the datasets fetched at once; "
            "1: one stream per archive [env: MEDIMETA_CONNECTIONS; default: 8].",
            show_default=False,
        ),
    ] = None,
    layout: Annotated[
        ArchiveLayout | None,
        typer.Option(
            "--layout",
            help="full: the whole archive; hdf5: only what the loader reads (about half) "
            "[default: full].",
            case_sensitive=False,
            show_default=False,
        ),
    ] = None,
    with_masks: Annotated[
        bool, typer.Option("--with-masks", help="hdf5 layout: also fetch the organ masks.")
    ] = False,
    stream: Annotated[
        bool,
        typer.Option(
            "--stream",
            help="Install while downloading: members go straight into place and the archive "
            "never exists on disk (peak disk about the installed size; one connection per "
            "archive). Chosen by itself when the disk cannot hold archive and extraction.",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show what would be fetched, its size and the free space."),
    ] = False,
    print_urls: Annotated[
        bool,
        typer.Option(
            "--print-urls",
            help="Print the archives' URLs for another downloader (see --url-format).",
        ),
    ] = False,
    url_format: Annotated[
        UrlFormat | None,
        typer.Option(
            "--url-format",
            help="Implies --print-urls. tsv (the default): URL, size, md5 and file name; or an "
            "input file for `aria2c -c -i FILE`, `curl -K FILE` or "
            "`wget -c --content-disposition -i FILE`, each saving <id>.zip.",
            case_sensitive=False,
            show_default=False,
        ),
    ] = None,
    print_paths: Annotated[
        bool,
        typer.Option(
            "--print-paths",
            help="Print only the installed dataset folders on stdout, one a line, for "
            "scripts: dir=$(medimeta download ID --print-paths). Everything else goes to stderr.",
        ),
    ] = False,
    record: Annotated[
        str | None,
        typer.Option(
            "--record",
            help="Fetch from this version of the record: 'latest' (asked for from the server: "
            "one request) or a record id [env: MEDIMETA_RECORD]. Installed datasets of "
            "another version are kept unless --force.",
            show_default=False,
        ),
    ] = None,
    from_paths: Annotated[
        list[Path] | None,
        typer.Option(
            "--from",
            help=(
                "Install data fetched by other means: a zip file, a folder of <id>.zip, "
                "or an unzipped dataset folder <id>/ (holding info.yaml)."
            ),
            show_default=False,
        ),
    ] = None,
) -> None:
    """Download datasets from Zenodo, verify them and install them into the data root.

    Resumes interrupted downloads, waits for other jobs fetching the same dataset,
    and never leaves a half-installed dataset behind.
    """
    with session(common) as s:
        from medimeta_cli.download.run import Downloader
        from medimeta_cli.events import DownloadInterrupted

        settings = s.settings
        if connections is not None:  # a download-only setting: the flag wins over the variable
            sources = {**settings.sources, "connections": "--connections flag"}
            settings = replace(settings, connections=connections, sources=sources)
        if record is not None:
            settings = _with_record(s.out, settings, record, force=force)
        print_urls = print_urls or url_format is not None
        _check_print_paths(print_paths, json_mode=common.json, listing=print_urls or dry_run)
        downloader = Downloader(settings, s.catalog)
        archive_layout = layout or ArchiveLayout.FULL
        try:
            if from_paths:
                given = {
                    "domain": domain,
                    "everything": everything,
                    "sources_for": sources_for,
                    "all_tasks": all_tasks,
                    "layout": layout,
                    "with_masks": with_masks,
                    "stream": stream,
                    "keep_archive": keep_archive,
                    "jobs": jobs,
                    "connections": connections,
                    "print_urls": print_urls,
                    "url_format": url_format,
                }
                _refuse_with_from(given, dataset_ids or [])
                ids = dataset_ids or []
                if dry_run:
                    offered = downloader.offer_from(from_paths, force=force, dataset_ids=ids)
                    _print_offered(s.out, offered, common.json)
                    return
                with ProgressDisplay(s.out, verb="checking") as display:
                    downloader.on_event = event_sink(display)
                    outcomes = downloader.install_from(from_paths, force=force, dataset_ids=ids)
                _report_outcomes(s.out, outcomes, common.json, print_paths)
                return
            training = sources_selection(
                s, sources_for, all_tasks, ids=dataset_ids, domains=domain, everything=everything
            )
            datasets = (
                training.datasets
                if training is not None
                else select_datasets(s.out, s.catalog, dataset_ids, domain, everything)
            )
            if print_urls or dry_run:
                plan = downloader.plan(
                    datasets,
                    force=force,
                    jobs=jobs or 2,
                    keep_archive=keep_archive,
                    archive_layout=archive_layout,
                    with_masks=with_masks,
                    stream=stream,
                )
                if print_urls:
                    _print_urls(s.out, plan, common.json, url_format or UrlFormat.TSV)
                else:
                    _print_plan(s.out, plan, common.json)
                _report_not_in_record(s.out, plan, settings.record_id, s.catalog)
                return
            try:
                with sigterm_as_interrupt(), ProgressDisplay(s.out) as display:
                    downloader.on_event = event_sink(display)
                    if force and layout is None and not with_masks:
                        # Again, each in the layout it was installed in (full if it is not).
                        outcomes = downloader.reinstall(
                            datasets, jobs=jobs or 2, keep_archive=keep_archive, stream=stream
                        )
                    else:
                        outcomes = downloader.download(
                            datasets,
                            force=force,
                            keep_archive=keep_archive,
                            jobs=jobs or 2,
                            archive_layout=archive_layout,
                            with_masks=with_masks,
                            stream=stream,
                        )
            except DownloadInterrupted as stopped:
                # Say what did finish before saying it was interrupted.
                _report_finished(s.out, stopped.outcomes, common.json)
                raise
            archives = [d.archive for d in s.catalog.datasets]
            _report_outcomes(s.out, outcomes, common.json, print_paths, archives)
        finally:
            downloader.close()


#: Options that cannot apply to data fetched by other means, and why: refused with
#: --from rather than silently ignored.
_NOT_WITH_FROM = {
    "domain": ("--domain", "ids select among what --from offers"),
    "everything": ("--all", "without ids, everything --from offers is installed"),
    "sources_for": ("--sources-for", "ids select among what --from offers"),
    "all_tasks": ("--all-tasks", "it goes with --sources-for"),
    "layout": ("--layout", "the archive is there already and is installed in full"),
    "with_masks": ("--with-masks", "it goes with --layout hdf5"),
    "stream": ("--stream", "nothing is downloaded"),
    "keep_archive": ("--keep-archive", "the archive given is yours and stays where it is"),
    "jobs": ("--jobs", "what --from offers is installed one after another"),
    "connections": ("--connections", "nothing is downloaded"),
    "url_format": ("--url-format", "nothing is downloaded"),
    "print_urls": ("--print-urls", "nothing is downloaded"),
}


def _with_record(out: Output, settings: Settings, which: str, *, force: bool) -> Settings:
    """The settings of a run from record ``which`` (``--record``); with ``latest``, says
    which version that is and which installed datasets are older (kept unless --force)."""
    from medimeta_cli.zenodo.source import resolve_record

    settings, report = resolve_record(settings, which)
    if report is None:
        return settings
    latest = report.latest
    when = f", published {latest.published}" if latest.published else ""
    version = f" (version {latest.version}{when})" if latest.version else ""
    out.status(
        f"the latest version of record {report.current.record_id} is record "
        f"{latest.record_id}{version}"
    )
    for update in report.behind:
        said = {True: "changed", False: "unchanged", None: "not comparable"}[update.changed]
        action = "will be replaced (--force)" if force else "kept as it is (--force replaces it)"
        out.warn(
            f"{update.dataset_id}: installed from record {update.installed_record}; "
            f"{update.archive_key} in the latest version: {said}; {action}"
        )
    return settings


def _refuse_with_from(given: Mapping[str, object], dataset_ids: list[str]) -> None:
    """With --from: refuse options that cannot apply (``given``: each option's value, None
    or False when not given) and positional arguments that are paths (each path takes its
    own --from; a positional argument is a dataset id that selects among what --from
    offers)."""
    import os

    from medimeta_cli.errors import UsageError

    for name, (flag, why) in _NOT_WITH_FROM.items():
        if given[name] not in (None, False, []):
            raise UsageError(
                f"{flag} cannot be combined with --from: {why}",
                hint=f"Drop {flag}; --from installs data fetched by other means.",
            )
    for argument in dataset_ids:
        if "/" in argument or argument.endswith(".zip") or os.path.lexists(argument):
            raise UsageError(
                f"{argument!r} is a path, not a dataset id: with --from, the arguments are "
                "ids that select among what --from offers",
                hint=f"Give each path its own --from (--from {argument}), or name a dataset id.",
            )


def _print_offered(out: Output, offered: list[Offered], json_mode: bool) -> None:
    """The dry run of --from: what would be installed from where; nothing is written."""
    from medimeta_cli.fsutil import human_bytes
    from medimeta_cli.install.offers import OfferAction, Offered

    if json_mode:
        out.emit_json([item.to_json() for item in offered])
        return
    out.emit_table(list(Offered.COLUMNS), [item.row() for item in offered])
    todo = [item for item in offered if item.action is not OfferAction.SKIP]
    out.emit_text(
        f"would install {len(todo)} of {len(offered)} "
        f"({human_bytes(sum(item.size for item in todo))}); dry run: nothing was written"
    )


def _check_print_paths(print_paths: bool, *, json_mode: bool, listing: bool) -> None:
    """--print-paths goes with a download or --from only, and not with --json."""
    from medimeta_cli.errors import UsageError

    if print_paths and json_mode:
        raise UsageError(
            "--print-paths cannot be combined with --json",
            hint="Drop --print-paths: the JSON gives each dataset's folder as its 'path'.",
        )
    if print_paths and listing:
        raise UsageError(
            "--print-paths cannot be combined with --print-urls, --url-format or --dry-run",
            hint="Drop --print-paths: nothing is installed by a listing.",
        )


def _report_outcomes(
    out: Output,
    outcomes: list[Outcome],
    json_mode: bool,
    print_paths: bool = False,
    expected: Collection[str] = (),
) -> None:
    """Print what happened; exit with the code of the first failure. An error that several
    datasets share is said once (``expected``: the catalog's archives, to tell a wrong
    record). With ``print_paths``, stdout gets only the folders of the datasets that are
    there, the lines go to stderr."""
    from medimeta_cli.errors import said_once
    from medimeta_cli.events import OutcomeStatus

    if json_mode:
        out.emit_json([outcome.to_json() for outcome in outcomes])
    else:
        for outcome in outcomes:
            if outcome.status is OutcomeStatus.FAILED:  # failures: one error line below
                continue
            if print_paths:  # stderr: the error line below says the rest
                if outcome.error is None:
                    out.status(outcome.line())
            else:
                out.emit_text(outcome.line())
        if print_paths:
            for outcome in outcomes:
                if outcome.error is None and outcome.path is not None:
                    out.emit_text(str(outcome.path))
    errors = said_once(
        [(outcome.dataset_id, outcome.error) for outcome in outcomes if outcome.error],
        expected=expected,
    )
    for error in errors:
        out.error(error)
    if errors:
        raise typer.Exit(int(exit_code_for(errors[0])))


def _report_finished(out: Output, outcomes: list[Outcome], json_mode: bool) -> None:
    """What happened to each dataset before an interruption (errors included)."""
    if json_mode:
        out.emit_json([outcome.to_json() for outcome in outcomes])
        return
    for outcome in outcomes:
        if outcome.error is not None:
            out.error(outcome.error)
        else:
            out.emit_text(outcome.line())


def _print_urls(out: Output, plan: Plan, json_mode: bool, url_format: UrlFormat) -> None:
    from medimeta_cli.download.plan import url_lines

    if json_mode:
        out.emit_json([item.to_json() for item in plan.items])
        return
    lines = url_lines(plan.items, url_format)
    if lines:
        out.emit_text("\n".join(lines))
    if not plan.manifest_known:  # only offline without a saved manifest
        out.warn("sizes and md5s are unknown: no record manifest is saved and offline mode is on")


def _report_not_in_record(out: Output, plan: Plan, record_id: int, catalog: Catalog) -> None:
    """After a listing: the archives the record lacks, said once, and their exit code."""
    from medimeta_cli.errors import NotInRecordError

    held = plan.record_files
    missing = [NotInRecordError(record_id, item.key, held=held) for item in plan.not_in_record]
    if missing:
        error = NotInRecordError.together(missing, [d.archive for d in catalog.datasets])
        out.error(error)
        raise typer.Exit(int(exit_code_for(error)))


def _print_plan(out: Output, plan: Plan, json_mode: bool) -> None:
    if json_mode:
        out.emit_json(plan.to_json())
        return
    out.emit_table(list(plan.COLUMNS), [item.row() for item in plan.items])
    out.emit_text(plan.summary())
