"""Help pages that show every hint, with or without rich.

Typer renders help texts as rich markup when rich is installed, and markup swallows
anything in brackets: "Data root [env: MEDIMETA_HOME; default: ...]" would read "Data
root .". The classes here escape the texts for rich while ``--help`` is formatted (and
leave them alone for click's plain help), and show a command's examples as an
"Examples" section below the options, as written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import typer.core

#: Title of the section the examples are shown under.
EXAMPLES_TITLE = "Examples:"


def examples_epilog(command_lines: Iterable[str]) -> str:
    """The epilog that lists example command lines, one ``$ medimeta ...`` per line."""
    return EXAMPLES_TITLE + "".join(f"\n  $ {line}" for line in command_lines)


@contextmanager
def readable_texts(command: typer.core.TyperCommand | typer.core.TyperGroup) -> Iterator[None]:
    """Rewrite a command's help texts for the renderer Typer will use, while in the block."""
    saved: list[tuple[Any, str, Any]] = [
        (command, "help", command.help),
        (command, "epilog", command.epilog),
        *((param, "help", getattr(param, "help", None)) for param in command.params),
    ]
    try:
        if typer.core.HAS_RICH and command.rich_markup_mode == "rich":
            from rich.markup import escape

            for owner, name, text in saved:
                if text:
                    setattr(owner, name, escape(text))
            if command.epilog:
                # A first empty line keeps the examples indented under their title
                # (Typer removes the indentation common to all lines but the first).
                command.epilog = "\n" + command.epilog
        elif command.epilog:
            # \b: click prints the paragraph as written instead of rewrapping it.
            command.epilog = "\b\n" + command.epilog
        yield
    finally:
        for owner, name, text in saved:
            setattr(owner, name, text)


class HelpCommand(typer.core.TyperCommand):
    """The class of every ``medimeta`` command: help with its hints and examples."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """The help page, with the texts fit for the renderer."""
        with readable_texts(self):
            super().format_help(ctx, formatter)
