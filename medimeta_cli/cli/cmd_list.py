"""``medimeta list``: the datasets of MedIMeta and their local state."""

from __future__ import annotations

from typing import Annotated

import typer

from medimeta_cli.cli.options import (
    CommonOptions,
    DomainOption,
    TaskTypeOption,
    with_common_options,
)
from medimeta_cli.cli.session import session
from medimeta_cli.status import LocalStatus, State


@with_common_options()
def list_command(
    common: CommonOptions,
    domain: DomainOption = None,
    task_type: TaskTypeOption = None,
    installed: Annotated[
        bool, typer.Option("--installed", help="Only datasets installed in the data root.")
    ] = False,
) -> None:
    """List the datasets, optionally filtered by domain, task type or local state."""
    with session(common) as s:
        datasets = s.catalog.in_domains(domain) if domain else s.catalog.datasets
        if task_type:
            datasets = tuple(d for d in datasets if d.targets & set(task_type))
        statuses = {d.id: s.locate(d.id) for d in datasets}
        if installed:
            datasets = tuple(d for d in datasets if statuses[d.id].state is not State.ABSENT)
        if common.json:
            s.out.emit_json([{**d.to_json(), **statuses[d.id].to_json()} for d in datasets])
            return
        rows = [
            [
                d.id,
                d.name,
                d.domain,
                f"{d.num_samples:,}",
                str(len(d.tasks)),
                d.license.short + (" (NC)" if d.license.non_commercial else ""),
                statuses[d.id].describe(),
                _size(statuses[d.id]),
            ]
            for d in datasets
        ]
        s.out.emit_table(
            ["ID", "NAME", "DOMAIN", "IMAGES", "TASKS", "LICENSE", "STATE", "SIZE"], rows
        )
        if not datasets:
            s.out.status("no dataset matches these filters")
        elif any(d.license.non_commercial for d in datasets):
            s.out.status("(NC) = non-commercial use only")


def _size(status: LocalStatus) -> str:
    """Size on disk from the install record: ``?`` when there is none, ``-`` when absent."""
    from medimeta_cli.fsutil import human_bytes

    if status.state in (State.ABSENT, State.PARTIAL):
        return "-"
    return "?" if status.size_bytes is None else human_bytes(status.size_bytes)
