"""Catalog files: strict validation naming the bad field, serialisation, the fast reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medimeta_cli.catalog.datasets import BUNDLED_CATALOG
from medimeta_cli.catalog.file import catalog_to_json, load_catalog, validate_catalog
from medimeta_cli.errors import CatalogError


def test_fast_loader_equals_strict_validation() -> None:
    """The pydantic-free run-time loader builds exactly what strict validation builds."""
    assert load_catalog() == validate_catalog(BUNDLED_CATALOG.read_bytes())


def test_serialisation_round_trips() -> None:
    catalog = load_catalog()
    assert validate_catalog(catalog_to_json(catalog)) == catalog


def _bad_catalog(tmp_path: Path, mutate: object) -> Path:
    data = json.loads(BUNDLED_CATALOG.read_text(encoding="utf-8"))
    mutate(data)  # type: ignore[operator]
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["datasets"][2]["tasks"][0].update(target="regression"),
            r"datasets\[2\] \(crc\)\.tasks\[0\]\.target",
        ),
        (lambda d: d["datasets"][3].update(colour="grey"), r"datasets\[3\] \(cxr\)\.colour"),
        (
            lambda d: d["datasets"][0]["splits"].update(train=1),
            r"datasets\[0\] \(aml\).*splits of 'aml' sum to",
        ),
        (lambda d: d["datasets"][1].pop("num_samples"), r"datasets\[1\] \(bus\)\.num_samples"),
        (lambda d: d["record"].update(record_id="seven"), r"record\.record_id"),
    ],
)
def test_malformed_catalog_names_the_field(tmp_path: Path, mutate: object, expected: str) -> None:
    path = _bad_catalog(tmp_path, mutate)
    with pytest.raises(CatalogError, match=expected) as caught:
        load_catalog(path)
    assert str(path) in str(caught.value)
    assert caught.value.hint
