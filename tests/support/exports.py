"""Running exports of the installed fixture datasets, and reading what they wrote."""

from __future__ import annotations

from pathlib import Path

from medimeta_cli.dataset.selection import SelectionSpec
from medimeta_cli.export import ExportOptions, ExportResult, export_dataset
from tests.conftest import InstalledData


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by its relative path, with its content."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def run_export(
    installed: InstalledData,
    dataset_id: str,
    out: Path,
    spec: SelectionSpec | None = None,
    **options: object,
) -> ExportResult:
    """Export an installed fixture dataset with the given options (as plain values)."""
    dataset = installed.catalog().get(dataset_id)
    return export_dataset(
        installed.root,
        dataset,
        spec or SelectionSpec(),
        out,
        ExportOptions(**options),  # type: ignore[arg-type]
    )
