"""The ``medimeta`` Typer application: wires the command modules together."""

from __future__ import annotations

from typing import Annotated

import typer

from medimeta_cli import __version__
from medimeta_cli.cli import (
    cmd_doctor,
    cmd_download,
    cmd_export,
    cmd_info,
    cmd_list,
    cmd_paths,
    cmd_prune,
    cmd_remove,
    cmd_sample,
    cmd_verify,
)

app = typer.Typer(
    name="medimeta",
    help="Download, verify and export MedIMeta, the Medical Imaging Meta-Dataset "
    "(19 datasets, 10 domains, 54 tasks; Zenodo record 7884735).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"medimeta-cli {__version__}")
        raise typer.Exit()


@app.callback()
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
    6 lock timeout, 7 offline, 8 not installed, 9 permission, 130 interrupted.
    """


app.command("list")(cmd_list.list_command)
app.command("info")(cmd_info.info_command)
app.command("download")(cmd_download.download_command)
app.command("verify")(cmd_verify.verify_command)
app.command("export")(cmd_export.export_command)
app.command("sample")(cmd_sample.sample_command)
app.command("paths")(cmd_paths.paths_command)
app.command("remove")(cmd_remove.remove_command)
app.command("prune")(cmd_prune.prune_command)
app.command("doctor")(cmd_doctor.doctor_command)


def main() -> None:
    """Entry point of the ``medimeta`` script and ``python -m medimeta_cli``."""
    app(prog_name="medimeta")
