"""Where the core's log records go during one command: stderr, at the level the flags ask for.

Nothing is configured at import; :func:`log_to_stderr` adds one handler for the
``medimeta_cli`` logger while a command runs and takes it away afterwards, so the
tool's logs never leak into a program that imports the package.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from medimeta_cli.cli.output import plain_lines
from medimeta_cli.text import shown

PACKAGE_LOGGER = "medimeta_cli"

#: Time, level, module and message: readable in a terminal and in a batch job's log file.
LOG_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%H:%M:%S"


class _ShownFormatter(logging.Formatter):
    """Formats a record with its message escaped (:func:`~medimeta_cli.text.shown`): a
    name from data logged by the core cannot forge a line or send an escape sequence."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = shown(record.message)
        return super().formatMessage(record)


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes in.

    A live progress display replaces ``sys.stderr`` with a proxy that keeps the bars
    intact, and test runners swap it per invocation; a stream fixed at set-up would
    bypass both.
    """

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        # StreamHandler.__init__ assigns the stream; it is looked up at each record instead.
        pass

    def format(self, record: logging.LogRecord) -> str:
        """The record; in a job log (stderr not a terminal) plain and wrapped like the
        progress lines around it."""
        text = super().format(record)
        isatty = getattr(sys.stderr, "isatty", None)
        if isatty is not None and isatty():
            return text
        return "\n".join(plain_lines(text))


def _log_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Python warnings (NumPy's numeric RuntimeWarnings among them) as one debug record of
    the package's logger: never a raw two-line warning with its source line on stderr.
    The code checks the values such warnings are about; ``--debug`` still shows them."""
    logging.getLogger(PACKAGE_LOGGER).debug(
        "%s: %s (%s:%d)", category.__name__, message, filename, lineno
    )


def log_level(*, debug: bool, quiet: bool) -> int:
    """DEBUG with ``--debug``; ERROR with ``--quiet`` (stderr keeps to errors); else WARNING."""
    if debug:
        return logging.DEBUG
    return logging.ERROR if quiet else logging.WARNING


@contextmanager
def log_to_stderr(*, debug: bool, quiet: bool = False) -> Iterator[None]:
    """Route the package's log records to stderr for the duration of a command."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    handler = _CurrentStderrHandler()
    handler.setFormatter(_ShownFormatter(LOG_FORMAT, DATE_FORMAT))
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(log_level(debug=debug, quiet=quiet))
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _log_warning
            yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
