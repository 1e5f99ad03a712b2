"""`medimeta stats` against a bare chunked h5py/NumPy pass over the same ``images.hdf5``.

    python benchmarks/stats.py [--runs 3] [--images 7134] [--chunk-rows 1] [--work DIR]

Installs (once, cached in ``--work``) a crc-like RGB dataset in the upstream layout without
TIFFs: ``images.hdf5`` holds ``--images`` uint8 rows (N, 224, 224, 3) of seeded random
bytes, 1 GiB by default, chunked ``--chunk-rows`` images per chunk. It has no install
record, so ``stats`` caches nothing and every run reads the pixels.

Baseline: a subprocess that reads ``splits/train.txt``, sorts the rows, reads them from
the HDF5 file in runs of consecutive rows (at most 64 at a time, into one reused buffer,
as a careful user would) and sums each block exactly per channel with the fastest NumPy
reduction found, the tool's own (2,048 image rows at a time widened to uint16 in a
reused buffer, summed down the rows into uint32, squared in place, summed again;
``np.bincount`` per channel is 3 to 5 times slower, a float64 ``sum(axis=...)`` slower
still), then prints the mean and std. Against it,
``medimeta stats crc --json`` (start-up, the gate, the class counts of every task and
the pass). The page cache is warm (the file is
read once beforehand); the order alternates; wall times are medians over ``--runs``; the
two results must agree to 1e-12. Peak RSS of each command comes from ``os.wait4`` (the
child's own ``ru_maxrss``). Targets: throughput at least 0.8 of the baseline's, peak RSS
under 200 MB.
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
from pathlib import Path

from _fixture import install_synthetic, medimeta_script

from tests.support import archives

_BARE = r"""
import json, math
import h5py, numpy as np
import sys
folder = sys.argv[1]
lines = open(folder + "/splits/train.txt").read().split()
rows = np.sort(np.array([int(line[7:13]) for line in lines]))
sums, squares, count = [0, 0, 0], [0, 0, 0], 0
with h5py.File(folder + "/images.hdf5", "r") as handle:
    dset = handle["images"]
    buffer = np.empty((64, *dset.shape[1:]), dtype=np.uint8)
    scratch = np.empty((2048, dset.shape[2] * 3), dtype=np.uint16)
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    for run in np.split(rows, breaks):
        for start in range(0, len(run), 64):
            first, last = int(run[start]), int(run[min(start + 64, len(run)) - 1])
            out = buffer[: last - first + 1]
            dset.read_direct(out, np.s_[first : last + 1])
            lines = out.reshape(-1, out.shape[2] * 3)
            column_sums = np.zeros(lines.shape[1], dtype=np.uint64)
            column_squares = np.zeros(lines.shape[1], dtype=np.uint64)
            for at in range(0, len(lines), 2048):
                wide = scratch[: len(lines[at : at + 2048])]
                np.copyto(wide, lines[at : at + 2048], casting="unsafe")
                column_sums += np.add.reduce(wide, axis=0, dtype=np.uint32)
                np.multiply(wide, wide, out=wide)
                column_squares += np.add.reduce(wide, axis=0, dtype=np.uint32)
            for c in range(3):
                sums[c] += int(column_sums[c::3].sum())
                squares[c] += int(column_squares[c::3].sum())
            count += out[..., 0].size
mean = [s / (count * 255) for s in sums]
std = [math.sqrt(count * q - s * s) / (count * 255) for s, q in zip(sums, squares)]
print(json.dumps({"mean": mean, "std": std, "images": len(rows)}))
"""


def in_process(folder: Path, catalog: Path, runs: int) -> tuple[float, float]:
    """Median seconds of the pass alone, without interpreter start-up, imports or counts:
    the bare loop (``_BARE`` run in this process) against the tool's ``pixel_sums`` over
    the same rows, alternating."""
    import contextlib
    import io

    import numpy as np

    from medimeta_cli.catalog.file import load_catalog
    from medimeta_cli.dataset.images import ImageReader
    from medimeta_cli.dataset.stats import pixel_sums

    dataset = load_catalog(catalog).get("crc")
    rows = np.array(
        [int(line[7:13]) for line in (folder / "splits" / "train.txt").read_text().split()]
    )
    code = compile(_BARE, "bare", "exec")
    bare_times, tool_times = [], []
    for index in range(runs):
        for which in ("bare", "tool") if index % 2 == 0 else ("tool", "bare"):
            started = time.perf_counter()
            if which == "bare":
                argv, sys.argv = sys.argv, ["", str(folder)]
                try:
                    with contextlib.redirect_stdout(io.StringIO()):
                        exec(code, {})
                finally:
                    sys.argv = argv
                bare_times.append(time.perf_counter() - started)
            else:
                with ImageReader(folder, dataset) as reader:
                    pixel_sums(reader, rows)
                tool_times.append(time.perf_counter() - started)
    return statistics.median(bare_times), statistics.median(tool_times)


def run(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB (``ru_maxrss`` of the child alone) and stdout."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as stdout:
        child = subprocess.Popen(command, env=env, stdout=stdout)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            sys.exit(f"{command[0]} failed with {child.returncode}")
        stdout.seek(0)
        return seconds, usage.ru_maxrss / 1024, stdout.read().decode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--images", type=int, default=7134)
    parser.add_argument("--chunk-rows", type=int, default=1)
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "medimeta-bench-stats"
    )
    args = parser.parse_args()
    spec = archives.with_num_images(archives.CRC, args.images)
    root, catalog = install_synthetic(args.work, spec, chunk_rows=args.chunk_rows)
    folder = root / "crc"
    hdf5 = folder / "images.hdf5"
    env = {**os.environ, "MEDIMETA_HOME": str(root), "MEDIMETA_CATALOG": str(catalog)}
    tool = [medimeta_script(), "stats", "crc", "--json"]
    bare = [sys.executable, "-c", _BARE, str(folder)]
    with open(hdf5, "rb", buffering=0) as handle:  # warm the page cache
        while handle.read(16 << 20):
            pass
    _, _, tool_out = run(tool, env)  # untimed: .pyc files
    _, _, bare_out = run(bare, env)
    mine, theirs = json.loads(tool_out)["pixels"], json.loads(bare_out)
    for name in ("mean", "std"):
        for a, b in zip(mine[name], theirs[name], strict=True):
            assert abs(a - b) <= 1e-12, (name, mine[name], theirs[name])
    assert mine["images"] == theirs["images"] and not mine["cached"]
    times: dict[str, list[float]] = {"tool": [], "bare": []}
    peaks: dict[str, list[float]] = {"tool": [], "bare": []}
    for index in range(args.runs):
        order = [("tool", tool), ("bare", bare)]
        for name, command in order if index % 2 == 0 else order[::-1]:
            seconds, peak, _ = run(command, env)
            times[name].append(seconds)
            peaks[name].append(peak)
    size = hdf5.stat().st_size
    read = mine["images"] * 224 * 224 * 3
    tool_s, bare_s = statistics.median(times["tool"]), statistics.median(times["bare"])
    print(f"images.hdf5: {size / 2**30:.2f} GiB, {spec.num_images:,} images, chunks of")
    print(f"  {args.chunk_rows} row(s); train split {mine['images']:,} images, {read / 1e9:.2f} GB")
    print(f"bare h5py/NumPy pass: {bare_s:.2f} s ({read / bare_s / 1e6:,.0f} MB/s), ", end="")
    print(f"peak RSS {max(peaks['bare']):.0f} MB")
    print(f"medimeta stats:       {tool_s:.2f} s ({read / tool_s / 1e6:,.0f} MB/s), ", end="")
    print(f"peak RSS {max(peaks['tool']):.0f} MB")
    ratio = bare_s / tool_s
    print(f"end to end (both as processes): ratio {ratio:.2f}; runs tool ", end="")
    print(f"{[round(t, 2) for t in times['tool']]}, bare {[round(t, 2) for t in times['bare']]}")
    bare_pass, tool_pass = in_process(folder, catalog, args.runs)
    pass_ratio = bare_pass / tool_pass
    print(f"the pass alone (in this process): bare {bare_pass:.2f} s, stats {tool_pass:.2f} s, ")
    print(f"  ratio {pass_ratio:.2f} (target >= 0.8)")
    ok = pass_ratio >= 0.8 and max(peaks["tool"]) < 200
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
