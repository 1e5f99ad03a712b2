"""The one place that writes to the terminal.

Results go to stdout (JSON with ``--json``, else tables and text); status,
warnings and errors go to stderr. Colour and live displays appear only when the
stream is a terminal and ``NO_COLOR`` is unset; ``--quiet`` keeps stderr to errors.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from medimeta_cli.errors import MedimetaError


def _wants_color(stream: TextIO, environ: Mapping[str, str]) -> bool:
    if "NO_COLOR" in environ or environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


@dataclass
class Output:
    """Where and how a command reports results, status and errors."""

    json_mode: bool = False
    quiet: bool = False
    debug: bool = False
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    @property
    def stdout_color(self) -> bool:
        """Whether results on stdout may use colour and rich tables."""
        return _wants_color(self.stdout, self.environ)

    @property
    def stderr_color(self) -> bool:
        """Whether status lines, bars and errors on stderr may use colour and animation."""
        return _wants_color(self.stderr, self.environ)

    # ---------------------------------------------------------------- results (stdout)

    def emit_json(self, data: Any) -> None:
        """Print one JSON document on stdout."""
        self.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        self.stdout.flush()

    def emit_text(self, text: str) -> None:
        """Print plain result text on stdout."""
        self.stdout.write(text if text.endswith("\n") else text + "\n")
        self.stdout.flush()

    def emit_table(
        self, headers: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None
    ) -> None:
        """Print a table on stdout: a rich table in a terminal, aligned plain text otherwise."""
        if self.stdout_color:
            from rich.console import Console
            from rich.table import Table

            table = Table(*headers, title=title, header_style="bold", title_justify="left")
            for row in rows:
                table.add_row(*row)
            Console(file=self.stdout, highlight=False).print(table)
            return
        self.emit_text(plain_table(headers, rows))

    # ---------------------------------------------------------------- status (stderr)

    def status(self, message: str) -> None:
        """A progress or status line on stderr; silent with --quiet."""
        if not self.quiet:
            self.stderr.write(message + "\n")
            self.stderr.flush()

    def warn(self, message: str) -> None:
        """A warning on stderr; silent with --quiet."""
        self.status(self._styled("warning:", "33") + " " + message)

    def error(self, error: BaseException) -> None:
        """Report an error in one or two lines (a traceback too with --debug)."""
        if self.debug:
            import traceback

            traceback.print_exception(type(error), error, error.__traceback__, file=self.stderr)
        if isinstance(error, MedimetaError):
            lines = [f"{self._styled('error:', '31')} {error.message}"]
            if error.hint:
                lines.append(f"{self._styled('hint:', '36')} {error.hint}")
        elif isinstance(error, KeyboardInterrupt):
            lines = ["interrupted; partial work is kept and the next run resumes it"]
        elif isinstance(error, OSError):
            where = f": {error.filename}" if error.filename else ""
            lines = [
                f"{self._styled('error:', '31')} {error.strerror or error}{where}",
                f"{self._styled('hint:', '36')} Check the path, its permissions and free space.",
            ]
        else:
            lines = [
                f"{self._styled('error:', '31')} internal error: {type(error).__name__}: {error}",
                f"{self._styled('hint:', '36')} Run again with --debug and report the traceback.",
            ]
        self.stderr.write("\n".join(lines) + "\n")
        self.stderr.flush()

    def _styled(self, text: str, ansi: str) -> str:
        return f"\x1b[{ansi}m{text}\x1b[0m" if self.stderr_color else text


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, for pipes and logs."""
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in (headers, *rows)
    ]
    return "\n".join(lines)
