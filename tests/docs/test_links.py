"""Every relative link in the README and ``docs/`` reaches a file, and its anchor a heading."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import docs


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` whose file or heading anchor does not exist."""
    broken = []
    for target in docs.links(docs.read(page)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check
            continue
        path_part, _, anchor = target.partition("#")
        path = (page.parent / path_part).resolve() if path_part else page
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in docs.anchors(docs.read(path)):
            broken.append(f"{target}: no heading with that anchor in {path.name}")
    return broken


@pytest.mark.parametrize("page", docs.pages(), ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_a_broken_link_or_anchor_is_found(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# There\n\n## A `--flag` here\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md#a---flag-here) [gone](missing.md) [bad](there.md#nowhere)\n"
        "[self](#top) [web](https://example.org/x.md)\n\n# Top\n\n"
        "```sh\n# not a heading: [not a link](nowhere.md)\n```\n",
        encoding="utf-8",
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "there.md#nowhere: no heading with that anchor in there.md",
    ]


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {t.partition("#")[0] for t in docs.links(docs.read(docs.README))}
    for page in sorted(docs.DOCS.glob("*.md")):
        assert f"docs/{page.name}" in linked, page.name
