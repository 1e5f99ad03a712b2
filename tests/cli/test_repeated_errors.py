"""A failure that several datasets share is said once, with their ids; a record that holds
none of MedIMeta's archives is named for what it holds (a real process, a real server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from medimeta_cli.errors import NotInRecordError, NotInstalledError, said_once
from tests.conftest import FixtureData
from tests.support.helpers import medimeta_process as medimeta
from tests.support.zenodo_server import ZenodoServer

HINT = "MEDIMETA_RECORD"


@pytest.fixture
def wrong_record(monkeypatch: pytest.MonkeyPatch) -> Iterator[ZenodoServer]:
    """A record (with the bundled catalog) that holds none of MedIMeta's archives."""
    files: dict[str, Path | bytes] = {f"notes{n}.txt": b"text" for n in range(5)}
    with ZenodoServer(files) as server:
        monkeypatch.setenv("MEDIMETA_BASE_URL", server.url)
        yield server


@pytest.mark.parametrize(
    "args",
    [
        ["download", "--all", "--dry-run"],
        ["download", "--all", "--print-urls"],
        ["download", "crc", "oct", "cxr"],
    ],
    ids=" ".join,
)
def test_a_wrong_record_is_one_error_naming_what_it_holds(
    args: list[str], wrong_record: ZenodoServer
) -> None:
    proc = medimeta(*args)
    assert proc.returncode == 10
    stderr = " ".join(proc.stderr.split())  # wrapped lines joined
    assert stderr.count("error:") == 1 and stderr.count("hint:") == 1, proc.stderr
    assert "it holds none of MedIMeta's archives, only 'notes0.txt', 'notes1.txt', " in stderr
    assert "and 2 more" in stderr
    assert HINT in stderr


def test_archives_a_record_lacks_are_one_error_with_their_ids(
    fixture_data: FixtureData, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bundled catalog, a record that holds only crc: 18 archives missing, said once.
    with ZenodoServer({"crc.zip": fixture_data.archive("crc")}) as server:
        monkeypatch.setenv("MEDIMETA_BASE_URL", server.url)
        proc = medimeta("download", "--all", "--dry-run")
    assert proc.returncode == 10
    stderr = " ".join(proc.stderr.split())
    assert stderr.count("error:") == 1 and stderr.count("hint:") == 1, proc.stderr
    assert "has no archive of 18 datasets: aml, bus, cxr," in stderr
    assert "holds none" not in stderr


def test_errors_alike_but_for_the_id_are_said_once() -> None:
    failures = [
        (dataset_id, NotInstalledError(dataset_id, "/data")) for dataset_id in ("crc", "oct", "bus")
    ]
    (said,) = said_once(failures)
    assert isinstance(said, NotInstalledError)
    assert said.message == "dataset 'crc' is not installed in /data (and likewise oct, bus)"
    assert said.hint == "Run `medimeta download crc oct bus` first."
    missing = [("crc", NotInRecordError(1, "crc.zip")), ("oct", NotInRecordError(1, "oct.zip"))]
    (record,) = said_once([*missing, failures[0]][:2])
    assert record.message == "record 1 has no archive of 2 datasets: crc, oct"
