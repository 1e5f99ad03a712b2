"""Building catalog entries from upstream info.yaml files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medimeta_cli.catalog.build import build_catalog, dataset_from_info, main, read_info_yaml
from medimeta_cli.catalog.file import load_catalog
from medimeta_cli.errors import CatalogError


def test_bundled_catalog_matches_the_reference(reference_info: Path) -> None:
    """Every fact of the bundled catalog comes from the upstream info files."""
    assert build_catalog(reference_info) == load_catalog()


def test_every_task_and_label_key_matches_the_reference(reference_info: Path) -> None:
    catalog = load_catalog()
    for path in sorted(reference_info.glob("*.yaml")):
        info = yaml.safe_load(path.read_text(encoding="utf-8"))
        dataset = catalog.get(info["id"])
        assert dataset.task_names == tuple(t["task_name"] for t in info["tasks"])
        for task, upstream in zip(dataset.tasks, info["tasks"], strict=True):
            assert task.labels == {int(k): str(v) for k, v in upstream["labels"].items()}
            assert task.target.upstream == upstream["task_target"]
        assert dataset.num_samples == info["total_num_samples"]
        assert dataset.input_size.as_list() == list(info["input_size"])


def test_underscored_counts_are_integers(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("total_num_samples: 107_180\n", encoding="utf-8")
    assert read_info_yaml(path)["total_num_samples"] == 107180


def _info() -> dict[str, object]:
    return {
        "id": "toy",
        "name": "Toy",
        "domain": "OCT",
        "input_size": [1, 224, 224],
        "total_num_samples": 4,
        "splits_num_samples": {"train": 2, "val": 1, "test": 1},
        "original_splits_num_samples": {"train": 4, "val": 0, "test": 0},
        "tasks": [
            {"task_name": "a b", "task_target": "BINARY_CLASSIFICATION", "labels": {0: "n", 1: "y"}}
        ],
        "license": "CC BY-NC 4.0 Attribution-NonCommercial",
    }


def test_dataset_from_info_builds_an_entry() -> None:
    dataset = dataset_from_info(_info())
    assert dataset.archive == "toy.zip"
    assert dataset.license.non_commercial
    assert dataset.task("A B").labels == {0: "n", 1: "y"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda i: i.pop("domain"), "lacks the field 'domain'"),
        (lambda i: i.update(total_num_samples=5), "sum to 4, not num_samples=5"),
        (lambda i: i["tasks"][0].update(task_target="REGRESSION"), "unknown task target"),
        (lambda i: i["splits_num_samples"].pop("val"), "splits_num_samples lacks val"),
    ],
)
def test_dataset_from_info_reports_the_problem(change: object, message: str) -> None:
    info = _info()
    change(info)  # type: ignore[operator]
    with pytest.raises(CatalogError, match=message):
        dataset_from_info(info)


def test_main_writes_a_valid_catalog(reference_info: Path, tmp_path: Path) -> None:
    out = tmp_path / "catalog.json"
    assert main([str(reference_info), "-o", str(out)]) == 0
    assert load_catalog(out) == load_catalog()
