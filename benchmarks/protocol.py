"""`medimeta sample --protocol medimeta-paper`: the whole paper grid for all 19 datasets.

    python benchmarks/protocol.py [--info DIR] [--work DIR] [--first-task]

A synthetic data root is built once from the upstream ``info.yaml`` files (``--info``,
default ``../shared/reference/medimeta-info`` beside the repository): every dataset with its
real number of images and real split sizes, every task with its real classes or labels and
skewed but plausible class frequencies (multi-class and ordinal: Zipf-like shares over the
classes in a seeded order; binary: 30 % positives; multi-label: per-label rates from 30 %
down to 2 %, like cxr's rare findings). ``images.hdf5`` has the full shape but no data
(sampling never reads pixels). Then ``run_protocol`` (what the command runs) writes the grid
of every task (54 tasks x 11 settings) in JSON into a fresh folder, timed per task.

Target: the whole grid within 5 minutes (on 2 cores; the run uses one).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medimeta_cli.catalog.build import build_catalog  # noqa: E402
from medimeta_cli.catalog.file import catalog_to_json, load_catalog  # noqa: E402

TARGET_S = 300.0


def _labels(target: str, keys: list[int], n: int, rng: np.random.Generator) -> np.ndarray:
    if target == "MULTILABEL_CLASSIFICATION":
        rates = np.linspace(0.30, 0.02, len(keys))
        return (rng.random((n, len(keys))) < rates).astype(np.uint8)
    if target == "BINARY_CLASSIFICATION":
        return (rng.random(n) < 0.3).astype(np.int64)
    shares = 1.0 / np.arange(1, len(keys) + 1)
    shares = rng.permutation(shares / shares.sum())
    return np.array(keys, dtype=np.int64)[rng.choice(len(keys), size=n, p=shares)]


def build_root(info_dir: Path, work: Path) -> tuple[Path, Path]:
    """``<work>/root`` with every dataset of ``info_dir``, and a catalog of them."""
    root, catalog = work / "root", work / "catalog.json"
    stamp = work / "built"
    if stamp.exists():
        return root, catalog
    shutil.rmtree(work, ignore_errors=True)
    (work / "info").mkdir(parents=True)
    for number, path in enumerate(sorted(info_dir.glob("*.yaml"))):
        info = yaml.safe_load(path.read_text(encoding="utf-8"))
        dataset_id, n = info["id"], int(info["total_num_samples"])
        folder = root / dataset_id
        for sub in ("task_labels", "splits", "original_splits"):
            (folder / sub).mkdir(parents=True)
        shutil.copy(path, folder / "info.yaml")
        shutil.copy(path, work / "info" / path.name)
        (folder / "LICENSE").write_text(f"{info.get('license', '')}\n", encoding="utf-8")
        rng = np.random.default_rng(number)
        for task in info["tasks"]:
            labels = _labels(task["task_target"], [int(k) for k in task["labels"]], n, rng)
            np.save(folder / "task_labels" / f"{task['task_name']}.npy", labels)
        for sub, key in (("splits", "splits_num_samples"), ("original_splits", None)):
            counts = info["splits_num_samples" if key else "original_splits_num_samples"]
            order, start = rng.permutation(n), 0
            for split in ("train", "val", "test"):
                size = int(counts.get(split, 0) or 0)
                chosen = np.sort(order[start : start + size])
                start += size
                if size:
                    text = "\n".join(f"images/{i:06d}.tiff" for i in chosen.tolist())
                    (folder / sub / f"{split}.txt").write_text(text, encoding="utf-8")
        channels, height, width = info["input_size"]
        shape = (n, height, width) if channels == 1 else (n, height, width, channels)
        with h5py.File(folder / "images.hdf5", "w") as handle:
            handle.create_dataset("images", shape=shape, dtype=np.uint8, chunks=(1, *shape[1:]))
    catalog.write_text(catalog_to_json(build_catalog(work / "info")), encoding="utf-8")
    stamp.touch()
    return root, catalog


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--info", type=Path, default=REPO.parent / "shared" / "reference" / "medimeta-info"
    )
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "medimeta-bench-protocol"
    )
    parser.add_argument("--first-task", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    root, catalog_path = build_root(args.info, args.work)
    built = time.perf_counter() - started

    from medimeta_cli.sample.protocol import ProtocolRequest, TaskOutcome, run_protocol
    from medimeta_cli.settings import resolve_settings

    settings = resolve_settings({"root": root, "catalog": catalog_path, "offline": True}, {})
    out = args.work / "out"
    shutil.rmtree(out, ignore_errors=True)
    times: list[tuple[float, str]] = []
    last = [time.perf_counter()]

    def on_task(task: TaskOutcome) -> None:
        now = time.perf_counter()
        times.append((now - last[0], task.summary_line()))
        last[0] = now
        print(f"  {times[-1][0]:6.1f} s  {task.summary_line()}", flush=True)

    start = time.perf_counter()
    result = run_protocol(
        settings,
        load_catalog(catalog_path),
        ProtocolRequest(out=out, first_task=args.first_task),
        on_task=on_task,
    )
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"fixture built in {built:.1f} s ({len(list(root.iterdir()))} datasets)")
    print(
        f"{len(result.tasks)} tasks, {len(result.files)} files written "
        f"({size / 1e6:.0f} MB), {result.skipped} settings skipped"
    )
    print("slowest tasks:")
    for took, line in sorted(times, reverse=True)[:5]:
        print(f"  {took:6.1f} s  {line}")
    verdict = "ok" if seconds < TARGET_S else "OVER TARGET"
    print(f"whole grid: {seconds:.1f} s (target < {TARGET_S:.0f} s): {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
