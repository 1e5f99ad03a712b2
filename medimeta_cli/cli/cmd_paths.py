"""``medimeta paths``: every resolved setting and where its value came from."""

from __future__ import annotations

from medimeta_cli.cache import RootLayout
from medimeta_cli.cli.options import DebugOption, JsonOption, OfflineOption, QuietOption, RootOption
from medimeta_cli.cli.session import session


def paths_command(
    root: RootOption = None,
    offline: OfflineOption = False,
    json: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Show the data root, state folder and every setting, with where each value came from."""
    with session(root=root, json_mode=json, quiet=quiet, debug=debug, offline=offline) as s:
        settings = s.settings.describe()
        layout = RootLayout(s.settings.root)
        if json:
            s.out.emit_json({"settings": settings, "state_dir": str(layout.state_dir)})
            return
        rows = [[row["name"], str(row["value"]), row["source"], row["env"]] for row in settings]
        rows.append(["state_dir", str(layout.state_dir), "<root>/.medimeta", ""])
        s.out.emit_table(["SETTING", "VALUE", "SOURCE", "VARIABLE"], rows)
