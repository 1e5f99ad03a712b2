"""Text that came from data, made safe to show.

Names and messages can carry what a dataset, an archive or a server wrote: a task name
with an escape sequence, a carriage return or a newline would recolour the terminal,
hide what precedes it on the line, or forge a line of output or of a log. Everything
the tool shows passes :func:`shown` once, where it is written (``cli/output.py``, the
log handler, job logs), so those characters appear escaped (``\\x1b``), never raw.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["CONTROL_CHARACTERS", "has_control", "shown"]

#: C0 and C1 control characters, DEL, and the invisible characters that reorder or break
#: lines (bidirectional overrides and isolates, line and paragraph separators).
CONTROL_CHARACTERS: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
# The same without newline and tab, for text whose lines are the tool's own.
_CONTROL_BUT_LINES: Final = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def has_control(text: str) -> bool:
    """Whether ``text`` holds a character :func:`shown` would escape."""
    return CONTROL_CHARACTERS.search(text) is not None


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text: str, *, keep_lines: bool = False) -> str:
    """``text`` with every control character escaped (``\\x1b``, ``\\r``, ``\\u202e``);
    ``keep_lines`` keeps newlines and tabs, for text laid out by the tool itself."""
    pattern = _CONTROL_BUT_LINES if keep_lines else CONTROL_CHARACTERS
    return pattern.sub(_escape, text)
