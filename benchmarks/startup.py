"""Start-up cost of `medimeta list --json` against `python -c "import typer, pydantic"`.

Both run in the same interpreter environment, interleaved, and the ratio of the
medians is printed. Target: at most 1.3.

    python benchmarks/startup.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _time(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    script = shutil.which("medimeta", path=str(Path(sys.executable).parent)) or shutil.which(
        "medimeta"
    )
    if script is None:
        sys.exit("medimeta is not installed in this environment")
    with tempfile.TemporaryDirectory() as root:
        env = {**os.environ, "MEDIMETA_HOME": root}
        tool = [script, "list", "--json"]
        baseline = [sys.executable, "-c", "import typer, pydantic"]
        for cmd in (tool, baseline):  # warm the page cache and .pyc files
            _time(cmd, env)
        tool_times, base_times = [], []
        for _ in range(args.runs):
            tool_times.append(_time(tool, env))
            base_times.append(_time(baseline, env))
    tool_median, base_median = statistics.median(tool_times), statistics.median(base_times)
    ratio = tool_median / base_median
    print(f"medimeta list --json            median {tool_median * 1000:7.1f} ms")
    print(f"python -c 'import typer, pydantic' median {base_median * 1000:7.1f} ms")
    print(f"ratio {ratio:.2f} (target <= 1.30): {'ok' if ratio <= 1.3 else 'OVER TARGET'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
