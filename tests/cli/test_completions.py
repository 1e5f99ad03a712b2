"""Shipped shell completion scripts are current and actually complete."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from medimeta_cli.cli.completion import FILES, completion_script
from tests.support.helpers import installed_script

COMPLETIONS = Path(__file__).resolve().parents[2] / "completions"


@pytest.mark.parametrize("shell", sorted(FILES))
def test_shipped_script_is_current(shell: str) -> None:
    shipped = (COMPLETIONS / FILES[shell]).read_text(encoding="utf-8")
    assert shipped == completion_script(shell), (
        "regenerate with: python -m medimeta_cli.cli.completion completions"
    )


def test_bash_completion_offers_dataset_ids() -> None:
    script = installed_script()
    env = {
        **os.environ,
        "_MEDIMETA_COMPLETE": "complete_bash",
        "COMP_WORDS": "medimeta info organs_",
        "COMP_CWORD": "2",
    }
    proc = subprocess.run([script], capture_output=True, text=True, env=env, check=False)
    assert proc.stdout.split() == ["organs_axial", "organs_coronal", "organs_sagittal"]
