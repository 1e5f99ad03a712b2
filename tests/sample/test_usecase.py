"""The sampling use case: episode exports are committed once, or not at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import medimeta_cli.export.imagefolder as imagefolder_module
from medimeta_cli.dataset.reader import DatasetReader
from medimeta_cli.export import ExportOptions, ImageFormat
from medimeta_cli.sample.usecase import SampleRequest, draw_sample, export_episodes
from tests.conftest import InstalledData


def test_an_interrupted_episode_export_leaves_nothing_visible(
    installed: InstalledData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = installed.catalog().get("crc")
    with DatasetReader.open(installed.root, dataset) as reader:
        sample = draw_sample(reader, SampleRequest(ways=3, shots=1, queries=1, episodes=3))
    calls = {"n": 0}
    real = imagefolder_module.encode_image

    def failing(image: np.ndarray, image_format: ImageFormat) -> bytes:
        calls["n"] += 1
        if calls["n"] == 14:  # in the third episode: two are written in staging
            raise KeyboardInterrupt
        return real(image, image_format)

    monkeypatch.setattr(imagefolder_module, "encode_image", failing)
    out = tmp_path / "out" / "episodes"
    out.parent.mkdir()
    with pytest.raises(KeyboardInterrupt):
        export_episodes(installed.root, sample, out, ExportOptions())
    assert calls["n"] == 14 and list(out.parent.iterdir()) == []
    monkeypatch.setattr(imagefolder_module, "encode_image", real)
    result = export_episodes(installed.root, sample, out, ExportOptions())
    assert result.images == 18 and len(list(out.rglob("*.png"))) == 18
