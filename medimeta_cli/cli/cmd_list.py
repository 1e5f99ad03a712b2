"""``medimeta list``: the datasets of MedIMeta and their local state."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated

import typer

from medimeta_cli.cli._versions import newer_version
from medimeta_cli.cli.options import (
    AllTasksOption,
    CommonOptions,
    DomainOption,
    SourcesForOption,
    TaskTypeOption,
    with_common_options,
)
from medimeta_cli.cli.session import session
from medimeta_cli.dataset.installed import InstalledDataset
from medimeta_cli.store.status import LocalStatus, State, root_of

if TYPE_CHECKING:
    from medimeta_cli.catalog.datasets import Dataset
    from medimeta_cli.cli.session import Session
    from medimeta_cli.dataset.sources import Sources
    from medimeta_cli.zenodo.versions import LatestCheck

logger = logging.getLogger(__name__)

#: The state shown for an installed dataset whose info.yaml the gate does not take.
_REFUSED = "damaged (info.yaml refused)"


#: Command lines the help shows under "Examples".
EXAMPLES = (
    "medimeta list",
    "medimeta list --domain ophthalmology,dermatology",
    "medimeta list --installed --json",
    "medimeta list --sources-for cxr --json",
)


@with_common_options()
def list_command(
    common: CommonOptions,
    domain: DomainOption = None,
    task_type: TaskTypeOption = None,
    installed: Annotated[
        bool, typer.Option("--installed", help="Only datasets installed in the data root.")
    ] = False,
    sources_for: SourcesForOption = None,
    all_tasks: AllTasksOption = False,
    check_updates: Annotated[
        bool,
        typer.Option(
            "--check-updates",
            help="Ask the server now whether a newer version of the record exists (two "
            "requests); without it, list shows the last check (doctor's) and needs no network.",
        ),
    ] = False,
) -> None:
    """List the datasets, optionally filtered by domain, task type or local state.

    An installed dataset shows the figures of its own info.yaml (the catalog's next to
    them when they differ); datasets installed from outside the catalog are listed too.
    With --sources-for, only the meta-training sources of that target, each with the
    tasks to train on (``source_tasks`` in --json). An installed dataset older than the
    latest version of the record (as last checked) says so (``newer_version`` in --json).
    """
    with session(common) as s:
        from medimeta_cli.cli._installed import local_ids
        from medimeta_cli.cli._selection import in_domains, sources_selection

        sources = sources_selection(s, sources_for, all_tasks, domains=domain)
        datasets: tuple[Dataset, ...] = (
            sources.datasets
            if sources is not None
            else in_domains(s.out, s.catalog, domain)
            if domain
            else s.catalog.datasets
        )
        statuses = {d.id: s.locate(d.id) for d in datasets}
        # Datasets whose info.yaml the gate refuses: listed as such, never described by it.
        refused: dict[str, str] = {}
        shown = {d.id: _described(s, d.id, d, statuses[d.id], refused) for d in datasets}
        refused_local: list[str] = []
        for dataset_id in () if sources is not None else local_ids(s):
            status = s.locate(dataset_id)
            found = _described(s, dataset_id, None, status, refused)
            if found is not None and _in_domains(found.dataset, domain):
                statuses[dataset_id], shown[dataset_id] = status, found
                datasets += (found.dataset,)
            elif dataset_id in refused and not domain:
                statuses[dataset_id] = status
                refused_local.append(dataset_id)
        views = {d.id: shown[d.id] or InstalledDataset(d, d) for d in datasets}
        versions = _version_check(s, check_updates)
        datasets = tuple(views[d.id].dataset for d in datasets)
        if task_type:
            datasets = tuple(d for d in datasets if d.targets & set(task_type))
        if installed:
            datasets = tuple(d for d in datasets if statuses[d.id].state is not State.ABSENT)
        if common.json:
            s.out.emit_json(
                [
                    {
                        **d.to_json(),
                        **statuses[d.id].to_json(),
                        **views[d.id].to_json(),
                        "newer_version": newer_version(versions, d.id, statuses[d.id]),
                        **({"refused": refused[d.id]} if d.id in refused else {}),
                        **(
                            {"source_tasks": list(sources.tasks_of(d))}
                            if sources is not None
                            else {}
                        ),
                    }
                    for d in datasets
                ]
                + [
                    {"id": i, **statuses[i].to_json(), "in_catalog": False, "refused": refused[i]}
                    for i in refused_local
                ]
            )
            return
        rows = [
            [
                d.id,
                d.name,
                d.domain,
                _images(views[d.id]),
                str(len(d.tasks)),
                d.license.short + (" (NC)" if d.license.non_commercial else ""),
                (_REFUSED if d.id in refused else statuses[d.id].describe())
                + ("" if views[d.id].in_catalog else " [local]"),
                _size(statuses[d.id]),
            ]
            for d in datasets
        ]
        rows += [
            [i, "?", "?", "?", "?", "?", f"{_REFUSED} [local]", _size(statuses[i])]
            for i in refused_local
        ]
        s.out.emit_table(
            ["ID", "NAME", "DOMAIN", "IMAGES", "TASKS", "LICENSE", "STATE", "SIZE"],
            rows,
            shrink_first=(1, 2),  # names and domains; the id is what a user types
        )
        _say_newer(s, versions, datasets, statuses)
        if refused:
            s.out.warn(
                f"{', '.join(sorted(refused))}: info.yaml refused; "
                "`medimeta verify --deep <id>` says why"
            )
        if sources is not None:
            _describe_sources(s, sources, datasets)
        if not datasets and not refused_local:
            s.out.status("no dataset matches these filters")
        elif any(d.license.non_commercial for d in datasets):
            s.out.status("(NC) = non-commercial use only")
        if any(not views[d.id].in_catalog for d in datasets):
            s.out.status("[local] = installed from outside the catalog (download --from)")


def _version_check(s: Session, check_now: bool) -> LatestCheck | None:
    """The last check for a newer version of the record: asked for now with
    ``--check-updates`` (the record and its ``versions/latest``), else the one saved by the
    last check (``doctor``, ``download --record latest``); None when there is none."""
    from medimeta_cli.store.layout import RootLayout
    from medimeta_cli.zenodo.versions import load_check

    if not check_now:
        return load_check(RootLayout(s.settings.root))
    # Imported here: the client loads httpx, and a plain `list` must stay fast.
    from medimeta_cli.zenodo.source import RecordSource

    source = RecordSource(s.settings, on_notice=lambda _id, message, _warn: s.out.status(message))
    try:
        return source.versions({}).check
    finally:
        source.close()


def _say_newer(
    s: Session,
    versions: LatestCheck | None,
    datasets: tuple[Dataset, ...],
    statuses: dict[str, LocalStatus],
) -> None:
    """One line on stderr when listed datasets are older than the latest version."""
    if versions is None:
        return
    shown = {d.id for d in datasets if statuses[d.id].state is not State.ABSENT}
    behind = [u for u in versions.behind if u.dataset_id in shown]
    if behind:
        latest = versions.latest
        when = f", checked {versions.checked_at}" if versions.checked_at else ""
        s.out.warn(
            f"{', '.join(u.dataset_id for u in behind)}: a newer version of the record exists "
            f"(record {latest.record_id}, version {latest.version}{when}); "
            "`medimeta doctor` says what changed"
        )


def _describe_sources(s: Session, sources: Sources, datasets: tuple[Dataset, ...]) -> None:
    """What ``--sources-for`` left out and why, and the tasks to train on, on stderr."""
    said_by = "its installed info.yaml" if sources.overlaps_from == "installed" else "the catalog"
    s.out.status(
        f"sources for {sources.target}: every dataset except "
        f"{', '.join(sources.excluded)} (overlaps as {said_by} names them)"
    )
    for dataset in datasets:
        s.out.status(f"  {dataset.id}: {', '.join(sources.tasks_of(dataset))}")


def _described(
    s: Session,
    dataset_id: str,
    entry: Dataset | None,
    status: LocalStatus,
    refused: dict[str, str],
) -> InstalledDataset | None:
    """An installed dataset as its info.yaml describes it; None when it is not installed
    or its info.yaml cannot be read (``verify`` says why). ``refused`` learns why when
    the gate refuses what it says, and, for a dataset outside the catalog, whatever kept
    the gate from taking it (unreadable, malformed, naming another dataset): nothing else
    describes that one, so it is listed as damaged rather than dropped. A catalog
    dataset's unreadable info.yaml shows the catalog's figures, as before."""
    from medimeta_cli.dataset.gate import InfoError, RefusedInfoError

    root = root_of(status)
    if root is None:
        return None
    try:
        return InstalledDataset.read(root / dataset_id, entry, dataset_id)
    except InfoError as error:
        logger.debug("%s: %s", dataset_id, error.message)
        if entry is None or isinstance(error, RefusedInfoError):
            refused[dataset_id] = error.message
        return None


def _in_domains(dataset: Dataset, domains: list[str] | None) -> bool:
    """Whether a dataset outside the catalog passes ``--domain`` (its domain, by name)."""
    if not domains:
        return True
    fold = "".join(dataset.domain.casefold().replace("-", " ").replace("_", " ").split())
    return any(
        "".join(d.casefold().replace("-", " ").replace("_", " ").split()) == fold for d in domains
    )


def _images(view: InstalledDataset) -> str:
    """The image count, with the catalog's next to it when the installed data differs."""
    count = f"{view.dataset.num_samples:,}"
    entry = view.catalog_entry
    if entry is not None and entry.num_samples != view.dataset.num_samples:
        count += f" (catalog {entry.num_samples:,})"
    return count


def _size(status: LocalStatus) -> str:
    """Size on disk from the install record: ``?`` when there is none, ``-`` when absent."""
    from medimeta_cli.fsutil import human_bytes

    if status.state in (State.ABSENT, State.PARTIAL):
        return "-"
    return "?" if status.size_bytes is None else human_bytes(status.size_bytes)
