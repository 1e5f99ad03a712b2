"""``medimeta paths``: every resolved setting, where its value came from, and every root."""

from __future__ import annotations

from typing import Any

from medimeta_cli.cli.options import CommonOptions, with_common_options
from medimeta_cli.cli.session import session
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.roots import root_states

#: Command lines the help shows under "Examples".
EXAMPLES = (
    "medimeta paths",
    "medimeta paths --json",
)


@with_common_options()
def paths_command(common: CommonOptions) -> None:
    """Show every setting with where its value came from, and every data root with its state."""
    with session(common) as s:
        settings = s.settings.describe()
        layout = RootLayout(s.settings.root)
        roots = root_states(s.settings, s.catalog.ids)
        if common.json:
            s.out.emit_json(
                {
                    "settings": settings,
                    "state_dir": str(layout.state_dir),
                    "roots": [root.to_json() for root in roots],
                }
            )
            return
        rows = [[row["name"], _text(row["value"]), row["source"], row["env"]] for row in settings]
        rows.append(["state_dir", str(layout.state_dir), "<root>/.medimeta", ""])
        s.out.emit_table(["SETTING", "VALUE", "SOURCE", "VARIABLE"], rows)
        s.out.emit_text("")
        s.out.emit_table(["ROOT", "KIND", "STATE", "DATASETS"], [root.row() for root in roots])


def _text(value: Any) -> str:
    return ":".join(value) if isinstance(value, list) else str(value)
