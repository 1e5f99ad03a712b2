"""``medimeta prune``: what killed jobs leave behind goes; what live jobs use stays."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.prune import apply_prune, plan_prune
from tests.support import zenodo_server as zs
from tests.support.helpers import (
    install_stub,
    installed_script,
    invoke,
    invoke_json,
    make_downloader,
    wait_for,
)

HOST = socket.gethostname()


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "NO_COLOR"}


def _parts(root: Path, key: str) -> list[Path]:
    return sorted((root / ".medimeta" / "partial").glob(f"{key}.*.part"))


def _part_size(root: Path, key: str) -> int:
    parts = _parts(root, key)
    return parts[0].stat().st_size if parts else 0


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def _start_download(dataset_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [installed_script(), "download", dataset_id, "--quiet"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(job: subprocess.Popen[str]) -> None:
    if job.poll() is None:
        job.kill()
    job.wait(timeout=30)


@pytest.mark.slow
def test_killed_download_is_pruned_a_live_one_is_left(
    zenodo: zs.ZenodoServer, data_root: Path, runner: CliRunner
) -> None:
    zenodo.inject("crc.zip", zs.slow(zenodo.file_size("crc.zip") / 4))
    zenodo.inject("cxr.zip", zs.slow(60_000))
    killed = _start_download("crc")
    live = _start_download("cxr")
    try:
        wait_for(lambda: _part_size(data_root, "crc.zip") > zenodo.file_size("crc.zip") // 10)
        killed.send_signal(signal.SIGKILL)
        assert killed.wait(timeout=30) == -9
        wait_for(lambda: _part_size(data_root, "cxr.zip") > 0)
        [crc_part] = _parts(data_root, "crc.zip")
        [cxr_part] = _parts(data_root, "cxr.zip")
        done = crc_part.stat().st_size

        plan = invoke_json(runner, "prune", "--dry-run")
        by_path = {item["path"]: item for item in plan["items"]}
        crc = by_path[str(crc_part)]
        assert crc["kind"] == "partial"
        assert (
            crc["bytes"] >= done and f"process {killed.pid} on this host is gone" in crc["reason"]
        )
        assert crc["companions"] == [str(crc_part.with_suffix(".json"))]
        locks = data_root / ".medimeta" / "locks"
        # The killed job's lock and holder note are stale; the live job's are not.
        assert {str(locks / "crc.lock"), str(locks / "crc.owner.json")} <= set(by_path)
        assert not any("cxr" in path for path in by_path)
        assert plan["dry_run"] is True and plan["bytes"] >= done and plan["freed_bytes"] == 0
        assert crc_part.exists()  # dry run: nothing deleted

        text = invoke(runner, "prune", "--dry-run")
        assert text.exit_code == 0
        assert text.stdout.splitlines()[0].split() == ["KIND", "PATH", "SIZE", "REASON"]
        assert f"would free {plan['bytes'] / 1024 / 1024:.1f} MiB" in text.stdout

        result = invoke_json(runner, "prune")
        assert result["freed_bytes"] == plan["bytes"] and result["failed"] == []
        assert not crc_part.exists() and not crc_part.with_suffix(".json").exists()
        assert not (locks / "crc.lock").exists() and not (locks / "crc.owner.json").exists()
        assert cxr_part.exists() and (locks / "cxr.lock").exists()
        assert (locks / "cxr.owner.json").exists()
        assert live.poll() is None  # still downloading
        listed = {item["id"]: item for item in invoke_json(runner, "list")}
        assert listed["crc"]["state"] == "absent" and listed["cxr"]["state"] == "partial"
    finally:
        _stop(killed)
        _stop(live)
    # Once the live job is gone, its partial is stale too.
    assert [item["path"] for item in invoke_json(runner, "prune")["items"]][:1] == [str(cxr_part)]
    assert not cxr_part.exists()


def _owned(name: str, pid: int, host: str = HOST) -> str:
    return f"{name}.{host}.{pid}.0badc0de"


def test_dead_jobs_tmp_folders_notes_and_temp_files_go(
    runner: CliRunner, data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = RootLayout(data_root)
    dead = _dead_pid()
    for folder in (layout.tmp_dir, layout.locks_dir, layout.installed_dir, layout.partial_dir):
        folder.mkdir(parents=True)
    stale_tmp = layout.tmp_dir / _owned("crc", dead)
    (stale_tmp / "images").mkdir(parents=True)
    (stale_tmp / "images" / "000000.tiff").write_bytes(b"x" * 5000)
    removing = layout.tmp_dir / _owned("cxr.removing", 123, "elsewhere.example.org")
    removing.mkdir()
    (removing / "info.yaml").write_bytes(b"y" * 100)
    day_old = time.time() - 25 * 3600
    os.utime(removing, (day_old, day_old))
    live_tmp = layout.tmp_dir / _owned("crc.old", os.getpid())
    live_tmp.mkdir()
    fresh_remote = layout.tmp_dir / _owned("bus", 77, "elsewhere.example.org")
    fresh_remote.mkdir()
    note = layout.locks_dir / "crc.owner.json"
    note.write_text(json.dumps({"pid": dead, "host": HOST, "since": "2026-11-28T00:00:00+00:00"}))
    live_note = layout.locks_dir / "cxr.owner.json"
    live_note.write_text(json.dumps({"pid": os.getpid(), "host": HOST, "since": "x"}))
    half = layout.installed_dir / f".{_owned('crc.json', dead)}.tmp"
    half.write_text("{")
    sidecar_only = layout.partial_dir / f"{_owned('crc.zip', dead)}.json"
    sidecar_only.write_text(json.dumps({"host": HOST, "pid": dead, "size": 10, "md5": "x"}))
    orphan_part = layout.partial_dir / f"{_owned('cxr.zip', dead)}.part"
    orphan_part.write_bytes(b"z" * 300)
    dataset = install_stub(data_root, "crc")
    # A shared root with the same kind of leftovers is never touched.
    shared = tmp_path / "shared"
    shared_tmp = RootLayout(shared).tmp_dir / _owned("crc", dead)
    shared_tmp.mkdir(parents=True)
    monkeypatch.setenv("MEDIMETA_PATH", str(shared))
    stale = {stale_tmp, removing, note, half, sidecar_only, orphan_part}

    plan = invoke_json(runner, "prune", "--dry-run")
    assert {Path(item["path"]) for item in plan["items"]} == stale
    kinds = {Path(item["path"]): item for item in plan["items"]}
    assert kinds[stale_tmp]["kind"] == "tmp" and kinds[stale_tmp]["bytes"] == 5000
    assert kinds[removing]["reason"].startswith("removal; untouched for 25 h")
    assert kinds[note]["kind"] == "owner" and kinds[half]["kind"] == "tempfile"
    assert kinds[sidecar_only]["kind"] == "sidecar"
    assert kinds[orphan_part]["reason"].startswith("no sidecar;")
    assert plan["bytes"] == 5000 + 100 + note.stat().st_size + 1 + sidecar_only.stat().st_size + 300
    assert all(path.exists() for path in stale)

    result = invoke_json(runner, "prune")
    assert result["freed_bytes"] == plan["bytes"]
    assert not any(os.path.lexists(path) for path in stale)
    for kept in (live_tmp, fresh_remote, live_note, dataset / "info.yaml", shared_tmp):
        assert kept.exists(), kept
    again = invoke(runner, "prune")
    assert again.exit_code == 0 and again.stdout.startswith("nothing to prune in ")


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from medimeta_cli.store.layout import RootLayout
    from medimeta_cli.store.locking import DatasetLock
    with DatasetLock(RootLayout(Path(sys.argv[1])), sys.argv[2], timeout=30).hold():
        print("held", flush=True)
        time.sleep(60)
    """
)


def _hold(root: Path, name: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(root), name], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_held_lock_is_never_removed(runner: CliRunner, data_root: Path) -> None:
    locks = RootLayout(data_root).locks_dir
    holder = _hold(data_root, "crc")
    try:
        assert invoke_json(runner, "prune", "--dry-run")["items"] == []
        assert invoke_json(runner, "prune")["items"] == []
        assert (locks / "crc.lock").exists() and (locks / "crc.owner.json").exists()
    finally:
        holder.kill()
        holder.wait()
    plan = invoke_json(runner, "prune", "--dry-run")
    assert [(i["kind"], Path(i["path"]).name) for i in plan["items"]] == [
        ("owner", "crc.owner.json"),
        ("lock", "crc.lock"),
    ]
    assert f"holder note; process {holder.pid} on this host is gone" in plan["items"][0]["reason"]
    # A lock taken between the plan and the deletion is left alone.
    items = plan_prune(RootLayout(data_root))
    holder = _hold(data_root, "crc")
    try:
        result = apply_prune(items)
        assert result.removed == ()
        assert [why for _item, why in result.skipped] == ["a process holds the lock now"] * 2
        assert (locks / "crc.lock").exists() and (locks / "crc.owner.json").exists()
    finally:
        holder.kill()
        holder.wait()
    assert len(invoke_json(runner, "prune")["items"]) == 2
    assert not (locks / "crc.lock").exists()
    assert invoke_json(runner, "prune")["items"] == []


def test_kept_archives_go_only_with_archives(
    runner: CliRunner, zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    downloader, _ = make_downloader(retries=1)
    try:
        [outcome] = downloader.download([downloader.catalog.get("cxr")], keep_archive=True)
    finally:
        downloader.close()
    assert outcome.status == "installed"
    kept = data_root / ".medimeta" / "archives" / "cxr.zip"
    result = invoke(runner, "prune")
    assert result.exit_code == 0 and kept.exists()
    assert "1 archive(s) kept with --keep-archive" in result.stderr
    assert "prune --archives" in result.stderr
    report = invoke_json(runner, "prune", "--dry-run")
    assert [Path(item["path"]) for item in report["kept_archives"]] == [kept]
    assert report["items"] == []
    report = invoke_json(runner, "prune", "--archives")
    assert [(i["kind"], i["bytes"]) for i in report["items"]] == [
        ("archive", zenodo.file_size("cxr.zip"))
    ]
    assert not kept.exists() and (data_root / "cxr" / "info.yaml").is_file()


def test_prune_imports_no_heavy_modules(data_root: Path) -> None:
    probe = textwrap.dedent(
        """
        import sys
        sys.argv = ["medimeta", "prune", "--dry-run"]
        from medimeta_cli.cli.app import main
        try:
            main()
        except SystemExit:
            pass
        print(sorted({m.split(".")[0] for m in sys.modules} & {"httpx", "h5py", "numpy", "PIL"}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=_env(), check=True
    )
    assert proc.stdout.splitlines()[-1] == "[]", proc.stdout + proc.stderr


# ------------------------------------------------------------------------- links out of the root

_OLD = time.time() - 3 * 86400
_OTHER = "otherhost.1.0badc0de"


def _bait(folder: str) -> dict[str, str]:
    """Files that prune would take for stale leftovers if it scanned them as ``folder``."""
    note = json.dumps({"host": "otherhost", "pid": 1, "size": 99, "md5": "0" * 32})
    return {
        "tmp": {f"crc.extract.{_OTHER}": "extracted"},
        "partial": {f"crc.zip.{_OTHER}.part": "bytes", f"crc.zip.{_OTHER}.json": note},
        "locks": {"crc.lock": "", "crc.owner.json": note},
        "archives": {"crc.zip": "an archive"},
        "installed": {f".crc.json.{_OTHER}.tmp": "half"},
    }[folder]


def _outside_with(tmp_path: Path, files: dict[str, str]) -> Path:
    outside = tmp_path / "someone-elses"
    outside.mkdir()
    for name, text in files.items():
        (outside / name).write_text(text)
        os.utime(outside / name, (_OLD, _OLD))
    return outside


def _contents(folder: Path) -> dict[str, tuple[str, int]]:
    return {p.name: (p.read_text(), p.stat().st_mode) for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("folder", ["tmp", "partial", "locks", "archives", "installed"])
def test_a_state_folder_linked_out_of_the_root_is_not_followed(
    runner: CliRunner, data_root: Path, tmp_path: Path, folder: str
) -> None:
    outside = _outside_with(tmp_path, _bait(folder))
    before = _contents(outside)
    state = data_root / ".medimeta"
    state.mkdir(parents=True)
    (state / folder).symlink_to(outside, target_is_directory=True)
    result = invoke(runner, "prune", "--archives")
    assert result.exit_code == 4, result.stderr
    assert f"not following {state / folder}: it is a symbolic link" in result.stderr
    assert "nothing to prune" in result.stdout
    assert _contents(outside) == before
    assert (state / folder).is_symlink()
    report = invoke(runner, "prune", "--json")
    assert json.loads(report.stdout)["refused"] == [
        {"path": str(state / folder), "why": "is a symbolic link"}
    ]


def test_a_linked_state_folder_is_not_followed(
    runner: CliRunner, data_root: Path, tmp_path: Path
) -> None:
    outside = _outside_with(tmp_path, {f".x.{_OTHER}.tmp": "half"})
    (outside / "tmp").mkdir()
    (outside / "tmp" / f"crc.extract.{_OTHER}").write_text("x")
    os.utime(outside / "tmp" / f"crc.extract.{_OTHER}", (_OLD, _OLD))
    data_root.mkdir()
    (data_root / ".medimeta").symlink_to(outside)
    result = invoke(runner, "prune")
    assert result.exit_code == 4, result.stderr
    assert "not following" in result.stderr
    assert (outside / f".x.{_OTHER}.tmp").read_text() == "half"
    assert (outside / "tmp" / f"crc.extract.{_OTHER}").read_text() == "x"


def test_a_folder_swapped_for_a_link_after_planning_is_not_followed(
    data_root: Path, tmp_path: Path
) -> None:
    layout = RootLayout(data_root)
    layout.tmp_dir.mkdir(parents=True)
    name = f"crc.extract.{_OTHER}"
    (layout.tmp_dir / name).write_text("ours")
    os.utime(layout.tmp_dir / name, (_OLD, _OLD))
    [item] = plan_prune(layout)
    outside = _outside_with(tmp_path, {name: "theirs"})
    before = _contents(outside)
    layout.tmp_dir.rename(tmp_path / "moved")
    layout.tmp_dir.symlink_to(outside)
    result = apply_prune([item])
    assert result.removed == () and len(result.failed) == 1
    assert "is a symbolic link now; not followed" in result.failed[0][1]
    assert _contents(outside) == before
