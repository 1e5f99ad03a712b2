"""Contact sheets: a PNG grid of sampled images, one row per class or episode set."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from medimeta_cli.dataset.reader import DatasetReader

#: Contact sheet geometry, in pixels.
THUMB = 96
GAP = 4
LABEL_WIDTH = 220
#: Lines of label text beside a row of thumbnails (they fit the row's height).
LABEL_LINES = 6
ELLIPSIS = "..."


def label_lines(text: str, fits: Callable[[str], bool], max_lines: int = LABEL_LINES) -> list[str]:
    """``text`` wrapped into lines that each ``fits``; at most ``max_lines`` of them.

    Words are kept whole where they fit a line and cut where one alone does not. When
    the text needs more lines, the middle gives way (a line ``...``): the beginning
    (the key and the first words) and the end (often what tells similar names apart,
    e.g. "and most lesions" against "and all lesions", or an abbreviation) stay.
    """
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and fits(candidate):
            lines[-1] = candidate
            continue
        while len(word) > 1 and not fits(word):
            cut = len(word) - 1
            while cut > 1 and not fits(word[:cut]):
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    if len(lines) > max_lines:
        lines = [*lines[: max(0, max_lines - 2)], ELLIPSIS, lines[-1]][-max_lines:]
    return lines


def sheet_size(rows: int, columns: int) -> tuple[int, int]:
    """Width and height of a contact sheet with ``rows`` classes of ``columns`` images."""
    return (
        LABEL_WIDTH + columns * (THUMB + GAP) + GAP,
        max(1, rows) * (THUMB + GAP) + GAP,
    )


def contact_sheet(reader: DatasetReader, rows: list[tuple[str, list[int]]], path: Path) -> None:
    """Write a PNG with one row per class: its name, then its images as thumbnails."""
    from PIL import Image, ImageDraw

    columns = max((len(indices) for _, indices in rows), default=0)
    sheet = Image.new("RGB", sheet_size(len(rows), columns), "white")
    draw = ImageDraw.Draw(sheet)

    def fits(line: str) -> bool:
        return draw.textlength(line) <= LABEL_WIDTH - GAP

    for row, (name, indices) in enumerate(rows):
        top = GAP + row * (THUMB + GAP)
        text = "\n".join(label_lines(name, fits))
        box = draw.multiline_textbbox((0, 0), text, spacing=2)
        middle = top + max(0, (THUMB - (box[3] - box[1])) // 2) - box[1]
        draw.multiline_text((GAP, middle), text, fill="black", spacing=2)
        if not indices:
            continue
        for column, pixels in enumerate(reader.read_images(indices)):
            thumb = Image.fromarray(pixels).convert("RGB").resize((THUMB, THUMB))
            sheet.paste(thumb, (LABEL_WIDTH + GAP + column * (THUMB + GAP), top))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")
