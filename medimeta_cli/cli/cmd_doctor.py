"""``medimeta doctor``: check everything a download depends on, and say what to fix."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from medimeta_cli.cli.exit_codes import ExitCode
from medimeta_cli.cli.options import CommonOptions, with_common_options
from medimeta_cli.cli.session import session

if TYPE_CHECKING:
    from medimeta_cli.cli.output import Output
    from medimeta_cli.doctor import Check


#: Command lines the help shows under "Examples".
EXAMPLES = (
    "medimeta doctor",
    "medimeta doctor --offline --json",
)


@with_common_options()
def doctor_command(common: CommonOptions) -> None:
    """Check the record API, proxy, certificates, disk space, write permission, file locks,
    clock, versions and shared roots, and whether a newer version of the record than the
    installed data exists; each check says ok, warn, fail or skip, with a hint.

    Exits with code 1 when a check fails (warnings do not count).
    """
    with session(common) as s:
        # Imported here: the checks load httpx, and `doctor --help` must stay fast.
        from medimeta_cli.doctor import any_failed, run_checks

        checks = run_checks(s.settings, on_notice=s.out.status)
        failed = any_failed(checks)
        if common.json:
            s.out.emit_json({"ok": not failed, "checks": [check.to_json() for check in checks]})
        else:
            _print_checks(s.out, checks)
        if failed:
            raise typer.Exit(int(ExitCode.FAILURE))


def _print_checks(out: Output, checks: list[Check]) -> None:
    from medimeta_cli.doctor import summary

    out.emit_table(["CHECK", "STATUS", "DETAIL"], [row for c in checks for row in c.rows()])
    out.status(summary(checks))
