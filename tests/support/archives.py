"""Build small, real MedIMeta dataset folders and archives for tests.

Everything written here follows the upstream MedIMeta layout (Zenodo record 7884735).
An archive ``<id>.zip`` holds one top folder ``<id>/`` with::

    <id>/info.yaml                     upstream metadata format
    <id>/LICENSE
    <id>/annotations.csv               one row per image
    <id>/images.hdf5                   dataset "images", uint8, (N,224,224) or (N,224,224,3)
    <id>/images/NNNNNN.tiff            the same pixels as uncompressed TIFF files
    <id>/masks/NNNNNN.tiff             only for "organ" datasets
    <id>/images_bboxes/NNNNNN.tiff     only for "organ" datasets
    <id>/task_labels/<task name>.npy   one per task (task names contain spaces)
    <id>/splits/{train,val,test}.txt   "images/NNNNNN.tiff" lines, no trailing newline,
    <id>/original_splits/{...}.txt     a file is absent when its split is empty

All content is a pure function of the :class:`DatasetSpec` (in particular its ``seed``),
so tests can compare what the CLI produced against :func:`expected_images`,
:func:`expected_labels` and :func:`split_indices` without re-reading the archive.
Archives are byte-for-byte reproducible: members are ``ZIP_STORED`` (like upstream) and
every member carries the fixed timestamp :data:`ZIP_DATE_TIME`.

Big archives for benchmarks: use :func:`with_num_images` or :func:`spec_for_archive_size`
(more images make both ``images.hdf5`` and ``images/`` bigger, exactly as upstream); the
``pad_bytes`` argument of :func:`build_archive` only adds a non-upstream filler member.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import shutil
import stat
import struct
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final, Literal, Protocol

import h5py
import numpy as np
import numpy.typing as npt
from PIL import Image

__all__ = [
    "ABSOLUTE_EVIL_MEMBER",
    "ALL_SPECS",
    "CRC",
    "CXR",
    "DEFAULT_LICENSE",
    "DR_REGULAR",
    "IMAGE_SIZE",
    "ORGANS_AXIAL",
    "PADDING_MEMBER",
    "SPLIT_NAMES",
    "SYMLINK_TARGET",
    "TASK_TARGETS",
    "ZIP_DATE_TIME",
    "DatasetSpec",
    "MaliciousKind",
    "TaskSpec",
    "archive_from_folder",
    "build_archive",
    "build_malicious_archive",
    "estimated_archive_size",
    "expected_bbox_image",
    "expected_files",
    "expected_image",
    "expected_images",
    "expected_labels",
    "expected_mask",
    "image_relpath",
    "info_yaml",
    "md5_of",
    "rewrite_archive",
    "spec_for_archive_size",
    "split_file_text",
    "split_indices",
    "tiny_spec",
    "with_num_images",
    "write_dataset_dir",
]

IMAGE_SIZE: Final = 224
"""Upstream image side length in pixels."""

SPLIT_NAMES: Final = ("train", "val", "test")
"""Split names, in the order used by ``info.yaml`` and for assigning images to splits."""

TASK_TARGETS: Final = frozenset(
    {
        "BINARY_CLASSIFICATION",
        "MULTICLASS_CLASSIFICATION",
        "MULTILABEL_CLASSIFICATION",
        "ORDINAL_REGRESSION",
    }
)
"""Upstream ``task_target`` enum names."""

DEFAULT_LICENSE: Final = "Creative Commons Attribution-ShareAlike 4.0 International (CC BY-SA 4.0)"

ZIP_DATE_TIME: Final = (2023, 5, 1, 12, 0, 0)
"""Timestamp written on every zip member, so archives are reproducible byte for byte."""

PADDING_MEMBER: Final = "padding.bin"
"""Name (below ``<id>/``) of the filler member added by ``build_archive(pad_bytes=...)``."""

ABSOLUTE_EVIL_MEMBER: Final = "/tmp/evil.txt"
"""Member name used by ``build_malicious_archive(kind="absolute")``."""

SYMLINK_TARGET: Final = "/etc/passwd"
"""Link target of the ``<id>/evil_link`` member of ``build_malicious_archive(kind="symlink")``."""

MaliciousKind = Literal["zip_slip", "absolute", "symlink", "wrong_id"]

# Independent random streams derived from a spec's seed.
_STREAM_IMAGES: Final = 0
_STREAM_SPLITS: Final = 1
_STREAM_ORIGINAL_SPLITS: Final = 2
_STREAM_MASKS: Final = 3
_STREAM_LABELS: Final = 4
_STREAM_PADDING: Final = 5

_HDF5_BATCH: Final = 64
_COPY_CHUNK: Final = 1 << 20
_FILE_MODE: Final = 0o100644
_DIR_MODE: Final = 0o040755
_MSDOS_DIR_FLAG: Final = 0x10
_UNIX_SYSTEM: Final = 3


@dataclass(frozen=True)
class TaskSpec:
    """One prediction task of a dataset, as listed under ``tasks:`` in ``info.yaml``.

    ``labels`` maps label keys to names. Keys need not be ``0..K-1`` (e.g. ``1,4,6,8,10``);
    single-label ``task_labels`` arrays hold these keys. For ``MULTILABEL_CLASSIFICATION``
    the keys must be ``0..C-1`` and index the columns of the ``(N, C)`` 0/1 label matrix.
    """

    name: str
    target: str
    labels: Mapping[int, str]

    def __post_init__(self) -> None:
        if self.target not in TASK_TARGETS:
            raise ValueError(f"unknown task target {self.target!r}")
        if not self.labels:
            raise ValueError(f"task {self.name!r} has no labels")
        if "/" in self.name or not self.name.strip():
            raise ValueError(f"task name {self.name!r} cannot be used as a file name")
        if self.target == "BINARY_CLASSIFICATION" and len(self.labels) != 2:
            raise ValueError(f"binary task {self.name!r} needs exactly two labels")
        if self.is_multilabel and sorted(self.labels) != list(range(len(self.labels))):
            raise ValueError(f"multilabel task {self.name!r} needs keys 0..C-1")

    @property
    def is_multilabel(self) -> bool:
        """Whether labels are an ``(N, C)`` 0/1 matrix rather than one key per image."""
        return self.target == "MULTILABEL_CLASSIFICATION"

    @property
    def keys(self) -> tuple[int, ...]:
        """The label keys in ascending order."""
        return tuple(sorted(self.labels))

    @property
    def labels_relpath(self) -> str:
        """Path of this task's label file inside the dataset folder."""
        return f"task_labels/{self.name}.npy"


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """Everything needed to generate one dataset deterministically.

    ``splits`` and ``original_splits`` map ``"train"``/``"val"``/``"test"`` to image counts
    (missing names count as 0). Both must sum to the same total, the number of images.
    ``underscore_counts`` writes the counts in ``info.yaml`` with ``_`` digit separators as
    upstream does (``107_180``); numbers below 1000 then get one separator before their last
    digit (``2_0``), which YAML 1.1 and ``int()`` both read as 20, so small test datasets
    still exercise the parsing. ``spaced_input_size`` writes ``[1, 224, 224]`` instead of
    ``[1,224,224]`` (upstream uses both). ``domain_overlaps``/``subject_overlaps`` are lists
    of other dataset ids.
    """

    id: str
    name: str = "Synthetic Test Dataset"
    summary: str = "A small synthetic dataset in the MedIMeta layout, generated for tests."
    domain: str = "Synthetic"
    channels: int = 3
    splits: Mapping[str, int] = field(default_factory=lambda: {"train": 6, "val": 2, "test": 2})
    original_splits: Mapping[str, int] = field(
        default_factory=lambda: {"train": 8, "val": 0, "test": 2}
    )
    tasks: tuple[TaskSpec, ...] = (
        TaskSpec("binary task", "BINARY_CLASSIFICATION", {0: "negative", 1: "positive"}),
    )
    license: str = DEFAULT_LICENSE
    domain_overlaps: tuple[str, ...] = ()
    subject_overlaps: tuple[str, ...] = ()
    organ: bool = False
    seed: int = 0
    underscore_counts: bool = False
    spaced_input_size: bool = False
    image_size: int = IMAGE_SIZE

    def __post_init__(self) -> None:
        if not self.id or "/" in self.id or self.id.startswith("."):
            raise ValueError(f"invalid dataset id {self.id!r}")
        if self.channels not in (1, 3):
            raise ValueError("channels must be 1 or 3")
        if self.image_size < 8:
            raise ValueError("image_size must be at least 8")
        for label, counts in (("splits", self.splits), ("original_splits", self.original_splits)):
            unknown = set(counts) - set(SPLIT_NAMES)
            if unknown:
                raise ValueError(f"unknown {label} names: {sorted(unknown)}")
            if any(n < 0 for n in counts.values()):
                raise ValueError(f"negative count in {label}")
        if self.num_images <= 0:
            raise ValueError("a dataset needs at least one image")
        if sum(self.original_splits.values()) != self.num_images:
            raise ValueError("original_splits must sum to the same total as splits")
        if not self.tasks:
            raise ValueError("a dataset needs at least one task")
        names = [task.name for task in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError("task names must be unique")

    @property
    def num_images(self) -> int:
        """Total number of images (the sum of ``splits``)."""
        return sum(self.splits.values())

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one image: ``(H, W)`` for grayscale, ``(H, W, 3)`` for RGB."""
        side = self.image_size
        return (side, side) if self.channels == 1 else (side, side, 3)

    @property
    def hdf5_shape(self) -> tuple[int, ...]:
        """Shape of the ``images`` dataset in ``images.hdf5``."""
        return (self.num_images, *self.image_shape)

    def split_count(self, split: str, *, original: bool = False) -> int:
        """Number of images in ``split`` (0 for a split that is not listed)."""
        counts = self.original_splits if original else self.splits
        return int(counts.get(split, 0))

    def task(self, task_name: str) -> TaskSpec:
        """The task called ``task_name`` (``KeyError`` if there is none)."""
        for task in self.tasks:
            if task.name == task_name:
                return task
        raise KeyError(task_name)


# --------------------------------------------------------------------------- ready-made specs

CRC: Final = DatasetSpec(
    id="crc",
    name="Colorectal Cancer Histopathology",
    summary="Synthetic stand-in for the H&E colorectal tissue patch dataset.",
    domain="Histopathology",
    channels=3,
    splits={"train": 20, "val": 8, "test": 8},
    original_splits={"train": 28, "val": 8, "test": 0},
    tasks=(
        TaskSpec(
            "tissue class",
            "MULTICLASS_CLASSIFICATION",
            {
                0: "adipose (ADI)",
                1: "background (BACK)",
                2: "debris (DEB)",
                3: "lymphocytes (LYM)",
                4: "mucus (MUC)",
                5: "smooth muscle (MUS)",
                6: "normal colon mucosa (NORM)",
                7: "cancer-associated stroma (STR)",
                8: "colorectal adenocarcinoma epithelium (TUM)",
            },
        ),
    ),
    seed=1,
    underscore_counts=True,
)
"""RGB, one 9-class multiclass task; counts in info.yaml use ``_`` separators."""

CXR: Final = DatasetSpec(
    id="cxr",
    name="Chest X-ray Multi-disease",
    summary="Synthetic stand-in for the frontal chest X-ray multi-disease dataset.",
    domain="Chest X-ray",
    channels=1,
    splits={"train": 12, "val": 4, "test": 4},
    original_splits={"train": 16, "val": 0, "test": 4},
    tasks=(
        TaskSpec(
            "disease labels",
            "MULTILABEL_CLASSIFICATION",
            {
                0: "Atelectasis",
                1: "Cardiomegaly",
                2: "Effusion",
                3: "Infiltration",
                4: "Mass",
                5: "Nodule",
                6: "Pneumonia",
                7: "Pneumothorax",
                8: "Consolidation",
                9: "Edema",
                10: "Emphysema",
                11: "Fibrosis",
                12: "Pleural_Thickening",
                13: "Hernia",
            },
        ),
        TaskSpec("patient sex", "BINARY_CLASSIFICATION", {0: "F", 1: "M"}),
    ),
    domain_overlaps=("pneumonia",),
    seed=2,
)
"""Grayscale, a 14-label multilabel task plus a binary task; original ``val`` is empty."""

DR_REGULAR: Final = DatasetSpec(
    id="dr_regular",
    name="Diabetic Retinopathy (Regular Fundus)",
    summary="Synthetic stand-in for the regular fundus diabetic retinopathy dataset.",
    domain="Retinal fundus",
    channels=3,
    splits={"train": 14, "val": 5, "test": 5},
    original_splits={"train": 12, "val": 6, "test": 6},
    tasks=(
        TaskSpec(
            "DR level",
            "ORDINAL_REGRESSION",
            {
                0: "Grade 0: No apparent retinopathy",
                1: "Grade 1: Mild \u2013 NPDR",
                2: "Grade 2: Moderate \u2013 NPDR",
                3: "Grade 3: Severe \u2013 NPDR",
                4: "Grade 4: PDR",
            },
        ),
        TaskSpec(
            "Overall quality",
            "BINARY_CLASSIFICATION",
            {
                0: "Quality is not good enough for the diagnosis of retinal diseases",
                1: "Quality is good enough for the diagnosis of retinal diseases",
            },
        ),
        TaskSpec(
            "Artifact",
            "ORDINAL_REGRESSION",
            {
                0: "Do not contain artifacts",
                1: "Outside the aortic arch with range less than 1/4 of the image",
                4: "Do not affect the macular area with scope less than 1/4",
                6: "Cover more than 1/4, less than 1/2 of the image",
                8: "Cover more than 1/2 without fully cover the posterior pole",
                10: "Cover the entire posterior pole",
            },
        ),
        TaskSpec(
            "Clarity",
            "ORDINAL_REGRESSION",
            {
                1: "Only Level 1 vascular arch can be identified",
                4: "Can identify Level 2 vascular arch and a small number of lesions",
                6: "Can identify Level 3 vascular arch and some lesions",
                8: "Can identify Level 3 vascular arch and most lesions",
                10: "Can identify Level 3 vascular arch and all lesions",
            },
        ),
        TaskSpec(
            "Field definition",
            "ORDINAL_REGRESSION",
            {
                1: "Do not include the optic disc and macular",
                4: "Only contain either optic disc or macula",
                6: "Contain both optic disc and macula",
                8: "The optic disc and macula are within 2PD of the center",
                10: "The optic disc and macula are within 1PD of the center",
            },
        ),
    ),
    domain_overlaps=("dr_uwf", "fundus", "glaucoma"),
    seed=3,
)
"""RGB, ordinal tasks with label keys that are not ``0..K-1`` (e.g. 1,4,6,8,10) plus a
binary task; label names contain non-ASCII dashes."""

ORGANS_AXIAL: Final = DatasetSpec(
    id="organs_axial",
    name="Axial Organ Slices",
    summary="Synthetic stand-in for the axial CT organ slice dataset.",
    domain="Abdominal CT",
    channels=1,
    splits={"train": 22, "val": 5, "test": 5},
    original_splits={"train": 27, "val": 0, "test": 5},
    tasks=(
        TaskSpec(
            "organ label",
            "MULTICLASS_CLASSIFICATION",
            {
                0: "heart",
                1: "left lung",
                2: "right lung",
                3: "liver",
                4: "spleen",
                5: "pancreas",
                6: "left kidney",
                7: "right kidney",
                8: "bladder",
                9: "left femoral head",
                10: "right femoral head",
            },
        ),
    ),
    license=(
        "Creative Commons Attribution-NonCommercial-ShareAlike 4.0 International (CC BY-NC-SA 4.0)"
    ),
    domain_overlaps=("organs_coronal", "organs_sagittal"),
    subject_overlaps=("organs_coronal", "organs_sagittal"),
    organ=True,
    seed=4,
    spaced_input_size=True,
)
"""Grayscale, 11-class multiclass, with masks/bboxes, an empty original ``val`` split, a
CC BY-NC-SA licence and ``input_size: [1, 224, 224]`` written with spaces."""

ALL_SPECS: Final[Mapping[str, DatasetSpec]] = {
    spec.id: spec for spec in (CRC, CXR, DR_REGULAR, ORGANS_AXIAL)
}
"""The ready-made specs by dataset id."""


def tiny_spec(dataset_id: str = "tiny", *, seed: int = 0) -> DatasetSpec:
    """A minimal grayscale dataset (10 images, one binary task) for cheap tests."""
    return DatasetSpec(id=dataset_id, channels=1, seed=seed)


def with_num_images(spec: DatasetSpec, num_images: int) -> DatasetSpec:
    """``spec`` scaled to ``num_images`` images, keeping the split proportions.

    Splits that are empty stay empty; non-empty splits keep at least one image when
    ``num_images`` allows it.
    """
    if num_images <= 0:
        raise ValueError("num_images must be positive")
    return replace(
        spec,
        splits=_scale_counts(spec.splits, num_images),
        original_splits=_scale_counts(spec.original_splits, num_images),
    )


def estimated_archive_size(spec: DatasetSpec) -> int:
    """Approximate size in bytes of ``build_archive(spec, ...)`` (within a few percent)."""
    pixels = math.prod(spec.image_shape)
    per_image = 2 * pixels + 400  # HDF5 row + TIFF file, plus TIFF/zip headers
    if spec.organ:
        per_image += spec.image_size**2 + pixels + 800  # mask + bbox image
    return spec.num_images * per_image + 64 * 1024


def spec_for_archive_size(spec: DatasetSpec, target_bytes: int) -> DatasetSpec:
    """``spec`` with enough images that its archive is about ``target_bytes`` big.

    RGB 224x224 images cost about 300 kB each (HDF5 row plus TIFF file), so a 1 GB
    archive has about 3,300 images and builds in well under a minute.
    """
    per_image = estimated_archive_size(with_num_images(spec, 1000)) / 1000
    return with_num_images(spec, max(1, math.ceil(target_bytes / per_image)))


# --------------------------------------------------------------------------- expected content


def image_relpath(index: int) -> str:
    """Relative path of image ``index`` as used in split files, e.g. ``images/000007.tiff``."""
    return f"images/{index:06d}.tiff"


def split_indices(
    spec: DatasetSpec, split: str, *, original: bool = False
) -> npt.NDArray[np.int64]:
    """Sorted image indices of ``split`` (``splits/``, or ``original_splits/`` if ``original``).

    The splits of each kind partition ``range(spec.num_images)``; membership comes from a
    seeded permutation, so splits are not contiguous index ranges.
    """
    if split not in SPLIT_NAMES:
        raise ValueError(f"unknown split {split!r}")
    stream = _STREAM_ORIGINAL_SPLITS if original else _STREAM_SPLITS
    perm = np.random.default_rng([spec.seed, stream]).permutation(spec.num_images)
    start = 0
    for name in SPLIT_NAMES:
        count = spec.split_count(name, original=original)
        if name == split:
            return np.sort(perm[start : start + count]).astype(np.int64)
        start += count
    raise AssertionError("unreachable")


def split_file_text(spec: DatasetSpec, split: str, *, original: bool = False) -> str | None:
    """Exact text of a split file, or ``None`` when the split is empty (file absent)."""
    indices = split_indices(spec, split, original=original)
    if len(indices) == 0:
        return None
    return "\n".join(image_relpath(int(i)) for i in indices)


def expected_image(spec: DatasetSpec, index: int) -> npt.NDArray[np.uint8]:
    """Pixels of image ``index`` (seeded noise, different for every image and seed)."""
    if not 0 <= index < spec.num_images:
        raise IndexError(f"image index {index} out of range")
    rng = np.random.default_rng([spec.seed, _STREAM_IMAGES, index])
    pixels: npt.NDArray[np.uint8] = np.frombuffer(
        rng.bytes(math.prod(spec.image_shape)), dtype=np.uint8
    )
    image: npt.NDArray[np.uint8] = pixels.reshape(spec.image_shape).copy()
    return image


def expected_images(
    spec: DatasetSpec, start: int = 0, stop: int | None = None
) -> npt.NDArray[np.uint8]:
    """Pixels of images ``start..stop-1`` (default: all), i.e. rows of ``images.hdf5``."""
    stop = spec.num_images if stop is None else stop
    if not 0 <= start <= stop <= spec.num_images:
        raise IndexError(f"image range {start}:{stop} out of range")
    out = np.empty((stop - start, *spec.image_shape), dtype=np.uint8)
    for row, index in enumerate(range(start, stop)):
        out[row] = expected_image(spec, index)
    return out


def expected_labels(spec: DatasetSpec, task_name: str) -> npt.NDArray[np.int64 | np.uint8]:
    """Content of ``task_labels/<task_name>.npy``.

    Single-label tasks: an int64 array of label keys, length N. Within the concatenation
    train, val, test (in that order) keys are assigned round-robin and then shuffled inside
    each split, so every class occurs ``N // K`` or more times overall and at least twice in
    ``train`` when ``train`` has ``2 * K`` images. Multilabel tasks: an ``(N, C)`` uint8 0/1
    matrix in which every label column is positive at least twice and negative at least
    twice within ``train`` (when ``train`` has four or more images).
    """
    task_index = next((i for i, task in enumerate(spec.tasks) if task.name == task_name), None)
    if task_index is None:
        raise KeyError(task_name)
    task = spec.tasks[task_index]
    if task.is_multilabel:
        return _multilabel_labels(spec, task_index, task)
    return _single_labels(spec, task_index, task)


def expected_mask(spec: DatasetSpec, index: int) -> npt.NDArray[np.uint8]:
    """Mask ``masks/NNNNNN.tiff`` of an organ dataset: a 0/255 rectangle, shape (H, W)."""
    if not spec.organ:
        raise ValueError(f"dataset {spec.id!r} is not an organ dataset")
    y0, x0, y1, x1 = _bbox(spec, index)
    mask = np.zeros((spec.image_size, spec.image_size), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 255
    return mask


def expected_bbox_image(spec: DatasetSpec, index: int) -> npt.NDArray[np.uint8]:
    """``images_bboxes/NNNNNN.tiff`` of an organ dataset: the image, zero outside the box."""
    mask = expected_mask(spec, index)
    image = expected_image(spec, index)
    if image.ndim == 3:
        return np.where(mask[..., None] > 0, image, 0).astype(np.uint8)
    return np.where(mask > 0, image, 0).astype(np.uint8)


def expected_files(spec: DatasetSpec) -> list[str]:
    """Sorted relative paths of all files (no directories) inside ``<id>/``."""
    files = ["LICENSE", "annotations.csv", "images.hdf5", "info.yaml"]
    folders = ["images", "masks", "images_bboxes"] if spec.organ else ["images"]
    for folder in folders:
        files.extend(f"{folder}/{i:06d}.tiff" for i in range(spec.num_images))
    files.extend(task.labels_relpath for task in spec.tasks)
    for original in (False, True):
        folder = "original_splits" if original else "splits"
        files.extend(
            f"{folder}/{split}.txt"
            for split in SPLIT_NAMES
            if spec.split_count(split, original=original) > 0
        )
    return sorted(files)


def info_yaml(spec: DatasetSpec, *, dataset_id: str | None = None) -> str:
    """Text of ``info.yaml`` in the upstream format (``dataset_id`` overrides the id)."""
    count = _format_count if spec.underscore_counts else str
    lines = [
        f"id: {dataset_id or spec.id}",
        f"name: {_yaml_str(spec.name)}",
        f"summary: {_yaml_str(spec.summary)}",
        f"domain: {_yaml_str(spec.domain)}",
        "tasks:",
    ]
    for task in spec.tasks:
        lines += [
            f"  - task_name: {_yaml_str(task.name)}",
            f"    task_target: {task.target}",
            "    labels:",
        ]
        lines += [f"      {key}: {_yaml_str(task.labels[key])}" for key in task.keys]
    sep = ", " if spec.spaced_input_size else ","
    lines += [
        f"input_size: [{sep.join(str(v) for v in (spec.channels, *[spec.image_size] * 2))}]",
        f"total_num_samples: {count(spec.num_images)}",
        "splits_num_samples:",
    ]
    lines += [f"  {s}: {count(spec.split_count(s))}" for s in SPLIT_NAMES]
    lines.append("original_splits_num_samples:")
    lines += [f"  {s}: {count(spec.split_count(s, original=True))}" for s in SPLIT_NAMES]
    lines += [
        f"domain_overlaps: [{', '.join(spec.domain_overlaps)}]",
        f"subject_overlaps: [{', '.join(spec.subject_overlaps)}]",
        f"license: {_yaml_str(spec.license)}",
        "project_website: https://www.woerner.eu/projects/medimeta/",
        "download_url: https://zenodo.org/records/7884735",
        "DOI: 10.5281/zenodo.7884735",
        "original_data:",
        f"  - name: {_yaml_str(spec.name + ' (original)')}",
        f"    title: {_yaml_str('Source data of the ' + spec.name + ' dataset')}",
        f"    url: https://example.org/datasets/{spec.id}",
        f"    license: {_yaml_str(spec.license)}",
        f"    authors: {_yaml_str('A. Author, B. Author')}",
        "    citations:",
        f"      - {_yaml_str('Author, A. et al. ' + spec.name + '. Synthetic Data (2023).')}",
    ]
    return "\n".join(lines) + "\n"


def md5_of(path: Path | str) -> str:
    """Hex MD5 digest of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(_COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- writers


def swapped_in_directory(archive: Path, first: str, second: str) -> bytes:
    """The archive's bytes with two members' names swapped in its central directory only:
    each entry still points at its own local header, size and CRC-32 (so every member
    passes a check of its data against the directory), but is installed under the other's
    name. The names must have the same length (the size stays the archive's)."""
    if len(first.encode()) != len(second.encode()):
        raise ValueError("the names must have the same length")
    data = archive.read_bytes()
    with zipfile.ZipFile(archive) as handle:
        start = handle.start_dir
    directory = data[start:]
    a, b = first.encode(), second.encode()
    if directory.count(a) != 1 or directory.count(b) != 1:
        raise ValueError("each name must appear once in the central directory")
    swapped = bytearray(directory)
    at_a, at_b = directory.index(a), directory.index(b)
    swapped[at_a : at_a + len(a)], swapped[at_b : at_b + len(b)] = b, a
    directory = bytes(swapped)
    return data[:start] + directory


def offset_past_the_end(archive: Path, member: str | None = None) -> bytes:
    """The archive's bytes with an offset of its central directory pointing past its end:
    that of ``member``'s local header, or (``member`` None) the directory's own offset in
    the end record. The size stays the archive's."""
    data = bytearray(archive.read_bytes())
    end_record = data.rfind(b"PK\x05\x06")
    past = len(data) + 1000
    if member is None:
        struct.pack_into("<I", data, end_record + 16, past)
        return bytes(data)
    with zipfile.ZipFile(archive) as handle:
        position = handle.start_dir
    while data[position : position + 4] == b"PK\x01\x02":
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", data, position + 28)
        if data[position + 46 : position + 46 + name_length] == member.encode():
            struct.pack_into("<I", data, position + 42, past)
            return bytes(data)
        position += 46 + name_length + extra_length + comment_length
    raise ValueError(f"{member} is not in the central directory")


def write_dataset_dir(spec: DatasetSpec, parent: Path) -> Path:
    """Write an installed (unzipped) dataset to ``parent/<id>/`` and return that folder.

    Raises ``FileExistsError`` if the folder already exists.
    """
    parent = Path(parent)
    target = parent / spec.id
    if target.exists():
        raise FileExistsError(target)
    parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{spec.id}-", dir=parent))
    try:
        sink = _DirSink(scratch / spec.id)
        _emit_dataset(spec, sink, scratch)
        os.replace(scratch / spec.id, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def build_archive(
    spec: DatasetSpec, out_dir: Path, *, pad_bytes: int = 0, dir_entries: bool = True
) -> Path:
    """Write ``out_dir/<id>.zip`` in the upstream layout and return its path.

    Members are stored uncompressed below ``<id>/`` with fixed timestamps, so the bytes
    (and MD5) depend only on ``spec``. ``dir_entries`` adds explicit directory members
    (``<id>/``, ``<id>/images/``, ...) as ``zip -r`` does. ``pad_bytes`` > 0 appends a
    filler member ``<id>/padding.bin`` of that many seeded random bytes; it is *not* part of
    the upstream layout and only meant for pure transfer benchmarks. For realistic large
    archives prefer :func:`spec_for_archive_size`.
    """
    return _build_zip(spec, Path(out_dir), pad_bytes=pad_bytes, dir_entries=dir_entries)


def build_malicious_archive(
    out_dir: Path,
    dataset_id: str,
    kind: MaliciousKind,
    *,
    spec: DatasetSpec | None = None,
) -> Path:
    """Write a deliberately bad ``out_dir/<dataset_id>.zip`` and return its path.

    The archive contains a complete valid dataset (``spec`` with its id replaced, default
    :func:`tiny_spec`) plus, depending on ``kind``:

    * ``"zip_slip"``: a member ``<id>/../../evil.txt``;
    * ``"absolute"``: a member ``/tmp/evil.txt`` (:data:`ABSOLUTE_EVIL_MEMBER`);
    * ``"symlink"``: a member ``<id>/evil_link`` whose unix mode marks it as a symlink to
      :data:`SYMLINK_TARGET`;
    * ``"wrong_id"``: no extra member, but ``info.yaml`` says ``id: <id>_wrong``.
    """
    base = replace(spec or tiny_spec(dataset_id), id=dataset_id)
    extra: list[tuple[zipfile.ZipInfo, bytes]] = []
    info_id: str | None = None
    if kind == "zip_slip":
        extra.append((_zipinfo(f"{dataset_id}/../../evil.txt"), b"zip slip\n"))
    elif kind == "absolute":
        extra.append((_zipinfo(ABSOLUTE_EVIL_MEMBER), b"absolute path\n"))
    elif kind == "symlink":
        link = _zipinfo(f"{dataset_id}/evil_link", mode=stat.S_IFLNK | 0o777)
        extra.append((link, SYMLINK_TARGET.encode()))
    elif kind == "wrong_id":
        info_id = f"{dataset_id}_wrong"
    else:
        raise ValueError(f"unknown malicious archive kind {kind!r}")
    return _build_zip(base, Path(out_dir), info_id=info_id, extra=extra)


def rewrite_archive(
    source: Path,
    out_dir: Path,
    *,
    drop: Iterable[str] = (),
    extra: Iterable[tuple[str, bytes | None]] = (),
) -> Path:
    """Copy the archive ``source`` to ``out_dir/<same name>`` without the members named in
    ``drop`` and with the ``extra`` members appended, each ``(name, data)``, a folder entry
    when ``data`` is None. Member names are written as given (a bad name is the point)."""
    dropped = set(drop)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / Path(source).name
    with (
        zipfile.ZipFile(source) as original,
        zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as zf,
    ):
        for info in original.infolist():
            if info.filename not in dropped:
                zf.writestr(info, original.read(info))
        for name, data in extra:
            if data is None:
                zf.writestr(_zipinfo(name, mode=_DIR_MODE), b"")
            else:
                zf.writestr(_zipinfo(name), data)
    return target


def archive_from_folder(folder: Path, out_dir: Path) -> Path:
    """Zip a dataset folder (as :func:`write_dataset_dir` writes it, possibly altered
    afterwards) into ``out_dir/<folder name>.zip`` with the upstream member layout."""
    folder = Path(folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{folder.name}.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(_zipinfo(f"{folder.name}/", mode=_DIR_MODE), b"")
        for path in sorted(folder.rglob("*")):
            name = f"{folder.name}/{path.relative_to(folder).as_posix()}"
            if path.is_dir():
                zf.writestr(_zipinfo(f"{name}/", mode=_DIR_MODE), b"")
            else:
                zf.writestr(_zipinfo(name), path.read_bytes())
    return target


# --------------------------------------------------------------------------- internals


class _Sink(Protocol):
    """Destination for dataset files (a folder or a zip archive)."""

    def add_dir(self, rel: str) -> None:
        """Create directory ``rel``."""

    def add_bytes(self, rel: str, data: bytes) -> None:
        """Write a small file."""

    def add_file(self, rel: str, src: Path) -> None:
        """Add the (possibly large) file ``src``; ``src`` may be consumed."""

    def add_stream(self, rel: str, size: int, chunks: Iterable[bytes]) -> None:
        """Write a file of exactly ``size`` bytes from ``chunks``."""


class _DirSink:
    """Writes dataset files below a folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True)

    def add_dir(self, rel: str) -> None:
        (self.root / rel).mkdir(parents=True, exist_ok=True)

    def add_bytes(self, rel: str, data: bytes) -> None:
        (self.root / rel).write_bytes(data)

    def add_file(self, rel: str, src: Path) -> None:
        shutil.move(src, self.root / rel)

    def add_stream(self, rel: str, size: int, chunks: Iterable[bytes]) -> None:
        with open(self.root / rel, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)


class _ZipSink:
    """Writes dataset files as ``ZIP_STORED`` members below ``<prefix>/``."""

    def __init__(self, zf: zipfile.ZipFile, prefix: str, *, dir_entries: bool) -> None:
        self.zf = zf
        self.prefix = prefix
        self.dir_entries = dir_entries

    def add_dir(self, rel: str) -> None:
        if self.dir_entries:
            name = f"{self.prefix}/{rel}/" if rel else f"{self.prefix}/"
            self.zf.writestr(_zipinfo(name, mode=_DIR_MODE), b"")

    def add_bytes(self, rel: str, data: bytes) -> None:
        self.zf.writestr(_zipinfo(f"{self.prefix}/{rel}"), data)

    def add_file(self, rel: str, src: Path) -> None:
        size = src.stat().st_size
        with open(src, "rb") as fh:
            self.add_stream(rel, size, iter(lambda: fh.read(_COPY_CHUNK), b""))

    def add_stream(self, rel: str, size: int, chunks: Iterable[bytes]) -> None:
        info = _zipinfo(f"{self.prefix}/{rel}")
        info.file_size = size  # lets zipfile decide about zip64 up front
        with self.zf.open(info, "w") as dst:
            for chunk in chunks:
                dst.write(chunk)


def _zipinfo(name: str, *, mode: int = _FILE_MODE) -> zipfile.ZipInfo:
    """A reproducible ZipInfo: fixed timestamp, unix attributes, no compression."""
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
    info.compress_type = zipfile.ZIP_STORED
    info.create_system = _UNIX_SYSTEM
    info.external_attr = mode << 16
    if stat.S_ISDIR(mode):
        info.external_attr |= _MSDOS_DIR_FLAG
    return info


def _build_zip(
    spec: DatasetSpec,
    out_dir: Path,
    *,
    pad_bytes: int = 0,
    dir_entries: bool = True,
    info_id: str | None = None,
    extra: Iterable[tuple[zipfile.ZipInfo, bytes]] = (),
) -> Path:
    """Write ``out_dir/<spec.id>.zip`` atomically (via a temporary file in ``out_dir``)."""
    if pad_bytes < 0:
        raise ValueError("pad_bytes must not be negative")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{spec.id}.zip"
    scratch = Path(tempfile.mkdtemp(prefix=f".{spec.id}-", dir=out_dir))
    try:
        partial = scratch / "archive.zip"
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as zf:
            sink = _ZipSink(zf, spec.id, dir_entries=dir_entries)
            _emit_dataset(spec, sink, scratch, info_id=info_id)
            if pad_bytes:
                sink.add_stream(PADDING_MEMBER, pad_bytes, _padding_chunks(spec, pad_bytes))
            for info, data in extra:
                zf.writestr(info, data)
        os.replace(partial, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _emit_dataset(
    spec: DatasetSpec, sink: _Sink, scratch: Path, *, info_id: str | None = None
) -> None:
    """Write every file of the dataset to ``sink`` (``scratch`` holds the HDF5 meanwhile)."""
    sink.add_dir("")
    sink.add_bytes("info.yaml", info_yaml(spec, dataset_id=info_id).encode())
    sink.add_bytes("LICENSE", f"{spec.license}\n".encode())
    sink.add_bytes("annotations.csv", _annotations_csv(spec).encode())

    hdf5_path = scratch / "images.hdf5"
    _write_hdf5(spec, hdf5_path)
    sink.add_file("images.hdf5", hdf5_path)

    folders: list[tuple[str, _ImageFn]] = [("images", expected_image)]
    if spec.organ:
        folders += [("masks", expected_mask), ("images_bboxes", expected_bbox_image)]
    for folder, make in folders:
        sink.add_dir(folder)
        for index in range(spec.num_images):
            sink.add_bytes(f"{folder}/{index:06d}.tiff", _tiff_bytes(make(spec, index)))

    sink.add_dir("task_labels")
    for task in spec.tasks:
        sink.add_bytes(task.labels_relpath, _npy_bytes(expected_labels(spec, task.name)))

    for original in (False, True):
        folder = "original_splits" if original else "splits"
        sink.add_dir(folder)
        for split in SPLIT_NAMES:
            text = split_file_text(spec, split, original=original)
            if text is not None:
                sink.add_bytes(f"{folder}/{split}.txt", text.encode())


class _ImageFn(Protocol):
    """Signature of the per-index image generators."""

    def __call__(self, spec: DatasetSpec, index: int, /) -> npt.NDArray[np.uint8]: ...


def _write_hdf5(spec: DatasetSpec, path: Path) -> None:
    """Write ``images.hdf5`` in batches (one chunk per image, no compression)."""
    with h5py.File(path, "w") as fh:
        dset = fh.create_dataset(
            "images",
            shape=spec.hdf5_shape,
            dtype=np.uint8,
            chunks=(1, *spec.image_shape),
            track_times=False,
        )
        for start in range(0, spec.num_images, _HDF5_BATCH):
            stop = min(start + _HDF5_BATCH, spec.num_images)
            dset[start:stop] = expected_images(spec, start, stop)


def _tiff_bytes(pixels: npt.NDArray[np.uint8]) -> bytes:
    """Uncompressed TIFF (mode ``L`` or ``RGB``) of ``pixels``."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="TIFF")
    return buf.getvalue()


def _npy_bytes(array: npt.NDArray[np.generic]) -> bytes:
    """``.npy`` serialisation of ``array``."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _annotations_csv(spec: DatasetSpec) -> str:
    """``annotations.csv``: index, image path, split memberships and one column per task."""
    split_of = _split_names(spec, original=False)
    original_of = _split_names(spec, original=True)
    labels = {task.name: expected_labels(spec, task.name) for task in spec.tasks}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["index", "image_path", "split", "original_split", *(t.name for t in spec.tasks)]
    )
    for index in range(spec.num_images):
        row: list[str | int] = [index, image_relpath(index), split_of[index], original_of[index]]
        for task in spec.tasks:
            value = labels[task.name][index]
            row.append(" ".join(str(int(v)) for v in value) if task.is_multilabel else int(value))
        writer.writerow(row)
    return buf.getvalue()


def _split_names(spec: DatasetSpec, *, original: bool) -> list[str]:
    """Split name of every image."""
    names = [""] * spec.num_images
    for split in SPLIT_NAMES:
        for index in split_indices(spec, split, original=original):
            names[int(index)] = split
    return names


def _single_labels(spec: DatasetSpec, task_index: int, task: TaskSpec) -> npt.NDArray[np.int64]:
    """Round-robin label keys over train/val/test, shuffled within each split."""
    keys = np.asarray(task.keys, dtype=np.int64)
    labels = np.zeros(spec.num_images, dtype=np.int64)
    position = 0
    for split_number, split in enumerate(SPLIT_NAMES):
        indices = split_indices(spec, split)
        values = keys[(position + np.arange(len(indices))) % len(keys)]
        position += len(indices)
        rng = np.random.default_rng([spec.seed, _STREAM_LABELS, task_index, split_number])
        labels[indices] = rng.permutation(values)
    return labels


def _multilabel_labels(spec: DatasetSpec, task_index: int, task: TaskSpec) -> npt.NDArray[np.uint8]:
    """Seeded sparse 0/1 matrix with guaranteed positives and negatives per column."""
    num_labels = len(task.labels)
    rng = np.random.default_rng([spec.seed, _STREAM_LABELS, task_index])
    matrix = (rng.random((spec.num_images, num_labels)) < 0.3).astype(np.uint8)
    train = split_indices(spec, "train")
    if len(train) >= 4:
        for column in range(num_labels):
            rows = train[(2 * column + np.arange(4)) % len(train)]
            matrix[rows[:2], column] = 1
            matrix[rows[2:], column] = 0
    return matrix


def _bbox(spec: DatasetSpec, index: int) -> tuple[int, int, int, int]:
    """Seeded bounding box ``(y0, x0, y1, x1)`` of organ image ``index``."""
    if not 0 <= index < spec.num_images:
        raise IndexError(f"image index {index} out of range")
    side = spec.image_size
    rng = np.random.default_rng([spec.seed, _STREAM_MASKS, index])
    height, width = (int(v) for v in rng.integers(side // 8, side // 2, size=2))
    y0, x0 = (int(v) for v in rng.integers(0, side - side // 2, size=2))
    return y0, x0, y0 + height, x0 + width


def _padding_chunks(spec: DatasetSpec, size: int) -> Iterator[bytes]:
    """``size`` bytes: one seeded random 1 MiB block, repeated."""
    block = np.random.default_rng([spec.seed, _STREAM_PADDING]).bytes(_COPY_CHUNK)
    remaining = size
    while remaining > 0:
        piece = block[: min(remaining, len(block))]
        remaining -= len(piece)
        yield piece


def _scale_counts(counts: Mapping[str, int], total: int) -> dict[str, int]:
    """Split ``total`` over the names in ``counts`` proportionally (largest remainder)."""
    old_total = sum(counts.values())
    names = [s for s in SPLIT_NAMES if counts.get(s, 0) > 0]
    exact = {s: counts[s] * total / old_total for s in names}
    scaled = {s: int(exact[s]) for s in names}
    # Non-empty splits keep at least one image while enough images are available.
    for s in names:
        if scaled[s] == 0 and sum(scaled.values()) < total:
            scaled[s] = 1
    by_remainder = sorted(names, key=lambda s: exact[s] - int(exact[s]), reverse=True)
    i = 0
    while sum(scaled.values()) < total:
        scaled[by_remainder[i % len(by_remainder)]] += 1
        i += 1
    while sum(scaled.values()) > total:
        largest = max(names, key=lambda s: scaled[s])
        scaled[largest] -= 1
    return {s: scaled.get(s, 0) for s in SPLIT_NAMES}


def _format_count(value: int) -> str:
    """Count with ``_`` separators (``107_180``; ``2_0`` below 1000, see DatasetSpec)."""
    if value >= 1000:
        return f"{value:_}"
    if value >= 10:
        text = str(value)
        return f"{text[:-1]}_{text[-1]}"
    return str(value)


def _yaml_str(text: str) -> str:
    """``text`` as a YAML double-quoted scalar (JSON escapes are valid YAML escapes)."""
    return json.dumps(text, ensure_ascii=False)


def deflated_copy(source: Path, target: Path) -> Path:
    """``source`` rewritten with every member deflated (upstream archives are stored)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            new.writestr(info, old.read(info), compress_type=zipfile.ZIP_DEFLATED)
    return target
