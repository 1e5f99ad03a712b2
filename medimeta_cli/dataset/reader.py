"""Read images, labels and splits of one installed dataset.

Used by ``verify --deep`` and by the commands that hand data to the user
(``export``, ``sample``). Images are read by :class:`medimeta_cli.dataset.images.ImageReader`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from medimeta_cli.catalog.datasets import SPLIT_NAMES, Dataset, Task, TaskTarget
from medimeta_cli.dataset.images import ImageReader, one_line
from medimeta_cli.dataset.installed import read_installed
from medimeta_cli.dataset.upstream import parse_split_bytes, split_line, split_relpath
from medimeta_cli.errors import IntegrityError, NotInstalledError, UsageError

__all__ = ["DatasetReader"]


class DatasetReader(ImageReader):
    """Read access to one installed dataset folder ``<root>/<id>/``: images (from
    :class:`ImageReader`), splits and labels."""

    @classmethod
    def open(cls, root: Path, dataset: Dataset) -> DatasetReader:
        """A reader for ``<root>/<id>/`` that takes counts, splits and tasks from the
        folder's own ``info.yaml``, not from ``dataset`` (the catalog entry, which only
        names the dataset and lends its summary).

        :class:`NotInstalledError` if the folder has no info.yaml;
        :class:`~medimeta_cli.dataset.installed.InfoError` if it cannot be read as one.
        """
        folder = Path(root) / dataset.id
        if not (folder / "info.yaml").is_file():
            raise NotInstalledError(dataset.id, str(root))
        return cls(folder, read_installed(folder, dataset.id, summary=dataset.summary))

    def split_indices(self, split: str, *, original: bool = False) -> npt.NDArray[np.int64]:
        """Image indices listed in ``splits/<split>.txt`` (or ``original_splits/``), in file order.

        An absent file means an empty split when the dataset's ``info.yaml`` gives the
        split no images; otherwise the file was lost and :class:`IntegrityError` names it.
        Raises :class:`IntegrityError` naming the file and line when a line is not
        ``images/NNNNNN.tiff`` or names an image beyond ``info.yaml``'s image count.
        """
        if split not in SPLIT_NAMES:
            raise UsageError(
                f"unknown split {split!r}", hint=f"Valid splits: {', '.join(SPLIT_NAMES)}."
            )
        rel = split_relpath(split, original=original)
        path = self._folder / rel
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            # Upstream leaves out the file of an empty split; info.yaml tells which.
            expected = self._listed_count(split, original=original)
            if expected > 0:
                raise IntegrityError(
                    f"{rel} of {self._dataset.id!r} is missing, but info.yaml gives the "
                    f"{'original ' if original else ''}{split} split {expected} images",
                    hint=f"Run `medimeta verify --repair {self._dataset.id}` to restore it.",
                ) from None
            return np.empty(0, dtype=np.int64)
        except OSError as exc:
            raise IntegrityError(
                f"cannot read {rel} of {self._dataset.id!r}: {exc.strerror}",
                hint=self._deep_hint(),
            ) from exc
        indices = parse_split_bytes(data)
        bad = np.flatnonzero(indices < 0)
        if len(bad):
            number = int(bad[0]) + 1
            raise IntegrityError(
                f"{rel} of {self._dataset.id!r}, line {number}: expected "
                f"'images/NNNNNN.tiff', found {split_line(data, number)!r}",
                hint=self._deep_hint(),
            )
        total = self._dataset.num_samples
        beyond = np.flatnonzero(indices >= total)
        if len(beyond):
            number = int(beyond[0]) + 1
            raise IntegrityError(
                f"{rel} of {self._dataset.id!r}, line {number}: image {int(indices[number - 1])} "
                f"does not exist (the dataset has {total} images)",
                hint=self._deep_hint(),
            )
        return indices

    def _listed_count(self, split: str, *, original: bool) -> int:
        """Images of a split by the dataset's description (its own ``info.yaml``)."""
        counts = self._dataset.original_splits if original else self._dataset.splits
        return int(getattr(counts, split))

    def labels(self, task: Task | str) -> npt.NDArray[Any]:
        """The ``task_labels`` array of a task: label keys (N,) or a 0/1 matrix (N, C).

        N is ``info.yaml``'s image count. Raises :class:`IntegrityError` when the file
        is missing, unreadable or of the wrong shape, and :class:`UnknownTaskError` for a
        task name the dataset lacks. Label values are checked by ``verify --deep``.
        """
        resolved = self._dataset.task(task) if isinstance(task, str) else task
        rel = resolved.file_name
        path = self._folder / rel
        where = f"{rel} of {self._dataset.id!r}"
        if not path.is_file():
            raise IntegrityError(f"{where} is missing", hint=self._deep_hint())
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError, MemoryError) as exc:
            raise IntegrityError(
                f"{where} cannot be read: {one_line(exc)}", hint=self._deep_hint()
            ) from exc
        if not isinstance(array, np.ndarray) or not (
            np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
        ):
            raise IntegrityError(f"{where} does not hold numeric labels", hint=self._deep_hint())
        expected_ndim = 2 if resolved.target is TaskTarget.MULTILABEL else 1
        if array.ndim != expected_ndim:
            raise IntegrityError(
                f"{where} has shape {array.shape}, expected {expected_ndim} dimension(s)",
                hint=self._deep_hint(),
            )
        total = self._dataset.num_samples
        if array.shape[0] != total:
            raise IntegrityError(
                f"{where} has {array.shape[0]} rows, expected {total}", hint=self._deep_hint()
            )
        if expected_ndim == 2 and array.shape[1] != resolved.num_classes:
            raise IntegrityError(
                f"{where} has {array.shape[1]} columns, expected {resolved.num_classes}",
                hint=self._deep_hint(),
            )
        return array
