"""The rule of ``--sources-for``: which (dataset, task) pairs meta-train for a target."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from medimeta_cli.catalog.file import load_catalog
from medimeta_cli.dataset.gate import InfoError
from medimeta_cli.dataset.sources import sources_for
from medimeta_cli.errors import UnknownDatasetError
from tests.support import archives


def test_a_target_with_domain_overlaps_leaves_them_out(data_root: Path) -> None:
    catalog = load_catalog()
    chosen = sources_for(catalog, data_root, (), "fundus")
    assert chosen.overlaps_from == "catalog"
    assert chosen.excluded == ("fundus", "dr_regular", "dr_uwf", "glaucoma")
    assert chosen.ids == tuple(
        i for i in catalog.ids if i not in {"fundus", "dr_regular", "dr_uwf", "glaucoma"}
    )
    # The first task of each source, in catalog order.
    assert chosen.pairs == tuple((d.id, d.tasks[0].name) for d in chosen.datasets)
    assert ("cxr", "disease labels") in chosen.pairs
    assert ("cxr", "patient sex") not in chosen.pairs


def test_subject_overlaps_are_left_out_too(data_root: Path) -> None:
    chosen = sources_for(load_catalog(), data_root, (), "skinl_photo")
    # skinl_photo shares no domain with anything, but its subjects with skinl_derm.
    assert chosen.excluded == ("skinl_photo", "skinl_derm")
    assert "skinl_derm" not in chosen.ids and "derm" in chosen.ids


def test_a_target_without_overlaps_leaves_out_only_itself(data_root: Path) -> None:
    catalog = load_catalog()
    chosen = sources_for(catalog, data_root, (), "CRC")
    assert chosen.target == "crc" and chosen.excluded == ("crc",)
    assert chosen.ids == tuple(i for i in catalog.ids if i != "crc")


def test_all_tasks_uses_every_task_of_each_source(data_root: Path) -> None:
    catalog = load_catalog()
    chosen = sources_for(catalog, data_root, (), "crc", all_tasks=True)
    expected = tuple((d.id, t.name) for d in catalog.datasets if d.id != "crc" for t in d.tasks)
    assert chosen.pairs == expected
    assert ("cxr", "patient sex") in chosen.pairs
    assert chosen.to_json()["pairs"][0] == {"dataset": expected[0][0], "task": expected[0][1]}


def test_the_installed_info_yaml_says_which_datasets_overlap(data_root: Path) -> None:
    # Installed crc claims overlaps the catalog does not know of: its own info.yaml wins.
    archives.write_dataset_dir(
        replace(archives.CRC, domain_overlaps=("aml",), subject_overlaps=("pbc",)), data_root
    )
    chosen = sources_for(load_catalog(), data_root, (), "crc")
    assert chosen.overlaps_from == "installed"
    assert chosen.excluded == ("crc", "aml", "pbc")
    assert not {"crc", "aml", "pbc"} & set(chosen.ids)
    # And an installed cxr that names no overlap puts pneumonia back among the sources.
    archives.write_dataset_dir(replace(archives.CXR, domain_overlaps=()), data_root)
    assert "pneumonia" in sources_for(load_catalog(), data_root, (), "cxr").ids


def test_an_unknown_target_and_a_refused_info_yaml_are_errors(data_root: Path) -> None:
    with pytest.raises(UnknownDatasetError):
        sources_for(load_catalog(), data_root, (), "crcc")
    (data_root / "crc").mkdir(parents=True)
    (data_root / "crc" / "info.yaml").write_text("id: [unclosed\n", encoding="utf-8")
    with pytest.raises(InfoError):
        sources_for(load_catalog(), data_root, (), "crc")
