"""Shared set-up for the benchmarks: a large archive in the upstream layout, its catalog,
and the local Zenodo-compatible server from the test suite."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medimeta_cli.catalog import catalog_to_json  # noqa: E402
from medimeta_cli.catalog_build import build_catalog  # noqa: E402
from tests.support import archives  # noqa: E402
from tests.support.zenodo_server import ZenodoServer  # noqa: E402


def build_dataset(work: Path, size_bytes: int) -> tuple[Path, Path]:
    """A crc-like RGB archive of about ``size_bytes`` (HDF5 plus TIFFs, like upstream) and a
    catalog describing it; reused between runs when already built."""
    spec = archives.spec_for_archive_size(archives.CRC, size_bytes)
    archive_dir, info_dir = work / "archives", work / "info"
    archive = archive_dir / "crc.zip"
    catalog = work / "catalog.json"
    stamp = work / f"built-{spec.num_images}"
    if not stamp.exists():
        shutil.rmtree(work, ignore_errors=True)
        info_dir.mkdir(parents=True)
        archives.build_archive(spec, archive_dir)
        (info_dir / "crc.yaml").write_text(archives.info_yaml(spec), encoding="utf-8")
        catalog.write_text(catalog_to_json(build_catalog(info_dir)), encoding="utf-8")
        stamp.touch()
    return archive, catalog


def start_server(archive: Path) -> ZenodoServer:
    """The test suite's Zenodo-compatible server on 127.0.0.1, serving one archive."""
    return ZenodoServer({archive.name: archive}).start()


def medimeta_script() -> str:
    """The installed ``medimeta`` script of this interpreter's environment."""
    here = Path(sys.executable).parent / "medimeta"
    return str(here) if here.exists() else "medimeta"


def tool_env(server: ZenodoServer, catalog: Path, root: Path) -> dict[str, str]:
    """Environment pointing the tool at the local server, the benchmark catalog and a root."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIMETA_")}
    env.update(MEDIMETA_BASE_URL=server.url, MEDIMETA_CATALOG=str(catalog), MEDIMETA_HOME=str(root))
    return env


def timed(command: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Wall time of one run of a command; its output is discarded, failure is fatal."""
    start = time.perf_counter()
    subprocess.run(
        command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def median_of(runs: int, measure: Callable[[], float]) -> float:
    """Median of ``runs`` measurements."""
    return statistics.median(measure() for _ in range(runs))


def drop_file(path: Path) -> None:
    """Remove a file or folder if present."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
