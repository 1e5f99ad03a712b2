"""`medimeta verify --full` throughput against md5sum and b2sum over the same files.

    python benchmarks/verify.py [--size-mb 1024] [--runs 3] [--work DIR]

A ~1 GB crc-like dataset (images.hdf5 plus one TIFF per image, as upstream) is
installed from the local server; then, with the files in the page cache, each tool
reads and hashes every installed file. Target: medimeta at least 1.5x the faster of
md5sum and b2sum.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _fixture import build_dataset, drop_file, medimeta_script, start_server, tool_env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "medimeta-bench")
    args = parser.parse_args()
    for tool in ("md5sum", "b2sum", "xargs"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed as a baseline")
    archive, _ = build_dataset(args.work / "data", args.size_mb * 1024 * 1024)
    root = args.work / "verify-root"
    drop_file(root)
    server = start_server(archive)
    try:
        env = tool_env(server, None, root)
        subprocess.run([medimeta_script(), "download", "crc", "--quiet"], env=env, check=True)
    finally:
        server.stop()
    folder = root / "crc"
    installed = [p for p in folder.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in installed)
    files = "find . -type f -print0 | xargs -0 {} > /dev/null"
    commands = {
        "md5sum": ["sh", "-c", files.format("md5sum")],
        "b2sum": ["sh", "-c", files.format("b2sum")],
        "medimeta verify --full": [medimeta_script(), "verify", "--full", "crc", "--quiet"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for command in commands.values():  # warm the page cache once
        subprocess.run(command, cwd=folder, env=env, check=True, stdout=subprocess.DEVNULL)
    for _ in range(args.runs):
        for name, command in commands.items():
            times[name].append(timed_in(command, folder, env))
    mb = total / 1e6
    print(f"{mb:.0f} MB in {len(installed)} files; {args.runs} runs, medians (warm page cache)")
    rates = {}
    for name, values in times.items():
        best = sorted(values)[len(values) // 2]
        rates[name] = mb / best
        print(f"  {name:<24} {best:6.2f} s  {rates[name]:7.0f} MB/s")
    baseline = max(rates["md5sum"], rates["b2sum"])
    ratio = rates["medimeta verify --full"] / baseline
    print(
        f"ratio to the faster of md5sum and b2sum: {ratio:.2f} (target >= 1.5): "
        f"{'ok' if ratio >= 1.5 else 'BELOW TARGET'}"
    )
    drop_file(root)
    return 0


def timed_in(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Wall time of one run of ``command`` in ``cwd``."""
    import time

    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


if __name__ == "__main__":
    raise SystemExit(main())
