"""`medimeta sample`: 1,000 5-way 5-shot episodes (15 queries each) on a 100k-image task.

    python benchmarks/sample.py [--images 100000] [--episodes 1000] [--runs 5] [--work DIR]

A crc-like dataset (one 9-class task) is installed once in the upstream layout, with
all ``--images`` images in its train split (val and test empty), so the sampled split
itself is that large. Sampling never reads pixels, so ``images.hdf5`` has the full
shape but no data written: HDF5 allocates no chunk, and the file is about 1 kB.

Measured, medians of ``--runs`` runs, interleaved:

* ``medimeta sample crc --ways 5 --shots 5 --queries 15 --episodes 1000 --seed 1`` as a
  subprocess, wall time with start-up and the JSON on stdout (sent to /dev/null);
* ``medimeta list --json``, the in-run baseline: what any command pays to start;
* in this process, the parts of the command: reading the split and labels
  (``select``), ``EpisodeSample.draw`` (``sample_episodes``) itself, and the JSON
  document written as the command writes it.

Target: the command, and ``sample_episodes`` alone, under 1 s each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from _fixture import install_synthetic, medimeta_script

from tests.support import archives

TARGET_S = 1.0


def tool_env(root: Path, catalog: Path) -> dict[str, str]:
    """Environment pointing the tool at the benchmark catalog and root (and nothing else)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIMETA_")}
    env.update(MEDIMETA_CATALOG=str(catalog), MEDIMETA_HOME=str(root), MEDIMETA_OFFLINE="1")
    return env


def timed_output(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall time of one run and the number of bytes it printed (failure is fatal)."""
    with tempfile.TemporaryFile() as sink:
        start = time.perf_counter()
        done = subprocess.run(command, env=env, stdout=sink, stderr=subprocess.PIPE, check=False)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{done.stderr.decode(errors='replace')}")
        return seconds, sink.tell()


def in_process(
    root: Path, catalog_path: Path, args: argparse.Namespace
) -> tuple[float, float, float]:
    """Seconds for select, sample_episodes, and the JSON document, as the command does them."""
    from medimeta_cli.catalog.file import load_catalog
    from medimeta_cli.dataset.reader import DatasetReader
    from medimeta_cli.dataset.selection import SelectionSpec, select
    from medimeta_cli.sample.results import EpisodeSample

    dataset = load_catalog(catalog_path).get("crc")
    start = time.perf_counter()
    with DatasetReader.open(root, dataset) as reader:
        selection = select(reader, SelectionSpec(splits=("train",), seed=1))
    selected = time.perf_counter()
    result = EpisodeSample.draw(
        selection, ways=5, shots=5, queries=15, episodes=args.episodes, seed=1
    )
    sampled = time.perf_counter()
    document = result.to_json()
    with open(os.devnull, "w", encoding="utf-8") as sink:
        sink.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    written = time.perf_counter()
    return selected - start, sampled - selected, written - sampled


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000, help="images in the train split")
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "medimeta-bench-sample"
    )
    args = parser.parse_args()
    n = args.images
    spec = replace(
        archives.CRC,
        splits={"train": n, "val": 0, "test": 0},
        original_splits={"train": n, "val": 0, "test": 0},
    )
    stamps = set(args.work.glob("installed-*"))
    started = time.perf_counter()
    root, catalog = install_synthetic(args.work, spec, pixels=False)
    built = time.perf_counter() - started
    reused = set(args.work.glob("installed-*")) == stamps and bool(stamps)
    disk = sum(p.stat().st_blocks * 512 for p in args.work.rglob("*") if p.is_file())
    hdf5 = root / "crc" / "images.hdf5"

    env = tool_env(root, catalog)
    script = medimeta_script()
    command = [
        *(script, "sample", "crc", "--ways", "5", "--shots", "5", "--queries", "15"),
        *("--episodes", str(args.episodes), "--seed", "1"),
    ]
    startup = [script, "list", "--json"]
    for cmd in (command, startup):  # warm the page cache and .pyc files
        timed_output(cmd, env)
    sample_times, list_times, printed = [], [], 0
    parts: list[tuple[float, float, float]] = []
    for _ in range(args.runs):
        seconds, printed = timed_output(command, env)
        sample_times.append(seconds)
        list_times.append(timed_output(startup, env)[0])
        parts.append(in_process(root, catalog, args))
    sample_s = statistics.median(sample_times)
    list_s = statistics.median(list_times)
    select_s, core_s, json_s = (statistics.median(p[i] for p in parts) for i in range(3))

    print(
        f"dataset: {n:,} images in the train split, 9 classes; fixture "
        f"{'reused' if reused else f'built in {built:.1f} s'}, {disk / 1e6:.1f} MB on disk "
        f"(images.hdf5 of shape {spec.hdf5_shape}, no chunk written: "
        f"{hdf5.stat().st_size / 1e3:.0f} kB)"
    )
    print(f"{args.episodes} episodes of 5-way 5-shot + 15 queries; {args.runs} runs, medians")
    print(
        f"  medimeta sample (subprocess)   {sample_s * 1000:7.1f} ms  ({printed / 1e6:.1f} MB JSON)"
    )
    print(f"  medimeta list --json (start-up) {list_s * 1000:6.1f} ms  (baseline)")
    print(f"  sample minus start-up          {(sample_s - list_s) * 1000:7.1f} ms")
    print("  in-process parts:")
    print(f"    select (split + labels)      {select_s * 1000:7.1f} ms")
    print(f"    sample_episodes              {core_s * 1000:7.1f} ms")
    print(f"    JSON document (indent=2)     {json_s * 1000:7.1f} ms")
    for name, value in (("command", sample_s), ("sample_episodes", core_s)):
        verdict = "ok" if value < TARGET_S else "OVER TARGET"
        print(f"{name}: {value:.3f} s (target < {TARGET_S:.0f} s): {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
