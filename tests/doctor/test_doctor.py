"""``medimeta doctor`` as a whole: every check run against the local Zenodo server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from medimeta_cli.doctor import run_checks
from medimeta_cli.settings import resolve_settings
from tests.support.helpers import install_stub
from tests.support.zenodo_server import ZenodoServer


def test_run_checks_against_the_test_server(
    zenodo: ZenodoServer, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = data_root.parent / "shared"
    install_stub(shared, "crc")
    monkeypatch.setenv("MEDIMETA_PATH", str(shared))
    started = time.monotonic()
    checks = run_checks(resolve_settings(), environ={})
    assert time.monotonic() - started < 5
    statuses = {check.name: check.status for check in checks}
    assert statuses == {
        "record API": "ok",
        "proxy": "ok",
        "certificates": "ok",
        "disk space": "ok",
        "write permission": "ok",
        "file locks": "ok",
        "clock": "ok",
        "versions": "ok",
        "shared roots": "ok",
        "data version": "ok",
    }
    assert all(check.seconds >= 0 for check in checks)
    assert not data_root.exists()  # the doctor leaves the root as it found it
