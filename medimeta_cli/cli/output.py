"""The one place that writes to the terminal.

Results go to stdout (JSON with ``--json``, else tables and text); status,
warnings and errors go to stderr. Colour and live displays appear only when the
stream is a terminal and ``NO_COLOR`` is unset; ``--quiet`` keeps stderr to errors.
With ``--json``, a fatal error is also one JSON object on stdout (:func:`error_object`).
Text can carry names from data (a task name, a server's message): every line written here
passes :func:`~medimeta_cli.text.shown`, so a control character is shown escaped, never
sent raw (JSON escapes them itself).
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from medimeta_cli.cli.exit_codes import ExitCode
from medimeta_cli.errors import MedimetaError
from medimeta_cli.text import shown

_INTERRUPTED = "interrupted; partial work is kept and the next run resumes it"


def error_object(code: ExitCode, message: str, hint: str) -> dict[str, Any]:
    """The JSON document a fatal error writes on stdout in ``--json`` mode.

    ``code`` is the exit code's stable name (``USAGE``, ``NETWORK``, ...), the same
    for every error of one exit code.
    """
    return {"error": {"code": code.name, "exit_code": int(code), "message": message, "hint": hint}}


def describe_error(error: BaseException) -> tuple[str, str | None]:
    """The message and hint of an error, as the one or two lines on stderr say them."""
    if isinstance(error, MedimetaError):
        return error.message, error.hint or None
    if isinstance(error, KeyboardInterrupt):
        return _INTERRUPTED, None
    if isinstance(error, OSError):
        where = f": {error.filename}" if error.filename else ""
        return (
            f"{error.strerror or error}{where}",
            "Check the path, its permissions and free space.",
        )
    return (
        f"internal error: {type(error).__name__}: {error}",
        "Run again with --debug and report the traceback.",
    )


def _wants_color(stream: TextIO, environ: Mapping[str, str]) -> bool:
    if "NO_COLOR" in environ or environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _default_progress_interval() -> float:
    from medimeta_cli.settings import SPECS

    return float(next(spec.default() for spec in SPECS if spec.name == "progress_interval"))


#: Longest line a job log gets (longer progress lines, notices, warnings and errors are
#: wrapped).
MAX_LINE = 199


def plain_lines(text: str) -> list[str]:
    """``text`` as log lines: control characters and escape codes shown escaped (a carriage
    return would hide what precedes it), long lines wrapped under :data:`MAX_LINE`."""
    lines: list[str] = []
    for raw in text.splitlines() or [""]:
        line = shown(raw.replace("\t", " ")).rstrip()
        if len(line) <= MAX_LINE:
            lines.append(line)
            continue
        lines += textwrap.wrap(
            line, MAX_LINE, subsequent_indent="    ", break_on_hyphens=False
        ) or [line[:MAX_LINE]]
    return lines


@dataclass
class Output:
    """Where and how a command reports results, status and errors."""

    json_mode: bool = False
    quiet: bool = False
    debug: bool = False
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    #: Seconds at least between plain progress lines (the session sets it from the settings).
    progress_interval: float = field(default_factory=_default_progress_interval)
    #: Whether a result went to stdout already (then a fatal error adds no JSON object).
    emitted: bool = field(default=False, init=False)

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
        # Indented for people; compact for pipes, where it is also several times faster.
        indent = 2 if getattr(self.stdout, "isatty", lambda: False)() else None
        self.stdout.write(json.dumps(data, indent=indent, ensure_ascii=False) + "\n")
        self.stdout.flush()
        self.emitted = True

    def emit_text(self, text: str) -> None:
        """Print plain result text on stdout."""
        text = shown(text, keep_lines=True)
        self.stdout.write(text if text.endswith("\n") else text + "\n")
        self.stdout.flush()
        self.emitted = True

    def emit_table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[str]],
        *,
        title: str | None = None,
        shrink_first: Sequence[int] = (),
    ) -> None:
        """Print a table on stdout: a rich table in a terminal, aligned plain text otherwise.

        The first column is what a user types next (an id, a setting, a path): it is never
        cut nor wrapped. When the terminal is too narrow, the columns in ``shrink_first``
        (names, descriptions) are shortened with an ellipsis first, then the other columns
        wrap (:func:`fit_columns`); a plain table is never cut.
        """
        rows = [[shown(cell) for cell in row] for row in rows]
        if self.stdout_color:
            self._rich_table(headers, rows, title, shrink_first)
            return
        self.emit_text(plain_table(headers, rows))

    def _rich_table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[str]],
        title: str | None,
        shrink_first: Sequence[int],
    ) -> None:
        """A rich table fitted to the terminal (:func:`fit_columns`): boxed when every
        cell fits whole, else without borders, which leaves the cells 11 more characters
        on an eight-column table."""
        from rich import box
        from rich.console import Console
        from rich.table import Table

        console = Console(file=self.stdout, highlight=False)
        count = len(headers)
        boxed = _BOXED_EDGES + _BOXED_PER_COLUMN * count
        widths = fit_columns(headers, rows, console.width - boxed, shrink_first=shrink_first)
        full = fit_columns(headers, rows, 10**6)
        if widths == full:
            table = Table(title=title, header_style="bold", title_justify="left")
            overhead = boxed
        else:
            overhead = _COMPACT_PER_GAP * (count - 1)
            widths = fit_columns(headers, rows, console.width - overhead, shrink_first=shrink_first)
            table = Table(
                title=title,
                header_style="bold",
                title_justify="left",
                box=box.SIMPLE_HEAD,
                show_edge=False,
                pad_edge=False,
                padding=(0, 1, 0, 0),
            )
        for index, (header, width) in enumerate(zip(headers, widths, strict=True)):
            whole = index == 0 or index in shrink_first
            table.add_column(
                header, width=width, no_wrap=whole, overflow="ellipsis" if whole else "fold"
            )
        for row in rows:
            table.add_row(*row)
        # Wider than the terminal only when even the shortened columns do not fit: the
        # terminal then wraps the lines, and the first column is still whole.
        console.width = max(console.width, sum(widths) + overhead)
        console.print(table)
        self.emitted = True

    # ---------------------------------------------------------------- status (stderr)

    def status(self, message: str) -> None:
        """A progress or status line on stderr; silent with --quiet."""
        self._status_line(shown(message))

    def warn(self, message: str) -> None:
        """A warning on stderr; silent with --quiet."""
        self._status_line(self._styled("warning:", "33") + " " + shown(message))

    def _status_line(self, line: str) -> None:
        if not self.quiet:
            self._write_stderr([line])

    def error(self, error: BaseException) -> None:
        """Report an error in one or two lines (a traceback too with --debug)."""
        if self.debug:
            import traceback

            traceback.print_exception(type(error), error, error.__traceback__, file=self.stderr)
        message, hint = describe_error(error)
        if isinstance(error, KeyboardInterrupt):
            lines = [message]
        else:
            lines = [f"{self._styled('error:', '31')} {shown(message)}"]
            if hint:
                lines.append(f"{self._styled('hint:', '36')} {shown(hint)}")
        self._write_stderr(lines)

    def _write_stderr(self, lines: list[str]) -> None:
        """Lines of a status, a warning or an error: in a job log (stderr not a colour
        terminal) plain and wrapped like progress lines; a terminal wraps them itself."""
        if not self.stderr_color:
            lines = [piece for line in lines for piece in plain_lines(line)]
        self.stderr.write("\n".join(lines) + "\n")
        self.stderr.flush()

    def fail(self, error: BaseException, code: ExitCode) -> None:
        """Report the error that ends the command: on stderr (:meth:`error`) and, with
        ``--json`` and no result printed yet, as :func:`error_object` on stdout."""
        self.error(error)
        if self.json_mode and not self.emitted:
            message, hint = describe_error(error)
            if hint is None:  # interrupted
                hint = "Run the same command again to resume."
            self.emit_json(error_object(code, message, hint))

    def _styled(self, text: str, ansi: str) -> str:
        return f"\x1b[{ansi}m{text}\x1b[0m" if self.stderr_color else text


#: Characters a boxed rich table spends on its outer border, and per column (one border
#: and a space on each side of the cell); a table without borders spends two per gap
#: between columns (a space of padding and the column separator).
_BOXED_EDGES = 1
_BOXED_PER_COLUMN = 3
_COMPACT_PER_GAP = 2

#: Narrowest a shortened column gets before the other columns are wrapped.
_SHORTENED_MIN = 10


def fit_columns(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    available: int,
    *,
    keep: Sequence[int] = (0,),
    shrink_first: Sequence[int] = (),
) -> list[int]:
    """The width of each column of a table that should fit in ``available`` characters.

    Each column gets its longest cell. While the table is too wide: the ``shrink_first``
    columns lose characters (widest first, down to :data:`_SHORTENED_MIN`, shown with an
    ellipsis), then the other columns do (widest first, down to their longest word, so
    they wrap between words), then down to their header. The ``keep`` columns never
    lose a character: the sum may exceed ``available`` when they alone do not fit.
    """
    widths = [
        max([len(header), *(len(row[index]) for row in rows)])
        for index, header in enumerate(headers)
    ]
    others = [i for i in range(len(headers)) if i not in keep and i not in shrink_first]
    longest_word = {
        i: max(
            len(word)
            for text in (headers[i], *(row[i] for row in rows))
            for word in (text.split() or [""])
        )
        for i in others
    }
    stages: list[dict[int, int]] = [
        {i: min(widths[i], max(_SHORTENED_MIN, len(headers[i]))) for i in shrink_first},
        {i: longest_word[i] for i in others},
        {i: min(widths[i], len(headers[i])) for i in (*shrink_first, *others)},
    ]
    for floors in stages:
        excess = sum(widths) - available
        while excess > 0:
            candidates = [i for i, floor in floors.items() if widths[i] > floor]
            if not candidates:
                break
            widest = max(candidates, key=lambda i: widths[i])
            widths[widest] -= 1
            excess -= 1
    return widths


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
