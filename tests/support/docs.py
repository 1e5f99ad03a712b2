"""Reading the documentation as tests need it: pages, their sections, code blocks, links and
the anchors GitHub gives their headings.

The README is the first screen; ``docs/*.md`` hold the reference. Tests that run an example
or a template read it from the page where it lives, so the page and the test cannot drift.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"

_FENCE = re.compile(r"^```.*?^```[ \t]*$", re.S | re.M)
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
# [text](target) and ![alt](target); the target ends at the first space or ")".
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def pages() -> list[Path]:
    """The README, the changelog and every page under ``docs/``."""
    return [README, REPO / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]


def read(path: Path) -> str:
    """The text of one page."""
    return path.read_text(encoding="utf-8")


def page(name: str) -> str:
    """The text of ``docs/<name>``."""
    return read(DOCS / name)


def prose(text: str) -> str:
    """``text`` without its fenced code blocks (whose ``#`` lines are comments, not headings,
    and whose brackets are code, not links)."""
    return _FENCE.sub("", text)


def headings(text: str) -> list[re.Match[str]]:
    """The headings of a page, in order: level in group 1, title in group 2 (lines starting
    with ``#`` inside code blocks are not headings)."""
    fences = [(m.start(), m.end()) for m in _FENCE.finditer(text)]
    return [m for m in _HEADING.finditer(text) if not any(a <= m.start() < b for a, b in fences)]


def section(text: str, heading: str) -> str:
    """The section under the first heading whose title starts with ``heading``, up to the
    next heading of the same or a higher level (its subsections included)."""
    found = headings(text)
    for i, match in enumerate(found):
        if match.group(2).startswith(heading):
            level = len(match.group(1))
            ends = [m.start() for m in found[i + 1 :] if len(m.group(1)) <= level]
            return text[match.start() : ends[0] if ends else len(text)]
    raise AssertionError(f"no section {heading!r}")


def code_blocks(text: str, language: str) -> list[str]:
    """The bodies of the fenced code blocks in ``language``, in order."""
    return re.findall(rf"^```{re.escape(language)}\n(.*?)^```", text, re.S | re.M)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped (letters, digits,
    ``_``, ``-`` and spaces kept), each space a ``-``."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of a page; a repeated one gets ``-1``, ``-2``... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for match in headings(text):
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(text: str) -> list[str]:
    """Every link target in the prose of a page (links in code blocks are code)."""
    return _LINK.findall(prose(text))
