"""Colour conversion of exported images (``export.pixels``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from medimeta_cli.dataset.selection import SelectionSpec
from medimeta_cli.export import Color, convert_color
from tests.conftest import InstalledData
from tests.support import archives
from tests.support.exports import run_export


def test_color_conversion(installed: InstalledData, tmp_path: Path) -> None:
    cxr, crc = installed.specs["cxr"], installed.specs["crc"]
    run_export(
        installed,
        "cxr",
        tmp_path / "rgb",
        SelectionSpec(task="patient sex", splits=("test",)),
        format="numpy",
        color="rgb",
    )
    gray_rgb = np.load(tmp_path / "rgb" / "test" / "images.npy")
    rows = np.array(sorted(archives.split_indices(cxr, "test")))
    np.testing.assert_array_equal(
        gray_rgb, np.repeat(archives.expected_images(cxr)[rows, ..., None], 3, axis=-1)
    )
    run_export(
        installed, "crc", tmp_path / "gray", SelectionSpec(splits=("test",)), color="grayscale"
    )
    some = next((tmp_path / "gray" / "test").rglob("*.png"))
    index = int(some.stem.split("_")[1])
    expected = np.asarray(Image.fromarray(archives.expected_images(crc)[index]).convert("L"))
    np.testing.assert_array_equal(np.asarray(Image.open(some)), expected)
    np.testing.assert_array_equal(
        convert_color(archives.expected_images(crc)[:2], Color.GRAYSCALE),
        np.stack(
            [np.asarray(Image.fromarray(a).convert("L")) for a in archives.expected_images(crc)[:2]]
        ),
    )
