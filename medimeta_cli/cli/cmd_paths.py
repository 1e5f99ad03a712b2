"""``medimeta paths``: every resolved setting, where its value came from, and every root."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from medimeta_cli.cli.options import (
    CommonOptions,
    with_common_options,
)
from medimeta_cli.cli.session import session
from medimeta_cli.layout import RootLayout


def root_state(path: Path, kind: str, dataset_ids: tuple[str, ...]) -> dict[str, Any]:
    """Whether a root exists, can be written, and which datasets it holds."""
    exists = path.is_dir()
    return {
        "path": str(path),
        "kind": kind,
        "exists": exists,
        "writable": exists and os.access(path, os.W_OK),
        "datasets": [i for i in dataset_ids if (path / i / "info.yaml").is_file()]
        if exists
        else [],
    }


@with_common_options(offline=True)
def paths_command(
    common: CommonOptions,
) -> None:
    """Show every setting with where its value came from, and every data root with its state."""
    with session(common) as s:
        settings = s.settings.describe()
        layout = RootLayout(s.settings.root)
        ids = s.catalog.ids
        roots = [root_state(s.settings.root, "data root", ids)] + [
            root_state(shared, "shared (read-only)", ids) for shared in s.settings.shared_roots
        ]
        if common.json:
            s.out.emit_json(
                {"settings": settings, "state_dir": str(layout.state_dir), "roots": roots}
            )
            return
        rows = [[row["name"], _text(row["value"]), row["source"], row["env"]] for row in settings]
        rows.append(["state_dir", str(layout.state_dir), "<root>/.medimeta", ""])
        s.out.emit_table(["SETTING", "VALUE", "SOURCE", "VARIABLE"], rows)
        s.out.emit_text("")
        s.out.emit_table(
            ["ROOT", "KIND", "STATE", "DATASETS"],
            [
                [
                    r["path"],
                    r["kind"],
                    "missing" if not r["exists"] else "writable" if r["writable"] else "read-only",
                    str(len(r["datasets"])),
                ]
                for r in roots
            ],
        )


def _text(value: Any) -> str:
    return ":".join(value) if isinstance(value, list) else str(value)
