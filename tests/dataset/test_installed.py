"""An installed dataset's own description and how it differs from the catalog."""

from __future__ import annotations

import os
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from medimeta_cli.catalog.datasets import TaskTarget
from medimeta_cli.catalog.file import load_catalog
from medimeta_cli.dataset.gate import InfoError, info_in_archive, read_info
from medimeta_cli.dataset.installed import (
    InstalledDataset,
    catalog_differences,
    installed_ids,
    is_safe_id,
)
from medimeta_cli.errors import IntegrityError
from tests.support import archives
from tests.support.archives import CRC, DR_REGULAR, with_num_images
from tests.support.helpers import write_installed


def test_the_installed_info_yaml_is_read_not_the_catalog(tmp_path: Path) -> None:
    folder, _ = write_installed(with_num_images(CRC, 90), tmp_path)
    catalog_crc = load_catalog().get("crc")
    dataset = read_info(folder, "crc", summary=catalog_crc.summary)
    assert dataset.num_samples == 90
    assert dataset.summary == catalog_crc.summary  # our own wording is kept


def test_differences_from_the_catalog_are_described(tmp_path: Path) -> None:
    _, dataset = write_installed(with_num_images(CRC, 90), tmp_path)
    catalog_crc = load_catalog().get("crc")
    found = {d.field: d for d in catalog_differences(dataset, catalog_crc)}
    assert found["num_samples"].message == "90 images (catalog: 107,180)"
    assert found["num_samples"].catalog == 107_180 and found["num_samples"].installed == 90
    assert "train split" in found["splits"].message
    view = InstalledDataset(dataset, catalog_crc).to_json()
    assert view["in_catalog"] is True and view["catalog"]["num_samples"] == 107_180


def test_task_differences_name_the_task(tmp_path: Path) -> None:
    _, dataset = write_installed(DR_REGULAR, tmp_path)
    level = dataset.task("DR level")
    changed = replace(
        dataset,
        tasks=tuple(
            replace(t, target=TaskTarget.MULTICLASS) if t is level else t for t in dataset.tasks
        ),
    )
    [difference] = catalog_differences(changed, dataset)
    assert difference.message == "task 'DR level' is multiclass (catalog: ordinal)"
    assert catalog_differences(dataset, dataset) == []


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("missing", "is missing"),
        ("link", "is a symbolic link (never followed)"),
        ("other id", "names dataset 'cxr', not 'crc'"),
        ("unsafe id", "is malformed"),
        ("huge", "too large for an info file"),
    ],
)
def test_an_unusable_info_yaml_is_named(tmp_path: Path, damage: str, reason: str) -> None:
    folder, _ = write_installed(CRC, tmp_path)
    path = folder / "info.yaml"
    text = path.read_text()
    if damage == "missing":
        path.unlink()
    elif damage == "link":
        path.rename(tmp_path / "real.yaml")
        path.symlink_to(tmp_path / "real.yaml")
    elif damage == "other id":
        path.write_text(text.replace("id: crc", "id: cxr", 1))
    elif damage == "unsafe id":
        path.write_text(text.replace("id: crc", "id: ../crc", 1))
    else:
        path.write_text(text + "#" * (1 << 20))
    with pytest.raises(InfoError) as caught:
        read_info(folder, "crc")
    assert reason in caught.value.reason
    assert "verify --deep crc" in caught.value.hint


def test_installed_ids_are_safe_folders_with_info_yaml(tmp_path: Path) -> None:
    write_installed(CRC, tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / ".medimeta").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "crc")
    os.makedirs(tmp_path / "Upper")
    (tmp_path / "Upper" / "info.yaml").write_text("id: Upper\n")
    assert installed_ids([tmp_path, tmp_path / "absent"]) == ["crc"]
    assert is_safe_id("lab_scans") and not is_safe_id("../x") and not is_safe_id("_x")


def test_an_archive_is_described_before_it_is_extracted(tmp_path: Path) -> None:
    archive = archives.build_archive(CRC, tmp_path)
    assert info_in_archive(archive, "crc").num_samples == CRC.num_images
    with pytest.raises(IntegrityError, match=r"holds no cxr/info\.yaml"):
        info_in_archive(archive, "cxr")
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as handle:
        handle.writestr("empty/info.yaml", "id: [unclosed\n")
    with pytest.raises(IntegrityError, match="is not valid YAML"):
        info_in_archive(empty, "empty")
