"""Read images, labels and splits of one installed dataset.

Used by the commands that hand data to the user (``export``, ``sample``) and by the
Python API. Images are read by :class:`medimeta_cli.dataset.images.ImageReader`; labels
and splits come through the gate (:mod:`medimeta_cli.dataset.gate`), which checks them
before handing them out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from medimeta_cli.catalog.datasets import Dataset, Task
from medimeta_cli.dataset.contents import load_labels, load_split
from medimeta_cli.dataset.gate import DatasetFolder, open_folder
from medimeta_cli.dataset.images import ImageReader
from medimeta_cli.errors import NotInstalledError

__all__ = ["DatasetReader"]


class DatasetReader(ImageReader):
    """Read access to one installed dataset folder ``<root>/<id>/``: images (from
    :class:`ImageReader`), splits and labels, of a :class:`DatasetFolder` the gate
    handed out."""

    def __init__(self, data: DatasetFolder) -> None:
        super().__init__(data.folder, data.dataset)
        self._data = data

    @property
    def data(self) -> DatasetFolder:
        """The validated dataset folder this reader reads."""
        return self._data

    @classmethod
    def open(cls, root: Path, dataset: Dataset) -> DatasetReader:
        """A reader for ``<root>/<id>/`` that takes counts, splits and tasks from the
        folder's own ``info.yaml``, not from ``dataset`` (the catalog entry, which only
        names the dataset and lends its summary).

        :class:`NotInstalledError` if the folder has no info.yaml;
        :class:`~medimeta_cli.dataset.gate.InfoError` if the gate refuses it.
        """
        folder = Path(root) / dataset.id
        if not (folder / "info.yaml").is_file():
            raise NotInstalledError(dataset.id, str(root))
        return cls(open_folder(folder, dataset.id, summary=dataset.summary))

    def split_indices(self, split: str, *, original: bool = False) -> npt.NDArray[np.int64]:
        """Image indices listed in ``splits/<split>.txt`` (or ``original_splits/``), in
        file order, checked by the gate (:func:`~medimeta_cli.dataset.gate.load_split`)."""
        return load_split(self._data, split, original=original)

    def labels(self, task: Task | str) -> npt.NDArray[Any]:
        """The ``task_labels`` array of a task: label keys (N,) or a 0/1 matrix (N, C),
        checked by the gate (:func:`~medimeta_cli.dataset.gate.load_labels`)."""
        return load_labels(self._data, task)
