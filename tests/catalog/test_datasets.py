"""The bundled catalog: its facts, loading and domain selection."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from medimeta_cli.catalog.datasets import (
    DOI,
    DOMAIN_ALIASES,
    RECORD_ID,
    TaskTarget,
    closest,
)
from medimeta_cli.catalog.file import load_catalog
from medimeta_cli.errors import (
    CatalogError,
    UnknownDatasetError,
    UnknownDomainError,
    UnknownTaskError,
    UsageError,
)
from tests.conftest import FixtureData


def test_catalog_has_19_datasets_10_domains_54_tasks() -> None:
    catalog = load_catalog()
    assert len(catalog.datasets) == 19
    assert len(catalog.domains) == 10
    assert sum(len(d.tasks) for d in catalog.datasets) == 54


def test_split_counts_sum_to_the_total() -> None:
    for dataset in load_catalog().datasets:
        assert dataset.splits.total == dataset.num_samples, dataset.id
        assert dataset.original_splits.total == dataset.num_samples, dataset.id


def test_record_metadata() -> None:
    record = load_catalog().record
    assert (record.record_id, record.doi, record.base_url) == (
        7884735,
        "10.5281/zenodo.7884735",
        "https://zenodo.org",
    )
    assert all(d.archive == f"{d.id}.zip" for d in load_catalog().datasets)
    assert (record.record_id, record.doi) == (RECORD_ID, DOI)


def test_loading_a_catalog_file_is_logged(
    fixture_data: FixtureData, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="medimeta_cli"):
        load_catalog(fixture_data.catalog)
    assert f"loading the catalog {fixture_data.catalog}" in caplog.text


def test_label_keys_are_ints_and_may_skip_values() -> None:
    clarity = load_catalog().get("dr_regular").task("Clarity")
    assert sorted(clarity.labels) == [1, 4, 6, 8, 10]
    assert clarity.target is TaskTarget.ORDINAL


def test_non_commercial_flag() -> None:
    flagged = {d.id for d in load_catalog().datasets if d.license.non_commercial}
    assert flagged == {"organs_axial", "organs_coronal", "organs_sagittal"}
    assert load_catalog().get("organs_axial").license.short == "CC BY-NC-SA 4.0"


def test_unreadable_catalog_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read catalog file"):
        load_catalog(tmp_path / "missing.json")


def test_get_is_case_insensitive_and_suggests() -> None:
    catalog = load_catalog()
    assert catalog.get("CRC").id == "crc"
    with pytest.raises(UnknownDatasetError) as caught:
        catalog.get("organs_axail")
    assert caught.value.suggestion == "organs_axial"
    assert "did you mean 'organs_axial'" in str(caught.value)
    assert "pneumonia" in caught.value.hint
    assert isinstance(caught.value, UsageError)


@pytest.mark.parametrize("spelling", ["dr_regular", "dr-regular", "DR_Regular", "DR Regular"])
def test_ids_take_the_spellings_of_domains(spelling: str) -> None:
    assert load_catalog().get(spelling).id == "dr_regular"


def test_domains_and_aliases_win_over_ids_and_say_so() -> None:
    catalog = load_catalog()
    fundus = {d.id for d in catalog.in_domains(["fundus"])}
    assert fundus == {"dr_regular", "dr_uwf", "fundus", "glaucoma"}
    assert {d.id for d in catalog.in_domains(["derm"])} == {"derm", "skinl_derm", "skinl_photo"}
    (notice,) = catalog.domain_notices(["fundus", "Fundus", "crc", "oct", "radiology"])
    assert notice.startswith(
        "'fundus' is also a dataset id; give it as an argument for that dataset alone"
    )
    # oct is a domain of one dataset, the dataset oct: nothing to say.
    assert catalog.domain_notices(["oct"]) == ()


def test_a_task_is_found_by_a_unique_beginning_and_an_ambiguous_one_lists_them() -> None:
    catalog = load_catalog()
    assert catalog.get("cxr").task("DISEASE").name == "disease labels"
    skinl = catalog.get("skinl_derm")
    assert skinl.task("diagnosis").name == "Diagnosis"  # a whole name wins over beginnings
    assert skinl.task("Diagnosis g").name == "Diagnosis grouped"
    with pytest.raises(UnknownTaskError) as caught:
        skinl.task("pig")
    assert caught.value.choices == ("Pigment Network", "Pigmentation", "Pigmentation grouped")
    assert caught.value.message == (
        "task 'pig' of dataset 'skinl_derm' is ambiguous: 'Pigment Network', 'Pigmentation', "
        "'Pigmentation grouped' begin with it"
    )


def test_task_lookup_is_case_insensitive_and_exact_names_win() -> None:
    dataset = load_catalog().get("skinl_derm")
    assert dataset.task("diagnosis GROUPED").name == "Diagnosis grouped"
    with pytest.raises(UnknownTaskError) as caught:
        dataset.task("Diagnosis groped")
    assert caught.value.suggestion == "Diagnosis grouped"
    assert "Pigment Network" in caught.value.hint


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["ophthalmology"], {"dr_regular", "dr_uwf", "fundus", "glaucoma", "oct"}),
        (
            ["radiology"],
            {
                "cxr",
                "pneumonia",
                "mammo_calc",
                "mammo_mass",
                "bus",
                "organs_axial",
                "organs_coronal",
                "organs_sagittal",
            },
        ),
        (["dermatology"], {"derm", "skinl_derm", "skinl_photo"}),
        (["pathology"], {"crc", "aml", "pbc"}),
        (["Chest X-ray"], {"cxr", "pneumonia"}),
        (["chest-x-ray", "OCT"], {"cxr", "pneumonia", "oct"}),
        (["retinal_fundus"], {"dr_regular", "dr_uwf", "fundus", "glaucoma"}),
        (["crc", "Dermatoscopy"], {"crc", "derm", "skinl_derm"}),
    ],
)
def test_domain_selection(names: list[str], expected: set[str]) -> None:
    assert {d.id for d in load_catalog().in_domains(names)} == expected


def test_domain_selection_keeps_catalog_order() -> None:
    ids = [d.id for d in load_catalog().in_domains(["oct", "ophthalmology"])]
    assert ids == sorted(ids)


def test_aliases_name_only_real_domains() -> None:
    domains = set(load_catalog().domains)
    for alias, targets in DOMAIN_ALIASES.items():
        assert set(targets) <= domains, alias


def test_unknown_domain_lists_choices_and_suggests() -> None:
    with pytest.raises(UnknownDomainError) as caught:
        load_catalog().in_domains(["opthalmology"])
    assert caught.value.suggestion == "ophthalmology"
    assert "Retinal fundus" in caught.value.hint and "radiology" in caught.value.hint


def test_closest_handles_prefixes_and_nonsense() -> None:
    assert closest("organs", ["crc", "organs_axial"]) == "organs_axial"
    assert closest("zzzzzz", ["crc", "cxr"]) is None
