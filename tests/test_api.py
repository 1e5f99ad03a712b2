"""The Python API: ``ensure`` for training jobs, and the commands' work as functions."""

from __future__ import annotations

import importlib.util
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
from tests.conftest import FixtureData, InstalledData
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
    # Tar shards go through the same use case: the same bytes as the command's.
    api.export("crc", tmp_path / "api-wds", format="webdataset", shard_size="9images", jobs=1)
    invoke(runner, "export", "crc", "-o", str(tmp_path / "cli-wds"), "--format", "webdataset",
           "--shard-size", "9images", "-j", "1")  # fmt: skip
    tars = sorted(p.name for p in (tmp_path / "cli-wds").glob("*.tar"))
    assert len(tars) == 5 and tars == sorted(p.name for p in (tmp_path / "api-wds").glob("*.tar"))
    for name in (*tars, "manifest.json", "classes.json"):
        assert (tmp_path / "api-wds" / name).read_bytes() == (
            tmp_path / "cli-wds" / name
        ).read_bytes()
    with pytest.raises(UsageError, match="bytes or images"):
        api.export("crc", tmp_path / "bad", format="webdataset", shard_size="100")


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="needs pyarrow")
def test_a_parquet_export_from_python_is_the_command_lines(
    installed: InstalledData, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = api.export("cxr", task="all", format="parquet", jobs=1)
    assert result.out == tmp_path / "cxr-all-parquet"
    out = tmp_path / "cli"
    args = ("export", "cxr", "--task", "all", "--format", "parquet", "-j", "1", "-o", str(out))
    command = invoke_json(runner, *args)
    assert (result.images, result.counts) == (command["images"], command["counts"])
    made = sorted(p.relative_to(result.out) for p in (result.out / "data").iterdir())
    assert made == sorted(p.relative_to(out) for p in (out / "data").iterdir())
    for name in [*made, Path("classes.json"), Path("README.md")]:
        assert (result.out / name).read_bytes() == (out / name).read_bytes()


def _truncate(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def test_ensure_refuses_a_shared_copy_cut_short(
    zenodo: zs.ZenodoServer, data_root: Path, shared_root: Path, tmp_path: Path
) -> None:
    """The fast check compares sizes with the install record (a stat each, nothing read):
    a truncated images.hdf5 is never handed to the loader."""
    _truncate(tmp_path / "lab-data" / "crc" / "images.hdf5")  # seen through the shared root
    with pytest.raises(IntegrityError, match=r"images\.hdf5 has .* bytes") as raised:
        medimeta_cli.ensure("crc")
    assert "shared root" in raised.value.hint
    _truncate(tmp_path / "lab-data" / "cxr" / "task_labels" / "disease labels.npy")
    with pytest.raises(IntegrityError, match=r"disease labels\.npy has"):
        medimeta_cli.ensure("cxr")


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: medimeta_cli.ensure(123), "ids"),  # type: ignore[arg-type]
        (lambda: medimeta_cli.ensure(["crc", 1]), "ids"),  # type: ignore[list-item]
        (lambda: medimeta_cli.ensure(b"crc"), "ids"),  # type: ignore[arg-type]
        (lambda: medimeta_cli.ensure("crc", root=5), "root"),  # type: ignore[arg-type]
        (lambda: medimeta_cli.ensure("crc", layout=2), "layout"),  # type: ignore[arg-type]
        (lambda: medimeta_cli.ensure("crc", jobs="2"), "jobs"),  # type: ignore[arg-type]
        (lambda: medimeta_cli.ensure("crc", jobs=0), "jobs"),
        (lambda: medimeta_cli.ensure("crc", connections=True), "connections"),
        (lambda: medimeta_cli.ensure("crc", offline="yes"), "offline"),  # type: ignore[arg-type]
        (lambda: api.download(7), "ids"),  # type: ignore[arg-type]
        (lambda: api.download("crc", domains=3), "domains"),  # type: ignore[arg-type]
        (lambda: api.download("crc", force="no"), "force"),  # type: ignore[arg-type]
        (lambda: api.download("crc", on_event=5), "on_event"),  # type: ignore[arg-type]
        (lambda: api.verify(object()), "ids"),  # type: ignore[arg-type]
        (lambda: api.verify("crc", mode=1), "mode"),  # type: ignore[arg-type]
        (lambda: api.export(5), "dataset_id"),  # type: ignore[arg-type]
        (lambda: api.export("crc", out=3), "out"),  # type: ignore[arg-type]
        (lambda: api.export("crc", splits=[1]), "splits"),  # type: ignore[list-item]
        (lambda: api.export("crc", limit="3"), "limit"),  # type: ignore[arg-type]
        (lambda: api.export("crc", shard=3), "shard"),  # type: ignore[arg-type]
        (lambda: api.export("crc", format=None), "format"),  # type: ignore[arg-type]
    ],
)
def test_every_misuse_of_the_api_raises_from_the_error_tree(
    zenodo: zs.ZenodoServer, call: object, argument: str
) -> None:
    assert callable(call)
    with pytest.raises(UsageError, match=f"^{argument} must be") as raised:
        call()
    assert raised.value.hint


def test_ensure_finds_an_installed_dataset_outside_the_catalog(
    runner: CliRunner, zenodo: zs.ZenodoServer, data_root: Path, tmp_path: Path
) -> None:
    """#10: outside the catalog, ensure() returns an installed copy (checked like any
    other), and says plainly that it cannot download one."""
    from tests.support.helpers import write_installed

    lab, _ = write_installed(archives.tiny_spec("lab_scans"), tmp_path / "unzipped")
    with pytest.raises(UnknownDatasetError) as raised:
        medimeta_cli.ensure("lab_scans")
    assert "cannot be downloaded" in raised.value.hint and "--from" in raised.value.hint
    assert invoke(runner, "download", "--from", str(lab), "--offline").exit_code == 0
    zenodo.clear_log()
    assert medimeta_cli.ensure(["lab_scans", "crc"], offline=False) == {
        "lab_scans": data_root / "lab_scans",
        "crc": data_root / "crc",
    }
    assert zenodo.requests_for("lab_scans.zip") == []
    _truncate(data_root / "lab_scans" / "images.hdf5")
    with pytest.raises(IntegrityError, match=r"images\.hdf5 has"):
        medimeta_cli.ensure("lab_scans")


def test_the_api_and_the_command_line_verify_the_same_datasets_alike(
    runner: CliRunner, zenodo: zs.ZenodoServer, data_root: Path, tmp_path: Path
) -> None:
    """One verify use case: the API checks an installed dataset outside the catalog as the
    command does (it refused one as unknown before), and both report the same."""
    from medimeta_cli import api
    from tests.support.helpers import write_installed

    lab, _ = write_installed(archives.tiny_spec("lab_scans"), tmp_path / "unzipped")
    assert invoke(runner, "download", "--from", str(lab), "--offline").exit_code == 0
    assert invoke(runner, "download", "crc").exit_code == 0
    _truncate(data_root / "crc" / "images.hdf5")
    reports = api.verify(["lab_scans", "crc"], mode="full")
    cli = invoke(runner, "--json", "verify", "lab_scans", "crc", "--full")
    assert cli.exit_code == 4, cli.stderr
    by_cli = {r["id"]: (r["status"], len(r["problems"])) for r in json.loads(cli.stdout)}
    by_api = {r.dataset_id: (r.status.value, len(r.problems)) for r in reports}
    assert by_api == by_cli == {"lab_scans": ("ok", 0), "crc": ("damaged", 1)}
    assert [r.dataset_id for r in api.verify()] == ["crc", "lab_scans"]


@pytest.mark.slow
def test_ensure_logs_its_steps_and_progress_at_info(
    zenodo: zs.ZenodoServer, tmp_path: Path
) -> None:
    # A program that only turns its logging on sees what ensure() does.
    zenodo.inject("crc.zip", zs.slow(4_000_000))
    program = (
        "import logging, sys, medimeta_cli\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stderr, format='%(message)s')\n"
        "medimeta_cli.ensure('crc')\n"
    )
    root = tmp_path / "new-root"
    environ = {
        **os.environ,
        "MEDIMETA_HOME": str(root),
        "MEDIMETA_CONNECTIONS": "1",
        "MEDIMETA_PROGRESS_INTERVAL": "0.5",
    }
    proc = subprocess.run(
        [sys.executable, "-c", program], env=environ, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert f"ensure: checking crc in {root}" in lines
    assert lines.count(f"created the data root {root} (MEDIMETA_HOME)") == 1
    assert any(line.startswith("crc: downloading ") for line in lines), lines
    progress = [line for line in lines if line.startswith("crc: ") and "%)" in line]
    assert len(progress) >= 2, lines  # periodic, not one line per chunk
    assert len(progress) < 40, lines
    assert "crc: verifying" in lines
    assert f"crc: installed, {root / 'crc'}" in lines
    # Installed: the next call says so.
    proc = subprocess.run(
        [sys.executable, "-c", program], env=environ, capture_output=True, text=True, timeout=60
    )
    assert f"crc: installed and checked, {root / 'crc'}" in proc.stderr.splitlines()


def test_stats_is_what_the_command_prints(installed: object, runner: CliRunner) -> None:
    assert medimeta_cli.stats is api.stats
    assert api.stats("cxr", split="val").to_json() == invoke_json(
        runner, "stats", "cxr", "--split", "val"
    )
    with pytest.raises(UsageError, match="split"):
        api.stats("cxr", split=3)  # type: ignore[arg-type]


def test_stats_of_a_downloaded_dataset_are_cached_until_it_is_reinstalled(
    zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    install_from_server("crc")
    assert not api.stats("crc").pixels.cached
    assert api.stats("crc").pixels.cached
    api.download("crc", force=True)
    assert not api.stats("crc").pixels.cached
