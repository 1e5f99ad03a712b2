"""Real SLURM job arrays against the test server: downloads, sharded exports, the job
templates of ``docs/hpc.md``. The cluster is a one-node SLURM started by ``.ci/slurm``;
without one these tests are skipped (loudly), and with ``MEDIMETA_REQUIRE_SLURM=1`` (as CI
sets) they fail."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

import medimeta_cli
from tests.conftest import InstalledData
from tests.support import docs
from tests.support import zenodo_server as zs
from tests.support.helpers import invoke, wait_for

# Read at import: the autouse clean_env fixture drops every MEDIMETA_* variable.
REQUIRED = os.environ.get("MEDIMETA_REQUIRE_SLURM", "").lower() in ("1", "true", "yes", "on")
#: Every test here submits real jobs and waits for them.
pytestmark = pytest.mark.slow

# A task runs the tool with this interpreter, then records its exit code by task id.
TASK = """#!/bin/bash
"$TEST_PYTHON" -m medimeta_cli "$@"
echo $? > "$TEST_CODES/$SLURM_ARRAY_TASK_ID"
"""


def _cluster_problem() -> str | None:
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "sbatch/sinfo are not installed"
    try:
        proc = subprocess.run(
            ["sinfo", "--noheader", "--format=%t"], capture_output=True, text=True, timeout=10
        )
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 10 s"
    if proc.returncode != 0:
        return f"sinfo failed: {proc.stderr.strip() or proc.returncode}"
    states = proc.stdout.split()
    if not any(state.rstrip("*") in ("idle", "mix", "alloc") for state in states):
        return f"no node is up (states: {' '.join(states) or 'none'})"
    return None


@pytest.fixture(scope="module")
def cluster() -> None:
    """A SLURM cluster that answers and has a node up; skip (or fail, in CI) otherwise."""
    problem = _cluster_problem()
    if problem is not None:
        message = f"NO SLURM CLUSTER, SLURM TESTS NOT RUN: {problem}; start one with .ci/slurm"
        if REQUIRED:
            pytest.fail(f"{message} (MEDIMETA_REQUIRE_SLURM is set)")
        pytest.skip(message)


def _job_env(**extra: str) -> dict[str, str]:
    """The environment sbatch exports to the jobs: this test's settings, this venv first."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def _wait_for_jobs(*selector: str, timeout: float = 120.0) -> None:
    """Poll squeue until no job matches (polling is faster than sbatch --wait's backoff)."""
    deadline = time.monotonic() + timeout
    while True:
        proc = subprocess.run(
            ["squeue", "--noheader", *selector], capture_output=True, text=True, check=True
        )
        if not proc.stdout.strip():
            return
        if time.monotonic() > deadline:
            subprocess.run(["scancel", *selector[1:2]], check=False)
            raise AssertionError(f"jobs still queued after {timeout} s:\n{proc.stdout}")
        time.sleep(0.2)


@dataclass(frozen=True)
class Array:
    """One submitted job array of the tool, its log folder and its tasks' exit codes."""

    job_id: str
    folder: Path

    def wait(self) -> dict[int, int]:
        """Wait for every task; their exit codes by task id (killed tasks have none)."""
        _wait_for_jobs("--jobs", self.job_id)
        return {int(p.name): int(p.read_text() or "-1") for p in (self.folder / "codes").iterdir()}

    def logs(self) -> str:
        """Every task's output, for failure messages."""
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')}"
            for p in sorted((self.folder / "logs").iterdir())
        )


def submit(folder: Path, array: str, args: Sequence[str]) -> Array:
    """``sbatch --array=ARRAY`` of ``medimeta ARGS``, logs and exit codes under ``folder``."""
    for name in ("logs", "codes"):
        (folder / name).mkdir(parents=True)
    script = folder / "task.sh"
    script.write_text(TASK, encoding="utf-8")
    env = _job_env(TEST_PYTHON=sys.executable, TEST_CODES=str(folder / "codes"))
    proc = subprocess.run(
        [
            "sbatch",
            "--parsable",
            f"--array={array}",
            "--job-name=medimeta-test",
            f"--chdir={folder}",
            f"--output={folder / 'logs' / '%a.out'}",
            str(script),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return Array(proc.stdout.strip().split(";")[0], folder)


def _part_size(root: Path, key: str) -> int:
    parts = list((root / ".medimeta" / "partial").glob(f"{key}.*.part"))
    return parts[0].stat().st_size if parts else 0


def _export_files(folder: Path) -> tuple[dict[str, bytes], dict[str, object]]:
    """Every file of an export but provenance.json, and its provenance without the command."""
    files = {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }
    provenance = json.loads(files.pop("provenance.json"))
    provenance.pop("command")
    return files, provenance


# ----------------------------------------------------------------------------- job arrays


@pytest.mark.usefixtures("cluster")
def test_16_tasks_download_one_dataset_with_one_transfer(
    zenodo: zs.ZenodoServer, data_root: Path, tmp_path: Path, runner: CliRunner
) -> None:
    """16 tasks ask for crc at once from a throttled server: one GET, all exit 0, it verifies."""
    zenodo.connection_rate = zenodo.file_size("crc.zip") / 4  # about 4 s per transfer
    array = submit(tmp_path / "job", "0-15", ["download", "crc"])
    codes = array.wait()
    assert codes == dict.fromkeys(range(16), 0), array.logs()
    assert len(zenodo.requests_for("crc.zip", method="GET")) == 1
    result = invoke(runner, "verify", "crc", "--full")
    assert result.exit_code == 0, result.stdout + result.stderr


@pytest.mark.usefixtures("cluster")
@pytest.mark.parametrize(
    "fmt",
    [
        "imagefolder",
        "numpy",
        pytest.param(
            "parquet",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("pyarrow") is None, reason="needs pyarrow"
            ),
        ),
    ],
)
def test_shard_auto_over_arrays_from_0_and_from_1_equals_one_export(
    installed: InstalledData, tmp_path: Path, runner: CliRunner, fmt: str
) -> None:
    """--array=0-3 and --array=1-4 with --shard auto each write the unsharded export's bytes."""
    base = ["export", "crc", "--format", fmt, "--jobs", "1", "--quiet"]
    whole = invoke(runner, *base, "--out", str(tmp_path / "whole"))
    assert whole.exit_code == 0, whole.stderr
    sharded = [*base, "--shard", "auto", "--out"]
    arrays = {
        span: submit(tmp_path / span, span, [*sharded, str(tmp_path / f"{span}.out")])
        for span in ("0-3", "1-4")
    }
    expected = _export_files(tmp_path / "whole")
    for span, array in arrays.items():
        codes = array.wait()
        assert sorted(codes.values()) == [0] * 4, array.logs()
        assert sorted(codes) == [int(span[0]) + i for i in range(4)]
        assert _export_files(tmp_path / f"{span}.out") == expected, span


@pytest.mark.usefixtures("cluster")
def test_task_cancelled_mid_download_is_resumed_by_the_next(
    zenodo: zs.ZenodoServer, data_root: Path, tmp_path: Path, runner: CliRunner
) -> None:
    """scancel kills task 0 mid-transfer; task 1 (--array=0-1%1 runs them in turn) resumes."""
    size = zenodo.file_size("crc.zip")
    zenodo.connection_rate = size / 4
    array = submit(tmp_path / "job", "0-1%1", ["download", "crc", "--connections", "1"])
    wait_for(lambda: _part_size(data_root, "crc.zip") > size // 10, timeout=60)
    subprocess.run(["scancel", f"{array.job_id}_0"], check=True)
    zenodo.connection_rate = None
    codes = array.wait()
    assert codes.get(1) == 0 and codes.get(0, -1) != 0, array.logs()
    gets = zenodo.requests_for("crc.zip", method="GET")
    starts = [int((g.range or "bytes=0-").split("=")[1].split("-")[0]) for g in gets]
    assert starts[0] == 0 and any(start > 0 for start in starts[1:]), starts
    result = invoke(runner, "verify", "crc", "--full")
    assert result.exit_code == 0, result.stdout + result.stderr


# ----------------------------------------------------------------------- docs/hpc.md templates


def hpc_templates() -> tuple[dict[str, str], str]:
    """The HPC page's job scripts by file name (and ``train.py``), and its submit command."""
    section = docs.section(docs.page("hpc.md"), "Job templates")
    # A job script's file name is its job name without "medimeta-": fetch.sh, train.sh.
    scripts = {
        f"{name}.sh": text
        for text in re.findall(r"```sh\n(#!.*?)```", section, re.S)
        for name in re.findall(r"^#SBATCH --job-name=medimeta-(\S+)$", text, re.M)
    }
    [scripts["train.py"]] = docs.code_blocks(section, "python")
    assert all(f"`{name}`" in section for name in scripts), scripts
    [submit_line] = re.findall(r"```sh\n(sbatch [^\n]*)\n```", section)
    return scripts, submit_line


#: The two lines every template sets its environment with (a clean job inherits neither).
_HOME_LINE = re.compile(r"^export MEDIMETA_HOME=(\S+)", re.M)
_VENV_LINE = re.compile(r"^source (\S+)/bin/activate\b", re.M)


def for_this_machine(template: str, root: Path) -> str:
    """A template with this test's data root and virtual environment in its two lines for
    them (and nothing else changed); fails when a template lacks either line."""
    assert len(_HOME_LINE.findall(template)) == 1, f"no MEDIMETA_HOME line in:\n{template}"
    assert len(_VENV_LINE.findall(template)) == 1, f"no venv activation in:\n{template}"
    venv = Path(sys.prefix)
    if not (venv / "bin" / "activate").is_file():
        pytest.skip("the tests do not run in a virtual environment the jobs could activate")
    template = _HOME_LINE.sub(f"export MEDIMETA_HOME={root}", template)
    return _VENV_LINE.sub(f"source {venv}/bin/activate", template)


#: Only what stands in for Zenodo and its catalog reaches a job (``--export`` lists them);
#: the data root, PATH and the virtual environment must come from the template itself.
_TEST_SERVER_VARIABLES = ("MEDIMETA_BASE_URL", "MEDIMETA_CATALOG", "MEDIMETA_TIMEOUT")


def _clean_job_env() -> dict[str, str]:
    """What a submitting shell holds: this test's settings, its venv first on PATH; sbatch is
    told to pass none of it but the test server's address (``SBATCH_EXPORT``)."""
    env = _job_env(SBATCH_EXPORT=",".join(_TEST_SERVER_VARIABLES))
    env.pop("MEDIMETA_HOME", None)
    env["VIRTUAL_ENV"] = sys.prefix
    return env


def _run_documented_jobs(folder: Path, command: str) -> str:
    """Run ``command`` in ``folder`` (as a user would), wait for its jobs, return their logs."""
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=folder,
        capture_output=True,
        text=True,
        env=_clean_job_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    ids = re.findall(r"\d+", proc.stdout)
    assert ids, proc.stdout
    _wait_for_jobs("--jobs", ",".join(ids))
    return "\n".join(p.read_text(errors="replace") for p in sorted(folder.glob("slurm-*.out")))


@pytest.mark.usefixtures("cluster")
def test_documented_fetch_then_sharded_export_templates(
    zenodo: zs.ZenodoServer, data_root: Path, tmp_path: Path, runner: CliRunner
) -> None:
    """docs/hpc.md's fetch.sh and export.sh, submitted with its own command line, as shown."""
    scripts, submit_line = hpc_templates()
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    for name in ("fetch.sh", "export.sh"):
        (jobs / name).write_text(for_this_machine(scripts[name], data_root), encoding="utf-8")
    # The submit line prints only the export's id; the fetch job is found by its name.
    logs = _run_documented_jobs(
        jobs, f"{submit_line}; squeue --noheader --name=medimeta-fetch -o %i"
    )
    assert (jobs / "crc-numpy" / "provenance.json").is_file(), logs
    assert (jobs / "crc-png" / "provenance.json").is_file(), logs
    whole = invoke(runner, "export", "crc", "--jobs", "1", "--out", str(tmp_path / "whole"))
    assert whole.exit_code == 0, whole.stderr
    assert _export_files(jobs / "crc-png") == _export_files(tmp_path / "whole")
    assert len(zenodo.requests_for("crc.zip", method="GET")) == 1


@pytest.mark.usefixtures("cluster")
def test_documented_training_template_ensures_its_data(
    zenodo: zs.ZenodoServer, data_root: Path, tmp_path: Path
) -> None:
    """docs/hpc.md's train.py, submitted as a job: it gets the installed dataset's folder."""
    if not hasattr(medimeta_cli, "ensure"):
        pytest.skip("ensure() not available")
    scripts, _ = hpc_templates()
    (tmp_path / "train.sh").write_text(
        for_this_machine(scripts["train.sh"], data_root), encoding="utf-8"
    )
    (tmp_path / "train.py").write_text(scripts["train.py"], encoding="utf-8")
    logs = _run_documented_jobs(tmp_path, "sbatch train.sh")
    assert f"training on {data_root / 'crc'}" in logs, logs
