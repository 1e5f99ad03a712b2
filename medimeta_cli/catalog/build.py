"""Turn upstream ``info.yaml`` files into catalog entries.

Two users: an installed dataset is described by its own ``info.yaml``
(:mod:`medimeta_cli.dataset.installed`), and maintainers regenerate the bundled catalog
after an upstream release::

    python -m medimeta_cli.catalog.build DIR_OF_INFO_YAMLS [-o medimeta_cli/data/catalog.json]
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from medimeta_cli.catalog.datasets import (
    BUNDLED_CATALOG,
    DOI,
    RECORD_ID,
    SPLIT_NAMES,
    Catalog,
    Dataset,
    InputSize,
    License,
    Record,
    Source,
    SplitCounts,
    Task,
    TaskTarget,
)
from medimeta_cli.catalog.file import catalog_to_json, validate_catalog
from medimeta_cli.errors import CatalogError
from medimeta_cli.settings import DEFAULT_BASE_URL

RECORD = Record(
    record_id=RECORD_ID,
    doi=DOI,
    base_url=DEFAULT_BASE_URL,
    version="1.0",
    project_url="https://www.woerner.eu/projects/medimeta/",
)

#: One-line descriptions in our own words (upstream summaries are not copied).
SUMMARIES: dict[str, str] = {
    "aml": "Single white blood cells from blood smears of leukaemia patients and controls.",
    "bus": "Breast ultrasound scans graded normal, benign or malignant.",
    "crc": "H&E-stained colorectal tissue patches in nine tissue classes.",
    "cxr": "Frontal chest radiographs with fourteen thorax findings and patient sex.",
    "derm": "Dermatoscopic photographs of pigmented skin lesions in seven diagnoses.",
    "dr_regular": "Standard fundus photographs with retinopathy grades and image-quality ratings.",
    "dr_uwf": "Ultra-widefield fundus photographs with diabetic retinopathy grades.",
    "fundus": "Fundus photographs from three cameras with 45 annotated eye conditions.",
    "glaucoma": "Fundus photographs labelled as glaucoma suspect or not.",
    "mammo_calc": "Mammogram crops around calcifications with pathology, type and distribution.",
    "mammo_mass": "Mammogram crops around masses with pathology, shape and margin type.",
    "oct": "Retinal OCT scans in four diagnostic classes, with an urgent-referral flag.",
    "organs_axial": "Axial abdominal CT slices centred on one of eleven organs.",
    "organs_coronal": "Coronal abdominal CT slices centred on one of eleven organs.",
    "organs_sagittal": "Sagittal abdominal CT slices centred on one of eleven organs.",
    "pbc": "Normal peripheral blood cells from healthy donors in eight cell types.",
    "pneumonia": "Paediatric chest radiographs: normal, bacterial or viral pneumonia.",
    "skinl_derm": "Dermoscopic skin-lesion images with diagnosis and seven-point criteria.",
    "skinl_photo": "Clinical skin-lesion photographs with diagnosis and seven-point criteria.",
}

_EXTRA_URL_FIELDS = ("url2", "download_url1", "download_url2", "code_url")
_SOURCE_FIELDS = {
    "name",
    "title",
    "url",
    "license",
    "authors",
    "paper_title",
    "paper_url",
    "citations",
    *_EXTRA_URL_FIELDS,
}


def _clean(text: Any) -> str | None:
    """Fold the line breaks that YAML keeps in quoted multi-line strings."""
    if text is None:
        return None
    return re.sub(r"\s+", " ", str(text)).strip()


def integer(value: Any, what: str) -> int:
    """``value`` when it is a whole number as YAML writes one (``107_180`` included);
    :class:`ValueError` for anything else. A float is never truncated (``1.9`` is not
    ``1``), and ``.inf`` or ``.nan`` are refused here rather than overflowing later."""
    if isinstance(value, bool) or not isinstance(value, int):
        shown = repr(value) if isinstance(value, str | float) else type(value).__name__
        raise ValueError(f"{what} is {shown[:40]}, not a whole number")
    return value


def _counts(value: Mapping[str, Any], field: str) -> SplitCounts:
    missing = [name for name in SPLIT_NAMES if name not in value]
    if missing:
        raise ValueError(f"{field} lacks {', '.join(missing)}")
    return SplitCounts(**{name: integer(value[name], f"{field}.{name}") for name in SPLIT_NAMES})


def _labels(value: Mapping[Any, Any]) -> dict[int, str]:
    """A task's labels, key -> name; two keys that are one number are refused (a YAML
    mapping may hold ``1`` and ``0x1``), never collapsed onto one class."""
    labels: dict[int, str] = {}
    for key, name in value.items():
        number = integer(key, "a label key")
        if number in labels:
            raise ValueError(f"the label key {number} appears twice")
        labels[number] = str(name)
    return labels


def _source(item: Mapping[str, Any]) -> Source:
    unknown = set(item) - _SOURCE_FIELDS
    if unknown:
        raise ValueError(f"original_data has unknown fields: {', '.join(sorted(unknown))}")
    return Source(
        name=str(item["name"]),
        title=_clean(item.get("title")),
        url=_clean(item.get("url")),
        other_urls=tuple(str(item[key]) for key in _EXTRA_URL_FIELDS if item.get(key)),
        license=_clean(item.get("license")),
        authors=_clean(item.get("authors")),
        paper_title=_clean(item.get("paper_title")),
        paper_url=_clean(item.get("paper_url")),
        citations=tuple(c for c in (_clean(x) for x in item.get("citations") or ()) if c),
    )


def dataset_from_info(info: Mapping[str, Any], *, summary: str | None = None) -> Dataset:
    """Build a catalog entry from the parsed contents of an upstream ``info.yaml``.

    Raises :class:`CatalogError` naming the dataset and the field that is missing
    or malformed.
    """
    dataset_id = str(info.get("id", "<no id>"))
    try:
        channels, height, width = (integer(x, "input_size") for x in info["input_size"])
        license_name = _clean(info["license"]) or ""
        return Dataset(
            id=dataset_id,
            name=str(info["name"]),
            domain=str(info["domain"]),
            summary=summary,
            input_size=InputSize(channels=channels, height=height, width=width),
            num_samples=integer(info["total_num_samples"], "total_num_samples"),
            splits=_counts(info["splits_num_samples"], "splits_num_samples"),
            original_splits=_counts(
                info["original_splits_num_samples"], "original_splits_num_samples"
            ),
            tasks=tuple(
                Task(
                    name=str(task["task_name"]),
                    target=TaskTarget.from_upstream(str(task["task_target"])),
                    labels=_labels(task["labels"]),
                )
                for task in info["tasks"]
            ),
            license=License(
                name=license_name,
                non_commercial="noncommercial" in license_name.lower().replace("-", ""),
            ),
            archive=f"{dataset_id}.zip",
            sources=tuple(_source(item) for item in info.get("original_data") or ()),
            domain_overlaps=tuple(info.get("domain_overlaps") or ()),
            subject_overlaps=tuple(info.get("subject_overlaps") or ()),
        )
    except KeyError as exc:
        raise CatalogError(f"info.yaml of {dataset_id!r} lacks the field {exc.args[0]!r}") from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise CatalogError(f"info.yaml of {dataset_id!r} is malformed: {exc}") from exc


def read_info_yaml(path: Path) -> dict[str, Any]:
    """Parse an upstream ``info.yaml`` (counts like ``107_180`` are integers in YAML 1.1)."""
    return parse_info_yaml(path.read_text(encoding="utf-8"), source=str(path))


#: The most characters an info file may hold (upstream's hold a few thousand).
MAX_INFO_CHARS = 1 << 20
#: How deep collections may nest in an info file (upstream's nest four levels).
MAX_YAML_DEPTH = 16


def parse_info_yaml(text: str, *, source: str) -> dict[str, Any]:
    """Parse the text of an upstream ``info.yaml``; ``source`` names it in errors.

    The text is hostile input: before anything is built from it, its events are read
    (iteratively, so nothing recurses) and a YAML alias is refused (upstream never uses
    one, and aliases are how a kilobyte expands to gigabytes), as is nesting deeper than
    :data:`MAX_YAML_DEPTH` or text longer than :data:`MAX_INFO_CHARS`: all of them a
    :class:`CatalogError` in one line, in milliseconds.
    """
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    if len(text) > MAX_INFO_CHARS:
        raise CatalogError(f"{source} holds {len(text):,} characters, too many for an info file")
    try:
        _check_events(yaml.parse(text, Loader=loader), source)
        data = yaml.load(text, Loader=loader)  # a safe loader: plain data only
    except yaml.YAMLError as exc:
        raise CatalogError(f"{source} is not valid YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(data, dict):
        raise CatalogError(f"{source} does not hold a mapping")
    return data


def _check_events(events: Iterator[Any], source: str) -> None:
    """Refuse aliases and deep nesting, from the parser's events (no recursion)."""
    import yaml

    depth = 0
    for event in events:
        if isinstance(event, yaml.AliasEvent):
            raise CatalogError(
                f"{source} uses a YAML alias (*{str(event.anchor)[:40]}); info files never "
                "do, and aliases can expand a small file without bound"
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise CatalogError(
                    f"{source} nests collections deeper than {MAX_YAML_DEPTH} levels"
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def build_catalog(info_dir: Path) -> Catalog:
    """Build a catalog from a folder of ``<id>.yaml`` upstream info files."""
    paths = sorted(info_dir.glob("*.yaml"))
    if not paths:
        raise CatalogError(f"no *.yaml files in {info_dir}")
    datasets = []
    for path in paths:
        info = read_info_yaml(path)
        datasets.append(dataset_from_info(info, summary=SUMMARIES.get(str(info.get("id")))))
    return Catalog(record=RECORD, datasets=tuple(datasets))


def main(argv: list[str] | None = None) -> int:
    """Regenerate the bundled catalog from upstream info files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("info_dir", type=Path, help="folder holding <id>.yaml info files")
    parser.add_argument("-o", "--output", type=Path, default=BUNDLED_CATALOG)
    args = parser.parse_args(argv)
    text = catalog_to_json(build_catalog(args.info_dir))
    validate_catalog(text, source=str(args.output))  # never write what we could not read back
    args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
