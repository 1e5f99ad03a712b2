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
import typer.core

# Typer vendors click (0.26 and later) and exports no name for its error base class.
from typer._click import ClickException
from typer._click.exceptions import NoArgsIsHelpError

from medimeta_cli._version import __version__
from medimeta_cli.catalog.datasets import RECORD_ID
from medimeta_cli.cli._help import HelpCommand, examples_epilog, readable_texts
from medimeta_cli.cli.exit_codes import ExitCode
from medimeta_cli.cli.options import with_global_options
from medimeta_cli.cli.output import Output, error_object
from medimeta_cli.errors import UsageError

#: Command name -> (module under medimeta_cli.cli, function), in the order ``--help`` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("cmd_list", "list_command"),
    "info": ("cmd_info", "info_command"),
    "download": ("cmd_download", "download_command"),
    "verify": ("cmd_verify", "verify_command"),
    "export": ("cmd_export", "export_command"),
    "sample": ("cmd_sample", "sample_command"),
    "stats": ("cmd_stats", "stats_command"),
    "paths": ("cmd_paths", "paths_command"),
    "remove": ("cmd_remove", "remove_command"),
    "prune": ("cmd_prune", "prune_command"),
    "doctor": ("cmd_doctor", "doctor_command"),
}


#: Options of the root that take a value: the command is not the word after them.
_ROOT_VALUE_OPTIONS = frozenset({"--root", "--lock-timeout"})

#: The root's help page (above its options).
ROOT_HELP = f"""Download, verify and export MedIMeta, the Medical Imaging Meta-Dataset
(19 datasets, 10 domains, 54 tasks; Zenodo record {RECORD_ID}).

The common options (--root, --json, --quiet, --debug, --offline, --lock-timeout)
go before the command or after it; given in both places, the one after the
command wins.

Exit codes: 0 ok, 1 failure, 2 usage, 3 network, 4 integrity, 5 disk space,
6 lock timeout, 7 offline, 8 not installed, 9 permission, 10 not in the record,
130 interrupted.
With --json, a fatal error is also one JSON object on stdout:
{{"error": {{"code", "exit_code", "message", "hint"}}}}.
"""

#: Examples of the root's ``--help``.
EXAMPLES = (
    "medimeta list --domain radiology",
    "medimeta --root /data/medimeta download crc cxr",
    "medimeta --json --offline info crc",
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"medimeta-cli {__version__}")
        raise typer.Exit()


@with_global_options
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_show_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Store the common options given before the command (the page is ROOT_HELP)."""


class MedimetaGroup(typer.core.TyperGroup):
    """The root command: readable help, and usage errors as JSON when ``--json`` is given."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """The help page, with the texts fit for the renderer."""
        with readable_texts(self):
            super().format_help(ctx, formatter)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Parse the root's options; a usage error is also reported as JSON if asked."""
        # Before parsing: a command line that does not parse still says whether it
        # asked for JSON (after the command name too; "--" ends the options).
        ctx.meta[_JSON_ASKED] = "--json" in (args[: args.index("--")] if "--" in args else args)
        try:
            return super().parse_args(ctx, args)
        except ClickException as error:
            _report_usage_error(ctx, error)
            raise

    def invoke(self, ctx: Any) -> Any:
        """Run the command; its usage errors (bad option or value) too are reported as JSON."""
        try:
            return super().invoke(ctx)
        except ClickException as error:
            _report_usage_error(ctx, error)
            raise


_JSON_ASKED = "medimeta_cli.json_asked"


def _report_usage_error(ctx: Any, error: ClickException) -> None:
    """Report a click usage error as the tool reports every error.

    With ``--json`` the error object goes to stdout. Where stderr is not a person's
    terminal (a job log, a pipe, ``NO_COLOR``) the error is the tool's two plain lines
    (``error:``, ``hint:``) and the command exits here with the error's code; at a
    terminal, Typer's own display follows. A bare ``medimeta`` still shows the help.
    """
    if isinstance(error, NoArgsIsHelpError):
        return
    try:
        code = ExitCode(error.exit_code)
    except ValueError:
        code = ExitCode.FAILURE
    where = getattr(getattr(error, "ctx", None), "command_path", None) or "medimeta"
    hint = f"Run `{where} --help` to see the valid options and values."
    out = Output(json_mode=bool(ctx.meta.get(_JSON_ASKED)))
    if out.stderr_color:
        if out.json_mode:
            out.emit_json(error_object(code, error.format_message(), hint))
        return
    out.fail(UsageError(error.format_message(), hint=hint), code)
    raise typer.Exit(int(code))


def build_app(only: str | None = None) -> typer.Typer:
    """The application with every command, or with the one command named ``only``."""
    application = typer.Typer(
        name="medimeta",
        help=ROOT_HELP,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        cls=MedimetaGroup,
    )
    application.callback(epilog=examples_epilog(EXAMPLES))(_root)
    for name, (module_name, function) in COMMANDS.items():
        if only is None or name == only:
            module = importlib.import_module(f"medimeta_cli.cli.{module_name}")
            application.command(name, cls=HelpCommand, epilog=examples_epilog(module.EXAMPLES))(
                getattr(module, function)
            )
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
    words = iter(argv)
    for word in words:
        if word in _ROOT_VALUE_OPTIONS:
            next(words, None)  # the option's value
        elif not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def main() -> None:
    """Entry point of the ``medimeta`` script and ``python -m medimeta_cli``."""
    build_app(_invoked_command(sys.argv[1:]))(prog_name="medimeta")
