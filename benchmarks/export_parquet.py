"""`medimeta export --format parquet` against a bare pyarrow loop writing the same bytes.

    python benchmarks/export_parquet.py [--runs 3] [--images 2000] [--jobs 1]
                                        [--work DIR] [--out DIR]

The dataset is the crc-like RGB one of ``benchmarks/export.py`` (224x224x3 uint8 rows of
seeded random bytes in ``images.hdf5``, one image per chunk; cached in ``--work``). The
baseline is a subprocess with a bare loop: each split's rows read from the HDF5 file in
batches of 256 (runs of neighbouring chunks, as ``benchmarks/export.py`` reads them), each
image encoded with ``Image.fromarray(pixels).save(buffer, "PNG")``, and the rows
(``image`` as ``{bytes, path}``, ``label``, ``upstream_index``) written with
``pyarrow.parquet.ParquetWriter`` into the same files, with the same row groups and writer
options, as ``medimeta export crc --format parquet --jobs N``. Warm page cache (encoding is
CPU-bound); runs alternate; wall times are medians; the image bytes of both outputs are
compared. Goal: the export at least 0.9x the speed of the bare loop (``--jobs 1``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _fixture import drop_file, medimeta_script
from export import (
    _READ,
    TASK,
    Measured,
    _listed,
    median_of,
    prepare,
    read_through,
    run_measured,
    tool_env,
)

from tests.support import archives

RATIO_GOAL = 0.9

_BARE_PARQUET = (
    _READ
    + r"""
import io, json
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
folder, out, task = sys.argv[1:4]
group_rows, file_rows = int(sys.argv[4]), int(sys.argv[5])
order = {int(k): n for n, k in enumerate(json.loads(sys.argv[6]))}
labels = np.load(os.path.join(folder, "task_labels", task + ".npy"))
image_type = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
schema = pa.schema(
    [("image", image_type), ("label", pa.int64()), ("upstream_index", pa.int64())]
)
small = ["label", "upstream_index"]
options = dict(
    compression={"image.bytes": "NONE", "image.path": "SNAPPY", "label": "SNAPPY",
                 "upstream_index": "SNAPPY"},
    use_dictionary=small,
    write_statistics=small,
)
os.makedirs(os.path.join(out, "data"))
with h5py.File(os.path.join(folder, "images.hdf5"), "r") as handle:
    dset = handle["images"]
    for split in ("train", "val", "test"):
        rows = split_rows(folder, split)
        files = max(1, -(-len(rows) // file_rows))
        images, written, writer = [], 0, None

        def flush(count):
            global images, written, writer
            if written % file_rows == 0:
                if writer is not None:
                    writer.close()
                name = f"{split}-{written // file_rows:05d}-of-{files:05d}.parquet"
                writer = pq.ParquetWriter(os.path.join(out, "data", name), schema, **options)
            part, images = images[:count], images[count:]
            index = [i for i, _ in part]
            table = pa.Table.from_arrays(
                [
                    pa.StructArray.from_arrays(
                        [pa.array([b for _, b in part], pa.binary()),
                         pa.array([f"crc_{i:06d}.png" for i in index], pa.string())],
                        fields=list(image_type),
                    ),
                    pa.array([order[int(labels[i])] for i in index], pa.int64()),
                    pa.array(index, pa.int64()),
                ],
                schema=schema,
            )
            writer.write_table(table, row_group_size=count)
            written += count

        for part, pixels in batches(dset, rows):
            for index, image in zip(part.tolist(), pixels):
                buffer = io.BytesIO()
                Image.fromarray(image).save(buffer, "PNG")
                images.append((index, buffer.getvalue()))
            while len(images) >= group_rows:
                flush(group_rows)
        if images:
            flush(len(images))
        writer.close()
"""
)


def image_digest(out: Path) -> str:
    """SHA-256 over every split's image bytes, in file and row order."""
    import pyarrow.parquet as pq

    digest = hashlib.sha256()
    for path in sorted((out / "data").glob("*.parquet")):
        column = pq.read_table(path, columns=["image"]).column("image")
        for chunk in column.chunks:
            for value in chunk.field("bytes").to_pylist():
                digest.update(value)
    return digest.hexdigest()


def main() -> int:
    from medimeta_cli.catalog.file import load_catalog
    from medimeta_cli.export.parquet import Sizes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--images", type=int, default=2_000)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "medimeta-bench-parquet"
    )
    parser.add_argument("--out", type=Path, help="where to write the exports (default: --work)")
    args = parser.parse_args()
    args.out = args.out or args.work
    started = time.perf_counter()

    spec = archives.with_num_images(archives.CRC, args.images)
    root, catalog, how = prepare(args.work / "data", spec, 1)
    folder = root / "crc"
    dataset = load_catalog(catalog).get("crc")
    sizes = Sizes.of(dataset, None)
    keys = sorted(dataset.task(TASK).labels)
    env = tool_env(root, catalog)
    outs = args.out / "medimeta-bench-parquet-out"
    drop_file(outs)
    outs.mkdir(parents=True)
    tool_out, bare_out = outs / "medimeta", outs / "bare"
    tool_name = f"medimeta --jobs {args.jobs}"
    commands = {
        tool_name: (
            [
                *(medimeta_script(), "export", "crc", "--format", "parquet"),
                *("--jobs", str(args.jobs), "--out", str(tool_out), "--quiet"),
            ],
            tool_out,
        ),
        "bare pyarrow loop": (
            [
                *(sys.executable, "-c", _BARE_PARQUET, str(folder), str(bare_out), TASK),
                *(str(sizes.group_rows), str(sizes.file_rows), json.dumps(keys)),
            ],
            bare_out,
        ),
    }
    read_through(folder / "images.hdf5")
    runs: dict[str, list[Measured]] = {name: [] for name in commands}
    order = list(commands.items())
    for number in range(args.runs + 1):
        for name, (command, out) in order[number % 2 :] + order[: number % 2]:
            drop_file(out)
            os.sync()
            measured = run_measured(command, env)
            if number:  # the first round warms up, untimed
                runs[name].append(measured)
    same = image_digest(tool_out) == image_digest(bare_out)
    files = sorted(p.name for p in (tool_out / "data").iterdir())
    same_files = files == sorted(p.name for p in (bare_out / "data").iterdir())
    drop_file(outs)

    medians = {name: median_of(values) for name, values in runs.items()}
    print(f"[parquet] {spec.num_images:,} images to PNG in Parquet, {os.cpu_count()} cores")
    print(f"  fixture {how}; row groups of {sizes.group_rows} rows, files of {sizes.file_rows}")
    print(f"  {args.runs} runs, medians, warm page cache")
    for name in ("bare pyarrow loop", tool_name):
        m = medians[name]
        print(
            f"  {name:<18} {m.seconds:6.2f} s  {spec.num_images / m.seconds:5.0f} images/s  "
            f"CPU {m.cpu:5.2f} s  peak RSS {m.peak_mb:4.0f} MB"
        )
    for name, values in runs.items():
        print(f"    {name} runs (s): {_listed(v.seconds for v in values)}", end="")
        print(f"   CPU outside it (s): {_listed(v.others for v in values)}")
    ratio = medians["bare pyarrow loop"].seconds / medians[tool_name].seconds
    verdict = "ok" if ratio >= RATIO_GOAL else "BELOW GOAL"
    print(f"  speed against the bare loop: {ratio:.2f} (goal >= {RATIO_GOAL}): {verdict}")
    print(
        "  image bytes "
        + ("identical" if same else "DIFFER")
        + ", files "
        + ("the same" if same_files else "DIFFER")
        + f" ({', '.join(files)})"
    )
    print(f"benchmark took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
