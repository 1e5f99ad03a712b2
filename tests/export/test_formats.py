"""``medimeta_cli.export.formats``: one table of writers, one per export format."""

from __future__ import annotations

import ast
from pathlib import Path

from medimeta_cli.export.formats import WRITERS, writer_for
from medimeta_cli.export.options import ExportFormat
from medimeta_cli.export.writer import Writer

EXPORT = Path(__file__).resolve().parents[2] / "medimeta_cli" / "export"


def test_every_format_has_exactly_one_writer_under_its_own_key() -> None:
    assert set(WRITERS) == set(ExportFormat)
    for export_format, writer in WRITERS.items():
        assert isinstance(writer, Writer)
        assert writer.format is export_format
        assert writer_for(export_format) is writer


def test_only_the_table_and_the_writers_know_the_formats() -> None:
    """Whole exports, shards and provenance ask the writer; no module branches on a format."""
    branching = []
    for path in sorted(EXPORT.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare) and any(
                isinstance(side, ast.Attribute)
                and isinstance(side.value, ast.Name)
                and side.value.id == "ExportFormat"
                for side in (node.left, *node.comparators)
            ):
                branching.append(f"{path.name}:{node.lineno}")
    assert branching == []
