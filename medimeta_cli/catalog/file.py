"""Catalog files: loading, strict validation with readable errors, serialisation, and the
fast reader.

A catalog from any file is validated strictly with pydantic (:func:`validate_catalog`);
the bundled one, already validated when it was generated and by the test suite, is
read by plain constructors (:func:`catalog_from_mapping`) so that start-up does not
pay for pydantic.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medimeta_cli.catalog.datasets import (
    BUNDLED_CATALOG,
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
from medimeta_cli.errors import CatalogError

logger = logging.getLogger(__name__)


def validate_catalog(raw: bytes | str, *, source: str = "<catalog>") -> Catalog:
    """Validate catalog JSON strictly with pydantic.

    Raises :class:`CatalogError` naming the file and the first bad field, e.g.
    ``datasets[3] (crc).tasks[0].target: Input should be 'binary', ...``.
    """
    from pydantic import TypeAdapter, ValidationError

    try:
        return TypeAdapter(Catalog).validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        location = _describe_location(first["loc"], raw)
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise CatalogError(
            f"invalid catalog {source}: {location}: {first['msg']}{more}",
        ) from exc


def catalog_to_json(catalog: Catalog) -> str:
    """Serialise a catalog to the JSON form :func:`validate_catalog` reads."""
    from pydantic import TypeAdapter

    data = TypeAdapter(Catalog).dump_python(catalog, mode="json")
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def _describe_location(loc: Sequence[int | str], raw: bytes | str) -> str:
    """Render a pydantic error location, naming a dataset by its id where possible."""
    parts: list[str] = []
    dataset_ids: list[Any] = []
    with contextlib.suppress(ValueError, AttributeError):
        dataset_ids = [d.get("id") for d in json.loads(raw).get("datasets", [])]
    for index, item in enumerate(loc):
        if isinstance(item, int):
            label = f"[{item}]"
            if index == 1 and loc[0] == "datasets" and item < len(dataset_ids):
                label += f" ({dataset_ids[item]})"
            parts.append(label)
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts) or "<top level>"


def catalog_from_mapping(data: Mapping[str, Any]) -> Catalog:
    """Build a catalog from already-validated JSON data without pydantic (fast path)."""
    return Catalog(
        record=Record(**data["record"]),
        datasets=tuple(_dataset_from_mapping(item) for item in data["datasets"]),
    )


def _dataset_from_mapping(item: Mapping[str, Any]) -> Dataset:
    return Dataset(
        id=item["id"],
        name=item["name"],
        domain=item["domain"],
        input_size=InputSize(**item["input_size"]),
        num_samples=item["num_samples"],
        splits=SplitCounts(**item["splits"]),
        original_splits=SplitCounts(**item["original_splits"]),
        tasks=tuple(
            Task(
                name=task["name"],
                target=TaskTarget(task["target"]),
                labels={int(key): value for key, value in task["labels"].items()},
            )
            for task in item["tasks"]
        ),
        license=License(**item["license"]),
        archive=item["archive"],
        summary=item.get("summary"),
        sources=tuple(
            Source(
                **{
                    **source,
                    "citations": tuple(source.get("citations", ())),
                    "other_urls": tuple(source.get("other_urls", ())),
                }
            )
            for source in item.get("sources", ())
        ),
        domain_overlaps=tuple(item.get("domain_overlaps", ())),
        subject_overlaps=tuple(item.get("subject_overlaps", ())),
    )


# --------------------------------------------------------------------------- loading


def load_catalog(path: Path | None = None) -> Catalog:
    """Load the bundled catalog, or validate and load the catalog file at ``path``."""
    if path is None:
        return _bundled_catalog()
    logger.debug("loading the catalog %s (validated strictly)", path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"cannot read catalog file {path}: {exc.strerror}") from exc
    return validate_catalog(raw, source=str(path))


_CACHE: dict[str, Catalog] = {}


def _bundled_catalog() -> Catalog:
    if "bundled" not in _CACHE:
        logger.debug("loading the bundled catalog %s", BUNDLED_CATALOG)
        _CACHE["bundled"] = catalog_from_mapping(json.loads(BUNDLED_CATALOG.read_bytes()))
    return _CACHE["bundled"]
