"""The interface of an export format: a :class:`Writer`.

Each format is one module with one ``Writer`` subclass, registered in the table of
:mod:`medimeta_cli.export.formats`; the whole export, shards and provenance ask the
writer of the format, never which format it is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from medimeta_cli.dataset.selection import Selection
from medimeta_cli.export.options import (
    FOLDER_SUFFIXES,
    ExportFormat,
    ExportOptions,
    ProgressCallback,
)


class Writer(ABC):
    """How one export format puts a selection on disk."""

    #: The format this writer writes (its key in the table).
    format: ClassVar[ExportFormat]
    #: Whether images are files in per-class folders (and ``--image-format`` applies).
    image_files: ClassVar[bool] = False
    #: Whether images are encoded (``--image-format`` applies) though not files in folders.
    encodes_images: ClassVar[bool] = False
    #: Whether the format holds the labels of every task at once (``--task all``); a
    #: format that cannot is refused rather than silently exporting one task.
    every_task: ClassVar[bool] = False
    #: Whether the format cuts each split into files of a chosen size (``--shard-size``);
    #: the option is refused for a format that does not.
    sized_shards: ClassVar[bool] = False

    @property
    def folder_suffix(self) -> str:
        """How the default output folder's name ends (:data:`FOLDER_SUFFIXES`)."""
        return FOLDER_SUFFIXES[self.format]

    @abstractmethod
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
        """Write the selected images of the dataset in ``folder`` under ``target`` (each
        file atomically if ``atomic``: other jobs may be writing beside it)."""

    @abstractmethod
    def labels_note(self, multilabel: bool) -> str:
        """How a training loop finds the class index in this format (for classes.json)."""

    def write_split_files(self, selection: Selection, target: Path, options: ExportOptions) -> None:
        """Files the format keeps per split beside the images (none unless overridden)."""
        return None

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
        """Write one shard's images. By default straight into ``out``, file by file
        atomically; a format whose files hold every image (arrays) writes into its own
        ``piece`` folder instead and joins the pieces in :meth:`join_shards`. ``full`` is
        the whole selection (a format whose files hold several images may need to see
        where its files begin and end)."""
        self.write_images(folder, selection, out, options, progress, atomic=True)

    def join_shards(
        self, full: Selection, out: Path, pieces: Sequence[Path], options: ExportOptions
    ) -> None:
        """Make the export's files from the shards' pieces, in shard order (nothing to do
        unless :meth:`write_shard` writes pieces)."""
        return None

    def format_settings(self, options: ExportOptions) -> dict[str, Any]:
        """Settings of this format that decide its bytes, beyond the common ones, for the
        ``format`` entry of provenance.json (none unless overridden)."""
        return {}

    def empty_class_folders(self, full: Selection) -> dict[str, list[str]]:
        """Per split, the class folders that hold no image (for provenance.json): none
        unless the format has class folders."""
        return {}
