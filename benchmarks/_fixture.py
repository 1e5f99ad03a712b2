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

from medimeta_cli.catalog.build import build_catalog  # noqa: E402
from medimeta_cli.catalog.file import catalog_to_json  # noqa: E402
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


def tool_env(server: ZenodoServer, catalog: Path | None, root: Path) -> dict[str, str]:
    """Environment pointing the tool at the local server and a root, and at the benchmark's
    catalog when given; without one the tool runs as users run it, on the bundled catalog
    (which validates nothing at start-up). The synthetic crc archive is smaller than the
    real one, which only the structure checks of ``verify --deep`` would notice."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIMETA_")}
    env.update(MEDIMETA_BASE_URL=server.url, MEDIMETA_HOME=str(root))
    if catalog is not None:
        env["MEDIMETA_CATALOG"] = str(catalog)
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


def install_synthetic(
    work: Path, spec: archives.DatasetSpec, *, chunk_rows: int = 1, pixels: bool = True
) -> tuple[Path, Path]:
    """``<work>/root/<id>/`` in the upstream layout without TIFFs, and a catalog for it.

    ``images.hdf5`` holds uint8 rows chunked ``chunk_rows`` images at a time, filled with
    seeded random bytes batch by batch (or, with ``pixels=False``, never written: no chunk
    is allocated, the file stays about 1 kB and its rows read as zeros). Labels, splits,
    info.yaml, LICENSE and annotations.csv are those of ``spec``. Reused between runs when
    already built.
    """
    import h5py
    import numpy as np

    root, catalog = work / "root", work / "catalog.json"
    stamp = work / f"installed-{spec.id}-{spec.num_images}-{chunk_rows}-{int(pixels)}"
    if stamp.exists():
        return root, catalog
    folder, info_dir = root / spec.id, work / "info"
    for old in (root, info_dir, catalog, *work.glob("installed-*")):
        drop_file(old)  # only what an earlier build made here
    for sub in ("task_labels", "splits", "original_splits"):
        (folder / sub).mkdir(parents=True)
    info_dir.mkdir()
    info = archives.info_yaml(spec)
    (folder / "info.yaml").write_text(info, encoding="utf-8")
    (info_dir / f"{spec.id}.yaml").write_text(info, encoding="utf-8")
    (folder / "LICENSE").write_text(f"{spec.license}\n", encoding="utf-8")
    labels = {task.name: archives.expected_labels(spec, task.name) for task in spec.tasks}
    for task in spec.tasks:
        np.save(folder / task.labels_relpath, labels[task.name], allow_pickle=False)
    split_of = {False: [""] * spec.num_images, True: [""] * spec.num_images}
    for original, sub in ((False, "splits"), (True, "original_splits")):
        for split in archives.SPLIT_NAMES:
            indices = archives.split_indices(spec, split, original=original)
            for index in indices.tolist():
                split_of[original][index] = split
            text = archives.split_file_text(spec, split, original=original)
            if text is not None:
                (folder / sub / f"{split}.txt").write_text(text, encoding="utf-8")
    rows = ["index,image_path,split,original_split," + ",".join(t.name for t in spec.tasks)]
    rows += [
        f"{i},{archives.image_relpath(i)},{split_of[False][i]},{split_of[True][i]},"
        + ",".join(str(int(labels[t.name][i])) for t in spec.tasks)
        for i in range(spec.num_images)
    ]
    (folder / "annotations.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    with h5py.File(folder / "images.hdf5", "w") as handle:
        dset = handle.create_dataset(
            "images",
            shape=spec.hdf5_shape,
            dtype=np.uint8,
            chunks=(chunk_rows, *spec.image_shape),
            track_times=False,
        )
        batch = max(1, 256 // chunk_rows) * chunk_rows
        row_bytes = int(np.prod(spec.image_shape))
        for start in range(0, spec.num_images if pixels else 0, batch):
            stop = min(start + batch, spec.num_images)
            noise = np.random.default_rng([spec.seed, start]).bytes((stop - start) * row_bytes)
            shape = (stop - start, *spec.image_shape)
            dset[start:stop] = np.frombuffer(noise, np.uint8).reshape(shape)
    catalog.write_text(catalog_to_json(build_catalog(info_dir)), encoding="utf-8")
    stamp.touch()
    return root, catalog
