"""``medimeta prune``: delete what killed or vanished jobs left in the data root."""

from __future__ import annotations

from typing import Annotated

import typer

from medimeta_cli.cli.exit_codes import ExitCode
from medimeta_cli.cli.options import CommonOptions, with_common_options
from medimeta_cli.cli.session import session

#: Command lines the help shows under "Examples".
EXAMPLES = (
    "medimeta prune --dry-run",
    "medimeta prune --archives",
)


@with_common_options()
def prune_command(
    common: CommonOptions,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only show what would be deleted and how much.")
    ] = False,
    archives: Annotated[
        bool,
        typer.Option("--archives", help="Delete archives kept with download --keep-archive too."),
    ] = False,
) -> None:
    """Delete stale partial downloads, temporary folders and locks left by killed jobs.

    Only <root>/.medimeta/ is touched: no dataset, no shared root, nothing a live job uses.
    """
    with session(common) as s:
        from medimeta_cli.fsutil import human_bytes
        from medimeta_cli.store.layout import RootLayout
        from medimeta_cli.store.prune import prune

        report = prune(RootLayout(s.settings.root), archives=archives, dry_run=dry_run)
        if common.json:
            s.out.emit_json(report.to_json())
        else:
            if report.items:
                s.out.emit_table(["KIND", "PATH", "SIZE", "REASON"], report.rows())
            s.out.emit_text(report.summary())
        result = report.result
        for item, why in result.skipped if result else ():
            s.out.status(f"left {item.path}: {why}")
        for item, why in result.failed if result else ():
            s.out.warn(f"could not delete {item.path}: {why}")
        kept = report.kept_archives
        if kept:
            size = human_bytes(sum(item.bytes for item in kept))
            s.out.status(
                f"{len(kept)} archive(s) kept with --keep-archive ({size}) stay in "
                f"{kept[0].path.parent}; `medimeta prune --archives` deletes them"
            )
        for path, why in report.refused:
            s.out.warn(
                f"not following {path}: it {why}; nothing it leads to was looked at or deleted"
            )
        if report.refused:
            s.out.status(
                "move it aside or delete it (deleting a link never touches what it points to), "
                "then run prune again"
            )
            raise typer.Exit(int(ExitCode.INTEGRITY))
        if result is not None and result.failed:
            raise typer.Exit(int(ExitCode.PERMISSION))
