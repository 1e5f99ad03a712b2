"""The ``parquet`` format: the layout ``datasets.load_dataset(<out>)`` reads as it is.

Layout::

    <out>/data/<split>-00000-of-0000N.parquet   the rows of each split, in index order
    <out>/README.md                             dataset card: configs, licence, citations

Columns: ``image`` (``{bytes, path}``: the image encoded as ``--image-format`` says, as
Hugging Face's ``Image`` feature stores it), ``label`` (the class index of classes.json;
for a multi-label task the list of its positive indices), ``upstream_index`` and, with
``--task all``, one column per task (:func:`~medimeta_cli.export.naming.task_column`).
The Hugging Face features travel in the Parquet schema metadata (key ``huggingface``, as
``datasets`` writes it), so the columns load as ``Image``, ``ClassLabel`` (names in
classes.json order) and ``Sequence(ClassLabel)``.

Sizes follow from the image geometry alone, so that any run of the same selection (and
the joined shards of ``--shard I/N``) cuts rows the same way: a row group holds about
64 MiB of pixels (at most 1,000 rows), a file about 512 MiB of pixels (whole row groups;
PNG is usually smaller). Every row group is written from one contiguous table with fixed
writer options, so the same command writes the same bytes.

``pyarrow`` is an optional dependency (``pip install pyarrow``, the ``parquet`` extra), imported
here only when a Parquet export is written.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from medimeta_cli.catalog.datasets import Dataset, Task, TaskTarget
from medimeta_cli.dataset.images import ImageReader
from medimeta_cli.dataset.selection import Selection, SplitPart
from medimeta_cli.errors import MissingDependencyError
from medimeta_cli.export.hf_card import parquet_card, parquet_features
from medimeta_cli.export.imagefolder import encode_image, image_name
from medimeta_cli.export.naming import task_column
from medimeta_cli.export.normalization import UnitSums, observe_sums, wanted
from medimeta_cli.export.options import (
    Color,
    ExportFormat,
    ExportOptions,
    ImageFormat,
    ProgressCallback,
)
from medimeta_cli.export.pixels import convert_color
from medimeta_cli.export.writer import Writer
from medimeta_cli.fsutil import atomic_output, atomic_write_text

logger = logging.getLogger(__name__)

#: The one line shown when pyarrow is missing.
NEEDS_PYARROW = (
    '--format parquet needs pyarrow: pip install pyarrow (in a clone: pip install ".[parquet]")'
)
#: Pixels (uncompressed) per row group and per file; rows per row group at most.
GROUP_PIXEL_BYTES = 64 * 2**20
FILE_PIXEL_BYTES = 512 * 2**20
MAX_GROUP_ROWS = 1000
#: Images read and encoded per unit of work (in a worker process when ``jobs`` > 1).
UNIT = 64


def pyarrow_modules() -> tuple[Any, Any]:
    """``pyarrow`` and ``pyarrow.parquet``; :class:`MissingDependencyError` without them."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise MissingDependencyError(
            NEEDS_PYARROW,
            hint="Install the parquet extra, or export in another format (--format numpy).",
        ) from exc
    return pyarrow, pyarrow.parquet


# ----------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    """Rows per row group and per file (a whole number of row groups)."""

    group_rows: int
    file_rows: int

    @classmethod
    def of(cls, dataset: Dataset, color: Color | None) -> Sizes:
        """From the pixels of one image: the same for every run of the selection."""
        size = dataset.input_size
        channels = color.channels if color is not None else size.channels
        pixels = max(1, size.height * size.width * channels)
        group = max(1, min(MAX_GROUP_ROWS, GROUP_PIXEL_BYTES // pixels))
        per_file = max(1, FILE_PIXEL_BYTES // (pixels * group))
        return cls(group, group * per_file)

    def files(self, rows: int) -> int:
        """How many files ``rows`` rows take (one, even when empty)."""
        return max(1, -(-rows // self.file_rows))


def file_name(split: str, number: int, files: int) -> str:
    """``<split>-00000-of-00003.parquet``, as ``datasets`` names its own shards."""
    return f"{split}-{number:05d}-of-{files:05d}.parquet"


# ----------------------------------------------------------------------------- schema


def schema(pa: Any, selection: Selection) -> Any:
    """The Arrow schema, with the features in its ``huggingface`` metadata."""
    image = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
    index_list = pa.list_(pa.int64())
    fields = [
        pa.field("image", image),
        pa.field("label", index_list if selection.multilabel else pa.int64()),
        pa.field("upstream_index", pa.int64()),
    ]
    for task in selection.every_task:
        multilabel = task.target is TaskTarget.MULTILABEL
        fields.append(pa.field(task_column(task), index_list if multilabel else pa.int64()))
    metadata = {"info": {"features": parquet_features(selection)}}
    return pa.schema(fields, metadata={b"huggingface": json.dumps(metadata).encode()})


def _class_indices(selection: Selection, part: SplitPart) -> list[Any]:
    """The ``label`` column: the classes.json index, or the positive indices."""
    if selection.multilabel:
        return [np.flatnonzero(row).tolist() for row in part.labels]
    position = {key: n for n, key in enumerate(selection.classes)}
    return [position[int(key)] for key in part.labels]


def _task_indices(labels: npt.NDArray[Any], task: Task) -> list[Any]:
    """A task's column: each key's index in ascending key order, or a 0/1 row's
    positive indices (the same cells as metadata.csv's, as numbers)."""
    if labels.ndim == 2:
        return [np.flatnonzero(row).tolist() for row in labels]
    order = {key: n for n, key in enumerate(sorted(task.labels))}
    return [order[int(key)] for key in labels]


def label_columns(selection: Selection, part: SplitPart) -> dict[str, list[Any]]:
    """Every column but ``image`` of one split's rows, in the schema's order."""
    columns: dict[str, list[Any]] = {
        "label": _class_indices(selection, part),
        "upstream_index": [int(i) for i in part.indices],
    }
    for task in selection.every_task:
        columns[task_column(task)] = _task_indices(selection.labels_of(part, task), task)
    return columns


# ----------------------------------------------------------------------------- images

# The reader of this process: opened once per worker (or once in-process).
_WORKER: dict[str, Any] = {}


def _init_worker(folder: str, dataset: Dataset) -> None:
    _WORKER["reader"] = ImageReader(Path(folder), dataset)


def _encode_unit(
    indices: npt.NDArray[np.int64], image_format: ImageFormat, color: Color | None, summed: bool
) -> tuple[list[bytes], dict[str, Any] | None]:
    """Read, convert and encode one unit of images (in a worker or in-process); and if
    ``summed`` their pixel sums (:class:`~medimeta_cli.export.normalization.UnitSums`)."""
    reader: ImageReader = _WORKER["reader"]
    images = convert_color(reader.read_images(indices), color)
    sums = UnitSums(summed)
    sums.add(images)
    return [encode_image(image, image_format) for image in images], sums.result()


def encoded_images(
    folder: Path,
    selection: Selection,
    split: str,
    indices: npt.NDArray[np.int64],
    options: ExportOptions,
) -> Iterator[list[bytes]]:
    """The encoded images of ``indices`` of ``split``, in order, a unit at a time; encoded
    in ``options.jobs`` worker processes, a bounded number of units ahead. Their pixel
    sums go to the normalization (:func:`observe_sums`) where they were read."""
    units = [indices[start : start + UNIT] for start in range(0, len(indices), UNIT)]
    args = (options.image_format, options.color, wanted(split))

    def encoded(unit: npt.NDArray[np.int64], done: tuple[list[bytes], Any]) -> list[bytes]:
        images, sums = done
        if sums is not None:
            observe_sums(split, unit, sums)
        return images

    if options.jobs <= 1 or len(units) <= 1:
        _init_worker(str(folder), selection.dataset)
        try:
            for unit in units:
                yield encoded(unit, _encode_unit(unit, *args))
        finally:
            _WORKER.pop("reader").close()
        return
    # spawn: workers open the HDF5 file themselves; a forked copy of an open handle is unsafe.
    with ProcessPoolExecutor(
        max_workers=options.jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(str(folder), selection.dataset),
    ) as pool:
        pending: list[tuple[npt.NDArray[np.int64], Future[tuple[list[bytes], Any]]]] = []
        try:
            for unit in units:
                pending.append((unit, pool.submit(_encode_unit, unit, *args)))
                if len(pending) > 2 * options.jobs:
                    first, future = pending.pop(0)
                    yield encoded(first, future.result())
            while pending:
                first, future = pending.pop(0)
                yield encoded(first, future.result())
        finally:
            for _, future in pending:
                future.cancel()


# ----------------------------------------------------------------------------- files


class SplitFiles:
    """One split's Parquet files: rows in, exact row groups and files out.

    Rows arrive as tables of any length; a row group is written whenever enough rows
    are pending, from one contiguous table, so the bytes depend on the rows alone.
    """

    def __init__(
        self, pa: Any, pq: Any, schema: Any, folder: Path, split: str, rows: int, sizes: Sizes
    ) -> None:
        self._pa, self._pq, self._schema = pa, pq, schema
        self._folder, self._split, self._sizes = folder, split, sizes
        self._files = sizes.files(rows)
        self._pending: list[Any] = []
        self._pending_rows = 0
        self._written = 0
        self._stack = ExitStack()
        self._writer: Any = None
        self._file = -1
        small = [name for name in schema.names if name != "image"]
        # PNG and JPEG bytes do not compress, and min/max of image bytes help nobody.
        self._options: dict[str, Any] = {
            "compression": {"image.bytes": "NONE", "image.path": "SNAPPY"}
            | {name: "SNAPPY" for name in small},
            "use_dictionary": small,
            "write_statistics": small,
        }

    @property
    def group_rows(self) -> int:
        """Rows per row group."""
        return self._sizes.group_rows

    def add(self, table: Any) -> None:
        """Take rows; write every full row group."""
        self._pending.append(table)
        self._pending_rows += table.num_rows
        while self._pending_rows >= self._sizes.group_rows:
            self._flush(self._sizes.group_rows)

    def close(self) -> None:
        """Write the last (short) row group and close the last file; a split without
        rows still gets its one file, with the schema."""
        if self._pending_rows:
            self._flush(self._pending_rows)
        if self._writer is None:
            self._open(0)
        self._stack.close()

    def __enter__(self) -> SplitFiles:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        """Complete the files (:meth:`close`), or on an error drop the file begun (its
        temporary name is removed; files completed before it stay, as any file an
        export writes atomically)."""
        if kind is None:
            self.close()
        else:
            self._stack.__exit__(kind, error, trace)

    def _open(self, number: int) -> None:
        self._stack.close()
        self._stack = ExitStack()
        handle = self._stack.enter_context(
            atomic_output(self._folder / file_name(self._split, number, self._files), durable=False)
        )
        self._writer = self._pq.ParquetWriter(handle, self._schema, **self._options)
        self._stack.callback(self._writer.close)
        self._file = number

    def _flush(self, rows: int) -> None:
        table = (
            self._pending[0] if len(self._pending) == 1 else self._pa.concat_tables(self._pending)
        )
        if any(column.num_chunks > 1 for column in table.columns):
            # Pages are cut per chunk: one contiguous table makes the bytes depend on the
            # rows alone, however they arrived (a whole run, or the pieces of shards).
            table = table.combine_chunks()
        group, rest = table.slice(0, rows), table.slice(rows)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows
        number = self._written // self._sizes.file_rows
        if number != self._file:
            self._open(number)
        self._writer.write_table(group, row_group_size=rows)
        self._written += rows


def _table(
    pa: Any,
    schema: Any,
    selection: Selection,
    images: Sequence[bytes],
    indices: npt.NDArray[np.int64],
    columns: dict[str, list[Any]],
    suffix: str,
) -> Any:
    """One batch of rows; the image's path names its encoding (``crc_000123.png``)."""
    paths = [image_name(selection.dataset.id, int(i), suffix) for i in indices]
    image = pa.StructArray.from_arrays(
        [pa.array(images, pa.binary()), pa.array(paths, pa.string())],
        fields=list(schema.field("image").type),
    )
    arrays = [image] + [
        pa.array(values, schema.field(name).type) for name, values in columns.items()
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def write_split_rows(
    folder: Path,
    selection: Selection,
    part: SplitPart,
    files: SplitFiles,
    options: ExportOptions,
    progress: ProgressCallback,
) -> None:
    """Encode one split's images and hand its rows to ``files`` a whole row group at a
    time (one table per row group: no bytes are copied twice)."""
    pa, _ = pyarrow_modules()
    the_schema = schema(pa, selection)
    columns = label_columns(selection, part)
    suffix = options.image_format.extension
    pending: list[bytes] = []
    start = 0  # the first row of ``pending``

    def hand_over(count: int) -> None:
        nonlocal pending, start
        stop = start + count
        batch = {name: values[start:stop] for name, values in columns.items()}
        rows = part.indices[start:stop]
        files.add(_table(pa, the_schema, selection, pending[:count], rows, batch, suffix))
        pending, start = pending[count:], stop

    for images in encoded_images(folder, selection, part.split, part.indices, options):
        pending.extend(images)
        while len(pending) >= files.group_rows:
            hand_over(files.group_rows)
        progress(len(images))
    if pending:
        hand_over(len(pending))


def write_parquet(
    folder: Path,
    selection: Selection,
    target: Path,
    options: ExportOptions,
    progress: ProgressCallback,
    *,
    sizes: Sizes | None = None,
) -> None:
    """Every split of ``selection`` as ``<target>/data/<split>-*.parquet``, cut as
    ``sizes`` says (by default as :meth:`Sizes.of` the images; a shard's piece is one
    file per split)."""
    pa, pq = pyarrow_modules()
    the_schema = schema(pa, selection)
    chosen = sizes or Sizes.of(selection.dataset, options.color)
    for part in selection.parts:
        rows = len(part.indices)
        with SplitFiles(pa, pq, the_schema, target / "data", part.split, rows, chosen) as files:
            write_split_rows(folder, selection, part, files, options, progress)


def join_pieces(full: Selection, out: Path, pieces: Sequence[Path], options: ExportOptions) -> None:
    """The shards' rows, in shard order, cut into the files a whole run writes."""
    pa, pq = pyarrow_modules()
    the_schema = schema(pa, full)
    sizes = Sizes.of(full.dataset, options.color)
    for part in full.parts:
        logger.debug("joining %d shards of split %s into %s", len(pieces), part.split, out)
        rows = len(part.indices)
        with SplitFiles(pa, pq, the_schema, out / "data", part.split, rows, sizes) as files:
            for piece in pieces:
                source = pq.ParquetFile(piece / "data" / file_name(part.split, 0, 1))
                for group in range(source.num_row_groups):
                    files.add(source.read_row_group(group))


# ----------------------------------------------------------------------------- the writer


class ParquetWriter(Writer):
    """Parquet files per split that Hugging Face ``datasets`` loads with their features."""

    format = ExportFormat.PARQUET
    encodes_images = True
    every_task = True

    def write_images(
        self,
        folder: Path,
        selection: Selection,
        target: Path,
        options: ExportOptions,
        progress: ProgressCallback,
        *,
        atomic: bool,
    ) -> None:
        """Every split's files (each written atomically anyway)."""
        write_parquet(folder, selection, target, options, progress)

    def write_split_files(self, selection: Selection, target: Path, options: ExportOptions) -> None:
        """The dataset card (:func:`~medimeta_cli.export.hf_card.parquet_card`)."""
        atomic_write_text(target / "README.md", parquet_card(selection))

    def write_shard(
        self,
        folder: Path,
        selection: Selection,
        out: Path,
        piece: Path,
        options: ExportOptions,
        progress: ProgressCallback,
        *,
        full: Selection,
    ) -> None:
        """A shard's rows as one file per split in its own piece folder; joining the
        pieces cuts them into the files of a whole run."""
        groups = Sizes.of(selection.dataset, options.color).group_rows
        one_file = Sizes(group_rows=groups, file_rows=2**62)
        write_parquet(folder, selection, piece, options, progress, sizes=one_file)

    def join_shards(
        self, full: Selection, out: Path, pieces: Sequence[Path], options: ExportOptions
    ) -> None:
        """See :func:`join_pieces`."""
        join_pieces(full, out, pieces, options)

    def labels_note(self, multilabel: bool) -> str:
        """The label column holds the index (a ClassLabel), or the positive indices."""
        if multilabel:
            return "Multi-label: the label column lists the positive class indices."
        return "The label column holds the class index (0..K-1); upstream_index the image."
