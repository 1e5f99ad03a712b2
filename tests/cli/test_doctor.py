"""``medimeta doctor``: JSON shape, exit codes, offline mode, installed script, start-up cost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from tests.doctor.test_network import closed_port_url
from tests.support.helpers import installed_script, invoke, invoke_json
from tests.support.zenodo_server import ZenodoServer

CHECKS = [
    "record API",
    "proxy",
    "certificates",
    "disk space",
    "write permission",
    "file locks",
    "clock",
    "versions",
    "shared roots",
    "data version",
]


def test_json_shape_and_success_against_the_test_server(
    runner: CliRunner, zenodo: ZenodoServer, data_root: Path
) -> None:
    report = invoke_json(runner, "doctor")
    assert set(report) == {"ok", "checks"}
    assert [check["name"] for check in report["checks"]] == CHECKS
    for check in report["checks"]:
        assert set(check) == {"name", "status", "detail", "hint", "seconds"}
        assert check["status"] in ("ok", "warn", "fail", "skip")
        assert isinstance(check["detail"], str) and "\n" not in check["detail"]
        assert isinstance(check["seconds"], float)
    by_name = {check["name"]: check for check in report["checks"]}
    assert report["ok"] is True
    assert by_name["record API"]["status"] == "ok"
    assert zenodo.url in by_name["record API"]["detail"]
    assert by_name["file locks"]["status"] == "ok"
    assert by_name["clock"]["status"] == "ok"
    assert not data_root.exists()


def test_unreachable_server_exits_1_with_a_hint(runner: CliRunner, data_root: Path) -> None:
    env = {"MEDIMETA_BASE_URL": closed_port_url(), "MEDIMETA_RETRIES": "0"}
    result = invoke(runner, "doctor", "--json", env=env)
    assert result.exit_code == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False
    record = report["checks"][0]
    assert record["name"] == "record API" and record["status"] == "fail"
    assert record["hint"]
    # Warnings alone never fail the run; here exactly one check failed.
    assert [c["name"] for c in report["checks"] if c["status"] == "fail"] == ["record API"]

    text = invoke(runner, "doctor", env=env)
    assert text.exit_code == 1
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["CHECK", "STATUS", "DETAIL"]
    row = next(i for i, line in enumerate(lines) if line.startswith("record API"))
    assert lines[row].split()[2] == "fail"
    assert lines[row + 1].strip().startswith("hint: ")
    assert "1 failed" in text.stderr


def test_offline_skips_the_network_checks(runner: CliRunner, zenodo: ZenodoServer) -> None:
    result = invoke(runner, "doctor", "--offline", "--json")
    assert result.exit_code == 0, result.stderr
    statuses = {c["name"]: c["status"] for c in json.loads(result.stdout)["checks"]}
    assert statuses["record API"] == "skip"
    assert statuses["clock"] == "skip"
    assert statuses["file locks"] == "ok"
    assert zenodo.requests == []


def test_quiet_keeps_stderr_empty(runner: CliRunner, zenodo: ZenodoServer) -> None:
    result = invoke(runner, "doctor", "--quiet")
    assert result.exit_code == 0
    assert result.stderr == ""
    assert "record API" in result.stdout


def test_installed_script(zenodo: ZenodoServer, data_root: Path) -> None:
    script = installed_script()
    started = time.monotonic()
    proc = subprocess.run(
        [script, "doctor", "--json"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 5
    report = json.loads(proc.stdout)
    assert report["ok"] is True
    assert [check["name"] for check in report["checks"]] == CHECKS


_PROBE = """
import json, sys
sys.argv = ["medimeta", "doctor", "--help"]
from medimeta_cli.cli.app import main
try:
    main()
except SystemExit:
    pass
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"httpx", "h5py", "numpy", "PIL"})
sys.stderr.write("HEAVY=" + json.dumps(heavy) + "\\n")
"""


def test_help_imports_no_heavy_modules(data_root: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIMETA_")}
    env["MEDIMETA_HOME"] = str(data_root)
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, check=False
    )
    assert "doctor" in proc.stdout and "--offline" in proc.stdout
    line = next(x for x in proc.stderr.splitlines() if x.startswith("HEAVY="))
    assert json.loads(line.removeprefix("HEAVY=")) == [], proc.stderr
