"""Every error message is complete: the error paths a user can provoke, run as the user runs
them (a real process, 80 columns), never end a line with a dangling colon or an empty list."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import InstalledData
from tests.support.helpers import medimeta_process as medimeta

#: What a message cut short looks like: a colon, comma or semicolon with nothing after it
#: (maybe a full stop), an empty bracket, or empty quotes standing for a list.
INCOMPLETE = re.compile(r"([:;,]\s*\.?\s*$)|(\(\s*\)|\[\s*\]|\{\s*\})|(:\s*\.\s)")


def incomplete_lines(stderr: str) -> list[str]:
    """The ``error:``/``hint:`` messages of ``stderr`` (wrapped lines joined) that end short."""
    messages: list[str] = []
    for line in stderr.splitlines():
        if line.startswith(("error:", "hint:", "warning:")) or not messages:
            messages.append(line)
        else:  # a wrapped continuation
            messages[-1] += " " + line.strip()
    return [m for m in messages if INCOMPLETE.search(m)]


def test_the_pattern_catches_what_it_should() -> None:
    assert incomplete_lines("error: only 2 classes; too small: \nhint: x.")
    assert incomplete_lines("error: fine\nhint: Valid tasks: .")
    assert incomplete_lines("error: it offers []")
    assert not incomplete_lines("error: unknown task 'x'; did you mean 'y'?\nhint: Use a, b.")


#: Commands on the installed fixture datasets (crc has 3 classes, cxr is multi-label,
#: dr_regular has several tasks) that must fail, each with a complete message.
ON_INSTALLED = [
    ["sample", "crc", "--ways", "12"],
    ["sample", "crc", "--ways", "12", "--shots", "1", "--queries", "0"],
    ["sample", "crc", "--classes", "ADI,DEB", "--ways", "3", "--shots", "1", "--queries", "0"],
    ["sample", "crc", "--classes", "zzz", "--ways", "2"],
    ["sample", "dr_regular", "--task", "zzz", "--ways", "2"],
    ["sample", "crc", "--ways", "3", "--shots", "500"],
    ["sample", "crc", "--per-class", "0"],
    ["sample", "dr_regular", "--ways", "2"],
    ["info", "dr_regular", "--task", "zzz"],
    ["info", "dr_regular", "--task", ""],
    ["export", "crc", "--classes", "zzz", "--out", "x"],
    ["export", "crc", "--split", "nope", "--out", "x"],
    ["export", "crc", "--shard", "0/3", "--out", "x"],
    ["export", "crc", "--shard", "x", "--out", "x"],
    ["export", "dr_regular", "--out", "x"],
    ["export", "nope", "--out", "x"],
    ["verify", "nope"],
    ["remove"],
    ["list", "--domain", "nope"],
    ["list", "--task-type", "nope"],
    ["download", "--from", "/nonexistent/medimeta"],
    ["download", "crc", "--offline", "--force"],
    ["download"],
    ["info", "crc", "--unknown-option"],
]


@pytest.mark.slow
@pytest.mark.parametrize("args", ON_INSTALLED, ids=" ".join)
def test_error_messages_are_complete(
    args: list[str], installed: InstalledData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    proc = medimeta(*args)
    assert proc.returncode != 0, proc.stderr
    assert "error:" in proc.stderr or "Error" in proc.stderr, proc.stderr
    assert incomplete_lines(proc.stderr) == [], proc.stderr


# ------------------------------------------------------------ names given by their beginning


def test_task_takes_a_unique_beginning_as_classes_do(installed: InstalledData) -> None:
    proc = medimeta(
        "sample", "dr_regular", "--task", "clar", "--ways", "2", "--shots", "1", "--queries", "1"
    )
    assert proc.returncode == 0, proc.stderr
    assert "task 'clar' is 'Clarity'; the official loader needs the exact name" in proc.stderr


def test_an_ambiguous_task_lists_the_candidates() -> None:
    proc = medimeta("info", "skinl_derm", "--task", "diag")
    assert proc.returncode == 2
    assert proc.stderr.startswith(
        "error: task 'diag' of dataset 'skinl_derm' is ambiguous: 'Diagnosis', "
        "'Diagnosis grouped' begin with it"
    )
    assert incomplete_lines(proc.stderr) == []


def test_an_ambiguous_class_lists_the_candidates(installed: InstalledData, tmp_path: Path) -> None:
    proc = medimeta("export", "crc", "--classes", "c", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "error: class 'c' in task 'tissue class' is ambiguous: 'cancer-associated" in (
        proc.stderr
    )
    assert "'colorectal adenocarcinoma epithelium (TUM)' begin with it" in " ".join(
        proc.stderr.split()
    )
