"""Command-line values the commands share: dataset selections and comma-separated lists."""

from __future__ import annotations

import pytest

from medimeta_cli.catalog.file import load_catalog
from medimeta_cli.cli._selection import select_datasets, split_values
from medimeta_cli.cli.output import Output
from medimeta_cli.errors import UsageError


def test_ids_and_domains_without_duplicates_in_the_order_given() -> None:
    chosen = select_datasets(Output(), load_catalog(), ["oct", "crc"], ["ophthalmology"], False)
    assert [d.id for d in chosen] == ["oct", "crc", "dr_regular", "dr_uwf", "fundus", "glaucoma"]


def test_all_is_every_dataset() -> None:
    catalog = load_catalog()
    assert select_datasets(Output(), catalog, None, None, True) == catalog.datasets


def test_nothing_named_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no datasets given"):
        select_datasets(Output(), load_catalog(), [], None, False)


def test_split_values() -> None:
    assert split_values(["a,b", " c ", ",,"]) == ("a", "b", "c")
    assert split_values(None) is None
    assert split_values([]) is None
