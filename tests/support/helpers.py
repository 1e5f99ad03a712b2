"""Small helpers shared by test modules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from medimeta_cli.catalog.build import dataset_from_info, read_info_yaml
from medimeta_cli.catalog.datasets import Catalog, Dataset
from medimeta_cli.catalog.file import load_catalog
from medimeta_cli.cli.app import app
from medimeta_cli.download.run import Downloader
from medimeta_cli.events import Event
from medimeta_cli.settings import resolve_settings
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.records import InstallRecord
from medimeta_cli.zenodo.client import RetryPolicy


def install_stub(root: Path, dataset_id: str) -> Path:
    """Make a dataset look installed the way the official loader sees it (info.yaml present)."""
    folder = root / dataset_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "info.yaml").write_text(f"id: {dataset_id}\n", encoding="utf-8")
    return folder


def invoke(runner: CliRunner, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``medimeta ARGS`` in-process."""
    return runner.invoke(app, list(args), env=env, prog_name="medimeta")


def invoke_json(runner: CliRunner, *args: str) -> Any:
    """Run ``medimeta ARGS --json``, assert success and parse stdout."""
    result = invoke(runner, *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def unwrapped(stderr: str) -> str:
    """stderr with the lines a job log wraps (continued with four spaces) joined again."""
    return stderr.replace("\n    ", " ")


def installed_script() -> str:
    """Path of the installed ``medimeta`` script (this interpreter's first); skip if absent."""
    here = str(Path(sys.executable).parent)
    found = shutil.which("medimeta", path=here) or shutil.which("medimeta")
    if found is None:
        pytest.skip("the medimeta script is not installed")
    return found


def make_downloader(retries: int = 3, **flags: Any) -> tuple[Downloader, list[Event]]:
    """A download engine configured from the environment (as the CLI would be), with fast
    retries, and the list its events are collected in."""
    settings = resolve_settings(dict(flags))
    events: list[Event] = []
    downloader = Downloader(
        settings,
        load_catalog(settings.catalog),
        on_event=events.append,
        policy=RetryPolicy(retries=retries, backoff_base=0.01, backoff_cap=0.05),
    )
    return downloader, events


def install_from_server(*dataset_ids: str, root: Path | None = None) -> tuple[RootLayout, Catalog]:
    """Install datasets from the test server with the real engine; assert they installed."""
    downloader, _ = make_downloader(retries=1, root=root)
    try:
        outcomes = downloader.download([downloader.catalog.get(i) for i in dataset_ids])
    finally:
        downloader.close()
    assert [o.status for o in outcomes] == ["installed"] * len(dataset_ids), outcomes
    return RootLayout(downloader.settings.root), downloader.catalog


def write_installed(spec: Any, root: Path) -> tuple[Path, Dataset]:
    """Write a fixture dataset below ``root``; its catalog entry comes from its own info.yaml."""
    from tests.support.archives import write_dataset_dir

    folder = write_dataset_dir(spec, root)
    return folder, dataset_from_info(read_info_yaml(folder / "info.yaml"))


def flip_byte(path: Path, offset: int) -> None:
    """Invert one byte in place and put the modification stamp back, as bit rot would."""
    import os

    before = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(offset)
        value = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes([value ^ 0xFF]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns


@contextmanager
def tmpfs(path: Path, options: str = "size=1m") -> Iterator[Path]:
    """A small tmpfs mounted at ``path`` (a real full disk, for root); skips the test
    where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    _mount_or_skip("-t", "tmpfs", "-o", options, "tmpfs", str(path))
    try:
        yield path
    finally:
        _unmount(path)


@contextmanager
def read_only_view(source: Path, target: Path) -> Iterator[Path]:
    """``source`` bind-mounted read-only at ``target``: permission bits stop no write for
    root, a read-only mount does. Skips the test where mounting is not allowed."""
    target.mkdir(parents=True, exist_ok=True)
    _mount_or_skip("--bind", str(source), str(target))
    try:
        _mount_or_skip("-o", "remount,bind,ro", str(target))
        yield target
    finally:
        _unmount(target)


def _mount_or_skip(*args: str) -> None:
    import subprocess

    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here ({done.stderr.strip()})")


def _unmount(path: Path) -> None:
    import subprocess

    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def sample_install_record(dataset_id: str = "crc") -> InstallRecord:
    """An install record of a small dataset, for tests of records and states."""
    return InstallRecord(
        dataset_id=dataset_id,
        archive_key=f"{dataset_id}.zip",
        archive_size=10,
        archive_md5="0" * 32,
        record_id=7884735,
        record_version="1.0",
        installed_at="2026-11-28T00:00:00+00:00",
        tool_version="0",
        file_count=1,
        total_bytes=5,
    )


def point_images_outside(folder: Path, outside: Path, kind: str) -> None:
    """Rewrite ``folder/images.hdf5`` so that its ``images`` dataset keeps its bytes in
    ``outside`` (``kind`` "external": HDF5 external storage; "virtual": a virtual dataset),
    with the same shape and dtype, so nothing but the storage gives it away."""
    import h5py
    import numpy as np

    path = folder / "images.hdf5"
    with h5py.File(path, "r") as handle:
        images = np.asarray(handle["images"][:])
    path.unlink()
    if kind == "external":
        outside.write_bytes(images.tobytes())
        with h5py.File(path, "w") as handle:
            handle.create_dataset(
                "images",
                shape=images.shape,
                dtype=images.dtype,
                external=[(str(outside), 0, images.nbytes)],
            )
    elif kind == "virtual":
        with h5py.File(outside, "w") as source:
            source.create_dataset("images", data=images)
        layout = h5py.VirtualLayout(shape=images.shape, dtype=images.dtype)
        layout[...] = h5py.VirtualSource(str(outside), "images", shape=images.shape)
        with h5py.File(path, "w") as handle:
            handle.create_virtual_dataset("images", layout)
    else:
        raise ValueError(kind)


def medimeta_process(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``medimeta ARGS`` as a user runs it: a process of its own, this test's environment,
    80 columns (``env`` added on top); the completed process, whatever its exit code."""
    return subprocess.run(
        [sys.executable, "-m", "medimeta_cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80", **(env or {})},
        check=False,
        timeout=timeout,
    )


def run_cli(
    *args: str, env: dict[str, str] | None = None, terminal: bool = False, timeout: float = 60
) -> tuple[int, str, str]:
    """Run ``python -m medimeta_cli ARGS`` as a user would: a real process, this test's
    environment plus ``env``. With ``terminal``, stdout and stderr are a pseudo-terminal
    (what a person sees; stderr then comes back inside stdout)."""
    import os
    import subprocess

    command = [sys.executable, "-m", "medimeta_cli", *args]
    environ = {**os.environ, **(env or {})}
    if not terminal:
        proc = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=timeout)
        return proc.returncode, proc.stdout, proc.stderr
    import pty

    leader, follower = pty.openpty()
    with subprocess.Popen(
        command, env=environ, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower
    ) as process:
        os.close(follower)
        screen = read_terminal(leader)
        code = process.wait(timeout=timeout)
    return code, screen.decode("utf-8", "replace").replace("\r\n", "\n"), ""


def read_terminal(leader: int) -> bytes:
    """Everything a process writes to its pseudo-terminal until it closes it (EIO); the
    leader's descriptor is closed then."""
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the process closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return b"".join(chunks)
