"""``medimeta remove``: asks, removes atomically, never touches shared roots."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medimeta_cli.cli import cmd_remove
from medimeta_cli.cli.app import app
from medimeta_cli.fsutil import human_bytes
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.records import read_install_record
from tests.support import zenodo_server as zs
from tests.support.helpers import (
    install_from_server,
    installed_script,
    invoke,
    invoke_json,
    read_terminal,
)


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "NO_COLOR"}


def test_yes_removes_and_download_brings_it_back(
    runner: CliRunner, zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    layout, _ = install_from_server("crc", "cxr")
    record = read_install_record(layout, "crc")
    assert record is not None
    # A partial download of the archive left by a dead job goes with the dataset.
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    stem = f"crc.zip.{socket.gethostname()}.{dead.pid}.0badc0de"
    (layout.partial_dir / f"{stem}.part").write_bytes(b"p" * 700)
    (layout.partial_dir / f"{stem}.json").write_text(
        json.dumps({"host": socket.gethostname(), "pid": dead.pid, "size": 9, "md5": "x"})
    )

    [removed] = invoke_json(runner, "remove", "crc", "--yes")
    assert removed["id"] == "crc" and removed["path"] == str(data_root / "crc")
    assert (removed["bytes_freed"], removed["files"]) == (record.total_bytes, record.file_count)
    assert removed["partial_bytes"] == 700 and removed["leftover"] is None
    assert not (data_root / "crc").exists()
    assert read_install_record(layout, "crc") is None
    assert not layout.file_manifest_path("crc").exists()
    assert list(layout.partial_dir.iterdir()) == []
    assert [p.name for p in layout.tmp_dir.iterdir()] == []  # the renamed copy is gone too
    assert (data_root / "cxr" / "info.yaml").is_file()
    states = {item["id"]: item["state"] for item in invoke_json(runner, "list")}
    assert states["crc"] == "absent" and states["cxr"] == "installed"

    [again] = invoke_json(runner, "download", "crc")
    assert again["status"] == "installed"
    assert (data_root / "crc" / "info.yaml").is_file()


def test_asks_first_and_no_keeps_it(
    runner: CliRunner, zenodo: zs.ZenodoServer, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout, _ = install_from_server("cxr")
    record = read_install_record(layout, "cxr")
    assert record is not None
    monkeypatch.setattr(cmd_remove, "stdin_is_terminal", lambda: True)
    declined = runner.invoke(app, ["remove", "cxr"], input="n\n", prog_name="medimeta")
    assert declined.exit_code == 1
    assert f"Remove cxr ({human_bytes(record.total_bytes)}) from {data_root}?" in declined.stderr
    assert f"{record.file_count:,} files" in declined.stderr
    assert "nothing removed" in declined.stderr and "removed   " not in declined.stdout
    assert (data_root / "cxr" / "info.yaml").is_file()
    accepted = runner.invoke(app, ["remove", "cxr"], input="y\n", prog_name="medimeta")
    assert accepted.exit_code == 0, accepted.stderr
    assert "removed   cxr" in accepted.stdout
    assert not (data_root / "cxr").exists()


def test_a_real_terminal_is_asked(zenodo: zs.ZenodoServer, data_root: Path) -> None:
    import pty

    install_from_server("cxr")
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [installed_script(), "remove", "cxr"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=_env(),
        close_fds=True,
    )
    os.close(slave)
    screen = b""
    while b"[y/N]" not in screen:
        chunk = os.read(master, 4096)
        assert chunk, screen
        screen += chunk
    os.write(master, b"y\n")
    screen += read_terminal(master)
    assert proc.wait(timeout=30) == 0, screen
    assert b"removed   cxr" in screen
    assert not (data_root / "cxr").exists()


def test_refuses_to_ask_without_a_terminal(zenodo: zs.ZenodoServer, data_root: Path) -> None:
    install_from_server("cxr")
    proc = subprocess.run(
        [installed_script(), "remove", "cxr"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "standard input is not a terminal" in proc.stderr and "--yes" in proc.stderr
    assert (data_root / "cxr" / "info.yaml").is_file()


def test_shared_root_is_refused(
    runner: CliRunner,
    zenodo: zs.ZenodoServer,
    tmp_path: Path,
    data_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shared = tmp_path / "shared"
    install_from_server("crc", root=shared)
    monkeypatch.setenv("MEDIMETA_PATH", str(shared))
    result = invoke(runner, "remove", "crc", "--yes")
    assert result.exit_code == 9
    assert f"crc is in the shared root {shared}; the tool never changes shared roots" in (
        result.stderr
    )
    assert (shared / "crc" / "info.yaml").is_file()
    # Picked by --domain, it is skipped with a note rather than refused.
    skipped = invoke(runner, "remove", "--domain", "pathology", "--yes", "--json")
    assert skipped.exit_code == 0 and json.loads(skipped.stdout) == []
    assert f"skipping crc: it is in the shared root {shared}" in skipped.stderr
    assert (shared / "crc" / "info.yaml").is_file()


def test_not_installed_exits_8(runner: CliRunner, zenodo: zs.ZenodoServer) -> None:
    result = invoke(runner, "remove", "cxr", "--yes")
    assert result.exit_code == 8
    assert "'cxr' is not installed" in result.stderr and "nothing to remove" in result.stderr
    assert invoke(runner, "remove", "--yes").exit_code == 2
    assert invoke(runner, "remove", "nosuch", "--yes").exit_code == 2


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from medimeta_cli.store.layout import RootLayout
    from medimeta_cli.store.locking import DatasetLock
    with DatasetLock(RootLayout(Path(sys.argv[1])), "cxr", timeout=30).hold():
        print("held", flush=True)
        time.sleep(60)
    """
)


@pytest.mark.slow
def test_waits_for_a_job_holding_the_dataset(
    runner: CliRunner, zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    install_from_server("cxr")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(data_root)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        result = invoke(runner, "remove", "cxr", "--yes", "--lock-timeout", "1")
        assert result.exit_code == 6, result.stderr
        assert f"held by pid {holder.pid}" in result.stderr
        assert (data_root / "cxr" / "info.yaml").is_file()
        assert read_install_record(RootLayout(data_root), "cxr") is not None
    finally:
        holder.kill()
        holder.wait()
    assert invoke(runner, "remove", "cxr", "--yes").exit_code == 0


# ------------------------------------------------------------------------- links out of the root


def _outside(tmp_path: Path, files: dict[str, str]) -> Path:
    outside = tmp_path / "someone-elses"
    outside.mkdir()
    for name, text in files.items():
        (outside / name).write_text(text)
    return outside


def _contents(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): p.read_text() for p in folder.rglob("*") if p.is_file()
    }


def test_a_linked_dataset_folder_is_removed_as_a_link(
    runner: CliRunner, data_root: Path, tmp_path: Path
) -> None:
    from tests.support.helpers import install_stub

    kept = install_stub(tmp_path / "big-disk", "crc")
    (kept / "images.hdf5").write_text("pixels")
    before = _contents(kept)
    data_root.mkdir()
    (data_root / "crc").symlink_to(kept)
    result = invoke(runner, "remove", "crc", "--yes")
    assert result.exit_code == 0, result.stderr
    assert not os.path.lexists(data_root / "crc")
    assert _contents(kept) == before


@pytest.mark.parametrize("folder", ["tmp", "partial", "locks", "installed", ""])
def test_a_linked_state_folder_is_refused(
    runner: CliRunner, data_root: Path, tmp_path: Path, folder: str
) -> None:
    from tests.support.helpers import install_stub

    note = json.dumps({"host": "otherhost", "pid": 1, "size": 9})
    outside = _outside(
        tmp_path,
        {"crc.json": "{}", "crc.files.json": "[]", "crc.zip.otherhost.1.0badc0de.json": note},
    )
    before = _contents(outside)
    install_stub(data_root, "crc")
    state = data_root / ".medimeta"
    linked = state / folder if folder else state
    linked.parent.mkdir(parents=True, exist_ok=True)
    linked.symlink_to(outside)
    result = invoke(runner, "remove", "crc", "--yes")
    assert result.exit_code == 4, result.stderr
    assert f"{linked} is a symbolic link; it is never followed" in result.stderr
    assert "deleting a link never touches what it points to" in result.stderr
    assert (data_root / "crc" / "info.yaml").is_file()
    assert _contents(outside) == before


def test_a_dataset_outside_the_catalog_is_removed_like_any_other(
    runner: CliRunner, data_root: Path, tmp_path: Path
) -> None:
    """Before: "unknown dataset" (exit 2), even with its info.yaml intact."""
    from tests.support.archives import tiny_spec
    from tests.support.helpers import write_installed

    for dataset_id in ("lab_scans", "lab_two"):
        folder, _ = write_installed(tiny_spec(dataset_id), tmp_path / "source")
        [outcome] = invoke_json(runner, "download", "--from", str(folder))
        assert outcome["status"] == "installed", outcome
    # One whose info.yaml no longer reads is removed too: nothing else can fix it.
    (data_root / "lab_two" / "info.yaml").write_text("id: [unclosed\n")
    [removed, broken] = invoke_json(runner, "remove", "lab_scans", "lab_two", "--yes")
    assert (removed["id"], broken["id"]) == ("lab_scans", "lab_two")
    assert removed["files"] > 0 and removed["bytes_freed"] > 0
    assert not (data_root / "lab_scans").exists() and not (data_root / "lab_two").exists()
    layout = RootLayout(data_root)
    assert read_install_record(layout, "lab_scans") is None
    assert read_install_record(layout, "lab_two") is None

    result = invoke(runner, "remove", "lab_scans", "--yes")
    assert result.exit_code == 2 and "unknown dataset" in result.stderr.lower(), result.stderr
