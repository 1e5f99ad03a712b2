"""The ``Normalize`` example of the stats section runs as shown, on a real export."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medimeta_cli.dataset.selection import SelectionSpec
from tests.conftest import InstalledData
from tests.support import docs
from tests.support.exports import run_export

_TORCHVISION = "from torchvision import transforms"


def _example() -> tuple[str, str]:
    """The example, as its part that reads provenance.json and its torchvision part."""
    [block] = docs.code_blocks(docs.section(docs.page("commands.md"), "`medimeta stats"), "python")
    reading, _, torch_part = block.partition(_TORCHVISION)
    assert torch_part, "the example lost its torchvision import"
    return reading, _TORCHVISION + torch_part


def test_the_normalize_example_reads_the_exports_mean_and_std(
    installed: InstalledData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The part that reads provenance.json always runs (what it hands to ``Normalize`` is
    checked here); the torchvision part runs where torchvision is installed (it is no
    dependency of this tool, nor of its tests)."""
    run_export(installed, "crc", tmp_path / "crc-numpy", SelectionSpec(), format="numpy")
    monkeypatch.chdir(tmp_path)
    reading, torch_part = _example()
    namespace: dict[str, Any] = {}
    exec(compile(reading, "commands.md", "exec"), namespace)
    saved = json.loads((tmp_path / "crc-numpy" / "provenance.json").read_text(encoding="utf-8"))
    images = np.load(tmp_path / "crc-numpy" / "train" / "images.npy").astype(np.float64) / 255
    np.testing.assert_allclose(namespace["mean"], images.mean(axis=(0, 1, 2)), rtol=1e-9)
    np.testing.assert_allclose(namespace["std"], images.std(axis=(0, 1, 2)), rtol=1e-9)
    assert namespace["mean"] == saved["normalization"]["mean"]
    if importlib.util.find_spec("torchvision") is not None:
        exec(compile(torch_part, "commands.md", "exec"), namespace)
        assert callable(namespace["to_model"])
