"""What ``download --from`` takes and offers: zip files (``<id>.zip``, or
``<id>.zip?download=1`` as a downloader may save one), folders of them, and dataset
folders; which of them the ids select, and what installing each would do (the dry run).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from medimeta_cli.catalog.datasets import Catalog, fold_name
from medimeta_cli.errors import UsageError
from medimeta_cli.fsutil import human_bytes
from medimeta_cli.install.from_folder import is_dataset_folder, list_dataset_folder, shown_path
from medimeta_cli.store.status import is_installed

# ----------------------------------------------------------------------------- what --from takes


_FROM_HINT = "Give a folder of <id>.zip files, a zip file, or a dataset folder <id>/."


#: What wget saves a Zenodo download URL as, unless told otherwise: ``<id>.zip?download=1``.
_URL_QUERY = "?download=1"


def archive_id(path: Path) -> str:
    """The dataset id an archive's file name gives: ``<id>.zip``, or ``<id>.zip?download=1``
    as a downloader may save it. Only the name: the archive is checked like any other."""
    return path.name.removesuffix(_URL_QUERY).removesuffix(".zip")


def _archives_in(folder: Path) -> list[Path]:
    """The archives of a folder: ``<id>.zip``, and ``<id>.zip?download=1`` where no
    ``<id>.zip`` stands beside it."""
    plain = sorted(folder.glob("*.zip"))
    named = {path.name for path in plain}
    saved_by_url = [
        path
        for path in sorted(folder.glob("*.zip[?]download=1"))
        if path.name.removesuffix(_URL_QUERY) not in named
    ]
    return sorted([*plain, *saved_by_url], key=archive_id)


def find_archives(paths: Iterable[Path]) -> list[Path]:
    """What ``download --from`` installs: given zip files, dataset folders (holding
    ``info.yaml``), and the zips in other given folders."""
    found: list[Path] = []
    for path in paths:
        if is_dataset_folder(path):
            found.append(path)
        elif path.is_dir():
            found.extend(_archives_in(path))
        elif path.is_file():
            found.append(path)
        else:
            raise UsageError(f"{path} does not exist", hint=_FROM_HINT)
    if not found:
        raise UsageError("no .zip archives found", hint=_FROM_HINT)
    return found


def needs_record(paths: Iterable[Path], catalog: Catalog) -> bool:
    """Whether installing these archives needs the record's manifest: only archives of
    catalog datasets are checked against it (those of datasets outside the catalog have
    nothing there, and dataset folders are hashed file by file as they are copied)."""
    known = set(catalog.ids)
    return any(archive_id(path).lower() in known for path in paths if not is_dataset_folder(path))


# ----------------------------------------------------------------------------- which of it


def offered_id(path: Path) -> str:
    """The dataset id a thing ``--from`` found offers: a dataset folder's name, an
    archive's (:func:`archive_id`). Only the name: what it holds is checked at install."""
    return path.name if is_dataset_folder(path) else archive_id(path)


def select_offered(found: Sequence[Path], dataset_ids: Sequence[str]) -> list[Path]:
    """What ``download ID... --from PATH...`` installs: with no ids, everything ``--from``
    found; else, in the order given, the things offering those ids (spelt as the catalog's
    ids may be: case, spaces, ``-`` and ``_`` do not matter). :class:`UsageError` naming
    what is offered when an id is not, before anything is installed."""
    if not dataset_ids:
        return list(found)
    by_id: dict[str, list[Path]] = {}
    for path in found:
        by_id.setdefault(fold_name(offered_id(path)), []).append(path)
    offered = ", ".join(sorted({offered_id(path).lower() for path in found})) or "nothing"
    chosen: list[Path] = []
    for folded, dataset_id in {fold_name(i): i.strip() for i in dataset_ids}.items():
        paths = by_id.get(folded)
        if paths is None:
            raise UsageError(
                f"--from offers no {shown_path(dataset_id.lower())!r}; it offers {offered}",
                hint="Name only ids that --from offers, or leave the ids out to install "
                "everything it offers.",
            )
        chosen.extend(paths)
    return chosen


class OfferAction(str, Enum):
    """What an install from ``--from`` would do with one thing it offers."""

    INSTALL = "install"
    REINSTALL = "reinstall"
    SKIP = "skip: installed"


@dataclass(frozen=True)
class Offered:
    """One thing ``--from`` offers, as ``download --from --dry-run`` shows it (nothing read
    but names and sizes, nothing written)."""

    dataset_id: str
    path: Path
    kind: str
    """``archive`` or ``folder``."""
    size: int
    action: OfferAction

    COLUMNS = ("ID", "KIND", "SIZE", "ACTION", "FROM")

    def row(self) -> list[str]:
        """The table row."""
        return [
            self.dataset_id,
            self.kind,
            human_bytes(self.size),
            self.action.value,
            str(self.path),
        ]

    def to_json(self) -> dict[str, object]:
        """A JSON-ready mapping."""
        return {
            "id": self.dataset_id,
            "kind": self.kind,
            "size": self.size,
            "action": self.action.value,
            "path": str(self.path),
        }


def describe_offered(paths: Sequence[Path], root: Path, *, force: bool) -> list[Offered]:
    """What installing ``paths`` (what :func:`select_offered` chose) would do, read-only:
    a folder is walked as the copy would walk it (so a link in it is told now)."""
    found: list[Offered] = []
    for path in paths:
        dataset_id = offered_id(path)
        if is_dataset_folder(path):
            kind, size = "folder", sum(item.size for item in list_dataset_folder(path)[1])
        else:
            kind, size = "archive", path.stat().st_size
        if not is_installed(root, dataset_id.lower()):
            action = OfferAction.INSTALL
        else:
            action = OfferAction.REINSTALL if force else OfferAction.SKIP
        found.append(Offered(dataset_id, path, kind, size, action))
    return found
