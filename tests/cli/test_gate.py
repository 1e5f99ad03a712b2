"""A task name that resolves outside the dataset is refused by every command (exit 4),
and nothing outside the dataset is read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from medimeta_cli import api
from medimeta_cli.errors import IntegrityError
from tests.conftest import FixtureData
from tests.support import archives
from tests.support.helpers import invoke, invoke_json, write_installed

#: From task_labels/ of <root>/<id>/, three levels up is the data root's parent.
EVIL = "../../../outside/evil"


def plant(folder: Path) -> Path:
    """Rename the folder's first task to EVIL and move its labels to where that name leads
    (outside the dataset), with a value no real label file has; returns that file."""
    info = folder / "info.yaml"
    text = info.read_text(encoding="utf-8")
    first = text.split("task_name: ", 1)[1].split("\n", 1)[0]
    info.write_text(text.replace(f"task_name: {first}", f"task_name: {json.dumps(EVIL)}", 1))
    inside = folder / "task_labels" / f"{yaml.safe_load(text)['tasks'][0]['task_name']}.npy"
    outside = (folder / "task_labels" / f"{EVIL}.npy").resolve()
    outside.parent.mkdir(parents=True, exist_ok=True)
    labels = np.load(inside)
    inside.unlink()
    np.save(outside, labels)
    return outside


@pytest.fixture
def evil_crc(data_root: Path, fixture_data: FixtureData, monkeypatch: pytest.MonkeyPatch) -> Path:
    """crc installed in the data root with a task name that leaves the dataset."""
    monkeypatch.setenv("MEDIMETA_CATALOG", str(fixture_data.catalog))
    write_installed(archives.CXR, data_root)
    folder, _ = write_installed(archives.CRC, data_root)
    outside = plant(folder)
    assert outside.is_file() and not outside.is_relative_to(folder)
    return outside


def _refused(result: object) -> None:
    stderr = result.stderr  # type: ignore[attr-defined]
    assert result.exit_code == 4, stderr  # type: ignore[attr-defined]
    assert f"names task '{EVIL}'" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("how", ["folder", "archive"])
def test_download_from_refuses_a_task_name_that_leaves_the_dataset(
    runner: CliRunner,
    fixture_data: FixtureData,
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    monkeypatch.setenv("MEDIMETA_CATALOG", str(fixture_data.catalog))
    # An archive of a catalog id is checked against the record first: a local one here.
    specs = (archives.tiny_spec("lab_scans"), archives.CRC)
    for spec in specs if how == "folder" else specs[:1]:
        folder, _ = write_installed(spec, tmp_path / "unzipped")
        # The planted file sits where the name leads from the data root's copy too.
        assert plant(folder) == data_root.parent / "outside" / "evil.npy"
        source = folder if how == "folder" else archives.archive_from_folder(folder, tmp_path)
        result = invoke(runner, "download", "--from", str(source), "--offline")
        _refused(result)
        assert not (data_root / spec.id).exists()


def test_export_sample_verify_info_refuse_it_and_nothing_outside_is_read(
    runner: CliRunner, evil_crc: Path, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    _refused(invoke(runner, "export", "crc", "--format", "numpy", "--out", str(out)))
    assert not out.exists()
    _refused(invoke(runner, "sample", "crc", "--per-class", "1"))
    _refused(invoke(runner, "info", "crc"))
    for mode in ("--full", "--deep"):
        result = invoke(runner, "verify", "crc", mode)
        assert result.exit_code == 4, result.stderr
        assert f"names task '{EVIL}'" in result.stdout


def test_list_lists_the_others_and_flags_it(runner: CliRunner, evil_crc: Path) -> None:
    listed = {item["id"]: item for item in invoke_json(runner, "list", "--installed")}
    assert "refused" not in listed["cxr"] and listed["cxr"]["state"] == "installed"
    assert f"names task '{EVIL}'" in listed["crc"]["refused"]
    text = invoke(runner, "list", "--installed")
    assert text.exit_code == 0
    crc_row = next(line for line in text.stdout.splitlines() if line.startswith("crc"))
    assert "damaged (info.yaml refused)" in crc_row


def test_a_local_dataset_with_such_a_name_is_listed_as_refused(
    runner: CliRunner, fixture_data: FixtureData, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMETA_CATALOG", str(fixture_data.catalog))
    write_installed(archives.CRC, data_root)
    folder, _ = write_installed(archives.tiny_spec("lab_scans"), data_root)
    plant(folder)
    listed = {item["id"]: item for item in invoke_json(runner, "list", "--installed")}
    assert "refused" not in listed["crc"]
    assert f"names task '{EVIL}'" in listed["lab_scans"]["refused"]
    result = invoke(runner, "verify", "lab_scans", "--full")
    assert result.exit_code == 4


def test_the_python_api_refuses_it(evil_crc: Path, data_root: Path, tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match="names task"):
        api.ensure("crc", offline=True)
    out = tmp_path / "export"
    with pytest.raises(IntegrityError, match="names task"):
        api.export("crc", out, format="numpy")
    assert not out.exists()
    assert api.ensure("cxr", offline=True)["cxr"] == data_root / "cxr"
