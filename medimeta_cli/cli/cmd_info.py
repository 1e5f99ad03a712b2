"""``medimeta info ID``: everything to know about a dataset before downloading it."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from medimeta_cli.catalog.datasets import DOI, RECORD_ID, Dataset, Task, file_download_url
from medimeta_cli.cli._selection import task_name_notice
from medimeta_cli.cli.options import CommonOptions, DatasetArgument, with_common_options
from medimeta_cli.cli.session import session
from medimeta_cli.dataset.installed import InstalledDataset
from medimeta_cli.download.plan import archive_sizes
from medimeta_cli.errors import NotInstalledError
from medimeta_cli.settings import Settings
from medimeta_cli.store.status import LocalStatus

#: Command lines the help shows under "Examples".
EXAMPLES = (
    "medimeta info crc",
    'medimeta info cxr --task "patient sex" --json',
    "medimeta info crc --cite",
)


@with_common_options()
def info_command(
    common: CommonOptions,
    dataset_id: DatasetArgument,
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            help="Show only this task (case-insensitive, or a unique beginning).",
            show_default=False,
        ),
    ] = None,
    cite: Annotated[
        bool,
        typer.Option("--cite", help="Print BibTeX for MedIMeta and the dataset's sources."),
    ] = False,
) -> None:
    """Show a dataset's domain, image size, splits, tasks and labels, license and sources.

    For an installed dataset the figures come from its own info.yaml, with a note where
    they differ from the catalog; an installed dataset outside the catalog is shown too.
    """
    with session(common) as s:
        from medimeta_cli.cli._installed import catalog_entry

        entry = catalog_entry(s, dataset_id)
        dataset_id = entry.id if entry is not None else dataset_id
        status = s.locate(dataset_id)
        view = _installed_view(entry, dataset_id, status)
        dataset = view.dataset
        tasks = (dataset.task(task),) if task is not None else dataset.tasks
        if notice := task_name_notice(dataset.id, task, tasks[0]):
            s.out.status(notice)
        if cite:
            from medimeta_cli.catalog.citation import bibtex_for

            bibtex = bibtex_for(dataset)
            if common.json:
                s.out.emit_json({"id": dataset.id, "bibtex": bibtex})
            else:
                s.out.emit_text(bibtex)
            return
        from medimeta_cli.cli._versions import newer_version
        from medimeta_cli.store.layout import RootLayout
        from medimeta_cli.zenodo.versions import load_check

        details = {
            **info_json(dataset, tasks, s.settings, status, in_catalog=view.in_catalog),
            **view.to_json(),
            # As the last check saved it (doctor, list --check-updates): info asks no server.
            "newer_version": newer_version(
                load_check(RootLayout(s.settings.root)), dataset.id, status
            ),
        }
        if common.json:
            s.out.emit_json(details)
        else:
            s.out.emit_text(render_info(dataset, tasks, details, s.catalog.record.version))


def _installed_view(
    entry: Dataset | None, dataset_id: str, status: LocalStatus
) -> InstalledDataset:
    """The dataset as its installed info.yaml describes it, or the catalog's entry when it
    is not installed (or its info.yaml cannot be read: ``verify`` says why);
    :class:`~medimeta_cli.dataset.gate.RefusedInfoError` when the gate refuses what the
    installed info.yaml says."""
    from medimeta_cli.dataset.gate import InfoError, RefusedInfoError
    from medimeta_cli.store.status import root_of

    root = root_of(status)
    if root is not None:
        try:
            return InstalledDataset.read(root / dataset_id, entry, dataset_id)
        except RefusedInfoError:
            raise  # never shown in place of the catalog's figures
        except InfoError:
            if entry is None:  # nothing else describes a dataset outside the catalog
                raise
    if entry is None:  # pragma: no cover - catalog_entry() gives None only when installed
        raise NotInstalledError(dataset_id, str(status.path))
    return InstalledDataset(entry, entry)


def info_json(
    dataset: Dataset,
    tasks: tuple[Task, ...],
    settings: Settings,
    status: LocalStatus,
    *,
    in_catalog: bool = True,
) -> dict[str, Any]:
    """The ``info --json`` object: a ``list --json`` element plus the details."""
    record_id, base_url = settings.record_id, settings.base_url
    url = file_download_url(base_url, record_id, dataset.archive) if in_catalog else None
    return {
        **dataset.to_json(),
        **status.to_json(),
        "sizes": archive_sizes(dataset, settings),
        "tasks": [task.to_json() for task in tasks],
        **dataset.details_json(),
        "record_id": record_id if in_catalog else None,
        "doi": DOI if in_catalog and record_id == RECORD_ID else None,
        "download_url": url,
    }


def _size_text(sizes: dict[str, Any]) -> str:
    from medimeta_cli.fsutil import human_bytes

    if sizes["full"] is None:
        return "size known after the first download or --print-urls"
    hdf5 = human_bytes(sizes["hdf5"]) if sizes["hdf5"] is not None else "?"
    approx = "~" if sizes["hdf5_estimated"] else ""
    return f"{human_bytes(sizes['full'])}; --layout hdf5 {approx}{hdf5}"


def render_info(
    dataset: Dataset, tasks: tuple[Task, ...], details: dict[str, Any], version: str = "1.0"
) -> str:
    """Plain text for people: facts first, then tasks with labels, then sources."""
    size = dataset.input_size
    colour = "RGB" if size.channels == 3 else "grayscale"
    license_line = dataset.license.name + (
        "  [non-commercial use only]" if dataset.license.non_commercial else ""
    )
    facts = [
        ("domain", dataset.domain),
        ("summary", dataset.summary or "-"),
        ("images", f"{dataset.num_samples:,} of {size.height}x{size.width}, {colour}"),
        ("splits", _counts(dataset.splits.as_dict())),
        ("original splits", _counts(dataset.original_splits.as_dict())),
        ("license", license_line),
        ("archive", f"{dataset.archive}  (record {details['record_id']})"),
        ("archive size", _size_text(details["sizes"])),
        ("url", details["download_url"]),
        ("state", _state_line(details)),
    ]
    if not details.get("in_catalog", True):
        facts[-4:-1] = [("archive", "- (installed from outside the catalog)")]
    if details.get("catalog_differences"):
        from medimeta_cli.cli._installed import catalog_note

        facts.append(("note", catalog_note(version, details["catalog_differences"])))
    lines = [f"{dataset.id}: {dataset.name}", ""]
    lines += [f"  {key:<17}{value}" for key, value in facts]
    lines += ["", "Tasks"]
    for task in tasks:
        lines.append(f"  {task.name}  ({task.target.value}, {task.num_classes} labels)")
        lines += [f"    {key:>3}  {name}" for key, name in task.labels.items()]
    from medimeta_cli.catalog.citation import MEDIMETA_SHORT, short_citations

    lines += [
        "",
        f"Sources and how to cite them (BibTeX of all: medimeta info {dataset.id} --cite)",
    ]
    lines.append(f"  MedIMeta: {MEDIMETA_SHORT}")
    for source in dataset.sources:
        lines.append(f"  {source.name}" + (f": {source.title}" if source.title else ""))
        if source.license:
            lines.append(f"    license: {source.license}")
        lines += [f"    {kind + ':':<7}{line}" for kind, line in short_citations(source)]
    return "\n".join(lines)


def _state_line(details: dict[str, Any]) -> str:
    state = str(details["state"])
    if details.get("percent") is not None:
        state += f" {details['percent']:.0f}%"
    if details.get("checked_at"):
        state += f" (checked {details['checked_at']})"
    return state + (f"  {details['path']}" if details["path"] else "")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in counts.items())
