"""docs/few-shot.md, "The torchcross format": its commands run as written, and its one line
loads the file with the official class."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import InstalledData
from tests.sample.test_torchcross import official
from tests.support import archives, docs
from tests.support.helpers import invoke


@pytest.mark.slow
def test_the_torchcross_example_writes_checks_and_loads(
    runner: CliRunner, installed: InstalledData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    official("torch")
    # crc with enough test images for the example's 100 episodes of 5 + 10 per class.
    root = tmp_path / "root"
    archives.write_dataset_dir(
        replace(archives.with_num_images(archives.CRC, 720), image_size=8), root
    )
    monkeypatch.setenv("MEDIMETA_HOME", str(root))
    monkeypatch.chdir(tmp_path)
    section = docs.section(docs.page("few-shot.md"), "The torchcross format")
    [commands] = docs.code_blocks(section, "sh")
    lines = [line for line in commands.replace("\\\n", " ").splitlines() if line[:1] != "#"]
    assert len(lines) == 2
    for line in lines:
        words = shlex.split(line)
        assert words[0] == "medimeta"
        result = invoke(runner, *words[1:])
        assert result.exit_code == 0, result.stderr
    [python] = docs.code_blocks(section, "python")
    scope: dict[str, Any] = {"out": "episodes", "root": str(root)}
    exec(python, scope)  # the page's own code, as a reader would run it
    tasks = scope["tasks"]
    assert len(tasks) == 100
    support, query = tasks[0].support, tasks[0].query
    assert len(support) == 5 * 9 and len(query) == 10 * 9
