"""``medimeta info ID``: everything to know about a dataset before downloading it."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from medimeta_cli.catalog import DOI, RECORD_ID, Dataset, Task, file_download_url
from medimeta_cli.cli._selection import task_name_notice
from medimeta_cli.cli.options import CommonOptions, DatasetArgument, with_common_options
from medimeta_cli.cli.session import session
from medimeta_cli.plan import archive_sizes
from medimeta_cli.settings import Settings
from medimeta_cli.status import LocalStatus


@with_common_options()
def info_command(
    common: CommonOptions,
    dataset_id: DatasetArgument,
    task: Annotated[
        str | None,
        typer.Option("--task", help="Show only this task (case-insensitive).", show_default=False),
    ] = None,
    cite: Annotated[
        bool,
        typer.Option("--cite", help="Print BibTeX for MedIMeta and the dataset's sources."),
    ] = False,
) -> None:
    """Show a dataset's domain, image size, splits, tasks and labels, license and sources."""
    with session(common) as s:
        dataset = s.catalog.get(dataset_id)
        tasks = (dataset.task(task),) if task is not None else dataset.tasks
        if notice := task_name_notice(dataset.id, task, tasks[0]):
            s.out.status(notice)
        if cite:
            from medimeta_cli.citation import bibtex_for

            bibtex = bibtex_for(dataset)
            if common.json:
                s.out.emit_json({"id": dataset.id, "bibtex": bibtex})
            else:
                s.out.emit_text(bibtex)
            return
        details = info_json(dataset, tasks, s.settings, s.locate(dataset.id))
        if common.json:
            s.out.emit_json(details)
        else:
            s.out.emit_text(render_info(dataset, tasks, details))


def info_json(
    dataset: Dataset, tasks: tuple[Task, ...], settings: Settings, status: LocalStatus
) -> dict[str, Any]:
    """The ``info --json`` object: a ``list --json`` element plus the details."""
    record_id, base_url = settings.record_id, settings.base_url
    return {
        **dataset.to_json(),
        **status.to_json(),
        "sizes": archive_sizes(dataset, settings),
        "tasks": [task.to_json() for task in tasks],
        **dataset.details_json(),
        "record_id": record_id,
        "doi": DOI if record_id == RECORD_ID else None,
        "download_url": file_download_url(base_url, record_id, dataset.archive),
    }


def _size_text(sizes: dict[str, Any]) -> str:
    from medimeta_cli.fsutil import human_bytes

    if sizes["full"] is None:
        return "size known after the first download or --print-urls"
    hdf5 = human_bytes(sizes["hdf5"]) if sizes["hdf5"] is not None else "?"
    approx = "~" if sizes["hdf5_estimated"] else ""
    return f"{human_bytes(sizes['full'])}; --layout hdf5 {approx}{hdf5}"


def render_info(dataset: Dataset, tasks: tuple[Task, ...], details: dict[str, Any]) -> str:
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
    lines = [f"{dataset.id}: {dataset.name}", ""]
    lines += [f"  {key:<17}{value}" for key, value in facts]
    lines += ["", "Tasks"]
    for task in tasks:
        lines.append(f"  {task.name}  ({task.target.value}, {task.num_classes} labels)")
        lines += [f"    {key:>3}  {name}" for key, name in task.labels.items()]
    if dataset.sources:
        lines += ["", "Sources (cite these when you use the data)"]
    for source in dataset.sources:
        lines.append(f"  {source.name}" + (f": {source.title}" if source.title else ""))
        if source.url:
            lines.append(f"    url: {source.url}")
        if source.license:
            lines.append(f"    license: {source.license}")
        lines += [f"    cite: {citation}" for citation in source.citations]
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
