"""What an export is asked to write and what it reports: options, vocabularies, result.

This module imports neither numpy nor Pillow, so the command line can type its
options from these enums without slowing down commands that never export.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from medimeta_cli.errors import UsageError
from medimeta_cli.export.shardsize import ShardSize, parse_shard_size


class ExportFormat(str, Enum):
    """The layout of an export."""

    IMAGEFOLDER = "imagefolder"
    NUMPY = "numpy"
    WEBDATASET = "webdataset"
    PARQUET = "parquet"


#: How the default output folder's name ends for each format (``-numpy``; nothing for the
#: default format), so that exports of one task in two formats never share a folder.
FOLDER_SUFFIXES: dict[ExportFormat, str] = {
    ExportFormat.IMAGEFOLDER: "",
    ExportFormat.NUMPY: "-numpy",
    ExportFormat.WEBDATASET: "-webdataset",
    ExportFormat.PARQUET: "-parquet",
}


class ImageFormat(str, Enum):
    """How the image files of an ``imagefolder`` export are encoded."""

    PNG = "png"
    JPEG = "jpeg"
    TIFF = "tiff"

    @property
    def extension(self) -> str:
        """File name extension, with its dot."""
        return _ENCODINGS[self][1]

    @property
    def pillow_format(self) -> str:
        """The format name Pillow saves with."""
        return _ENCODINGS[self][0]

    @property
    def save_parameters(self) -> dict[str, Any]:
        """Extra arguments to Pillow's ``save`` (JPEG quality)."""
        return dict(_ENCODINGS[self][2])


_ENCODINGS: dict[ImageFormat, tuple[str, str, dict[str, Any]]] = {
    ImageFormat.PNG: ("PNG", ".png", {}),
    ImageFormat.JPEG: ("JPEG", ".jpg", {"quality": 95}),
    ImageFormat.TIFF: ("TIFF", ".tiff", {}),
}


class Color(str, Enum):
    """Colour mode an export converts every image to (none: as stored upstream)."""

    RGB = "rgb"
    GRAYSCALE = "grayscale"

    @property
    def channels(self) -> int:
        """Channels per pixel."""
        return 3 if self is Color.RGB else 1


class ExportStatus(str, Enum):
    """What an export run did."""

    EXPORTED = "exported"
    UP_TO_DATE = "up to date"
    SHARD_WRITTEN = "shard written"
    SHARD_UP_TO_DATE = "shard up to date"


_E = TypeVar("_E", bound=Enum)


def _member(vocabulary: type[_E], value: object, error: UsageError) -> _E:
    """``value`` as a member of ``vocabulary`` (library callers may pass the plain string)."""
    try:
        return vocabulary(value)
    except ValueError:
        raise error from None


@dataclass(frozen=True)
class ExportOptions:
    """How to write an export."""

    format: ExportFormat = ExportFormat.IMAGEFOLDER
    image_format: ImageFormat = ImageFormat.PNG
    color: Color | None = None
    npz: bool = False
    compress: bool = False
    jobs: int = 1
    overwrite: bool = False
    command: str = ""
    #: Tar shards of a webdataset export (``"1GB"`` or a :class:`ShardSize`); None: the
    #: format's default. Refused by formats without such shards.
    shard_size: ShardSize | None = None

    def __post_init__(self) -> None:
        names = [f.value for f in ExportFormat]
        formats = ", ".join(names[:-1]) + " or " + names[-1]
        image_formats = ", ".join(f.value for f in ImageFormat)
        checked = {
            "format": _member(
                ExportFormat,
                self.format,
                UsageError(f"unknown format {self.format!r}", hint=f"Use {formats}."),
            ),
            "image_format": _member(
                ImageFormat,
                self.image_format,
                UsageError(
                    f"unknown image format {self.image_format!r}", hint=f"Use {image_formats}."
                ),
            ),
        }
        if self.color is not None:
            checked["color"] = _member(
                Color,
                self.color,
                UsageError(f"unknown colour mode {self.color!r}", hint="Use rgb or grayscale."),
            )
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        if isinstance(self.shard_size, str):  # library callers may pass "1GB"
            object.__setattr__(self, "shard_size", parse_shard_size(self.shard_size))


@dataclass(frozen=True)
class ExportResult:
    """What an export did.

    ``empty_class_folders``: per split, the class folders of an image folder export that
    hold no image because the split lacks the class (the command line warns about them).
    """

    out: Path
    status: ExportStatus
    counts: dict[str, dict[str, int]]
    images: int
    seconds: float
    complete: bool
    empty_class_folders: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "out": str(self.out),
            "status": self.status.value,
            "complete": self.complete,
            "images": self.images,
            "counts": self.counts,
            "empty_class_folders": self.empty_class_folders,
            "seconds": round(self.seconds, 3),
        }


#: Called with the number of images just written.
ProgressCallback = Callable[[int], None]
