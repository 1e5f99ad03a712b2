"""`medimeta export --format webdataset` against a bare loop that writes the same tar shards.

    python benchmarks/export_webdataset.py [--runs 3] [--images 3000] [--per-shard 600]
                                           [--chunk-rows 1] [--work DIR] [--out DIR]

The dataset is the crc-like RGB one of ``benchmarks/export.py`` (installed once in
``--work``, ``images.hdf5`` of uint8 rows (N, 224, 224, 3) with seeded random bytes, one
image per chunk by default). Baseline: a subprocess with a bare loop that reads each
split's rows from the HDF5 file as ``benchmarks/export.py``'s bare loops do, encodes each
image with ``Image.fromarray(pixels).save(buffer, "PNG")`` and writes it with ``tarfile``
into shards of ``--per-shard`` images, beside the same ``.cls`` and ``.json`` members
(fixed mtime, owner and mode, so that its tars are the tool's, byte for byte: the script
checks it). Against it, ``medimeta export crc --format webdataset --shard-size
<per-shard>images`` with ``--jobs 1`` (the ratio that counts: the same work in one process)
and ``--jobs 2``. Warm page cache (encoding is CPU-bound); medians over ``--runs`` runs in
alternating order; an untimed first round. Target: ``--jobs 1`` at least 0.9x the bare
loop's speed. Random pixels are PNG's worst case (about 150 kB and 5 ms per image).
Compare medians from one run of this script, never across runs (a shared 2-core machine).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from _fixture import drop_file, medimeta_script
from export import (
    _READ,
    Measured,
    _listed,
    median_of,
    prepare,
    read_through,
    run_measured,
    tool_env,
)

from tests.support import archives

RATIO_TARGET = 0.9
TASK = "tissue class"

_BARE_TARS = (
    _READ
    + r"""
import io, json, tarfile
from PIL import Image
folder, out, task, per_shard = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
labels = np.load(os.path.join(folder, "task_labels", task + ".npy"))
os.makedirs(out)

def member(name, size):
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = size, 0, 0o644, 0, 0
    info.uname = info.gname = ""
    return info

def add(tar, name, data):
    tar.addfile(member(name, len(data)), io.BytesIO(data))

with h5py.File(os.path.join(folder, "images.hdf5"), "r") as handle:
    dset = handle["images"]
    for split in ("train", "val", "test"):
        rows = split_rows(folder, split)
        tar, written, number = None, 0, 0
        for part, images in batches(dset, rows):
            for index, pixels in zip(part.tolist(), images):
                if written % per_shard == 0:
                    if tar is not None:
                        tar.close()
                    name = os.path.join(out, f"crc-{split}-{number:06d}.tar")
                    tar = tarfile.open(name, "w", format=tarfile.USTAR_FORMAT)
                    number += 1
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, format="PNG")
                key = f"crc_{index:06d}"
                label = int(labels[index])
                document = {"key": key, "index": index, "split": split,
                            "labels_tissue_class": label}
                add(tar, key + ".png", buffer.getvalue())
                add(tar, key + ".cls", str(label).encode())
                add(tar, key + ".json", json.dumps(document, separators=(",", ":")).encode())
                written += 1
        if tar is not None:
            tar.close()
"""
)


def tar_bytes(out: Path) -> dict[str, bytes]:
    """Every tar below ``out``, by name."""
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.tar"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--images", type=int, default=3_000)
    parser.add_argument("--per-shard", type=int, default=600, help="images per tar shard")
    parser.add_argument("--chunk-rows", type=int, default=1, help="images per HDF5 chunk")
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "medimeta-bench-export"
    )
    parser.add_argument("--out", type=Path, help="where to write the exports (default: --work)")
    args = parser.parse_args()
    args.out = args.out or args.work

    spec = archives.with_num_images(archives.CRC, args.images)
    root, catalog, how = prepare(args.work / "png-data", spec, args.chunk_rows)
    folder = root / "crc"
    env = tool_env(root, catalog)
    outs = args.out / "medimeta-bench-wds-out"
    drop_file(outs)
    outs.mkdir(parents=True)
    script = medimeta_script()
    size = f"{args.per_shard}images"
    commands: dict[str, tuple[list[str], Path]] = {}
    for jobs in (1, 2):
        out = outs / f"jobs{jobs}"
        commands[f"medimeta --jobs {jobs}"] = (
            [script, "export", "crc", "--format", "webdataset", "--shard-size", size,
             "--jobs", str(jobs), "--out", str(out), "--quiet"],
            out,
        )  # fmt: skip
    bare_out = outs / "bare"
    commands["bare tarfile loop"] = (
        [sys.executable, "-c", _BARE_TARS, str(folder), str(bare_out), TASK, str(args.per_shard)],
        bare_out,
    )
    read_through(folder / "images.hdf5")
    order = list(commands.items())
    for _, (command, out) in order:  # untimed first round
        drop_file(out)
        run_measured(command, env)
    tars = {name: tar_bytes(out) for name, (_, out) in commands.items()}
    reference = tars["bare tarfile loop"]
    same = all(found == reference for found in tars.values()) and len(reference) > 1
    runs: dict[str, list[Measured]] = {name: [] for name in commands}
    for number in range(args.runs):
        for name, (command, out) in order[number % 3 :] + order[: number % 3]:
            drop_file(out)
            os.sync()
            runs[name].append(run_measured(command, env))
    drop_file(outs)

    medians = {name: median_of(values) for name, values in runs.items()}
    print(f"[webdataset] {spec.num_images:,} images to PNG in tar shards of {size}, "
          f"{os.cpu_count()} cores")  # fmt: skip
    print(f"  fixture {how}; {args.runs} runs, medians, warm page cache")
    for name in ("bare tarfile loop", "medimeta --jobs 1", "medimeta --jobs 2"):
        m = medians[name]
        print(
            f"  {name:<18} {m.seconds:6.2f} s  {spec.num_images / m.seconds:5.0f} images/s  "
            f"CPU {m.cpu:5.2f} s  peak RSS {m.peak_mb:4.0f} MB"
        )
    for name, values in runs.items():
        print(f"    {name} runs (s): {_listed(v.seconds for v in values)}", end="")
        print(f"   CPU outside it (s): {_listed(v.others for v in values)}")
    ratio = medians["bare tarfile loop"].seconds / medians["medimeta --jobs 1"].seconds
    print(
        f"  --jobs 1 speed against the bare loop: {ratio:.2f} (target >= {RATIO_TARGET}): "
        f"{'ok' if ratio >= RATIO_TARGET else 'BELOW TARGET'}"
    )
    two = medians["medimeta --jobs 1"].seconds / medians["medimeta --jobs 2"].seconds
    print(f"  --jobs 2 speed-up over --jobs 1: {two:.2f}")
    print(
        f"  tar shards ({len(reference)}) "
        + ("byte-identical in all three outputs" if same else "DIFFER between the outputs")
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
