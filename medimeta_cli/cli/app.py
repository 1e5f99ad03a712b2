"""The ``medimeta`` Typer application: wires the command modules together.

Command modules are imported only when their command can run: ``medimeta list``
does not pay for importing the nine other commands (start-up time is a feature
for scripts that call the tool thousands of times). ``--help``, completion and
anything unrecognised get the whole application.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Annotated, Any

import typer

from medimeta_cli import __version__
from medimeta_cli.catalog import RECORD_ID

#: Command name -> (module under medimeta_cli.cli, function), in the order ``--help`` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("cmd_list", "list_command"),
    "info": ("cmd_info", "info_command"),
    "download": ("cmd_download", "download_command"),
    "verify": ("cmd_verify", "verify_command"),
    "export": ("cmd_export", "export_command"),
    "sample": ("cmd_sample", "sample_command"),
    "paths": ("cmd_paths", "paths_command"),
    "remove": ("cmd_remove", "remove_command"),
    "prune": ("cmd_prune", "prune_command"),
    "doctor": ("cmd_doctor", "doctor_command"),
}


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"medimeta-cli {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_show_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Download, verify and export MedIMeta, the Medical Imaging Meta-Dataset.

    Exit codes: 0 ok, 1 failure, 2 usage, 3 network, 4 integrity, 5 disk space,
    6 lock timeout, 7 offline, 8 not installed, 9 permission, 10 not in the record,
    130 interrupted.
    """


def build_app(only: str | None = None) -> typer.Typer:
    """The application with every command, or with the one command named ``only``."""
    application = typer.Typer(
        name="medimeta",
        help="Download, verify and export MedIMeta, the Medical Imaging Meta-Dataset "
        f"(19 datasets, 10 domains, 54 tasks; Zenodo record {RECORD_ID}).",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    application.callback()(_root)
    for name, (module, function) in COMMANDS.items():
        if only is None or name == only:
            command = getattr(importlib.import_module(f"medimeta_cli.cli.{module}"), function)
            application.command(name)(command)
    return application


def __getattr__(name: str) -> Any:
    # `app` (every command) is built on first use: tests and tools that import it get
    # the whole application, the script only what it runs.
    if name == "app":
        globals()["app"] = build_app()
        return globals()["app"]
    raise AttributeError(name)


def _invoked_command(argv: list[str]) -> str | None:
    """The command a command line runs, when nothing needs the others (help, completion)."""
    if "_MEDIMETA_COMPLETE" in os.environ:
        return None
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    return first if first in COMMANDS else None


def main() -> None:
    """Entry point of the ``medimeta`` script and ``python -m medimeta_cli``."""
    build_app(_invoked_command(sys.argv[1:]))(prog_name="medimeta")
