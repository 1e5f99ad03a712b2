"""Job logs: what a batch job's stderr file holds when the tool runs without a terminal."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
from pathlib import Path

import pytest

from medimeta_cli.cli.output import MAX_LINE, plain_lines
from medimeta_cli.cli.progress import JobLog, duration
from medimeta_cli.events import Phase
from medimeta_cli.fsutil import human_bytes
from tests.conftest import InstalledData
from tests.support import zenodo_server as zs
from tests.support.helpers import install_from_server, installed_script

_AMOUNT = r"\d+(\.\d)? (B|KiB|MiB|GiB)"
_DURATION = r"(\d+\.\d s|\d+ min \d\d s|\d+ h \d\d min)"
PROGRESS = re.compile(
    rf"(?P<stage>downloading|verifying): crc {_AMOUNT} of {_AMOUNT} \((?P<percent>\d+)%\)"
    rf"(?P<rate>, {_AMOUNT}/s(, ETA (?P<eta>{_DURATION}))?)?"
)


def _seconds(text: str) -> float:
    """A :func:`duration` back in seconds."""
    numbers = [float(n) for n in re.findall(r"[\d.]+", text)]
    if text.endswith(" min"):
        return numbers[0] * 3600 + numbers[1] * 60
    if "min" in text:
        return numbers[0] * 60 + numbers[1]
    return numbers[0]


def _job(args: list[str], log: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run the tool as a batch job does: stderr is a file (and no terminal anywhere)."""
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(extra)
    with open(log, "w", encoding="utf-8") as stderr:
        return subprocess.run(
            [installed_script(), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )


def _lines(log: Path) -> list[str]:
    raw = log.read_bytes().decode("utf-8")
    assert "\r" not in raw and "\x1b" not in raw, raw
    lines = raw.split("\n")
    assert lines[-1] == "", "the log ends with a whole line"
    assert all(0 < len(line) < 200 for line in lines[:-1]), raw
    return lines[:-1]


@pytest.mark.slow
def test_a_throttled_download_logs_calm_lines_and_a_summary(
    zenodo: zs.ZenodoServer, data_root: Path, tmp_path: Path
) -> None:
    size = zenodo.file_size("crc.zip")
    zenodo.connection_rate = size / 6  # one stream of about 6 s
    log = tmp_path / "job.err"
    proc = _job(["download", "crc", "--connections", "1"], log, MEDIMETA_PROGRESS_INTERVAL="0.5")
    assert proc.returncode == 0, log.read_text()
    assert proc.stdout.startswith("installed ")
    lines = _lines(log)
    # The data root did not exist: the log says once where it was made, first.
    assert lines[0] == f"created the data root {data_root} (MEDIMETA_HOME)", lines
    lines = lines[1:]
    progress = [m for m in map(PROGRESS.fullmatch, lines) if m]
    summary = re.compile(rf"downloading: crc installed in {_DURATION}, (?P<amount>{_AMOUNT}) at ")
    others = [line for line in lines if not PROGRESS.fullmatch(line)]
    # Every line is a progress line, the engine's long steps, or the summary; nothing else.
    steps = {f"crc: {phase.value}" for phase in Phase if phase.logged}
    assert others[:-1] and set(others[:-1]) <= steps, lines
    found = summary.match(others[-1])
    assert found and found["amount"] == human_bytes(size), lines
    assert lines[-1] == others[-1], "the summary comes last"
    # A steady pace: several lines, each at least 10% further than the one before.
    assert len(progress) >= 3, lines
    percents = [int(m["percent"]) for m in progress]
    assert all(b - a >= 10 for a, b in itertools.pairwise(percents)), lines
    assert percents[0] >= 10 and all(m["stage"] == "downloading" for m in progress)
    # Rates and ETAs once measured (test_no_rate_before_a_few_seconds_and_some_bytes), and
    # then sensible: this transfer takes seconds, not the days a first chunk's rate predicts.
    assert any(m["eta"] for m in progress), lines
    assert all(_seconds(m["eta"]) < 60 for m in progress if m["eta"]), lines


def test_verify_ends_each_dataset_with_a_summary(
    zenodo: zs.ZenodoServer, data_root: Path, tmp_path: Path
) -> None:
    install_from_server("crc", "cxr")
    log = tmp_path / "verify.err"
    proc = _job(["verify", "crc", "cxr", "--full"], log)
    assert proc.returncode == 0, log.read_text()
    lines = _lines(log)
    assert [line.split(" done in ")[0] for line in lines] == ["hashing: crc", "hashing: cxr"]
    assert all(re.search(rf", {_AMOUNT} at {_AMOUNT}/s$", line) for line in lines), lines


def test_export_ends_with_a_summary(installed: InstalledData, tmp_path: Path) -> None:
    env = {"MEDIMETA_HOME": str(installed.root), "MEDIMETA_CATALOG": str(installed.catalog_path)}
    log = tmp_path / "export.err"
    proc = _job(["export", "crc", "--out", str(tmp_path / "o"), "-j", "1"], log, **env)
    assert proc.returncode == 0, log.read_text()
    total = sum(installed.specs["crc"].split_count(split) for split in ("train", "val", "test"))
    lines = _lines(log)
    [line] = [line for line in lines if not line.startswith("warning: ")]
    assert re.fullmatch(
        rf"exporting: crc done in {_DURATION}, {total:,} images at [\d,]+ images/s", line
    ), line


def test_lines_wait_for_the_interval_and_ten_percent_more() -> None:
    now = [0.0]
    written: list[str] = []
    log = JobLog(
        written.append, verb="downloading", unit="bytes", interval=10, clock=lambda: now[0]
    )
    log.expect_outcomes()
    log.start("crc", 1000 << 20, 0)
    for second in range(1, 61):  # 1% of the archive per second
        now[0] = float(second)
        log.advance("crc", 10 << 20)
    shown = [line.split("(")[1].split("%")[0] for line in written]
    assert shown == ["10", "20", "30", "40", "50", "60"]  # every 10 s, as 10 s bring 10%
    assert (
        written[0] == "downloading: crc 100.0 MiB of 1000.0 MiB (10%), 10.0 MiB/s, ETA 1 min 30 s"
    )
    written.clear()
    for second in range(61, 81):  # now 10% takes 20 s: the later of the two counts
        now[0] = float(second)
        log.advance("crc", 5 << 20)
    assert [line.split("(")[1].split("%")[0] for line in written] == ["70"]
    log.phase("crc", "verifying", logged=True)
    now[0] = 85.0
    log.phase("crc", "installed", logged=False)
    assert written[-2:] == [
        "crc: verifying",
        "downloading: crc installed in 1 min 25 s, 700.0 MiB at 8.8 MiB/s",
    ]


def test_no_rate_before_a_few_seconds_and_some_bytes() -> None:
    now = [0.0]
    written: list[str] = []
    log = JobLog(written.append, verb="hashing", unit="bytes", interval=0.5, clock=lambda: now[0])
    log.start("crc", 1000, 0)
    now[0] = 1.0
    log.advance("crc", 200)
    now[0] = 5.0
    log.advance("crc", 200)  # 4 s, but only 400 bytes: a rate would mean nothing yet
    assert written == ["hashing: crc 200 B of 1000 B (20%)", "hashing: crc 400 B of 1000 B (40%)"]
    now[0] = 6.0
    log.advance("crc", 600)
    assert written[-1] == "hashing: crc done in 6.0 s, 1000 B at 167 B/s"


def test_long_or_garbled_messages_become_clean_short_lines() -> None:
    text = "crc: retrying \x1b[31mafter\x1b[0m a reset\rhidden " + "x" * 450
    lines = plain_lines(text)
    assert len(lines) >= 3 and all(len(line) <= MAX_LINE for line in lines)
    assert not any(char in "".join(lines) for char in "\x1b\r")
    assert "".join(line.strip() for line in lines).endswith("x" * 450)
    assert duration(59.94) == "59.9 s" and duration(3599) == "59 min 59 s"
    assert duration(3 * 3600 + 7 * 60) == "3 h 07 min"
