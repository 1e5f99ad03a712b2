"""`medimeta export` throughput: NumPy arrays against a bare h5py loop, PNG folders per job.

    python benchmarks/export.py [--part numpy|imagefolder|all] [--runs 5] [--cache warm|cold]
                                [--images 21400] [--png-images 3000] [--chunk-rows 1]
                                [--work DIR] [--out DIR]

Both parts install a crc-like RGB dataset once (cached in ``--work``) straight in the
upstream layout, without TIFFs: ``images.hdf5`` holds uint8 rows (N, 224, 224, 3),
uncompressed, chunked ``--chunk-rows`` images per chunk (default 1: one image per chunk,
as the test fixtures write it), filled with seeded random bytes; labels, splits
(train/val/test about 56/22/22 %, scattered over the file), info.yaml, LICENSE and
annotations.csv match; the catalog is built from that info.yaml. Every command runs as
a subprocess under GNU time, which reports its peak RSS (the largest of the command and
the processes it waited for); wall and CPU times are medians over ``--runs`` runs.

numpy: 21,400 images, 3.2 GB (3 GiB) of pixels. Baseline: a subprocess with a bare loop
that reads each split's rows from the HDF5 file in runs of neighbouring chunks, batches
of 256 rows, into one reused buffer, and writes the same images.npy, labels.npy and
indices.npy (header, then raw bytes, as ``np.lib.format`` does). Against it,
``medimeta export crc --format numpy``. With ``--cache warm`` (the default) the HDF5 file
is read once beforehand and every run reads from the page cache; with ``--cache cold``
the page cache is dropped (``echo 3 > /proc/sys/vm/drop_caches``, root only) before each
timed run. In both modes dirty pages are flushed (``sync``, untimed) and no export is on
disk when a timed run starts; the order alternates; a first round of both commands is
not timed (on a fresh virtual disk, writing to blocks never written before took three
times as long as later runs), and its outputs are compared: headers, sizes, the small
arrays, and sampled image rows against each other and the HDF5 file.
Targets: throughput at least 0.8 of the baseline's; peak RSS under 300 MB (also shown for
an export 40 times smaller, to see that it does not grow with the size).

imagefolder: a 3,000-image dataset (450 MB), exported whole as PNG with ``--jobs 1`` and
``--jobs 2``, against a bare loop in one process (HDF5 rows as above, then
``Image.fromarray(pixels).save(path, "PNG")``); always warm (encoding is CPU-bound); the
PNG files of the three outputs are compared. Target: ``--jobs 2`` at least 1.7x
``--jobs 1`` (on 2 cores). Random pixels are the worst case for PNG (about 150 kB and
5 ms per image here); real images compress better.

Wall times on a shared 2-core virtual machine vary by +-30 % from run to run (page
allocation, write-back, other work): compare medians from one run of this script, never
across runs. Each run also shows the CPU time the machine spent outside the command
meanwhile (other processes, and kernel threads such as the write-back of its output);
``--out /dev/shm`` keeps write-back out of the numpy figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from _fixture import drop_file, install_synthetic, medimeta_script

from tests.support import archives

NUMPY_RATIO_TARGET = 0.8
RSS_TARGET_MB = 300
JOBS_RATIO_TARGET = 1.7
TASK = "tissue class"

# Shared by both bare loops: the sorted rows of a split, read in batches of 256 rows,
# each batch as runs of neighbouring chunks (one read per run of consecutive rows).
_READ = r"""
import os, sys
import h5py
import numpy as np

def split_rows(folder, split):
    with open(os.path.join(folder, "splits", split + ".txt"), "rb") as fh:
        lines = fh.read().split(b"\n")
    return np.sort(np.array([int(line[7:13]) for line in lines], dtype=np.int64))

def batches(dset, rows, size=256):
    per_chunk = dset.chunks[0] if dset.chunks else 1
    buffer = np.empty((size, *dset.shape[1:]), dtype=np.uint8)
    start = 0
    while start < len(rows):
        stop = min(start + size, len(rows))
        if stop < len(rows) and per_chunk > 1:  # a chunk cut in two goes to the next batch
            boundary = rows[stop] // per_chunk * per_chunk
            cut = start + int(np.searchsorted(rows[start:stop], boundary))
            stop = cut if cut > start else stop
        part = rows[start:stop]
        gaps = (np.flatnonzero(np.diff(part // per_chunk) > 1) + 1).tolist()
        for a, b in zip([0, *gaps], [*gaps, len(part)]):
            first, last = int(part[a]), int(part[b - 1])
            if last - first + 1 == b - a:
                dset.read_direct(buffer, np.s_[first : last + 1], np.s_[a:b])
            else:
                low = first - first % per_chunk
                buffer[a:b] = dset[low : last + 1][part[a:b] - low]
        yield part, buffer[: stop - start]
        start = stop
"""

_BARE_NUMPY = (
    _READ
    + r"""
folder, out, task = sys.argv[1:4]
labels = np.load(os.path.join(folder, "task_labels", task + ".npy"))
with h5py.File(os.path.join(folder, "images.hdf5"), "r") as handle:
    dset = handle["images"]
    for split in ("train", "val", "test"):
        rows = split_rows(folder, split)
        target = os.path.join(out, split)
        os.makedirs(target)
        with open(os.path.join(target, "images.npy"), "wb") as fh:
            header = {"descr": "|u1", "fortran_order": False, "shape": (len(rows), *dset.shape[1:])}
            np.lib.format.write_array_header_1_0(fh, header)
            for _, images in batches(dset, rows):
                fh.write(images.data)
        np.save(os.path.join(target, "labels.npy"), labels[rows].astype(np.int64))
        np.save(os.path.join(target, "indices.npy"), rows)
"""
)

_BARE_PNG = (
    _READ
    + r"""
import json
from PIL import Image
folder, out, task, names = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
labels = np.load(os.path.join(folder, "task_labels", task + ".npy"))
with h5py.File(os.path.join(folder, "images.hdf5"), "r") as handle:
    dset = handle["images"]
    for split in ("train", "val", "test"):
        rows = split_rows(folder, split)
        for name in names.values():
            os.makedirs(os.path.join(out, split, name))
        for part, images in batches(dset, rows):
            for index, pixels in zip(part.tolist(), images):
                name = names[str(int(labels[index]))]
                path = os.path.join(out, split, name, f"crc_{index:06d}.png")
                Image.fromarray(pixels).save(path, "PNG")
"""
)


@dataclass(frozen=True)
class Measured:
    """Wall time and peak resident memory of one subprocess."""

    seconds: float
    peak_mb: float
    cpu: float  # user + system seconds of the command and its children
    others: float  # CPU seconds used outside the command meanwhile (noise), or -1


def gnu_time() -> str | None:
    """``/usr/bin/time`` when it is GNU time (``-f %M``: peak RSS of the command in kB)."""
    try:
        found = subprocess.run(["/usr/bin/time", "--version"], capture_output=True, text=True)
    except OSError:
        return None
    return "/usr/bin/time" if "GNU" in found.stdout + found.stderr else None


def run_measured(command: list[str], env: dict[str, str]) -> Measured:
    """Run ``command``: its wall time and peak RSS (the largest of the command and the
    processes it waited for, e.g. its workers).

    Not ``ru_maxrss`` of a child of this process: Linux starts a child's peak at the RSS
    of its parent at the fork (or vfork) before the exec, and this process is big. GNU
    time is a small parent; without it, ``VmHWM`` of the command itself is polled.
    """
    with tempfile.NamedTemporaryFile() as report, tempfile.TemporaryFile() as errors:
        wrapper = gnu_time()
        full = [wrapper, "-f", "%M", "-o", report.name, *command] if wrapper else command
        before, busy = resource.getrusage(resource.RUSAGE_CHILDREN), _machine_busy()
        start = time.perf_counter()
        process = subprocess.Popen(full, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        peak_kb = 0
        if wrapper:
            process.wait()
        while process.poll() is None:
            peak_kb = max(peak_kb, _vm_hwm_kb(process.pid))
            time.sleep(0.005)
        seconds = time.perf_counter() - start
        after, busy = resource.getrusage(resource.RUSAGE_CHILDREN), _machine_busy() - busy
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        if process.returncode != 0:
            errors.seek(0)
            sys.exit(f"{command[:4]} failed:\n{errors.read().decode(errors='replace')}")
        if wrapper:
            peak_kb = int(Path(report.name).read_text().split()[-1])
    others = max(0.0, busy - cpu) if busy >= 0 else -1.0  # -inf - -inf is nan: not >= 0
    return Measured(seconds, peak_kb / 1024, cpu, others)


def _machine_busy() -> float:
    """CPU seconds all processors have been busy since boot (steal included), or -inf."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return float("-inf")
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _vm_hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tool_env(root: Path, catalog: Path) -> dict[str, str]:
    """Environment pointing the tool at the benchmark catalog and root (and nothing else)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIMETA_")}
    env.update(MEDIMETA_CATALOG=str(catalog), MEDIMETA_HOME=str(root), MEDIMETA_OFFLINE="1")
    return env


def disk_usage(path: Path) -> int:
    """Bytes allocated below ``path``."""
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def prepare(work: Path, spec: archives.DatasetSpec, chunk_rows: int) -> tuple[Path, Path, str]:
    """Install (or reuse) the dataset; its root, catalog and how long building took."""
    stamps = set(work.glob("installed-*"))
    started = time.perf_counter()
    root, catalog = install_synthetic(work, spec, chunk_rows=chunk_rows)
    if stamps and set(work.glob("installed-*")) == stamps:
        return root, catalog, "reused"
    return root, catalog, f"built in {time.perf_counter() - started:.0f} s"


def read_through(path: Path) -> None:
    """Read a file once (puts it in the page cache)."""
    with open(path, "rb", buffering=0) as handle:
        buffer = bytearray(16 << 20)
        while handle.readinto(buffer):
            pass


def drop_caches() -> bool:
    """Flush dirty pages and drop the page cache; False where that is not allowed."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as handle:
            handle.write("3\n")
    except OSError:
        return False
    return True


def median_of(values: list[Measured]) -> Measured:
    """Median wall and CPU times; the largest peak RSS."""
    return Measured(
        statistics.median(v.seconds for v in values),
        max(v.peak_mb for v in values),
        statistics.median(v.cpu for v in values),
        statistics.median(v.others for v in values),
    )


def _listed(values: Iterable[float]) -> str:
    return " ".join(f"{v:.2f}" if v >= 0 else "?" for v in values)


# ----------------------------------------------------------------------------- numpy


def compare_numpy(tool_out: Path, bare_out: Path, hdf5: Path) -> str:
    """Check that both exports hold the same arrays; a one-line summary."""
    import h5py
    import numpy as np

    checked = 0
    with h5py.File(hdf5, "r") as handle:
        dset = handle["images"]
        for split in ("train", "val", "test"):
            for name in ("labels", "indices"):
                a, b = (np.load(o / split / f"{name}.npy") for o in (tool_out, bare_out))
                assert a.dtype == b.dtype and np.array_equal(a, b), f"{split}/{name}.npy differ"
            indices = np.load(tool_out / split / "indices.npy")
            paths = [o / split / "images.npy" for o in (tool_out, bare_out)]
            assert paths[0].stat().st_size == paths[1].stat().st_size, f"{split} sizes differ"
            with open(paths[0], "rb") as x, open(paths[1], "rb") as y:
                assert x.read(128) == y.read(128), f"{split}/images.npy headers differ"
            a, b = (np.load(p, mmap_mode="r") for p in paths)
            assert a.shape == b.shape == (len(indices), *dset.shape[1:])
            rows = sorted(
                {0, len(a) - 1, *random.Random(split).sample(range(len(a)), min(100, len(a)))}
            )
            for row in rows:
                source = dset[int(indices[row])]
                assert np.array_equal(a[row], source), f"{split} row {row} differs from HDF5"
                assert np.array_equal(b[row], source), f"baseline {split} row {row} differs"
            checked += len(rows)
    return f"outputs identical (small arrays, headers, sizes; {checked} sampled rows vs HDF5)"


def numpy_part(args: argparse.Namespace) -> None:
    spec = archives.with_num_images(archives.CRC, args.images)
    root, catalog, how = prepare(args.work / "numpy-data", spec, args.chunk_rows)
    folder, hdf5 = root / "crc", root / "crc" / "images.hdf5"
    pixels = spec.num_images * 224 * 224 * 3
    env = tool_env(root, catalog)
    outs = args.out / "medimeta-bench-numpy-out"
    drop_file(outs)
    outs.mkdir(parents=True)
    tool_out, bare_out, small_out = outs / "tool", outs / "bare", outs / "small"
    bare = [sys.executable, "-c", _BARE_NUMPY, str(folder), str(bare_out), TASK]
    script = medimeta_script()
    tool = [script, "export", "crc", "--format", "numpy", "--out", str(tool_out), "--quiet"]
    small = [script, "export", "crc", "--format", "numpy", "--out", str(small_out), "--quiet"]
    small += ["--limit", str(max(1, args.images // 120))]  # per split: 1/40 of the images

    # Untimed: .pyc files and the small export (which also shows RSS at 1/40 of the size).
    small_rss = run_measured(small, env).peak_mb
    cold = args.cache == "cold"
    if cold and not drop_caches():
        sys.exit("--cache cold needs root (to write /proc/sys/vm/drop_caches)")
    if not cold:
        read_through(hdf5)
    runs: dict[str, list[Measured]] = {"bare": [], "tool": []}
    order = [("bare", bare), ("tool", tool)]
    for number in range(args.runs + 1):  # the first round is untimed: see the docstring
        for name, command in order if number % 2 else order[::-1]:
            if number:  # every timed run starts from the same state: no export on disk
                drop_file(bare_out)
                drop_file(tool_out)
            if cold:
                drop_caches()
            else:
                os.sync()
            measured = run_measured(command, env)
            if number:
                runs[name].append(measured)
        if number == 0:
            verdict = compare_numpy(tool_out, bare_out, hdf5)
            out_bytes = disk_usage(outs)
    data_bytes = disk_usage(args.work / "numpy-data")
    drop_file(outs)

    bare_m, tool_m = median_of(runs["bare"]), median_of(runs["tool"])
    chunks = f"{args.chunk_rows} image{'s' if args.chunk_rows > 1 else ''} per chunk"
    print(f"[numpy] {spec.num_images:,} images, {pixels / 1e9:.2f} GB of pixels ({chunks})")
    print(f"  fixture {how}; exports written to {outs};")
    print(f"  {args.runs} runs, medians, {args.cache} page cache")
    for label, m in (("bare h5py loop", bare_m), ("medimeta export --format numpy", tool_m)):
        print(
            f"  {label:<31} {m.seconds:6.2f} s  {pixels / 1e6 / m.seconds:6.0f} MB/s  "
            f"CPU {m.cpu:5.2f} s  peak RSS {m.peak_mb:4.0f} MB"
        )
    for name, values in runs.items():
        print(f"    {name} runs (s): {_listed(v.seconds for v in values)}", end="")
        print(f"   CPU outside it (s): {_listed(v.others for v in values)}")
    ratio = bare_m.seconds / tool_m.seconds
    best = min(m.seconds for m in runs["bare"]) / min(m.seconds for m in runs["tool"])
    print(
        f"  throughput ratio to the bare loop: {ratio:.2f} (target >= {NUMPY_RATIO_TARGET}): "
        f"{'ok' if ratio >= NUMPY_RATIO_TARGET else 'BELOW TARGET'}"
    )
    print(f"    best run to best run {best:.2f}; CPU time ratio {bare_m.cpu / tool_m.cpu:.2f}")
    print(
        f"  peak RSS of medimeta: {tool_m.peak_mb:.0f} MB (target < {RSS_TARGET_MB} MB): "
        f"{'ok' if tool_m.peak_mb < RSS_TARGET_MB else 'OVER TARGET'}; "
        f"{small_rss:.0f} MB for an export 40x smaller"
    )
    print(f"  {verdict}")
    print(
        f"  space: dataset {data_bytes / 1e9:.1f} GB (kept in {args.work / 'numpy-data'}), "
        f"exports {out_bytes / 1e9:.1f} GB (removed)"
    )


# ----------------------------------------------------------------------------- imagefolder


def png_digests(out: Path) -> dict[str, str]:
    """SHA-256 of every PNG below ``out``, by relative path."""
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*.png"))
    }


def imagefolder_part(args: argparse.Namespace) -> None:
    from medimeta_cli.catalog.file import load_catalog
    from medimeta_cli.export import class_folder_names

    spec = archives.with_num_images(archives.CRC, args.png_images)
    root, catalog, how = prepare(args.work / "png-data", spec, args.chunk_rows)
    folder = root / "crc"
    task = load_catalog(catalog).get("crc").task(TASK)
    names = {str(k): v for k, v in class_folder_names(task, sorted(task.labels)).items()}
    env = tool_env(root, catalog)
    outs = args.out / "medimeta-bench-png-out"
    drop_file(outs)
    outs.mkdir(parents=True)
    script = medimeta_script()
    commands: dict[str, tuple[list[str], Path]] = {}
    for jobs in (1, 2):
        out = outs / f"jobs{jobs}"
        commands[f"medimeta --jobs {jobs}"] = (
            [script, "export", "crc", "--jobs", str(jobs), "--out", str(out), "--quiet"],
            out,
        )
    bare_out = outs / "bare"
    commands["bare Pillow loop"] = (
        [sys.executable, "-c", _BARE_PNG, str(folder), str(bare_out), TASK, json.dumps(names)],
        bare_out,
    )
    read_through(folder / "images.hdf5")
    runs: dict[str, list[Measured]] = {name: [] for name in commands}
    order = list(commands.items())
    for number in range(args.runs):
        for name, (command, out) in order[number % 3 :] + order[: number % 3]:
            drop_file(out)
            os.sync()
            runs[name].append(run_measured(command, env))
    digests = {name: png_digests(out) for name, (_, out) in commands.items()}
    first = digests["medimeta --jobs 1"]
    same = all(d == first for d in digests.values()) and len(first) == spec.num_images
    data_bytes, out_bytes = disk_usage(args.work / "png-data"), disk_usage(outs)
    drop_file(outs)

    medians = {name: median_of(values) for name, values in runs.items()}
    print(f"[imagefolder] {spec.num_images:,} images to PNG, {os.cpu_count()} cores")
    print(f"  fixture {how}; exports written to {outs};")
    print(f"  {args.runs} runs, medians, warm page cache")
    for name in ("bare Pillow loop", "medimeta --jobs 1", "medimeta --jobs 2"):
        m = medians[name]
        print(
            f"  {name:<18} {m.seconds:6.2f} s  {spec.num_images / m.seconds:5.0f} images/s  "
            f"CPU {m.cpu:5.2f} s  peak RSS {m.peak_mb:4.0f} MB"
        )
    for name, values in runs.items():
        print(f"    {name} runs (s): {_listed(v.seconds for v in values)}", end="")
        print(f"   CPU outside it (s): {_listed(v.others for v in values)}")
    one = medians["medimeta --jobs 1"].seconds
    speedup = one / medians["medimeta --jobs 2"].seconds
    print(f"  --jobs 1 against the bare loop: {medians['bare Pillow loop'].seconds / one:.2f}")
    print(
        f"  --jobs 2 speed-up over --jobs 1: {speedup:.2f} (target >= {JOBS_RATIO_TARGET}): "
        f"{'ok' if speedup >= JOBS_RATIO_TARGET else 'BELOW TARGET'}"
    )
    print(
        "  PNG files "
        + ("identical in all three outputs" if same else "DIFFER between the outputs")
    )
    print(
        f"  space: dataset {data_bytes / 1e9:.2f} GB (kept in {args.work / 'png-data'}), "
        f"exports {out_bytes / 1e9:.2f} GB (removed)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("numpy", "imagefolder", "all"), default="all")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cache", choices=("warm", "cold"), default="warm")
    parser.add_argument("--images", type=int, default=21_400, help="numpy part (3 GiB)")
    parser.add_argument("--png-images", type=int, default=3_000, help="imagefolder part")
    parser.add_argument("--chunk-rows", type=int, default=1, help="images per HDF5 chunk")
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "medimeta-bench-export"
    )
    parser.add_argument(
        "--out", type=Path, help="where to write the exports (default: --work; e.g. /dev/shm)"
    )
    args = parser.parse_args()
    args.out = args.out or args.work
    started = time.perf_counter()
    if args.part in ("numpy", "all"):
        numpy_part(args)
    if args.part in ("imagefolder", "all"):
        imagefolder_part(args)
    print(f"benchmark took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
