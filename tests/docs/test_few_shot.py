"""``docs/few-shot.md``'s PyTorch ``Dataset`` over a JSON episode file runs as shown and gives
every image of an episode with its target."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import InstalledData
from tests.support import docs

#: Runs the page's example against an episode file, comparing each item with images.hdf5.
CHECK = """
import json, sys
import h5py, numpy as np, torch
episode_file, data_root = sys.argv[1], sys.argv[2]
document = json.loads(open(episode_file).read())
stored = h5py.File(f"{data_root}/{document['dataset']}/images.hdf5")["images"]
for number, episode in enumerate(document["episodes"]):
    for role in ("support", "query"):
        items = EpisodeSet(episode_file, data_root, episode=number, role=role)
        assert len(items) == len(episode[role]) > 0
        for i, item in enumerate(episode[role]):
            image, target = items[i]
            pixels = np.asarray(stored[item["index"]])
            pixels = pixels.transpose(2, 0, 1) if pixels.ndim == 3 else pixels[None]
            assert torch.equal(image, torch.from_numpy(pixels).float() / 255)
            assert target.tolist() == item["target"]
print("ok", document["dataset"])
"""


def _torch() -> None:
    # Looked up, not imported: mypy runs in CI before the official pipeline is installed.
    if importlib.util.find_spec("torch") is None:
        if os.environ.get("CI"):
            raise AssertionError("torch is not installed in CI (.ci/run installs it)") from None
        pytest.skip("SKIPPED LOUDLY: torch is not installed; `.ci/run` installs it (CI does)")


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ("crc", "--ways", "3", "--shots", "1", "-Q", "1", "--episodes", "2"),
        ("cxr", "--task", "disease labels", "--shots", "1", "-Q", "1", "--episodes", "2"),
    ],
    ids=["multi-class", "multi-label"],
)
def test_the_pytorch_dataset_reads_an_episode_file(
    installed: InstalledData, tmp_path: Path, args: tuple[str, ...]
) -> None:
    _torch()
    [example] = docs.code_blocks(
        docs.section(docs.page("few-shot.md"), "Loading episodes in PyTorch"), "python"
    )[:1]
    assert len(example.splitlines()) <= 25 and "class EpisodeSet" in example
    written = subprocess.run(
        [sys.executable, "-m", "medimeta_cli", "sample", *args, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert written.returncode == 0, written.stderr
    path = json.loads(written.stdout)["file"]
    done = subprocess.run(
        [sys.executable, "-c", example + CHECK, path, str(installed.root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")
