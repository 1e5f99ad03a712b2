"""``medimeta prune``: delete what killed or vanished jobs left in the data root."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medimeta_cli.cli.exit_codes import ExitCode
from medimeta_cli.cli.options import CommonOptions, with_common_options
from medimeta_cli.cli.session import session


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
        from medimeta_cli.layout import RootLayout
        from medimeta_cli.prune import apply_prune, kept_archives, plan_prune

        layout = RootLayout(s.settings.root)
        items = plan_prune(layout, archives=archives)
        kept = [] if archives else kept_archives(layout)
        total = sum(item.bytes for item in items)
        result = None if dry_run else apply_prune(items)
        skipped = list(result.skipped) if result else []
        failed = list(result.failed) if result else []
        if common.json:
            s.out.emit_json(
                {
                    "root": str(layout.root),
                    "dry_run": dry_run,
                    "items": [item.to_json() for item in items],
                    "bytes": total,
                    "freed_bytes": result.bytes_freed if result else 0,
                    "skipped": [{**item.to_json(), "why": why} for item, why in skipped],
                    "failed": [{**item.to_json(), "why": why} for item, why in failed],
                    "kept_archives": [item.to_json() for item in kept],
                }
            )
        elif not items:
            s.out.emit_text(f"nothing to prune in {layout.root}")
        else:
            rows = [
                [item.kind, _shown(item.path, layout.root), human_bytes(item.bytes), item.reason]
                for item in items
            ]
            s.out.emit_table(["KIND", "PATH", "SIZE", "REASON"], rows)
            if result is None:
                s.out.emit_text(
                    f"would free {human_bytes(total)} in {layout.root} ({len(items)} items); "
                    "dry run: nothing was deleted"
                )
            else:
                s.out.emit_text(
                    f"freed {human_bytes(result.bytes_freed)} in {layout.root} "
                    f"({len(result.removed)} of {len(items)} items)"
                )
        for item, why in skipped:
            s.out.status(f"left {item.path}: {why}")
        for item, why in failed:
            s.out.warn(f"could not delete {item.path}: {why}")
        if kept:
            size = human_bytes(sum(item.bytes for item in kept))
            s.out.status(
                f"{len(kept)} archive(s) kept with --keep-archive ({size}) stay in "
                f"{kept[0].path.parent}; `medimeta prune --archives` deletes them"
            )
        if failed:
            raise typer.Exit(int(ExitCode.PERMISSION))


def _shown(path: Path, root: Path) -> str:
    """A path relative to the data root (named in the summary line)."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
