"""`download --layout hdf5` against `--layout full`, on the local server.

    python benchmarks/layout.py [--size-mb 1024] [--runs 3] [--work DIR]

The synthetic archive stores every image twice, as upstream does: one row of
images.hdf5 and one TIFF file of the same size. Both layouts are downloaded and
installed by the `medimeta` command from the test suite's server on 127.0.0.1 (each
run into an empty root), the bytes the server sent are counted, and the two installs
are compared: the same images and labels must load. Targets: the hdf5 layout
transfers at most 55% of the full archive's bytes and takes at most 0.6 of its time.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import tempfile
import time
from pathlib import Path

from _fixture import build_dataset, drop_file, medimeta_script, start_server, tool_env


def digest(folder: Path) -> str:
    """SHA-256 over the images and every label file of an installed dataset."""
    import h5py
    import numpy as np

    sha = hashlib.sha256()
    with h5py.File(folder / "images.hdf5", "r") as handle:
        images = handle["images"]
        for start in range(0, images.shape[0], 256):
            sha.update(np.ascontiguousarray(images[start : start + 256]).data)
    for labels in sorted((folder / "task_labels").glob("*.npy")):
        sha.update(np.load(labels).tobytes())
    return sha.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "medimeta-bench")
    args = parser.parse_args()
    archive, _ = build_dataset(args.work / "data", args.size_mb * 1024 * 1024)
    size = archive.stat().st_size
    server = start_server(archive)
    times: dict[str, list[float]] = {"full": [], "hdf5": []}
    sent: dict[str, int] = {}
    requests: dict[str, int] = {}
    digests: dict[str, str] = {}
    try:
        for _ in range(args.runs):
            for layout in ("full", "hdf5"):
                root = args.work / f"layout-{layout}"
                drop_file(root)
                server.clear_log()
                env = tool_env(server, None, root)
                start = time.perf_counter()
                subprocess.run(
                    [medimeta_script(), "download", "crc", "--layout", layout, "--quiet"],
                    env=env,
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
                times[layout].append(time.perf_counter() - start)
                sent[layout] = server.bytes_sent("crc.zip")
                requests[layout] = len(server.requests_for("crc.zip", method="GET"))
        for layout in ("full", "hdf5"):
            digests[layout] = digest(args.work / f"layout-{layout}" / "crc")
    finally:
        server.stop()
        for layout in ("full", "hdf5"):
            drop_file(args.work / f"layout-{layout}")
    median = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    byte_ratio = sent["hdf5"] / size
    time_ratio = median["hdf5"] / median["full"]
    print(
        f"archive: {size / 1e6:.0f} MB (images.hdf5 and TIFFs of equal size); "
        f"{args.runs} runs, medians; download and installation"
    )
    for layout in ("full", "hdf5"):
        print(
            f"  --layout {layout:<5} {median[layout]:6.2f} s  {sent[layout] / 1e6:8.1f} MB sent "
            f"in {requests[layout]} request(s)"
        )
    print(
        f"bytes: {byte_ratio:.2f} of the full archive (target <= 0.55): "
        f"{'ok' if byte_ratio <= 0.55 else 'OVER TARGET'}"
    )
    print(
        f"time:  {time_ratio:.2f} of the full download (target <= 0.6): "
        f"{'ok' if time_ratio <= 0.6 else 'OVER TARGET'}"
    )
    same = digests["full"] == digests["hdf5"]
    print(f"images and labels identical in both installs: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
