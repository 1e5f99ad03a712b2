"""How an export describes itself to Hugging Face ``datasets``: the splits' names, the
``ClassLabel`` features of the label columns, the licence, and the dataset card
(``README.md``) of the image folder and Parquet exports, so that ``load_dataset(folder)``
gives class names in ``classes.json`` order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medimeta_cli.catalog.citation import bibtex_for
from medimeta_cli.catalog.datasets import Dataset, Task, TaskTarget
from medimeta_cli.dataset.selection import Selection
from medimeta_cli.export.naming import task_column

#: Hugging Face's names of the splits whose names it would map anyway.
HF_SPLITS = {"val": "validation"}


def _data_files(selection: Selection, path: str) -> list[dict[str, str]]:
    """The card's ``data_files``: each split of the export and its files (``path`` with
    ``{split}`` in it)."""
    return [
        {"split": HF_SPLITS.get(part.split, part.split), "path": path.format(split=part.split)}
        for part in selection.parts
    ]


def _card(header: dict[str, Any], body: str) -> str:
    """A dataset card: the YAML header between ``---`` lines, then the body."""
    import yaml

    dumped = yaml.safe_dump(header, sort_keys=False, allow_unicode=True)
    return f"---\n{dumped}---\n\n{body}"


def task_names(task: Task) -> list[str]:
    """A task's class names in ascending key order (its indices in classes.json)."""
    return [task.labels[key] for key in sorted(task.labels)]


# ----------------------------------------------------------------------------- Parquet


def _class_label(names: Sequence[str]) -> dict[str, Any]:
    return {"names": list(names), "_type": "ClassLabel"}


def _label_feature(names: Sequence[str], multilabel: bool) -> dict[str, Any]:
    """A ``ClassLabel``, or a ``Sequence`` of them (``datasets`` 3 writes it so; newer
    releases read it as ``List(ClassLabel)``)."""
    label = _class_label(names)
    return {"feature": label, "_type": "Sequence"} if multilabel else label


def parquet_features(selection: Selection) -> dict[str, Any]:
    """The Hugging Face features of a Parquet export's columns, as
    ``Features.to_dict()`` gives them."""
    names = [selection.task.labels[key] for key in selection.classes]
    result: dict[str, Any] = {
        "image": {"_type": "Image"},
        "label": _label_feature(names, selection.multilabel),
        "upstream_index": {"dtype": "int64", "_type": "Value"},
    }
    for task in selection.every_task:
        multilabel = task.target is TaskTarget.MULTILABEL
        result[task_column(task)] = _label_feature(task_names(task), multilabel)
    return result


def hf_license(dataset: Dataset) -> dict[str, str]:
    """The card's licence: a Hugging Face identifier for Creative Commons licences
    (``CC BY-SA 4.0`` -> ``cc-by-sa-4.0``), else ``other`` with the name."""
    short = dataset.license.short
    ident = short.lower().replace(" ", "-")
    if ident.startswith("cc") and all(c.isalnum() or c in "-." for c in ident):
        return {"license": ident}
    return {"license": "other", "license_name": dataset.license.name}


def parquet_card(selection: Selection) -> str:
    """A Parquet export's ``README.md``: YAML ``configs`` (each split's files), licence,
    and a body with the columns, how to load them and the citations (BibTeX as
    provenance.json has it)."""
    dataset, task = selection.dataset, selection.task
    header: dict[str, Any] = {
        **hf_license(dataset),
        "pretty_name": f"{dataset.name}: {task.name}",
        "task_categories": ["image-classification"],
        "configs": [
            {
                "config_name": "default",
                "data_files": _data_files(selection, "data/{split}-*.parquet"),
            }
        ],
    }
    label = (
        "the list of its positive class indices"
        if selection.multilabel
        else "the class index of `classes.json`"
    )
    tasks = "".join(
        f"- `{task_column(t)}`: task `{t.name}` ({t.target.value}), "
        f"classes in ascending key order\n"
        for t in selection.every_task
    )
    body = (
        f"# {dataset.name}: {task.name}\n\n"
        f"A Parquet export of the MedIMeta dataset `{dataset.id}`, task `{task.name}`, made "
        'by medimeta-cli. `datasets.load_dataset("<this folder>")` reads it; the features '
        "travel in the Parquet files' metadata.\n\n"
        f"- `image`: the image (`Image`)\n"
        f"- `label`: {label} (`ClassLabel` with the class names)\n"
        "- `upstream_index`: the image's index in the upstream dataset\n"
        f"{tasks}\n"
        f"License: {dataset.license.name}.\n\n"
        "## Citation\n\n"
        f"```bibtex\n{bibtex_for(dataset)}```\n"
    )
    return _card(header, body)


# ----------------------------------------------------------------------------- image folders


def imagefolder_card(selection: Selection) -> str:
    """A Hugging Face dataset card for a single-label image folder export: its YAML header
    declares the splits and the features of ``metadata.csv``, ``label`` as a
    ``ClassLabel`` whose names are in ``classes.json`` order
    (``load_dataset("imagefolder", data_dir=...)`` reads no card and infers a plain
    integer from the csv; ``load_dataset(folder)`` reads it)."""
    task = selection.task
    names = {str(position): task.labels[key] for position, key in enumerate(selection.classes)}
    header = {
        "configs": [
            {
                "config_name": "default",
                "data_files": _data_files(selection, "{split}/**"),
                "features": [
                    {"name": "image", "dtype": "image"},
                    {"name": "label", "dtype": {"class_label": {"names": names}}},
                    {"name": "split", "dtype": "string"},
                    {"name": "label_key", "dtype": "int64"},
                    {"name": "label_name", "dtype": "string"},
                    {"name": "upstream_index", "dtype": "int64"},
                    *(_task_feature(t) for t in selection.every_task),
                ],
            }
        ]
    }
    body = (
        f"# {selection.dataset.name}: {task.name}\n\n"
        f"An image folder export of the MedIMeta dataset `{selection.dataset.id}`, task "
        f"`{task.name}`, made by medimeta-cli. `label` is the class index of `classes.json`;\n"
        'with Hugging Face `datasets`: `load_dataset("<this folder>")` gives it as a '
        "`ClassLabel` with the class names.\n"
    )
    return _card(header, body)


def _task_feature(task: Task) -> dict[str, Any]:
    """The card's feature of a task's metadata.csv column: a ``ClassLabel`` with the
    class names in ascending key order, or a string of indices for a multi-label task."""
    if task.target is TaskTarget.MULTILABEL:
        return {"name": task_column(task), "dtype": "string"}
    names = {str(n): name for n, name in enumerate(task_names(task))}
    return {"name": task_column(task), "dtype": {"class_label": {"names": names}}}
