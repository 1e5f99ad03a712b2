"""Whole exports: staging, idempotence, errors, read-only roots (``export.run``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import medimeta_cli.export.imagefolder as imagefolder_module
import medimeta_cli.export.run as run_module
from medimeta_cli.catalog.datasets import Catalog
from medimeta_cli.dataset.selection import SelectionSpec
from medimeta_cli.errors import (
    DiskSpaceError,
    IntegrityError,
    NotInstalledError,
    OutputExistsError,
    UsageError,
)
from medimeta_cli.export import (
    Color,
    ExportFormat,
    ExportOptions,
    ImageFormat,
    export_dataset,
)
from tests.conftest import InstalledData
from tests.support.exports import files_of, run_export
from tests.support.helpers import read_only_view, tmpfs, write_installed


@pytest.mark.parametrize("fmt", ["imagefolder", "numpy"])
def test_same_command_same_bytes(installed: InstalledData, tmp_path: Path, fmt: str) -> None:
    spec = SelectionSpec(limit=5, seed=2)
    run_export(installed, "crc", tmp_path / "a", spec, format=fmt, command="c")
    run_export(installed, "crc", tmp_path / "b", spec, format=fmt, command="c")
    assert files_of(tmp_path / "a") == files_of(tmp_path / "b")


def test_rerun_is_up_to_date_and_other_selections_need_overwrite(
    installed: InstalledData, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run_export(installed, "crc", out)
    stamp = (out / "provenance.json").stat().st_mtime_ns
    assert run_export(installed, "crc", out).status == "up to date"
    assert (out / "provenance.json").stat().st_mtime_ns == stamp
    with pytest.raises(OutputExistsError) as caught:
        run_export(installed, "crc", out, SelectionSpec(limit=3))
    assert "--overwrite" in caught.value.hint
    assert (
        run_export(installed, "crc", out, SelectionSpec(limit=3), overwrite=True).status
        == "exported"
    )
    assert sum(1 for _ in out.rglob("*.png")) == 9  # 3 per split


def test_an_interrupted_export_never_looks_complete(
    installed: InstalledData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real = imagefolder_module.encode_image

    def failing(image: np.ndarray, image_format: ImageFormat) -> bytes:
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return real(image, image_format)

    monkeypatch.setattr(imagefolder_module, "encode_image", failing)
    with pytest.raises(KeyboardInterrupt):
        run_export(installed, "crc", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_not_installed(installed: InstalledData, tmp_path: Path) -> None:
    catalog: Catalog = installed.catalog()
    with pytest.raises(NotInstalledError, match=r"'organs_axial' is not installed") as caught:
        export_dataset(
            tmp_path, catalog.get("organs_axial"), SelectionSpec(), tmp_path / "o", ExportOptions()
        )
    assert caught.value.hint == "Run `medimeta download organs_axial` first."
    assert not (tmp_path / "o").exists()


def test_damaged_hdf5_says_to_verify(installed: InstalledData, tmp_path: Path) -> None:
    folder, dataset = write_installed(installed.specs["crc"], tmp_path / "root")
    hdf5 = folder / "images.hdf5"
    hdf5.write_bytes(hdf5.read_bytes()[: hdf5.stat().st_size // 3])
    with pytest.raises(IntegrityError) as caught:
        export_dataset(
            tmp_path / "root",
            dataset,
            SelectionSpec(),
            tmp_path / "out",
            ExportOptions(format=ExportFormat.NUMPY),
        )
    assert "medimeta verify --full crc" in caught.value.hint
    assert not (tmp_path / "out").exists()


def test_disk_full_mid_export_leaves_nothing(
    installed: InstalledData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tmpfs(tmp_path / "small", "size=600k") as small:
        with pytest.raises(DiskSpaceError):
            run_export(installed, "crc", small / "out", format="numpy")  # fails the early check
        monkeypatch.setattr(run_module, "ensure_space", lambda *a, **k: None)
        with pytest.raises(DiskSpaceError, match="disk full"):
            run_export(installed, "crc", small / "out", format="numpy")
        assert list(small.iterdir()) == []


def test_read_only_root_can_be_exported(installed: InstalledData, tmp_path: Path) -> None:
    with read_only_view(installed.root, tmp_path / "ro") as ro:
        dataset = installed.catalog().get("crc")
        result = export_dataset(
            ro,
            dataset,
            SelectionSpec(original=True, splits=("train",)),
            tmp_path / "out",
            ExportOptions(format=ExportFormat.NUMPY),
        )
        assert result.images == installed.specs["crc"].split_count("train", original=True)


def test_options_take_the_plain_strings_and_refuse_others() -> None:
    options = ExportOptions(format="numpy", image_format="jpeg", color="rgb")  # type: ignore[arg-type]
    assert (options.format, options.image_format, options.color) == (
        ExportFormat.NUMPY,
        ImageFormat.JPEG,
        Color.RGB,
    )
    with pytest.raises(UsageError, match="unknown format 'tfrecord'") as caught:
        ExportOptions(format="tfrecord")  # type: ignore[arg-type]
    assert caught.value.hint == "Use imagefolder, numpy, webdataset or parquet."
    with pytest.raises(UsageError, match="unknown image format 'gif'"):
        ExportOptions(image_format="gif")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="unknown colour mode 'cmyk'"):
        ExportOptions(color="cmyk")  # type: ignore[arg-type]
