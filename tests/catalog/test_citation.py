"""BibTeX for MedIMeta and the source datasets."""

from __future__ import annotations

import re

import pytest

from medimeta_cli.catalog.citation import MEDIMETA_BIBTEX, _authors, bibtex_for
from medimeta_cli.catalog.file import load_catalog


def _entries(text: str) -> list[str]:
    return re.findall(r"^@\w+\{([^,]+),", text, flags=re.M)


@pytest.mark.parametrize("dataset_id", load_catalog().ids)
def test_every_dataset_cites_medimeta_and_each_source(dataset_id: str) -> None:
    dataset = load_catalog().get(dataset_id)
    text = bibtex_for(dataset)
    assert text.startswith(MEDIMETA_BIBTEX)
    keys = _entries(text)
    assert keys[:2] == ["woerner2025medimeta", "medimeta_zenodo"]
    assert keys[2:] == [f"{dataset_id}_source{n}" for n in range(1, len(dataset.sources) + 1)]
    # Balanced braces, and LaTeX specials escaped outside \url{}.
    assert text.count("{") == text.count("}")
    for line in text.splitlines():
        if "\\url" not in line and "=" in line:
            assert not re.search(r"(?<!\\)[&%#_]", line.split("=", 1)[1]), line


def test_author_lists_become_bibtex_author_lists() -> None:
    assert _authors("Jakob Nikolas Kather, Niels Halama, Alexander Marx") == (
        "Jakob Nikolas Kather and Niels Halama and Alexander Marx"
    )
    assert _authors("Sawyer-Lee, R., Gimenez, F., Hoogi, A., & Rubin, D.") == (
        "Sawyer-Lee, R. and Gimenez, F. and Hoogi, A. and Rubin, D."
    )
    assert _authors("X. Xu, F. Zhou and X. Bai") == "X. Xu and F. Zhou and X. Bai"


def test_source_entry_fields() -> None:
    text = bibtex_for(load_catalog().get("crc"))
    assert "title        = {100,000 histological images of human colorectal cancer" in text
    assert "howpublished = {\\url{https://zenodo.org/record/1214456}}" in text
    assert "Halama, Niels, \\& Marx" in text
