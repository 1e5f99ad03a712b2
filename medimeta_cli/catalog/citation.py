"""How to cite MedIMeta and the datasets it was built from: as BibTeX, and in one line each."""

from __future__ import annotations

import re

from medimeta_cli.catalog.datasets import DOI, Dataset, Source

MEDIMETA_BIBTEX = (
    """@article{woerner2025medimeta,
  author  = {Woerner, Stefano and Jaques, Arthur and Baumgartner, Christian F.},
  title   = {A comprehensive and easy-to-use multi-domain multi-task medical imaging
             meta-dataset},
  journal = {Scientific Data},
  year    = {2025},
  doi     = {10.1038/s41597-025-04866-4}
}

@misc{medimeta_zenodo,
  author    = {Woerner, Stefano and Jaques, Arthur and Baumgartner, Christian F.},
  title     = {{MedIMeta}: the Medical Imaging Meta-Dataset},
  publisher = {Zenodo},
  doi       = {"""
    + DOI
    + """},
  url       = {https://doi.org/"""
    + DOI
    + """}
}"""
)

_SPECIAL = re.compile(r"([&%$#_{}])")


def _escape(text: str) -> str:
    """Escape the characters BibTeX (LaTeX) gives a meaning to."""
    return _SPECIAL.sub(r"\\\1", text)


def _url(url: str) -> str:
    # Inside \url{} only braces and % need care; they do not occur in these URLs.
    return "\\url{" + url + "}"


_INITIALS = re.compile(r"^(?:[A-Z]\.\s?)+$")


def _authors(text: str) -> str:
    """Upstream author lists to BibTeX: ``"A B, C D and E F"`` -> ``"A B and C D and E F"``;
    ``"Lee, R., Rubin, D."`` (surname, initials) -> ``"Lee, R. and Rubin, D."``."""
    parts = [p.strip() for p in re.split(r",\s*|\s+and\s+|\s*&\s*", text) if p.strip()]
    if len(parts) % 2 == 0 and all(_INITIALS.match(p) for p in parts[1::2]):
        parts = [
            f"{surname}, {initials}"
            for surname, initials in zip(parts[::2], parts[1::2], strict=True)
        ]
    return " and ".join(parts)


#: MedIMeta's paper in one line (``medimeta info``); the BibTeX is :data:`MEDIMETA_BIBTEX`.
MEDIMETA_SHORT = (
    "Woerner et al., A comprehensive and easy-to-use multi-domain multi-task medical "
    "imaging meta-dataset, Scientific Data (2025), https://doi.org/10.1038/s41597-025-04866-4"
)


def _first_author(text: str) -> str:
    """``"Samiksha Pachade, Prasanna Porwal, ..."`` -> ``"Samiksha Pachade et al."``."""
    authors = _authors(text).split(" and ")
    return authors[0] + (" et al." if len(authors) > 1 else "")


def short_citations(source: Source) -> list[tuple[str, str]]:
    """A source's dataset and paper in one line each, as ``("data", line)`` and
    ``("paper", line)``: first author, title, address. The upstream ``citations`` are
    sometimes only the words ``data`` and ``paper``, so the lines are made from the
    source's fields; the full references are in :func:`bibtex_for`."""
    by = f"{_first_author(source.authors)}, " if source.authors else ""
    lines = [
        ("data", by + (source.title or source.name) + (f", {source.url}" if source.url else ""))
    ]
    if source.paper_title:
        address = f", {source.paper_url}" if source.paper_url else ""
        lines.append(("paper", f"{by}{source.paper_title}{address}"))
    return lines


def source_bibtex(dataset: Dataset, source: Source, number: int) -> str:
    """A ``@misc`` entry for one source dataset, keyed ``<id>_source<number>``."""
    fields: list[tuple[str, str]] = []
    if source.authors:
        fields.append(("author", _escape(_authors(source.authors))))
    fields.append(("title", _escape(source.title or source.name)))
    if source.url:
        fields.append(("howpublished", _url(source.url)))
    if source.paper_title:
        paper = _escape(source.paper_title)
        fields.append(
            (
                "note",
                f"Paper: {paper}, {_url(source.paper_url)}"
                if source.paper_url
                else f"Paper: {paper}",
            )
        )
    if source.citations:
        fields.append(("addendum", _escape(" ".join(source.citations))))
    body = ",\n".join(f"  {name:<12} = {{{value}}}" for name, value in fields)
    return f"@misc{{{dataset.id}_source{number},\n{body}\n}}"


def bibtex_for(dataset: Dataset) -> str:
    """BibTeX for MedIMeta and for every source dataset of ``dataset``."""
    entries = [MEDIMETA_BIBTEX]
    entries += [source_bibtex(dataset, source, n) for n, source in enumerate(dataset.sources, 1)]
    return "\n\n".join(entries) + "\n"
