"""The Python API: ``ensure`` for training jobs, and the commands' work as functions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import medimeta_cli
from medimeta_cli import api
from medimeta_cli.catalog.file import load_catalog
from medimeta_cli.dataset.reader import DatasetReader
from medimeta_cli.errors import (
    ConfigError,
    IntegrityError,
    LinkRefusedError,
    OfflineError,
    UnknownDatasetError,
    UsageError,
)
from tests.conftest import FixtureData
from tests.support import archives
from tests.support import zenodo_server as zs
from tests.support.helpers import install_from_server, invoke, invoke_json

ENSURE_CRC = (
    "import json, medimeta_cli\n"
    "folders = medimeta_cli.ensure('crc')\n"
    "print(json.dumps({key: str(value) for key, value in folders.items()}))\n"
)


def test_ensure_installs_what_the_loader_reads(
    zenodo: zs.ZenodoServer, data_root: Path, fixture_data: FixtureData
) -> None:
    folders = medimeta_cli.ensure(["crc"])
    assert folders == {"crc": data_root / "crc"}
    # MedIMeta(folders["crc"].parent, "crc", "tissue class") reads what this reader reads.
    dataset = load_catalog(fixture_data.catalog).get("crc")
    reader = DatasetReader.open(folders["crc"].parent, dataset)
    try:
        labels = reader.labels("tissue class")
    finally:
        reader.close()
    assert len(labels) == archives.CRC.num_images
    assert len(zenodo.requests_for("crc.zip", method="GET")) >= 1
    [report] = api.verify("crc", mode="full")
    assert report.ok and report.bytes_hashed > 0


def test_ensure_when_installed_makes_no_request(zenodo: zs.ZenodoServer, data_root: Path) -> None:
    install_from_server("crc", "cxr")
    zenodo.clear_log()
    assert medimeta_cli.ensure(["CXR", "crc", "cxr"]) == {
        "cxr": data_root / "cxr",
        "crc": data_root / "crc",
    }
    assert zenodo.requests == []


def test_ensure_offline(
    zenodo: zs.ZenodoServer, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(OfflineError) as raised:
        medimeta_cli.ensure("crc", offline=True)
    assert raised.value.hint
    install_from_server("crc")
    zenodo.clear_log()
    monkeypatch.setenv("MEDIMETA_OFFLINE", "1")  # as the command line, from the environment
    assert medimeta_cli.ensure("crc") == {"crc": data_root / "crc"}
    with pytest.raises(OfflineError):
        medimeta_cli.ensure(["crc", "cxr"])
    assert zenodo.requests == []


def test_ensure_errors_come_from_the_error_tree_with_hints(
    zenodo: zs.ZenodoServer, data_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(UnknownDatasetError, match="did you mean 'crc'"):
        medimeta_cli.ensure("crcc")
    with pytest.raises(UsageError, match="layout"):
        medimeta_cli.ensure("crc", layout="tiff")
    with pytest.raises(UsageError):
        medimeta_cli.ensure([])
    zenodo.inject("crc.zip", zs.corrupt(1000), times=20)
    with pytest.raises(IntegrityError) as raised:
        medimeta_cli.ensure("crc", connections=1)
    assert raised.value.hint
    assert not (data_root / "crc").exists()
    zenodo.clear_faults()
    # An installed copy missing a file the loader reads is reported, never returned.
    assert medimeta_cli.ensure("crc", layout="HDF5") == {"crc": data_root / "crc"}
    (data_root / "crc" / "images.hdf5").unlink()
    zenodo.clear_log()
    with pytest.raises(IntegrityError, match=r"images\.hdf5") as raised:
        medimeta_cli.ensure("crc")
    assert "verify --repair crc" in raised.value.hint and zenodo.requests == []
    # A dataset folder that is a link is refused, never handed to the loader.
    elsewhere = tmp_path / "elsewhere"
    (data_root / "crc").rename(elsewhere)
    (data_root / "crc").symlink_to(elsewhere)
    with pytest.raises(LinkRefusedError, match="symbolic link"):
        medimeta_cli.ensure("crc")
    assert (elsewhere / "info.yaml").is_file()
    monkeypatch.setenv("MEDIMETA_CONNECTIONS", "0")
    with pytest.raises(ConfigError, match="MEDIMETA_CONNECTIONS"):
        medimeta_cli.ensure("cxr", root=tmp_path / "other")


@pytest.mark.slow
def test_eight_processes_ensuring_at_once_make_one_transfer(
    zenodo: zs.ZenodoServer, data_root: Path, runner: CliRunner
) -> None:
    size = zenodo.file_size("crc.zip")
    zenodo.connection_rate = size / 4  # a transfer of seconds: the others come meanwhile
    ranks = [
        subprocess.Popen(
            [sys.executable, "-c", ENSURE_CRC],
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    results = [(rank.wait(timeout=120), *rank.communicate()) for rank in ranks]
    assert [code for code, _, _ in results] == [0] * 8, [err for _, _, err in results]
    assert [err for _, _, err in results] == [""] * 8, "a library prints nothing"
    assert {out for _, out, _ in results} == {json.dumps({"crc": str(data_root / "crc")}) + "\n"}
    gets = zenodo.requests_for("crc.zip", method="GET")
    assert len(gets) == 1 and gets[0].bytes_sent == size, "one transfer"
    result = invoke(runner, "verify", "crc", "--full")
    assert result.exit_code == 0, result.stdout + result.stderr


def test_thin_functions_return_what_the_commands_render(
    zenodo: zs.ZenodoServer, data_root: Path, runner: CliRunner, tmp_path: Path
) -> None:
    events: list[object] = []
    [outcome] = api.download("crc", on_event=events.append)
    assert outcome.to_json()["status"] == "installed" and events
    [again] = api.download(["crc"])
    assert (again.to_json()["status"], again.path) == ("skipped", data_root / "crc")
    [checked] = [{**r.to_json(), "seconds": 0} for r in api.verify(mode="full")]
    [shown] = [{**r, "seconds": 0} for r in invoke_json(runner, "verify", "--full")]
    assert checked == shown and checked["ok"]
    result = api.export("crc", tmp_path / "api", format="numpy", jobs=1)
    command = invoke_json(runner, "export", "crc", "-o", str(tmp_path / "cli"), "--format", "numpy")
    assert result.to_json().keys() == command.keys()
    assert (result.images, result.counts) == (command["images"], command["counts"])
    for name in ("train/images.npy", "test/labels.npy", "classes.json"):
        assert (tmp_path / "api" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes()
    with pytest.raises(UsageError, match="format"):
        api.export("crc", tmp_path / "bad", format="tiff")
