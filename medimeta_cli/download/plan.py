"""What a download would fetch, how large it is, and whether it fits on disk.

``download --dry-run``, ``download`` itself (its space check before the first byte)
and ``doctor`` (its disk-space check) all plan with :func:`plan_download`, so the
three agree on what is skipped and on the space needed. ``info`` shows both
layouts' sizes with :func:`archive_sizes`.

Only the standard library and light modules of this package are imported at the
top: ``info`` imports this module and must not load httpx, h5py, numpy or Pillow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from medimeta_cli.catalog.datasets import Dataset, file_download_url
from medimeta_cli.dataset.layouts import ArchiveLayout, sizes_key
from medimeta_cli.fetch.connections import ConnectionBudget
from medimeta_cli.fetch.window import WINDOW_FROM, window_bytes
from medimeta_cli.fsutil import free_bytes, human_bytes
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.partials import partial_bytes
from medimeta_cli.store.records import saved_archive_sizes
from medimeta_cli.store.status import installed_copy

if TYPE_CHECKING:
    from medimeta_cli.settings import Settings
    from medimeta_cli.zenodo.record import ArchiveInfo, Manifest


class ItemState(str, Enum):
    """Where one archive of a plan stands."""

    INSTALLED = "installed"  # here or in a shared root: nothing to fetch
    PARTIAL = "partial"  # an earlier run left some bytes
    ABSENT = "absent"
    NOT_IN_RECORD = "not_in_record"  # the record lists no such archive: nothing to fetch

    @property
    def label(self) -> str:
        """How the state reads in a table."""
        return "not in the record" if self is ItemState.NOT_IN_RECORD else self.value


@dataclass(frozen=True)
class PlanItem:
    """One archive of a download plan."""

    dataset_id: str
    key: str
    url: str
    size: int | None
    md5: str | None
    state: ItemState
    partial_bytes: int = 0
    hdf5_size: int | None = None  # what --layout hdf5 fetches, when known
    archive_layout: ArchiveLayout = ArchiveLayout.FULL

    @property
    def pending(self) -> bool:
        """Whether the archive still has to be fetched."""
        return self.state is not ItemState.INSTALLED

    @property
    def to_fetch(self) -> int:
        """Bytes still to transfer (0 when installed or unknown)."""
        size = (
            self.hdf5_size
            if self.archive_layout is ArchiveLayout.HDF5 and self.hdf5_size
            else self.size
        )
        if not self.pending or size is None:
            return 0
        return max(0, size - self.partial_bytes)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "id": self.dataset_id,
            "key": self.key,
            "url": self.url,
            "size": self.size,
            "md5": self.md5,
            "state": self.state.value,
            "partial_bytes": self.partial_bytes,
            "hdf5_size": self.hdf5_size,
            "layout": self.archive_layout.value,
            "to_fetch": self.to_fetch,
        }

    def row(self) -> list[str]:
        """A table row: id, archive, both layouts' sizes, state, bytes to fetch."""
        state = self.state.label
        if self.partial_bytes:
            state += f" ({human_bytes(self.partial_bytes)})"
        return [
            self.dataset_id,
            self.key,
            "?" if self.size is None else human_bytes(self.size),
            "?" if self.hdf5_size is None else human_bytes(self.hdf5_size),
            state,
            human_bytes(self.to_fetch),
        ]


@dataclass(frozen=True)
class Plan:
    """What a download would do, and whether it fits on disk."""

    items: tuple[PlanItem, ...]
    needed_bytes: int
    free_bytes: int
    record_version: str | None
    #: Whole archives are installed while they download: no archive on disk.
    stream: bool = False
    #: Whether a manifest (fetched or saved) gave sizes and md5s; False offline without one.
    manifest_known: bool = True
    #: The files the record holds (what to name when it lacks the archives asked for).
    record_files: tuple[str, ...] = ()

    @property
    def to_fetch(self) -> int:
        """Bytes to transfer in all."""
        return sum(item.to_fetch for item in self.items)

    @property
    def pending(self) -> tuple[PlanItem, ...]:
        """The items still to fetch."""
        return tuple(item for item in self.items if item.pending)

    @property
    def not_in_record(self) -> tuple[PlanItem, ...]:
        """The items whose archive the record does not list."""
        return tuple(item for item in self.items if item.state is ItemState.NOT_IN_RECORD)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "items": [item.to_json() for item in self.items],
            "to_fetch": self.to_fetch,
            "needed_bytes": self.needed_bytes,
            "free_bytes": self.free_bytes,
            "record_version": self.record_version,
            "stream": self.stream,
        }

    #: Headers of :meth:`PlanItem.row`.
    COLUMNS = ("ID", "ARCHIVE", "FULL", "HDF5 LAYOUT", "STATE", "TO FETCH")

    def summary(self) -> str:
        """One line: bytes to fetch, disk needed and free, and whether it fits."""
        fits = "" if self.needed_bytes <= self.free_bytes else "  -- NOT ENOUGH SPACE"
        streamed = " (installed while downloading)" if self.stream else ""
        return (
            f"to fetch: {human_bytes(self.to_fetch)}; disk needed: "
            f"{human_bytes(self.needed_bytes)}{streamed}; free: "
            f"{human_bytes(self.free_bytes)}{fits}"
        )


class UrlFormat(str, Enum):
    """How ``download --print-urls`` writes the archives' URLs for other downloaders; each
    form makes its tool save the archive as ``<id>.zip``, which ``--from`` installs."""

    TSV = "tsv"  # URL, size, md5, file name (tab-separated), for scripts
    ARIA2C = "aria2c"  # aria2c -c -i FILE: each URL with its out= name and md5 checksum
    CURL = "curl"  # curl -K FILE: url/output pairs; follows redirects, resumes
    WGET = "wget"  # wget -c --content-disposition -i FILE: the name from the server's header


def _curl_quoted(value: str) -> str:
    """A string value of a curl config file."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def url_lines(items: Sequence[PlanItem], url_format: UrlFormat) -> list[str]:
    """The lines of a URL list in ``url_format`` for these items (those the record lacks
    are left out: their URL would only answer 404). File names are the catalog's
    ``<id>.zip``, never a name from the network."""
    items = [item for item in items if item.state is not ItemState.NOT_IN_RECORD]
    lines: list[str] = []
    if url_format is UrlFormat.CURL and items:
        # For every URL below: resume a partial file, follow redirects. Not "fail": it makes
        # the 416 of an archive already complete an error (without it curl ignores that
        # answer); a wrong file is refused by the md5 check of --from all the same.
        lines += ["continue-at = -", "location"]
    for item in items:
        if url_format is UrlFormat.TSV:
            size = "" if item.size is None else str(item.size)
            lines.append(f"{item.url}\t{size}\t{item.md5 or ''}\t{item.key}")
        elif url_format is UrlFormat.ARIA2C:
            lines += [item.url, f"  out={item.key}"]
            if item.md5 is not None:
                lines.append(f"  checksum=md5={item.md5}")
        elif url_format is UrlFormat.CURL:
            lines += [f"url = {_curl_quoted(item.url)}", f"output = {_curl_quoted(item.key)}"]
        else:
            lines.append(item.url)
    return lines


def space_needed(
    items: Sequence[PlanItem], parallel_archives: int, connections: int | None = None
) -> int:
    """Extraction of everything plus the largest archives that exist at the same time
    (``parallel_archives`` 0: installed while downloading, no archive on disk). With
    ``connections``, archives installed while they download in pieces (the default for
    large ones, :mod:`medimeta_cli.fetch.windowed`) count only their window of pieces."""
    pending = [item for item in items if item.pending and item.size is not None]
    extraction = sum(item.size or 0 for item in pending)  # stored zips unpack to about their size
    if parallel_archives == 0:
        return extraction
    downloads = sorted((_on_disk(item, connections) for item in pending), reverse=True)
    return extraction + sum(downloads[: max(1, parallel_archives)])


def _on_disk(item: PlanItem, connections: int | None) -> int:
    """The most of an archive's bytes on disk at once while it is fetched."""
    size = item.size or 0
    if connections is None or connections < 2 or item.partial_bytes or size < WINDOW_FROM:
        return item.to_fetch
    return window_bytes(size, ConnectionBudget(connections))


#: Reads an archive's directory online and returns its hdf5 layout's size (None when the
#: server cannot tell); given to :func:`plan_download` when it may use the network.
ListedSize = Callable[[Dataset, "ArchiveInfo"], "int | None"]


def plan_download(
    settings: Settings,
    datasets: Sequence[Dataset],
    manifest: Manifest | None,
    *,
    force: bool = False,
    jobs: int = 2,
    keep_archive: bool = False,
    archive_layout: ArchiveLayout = ArchiveLayout.FULL,
    with_masks: bool = False,
    listed_size: ListedSize | None = None,
    stream: bool = False,
) -> Plan:
    """Sizes (of both layouts where known), URLs and states of the archives, and the disk
    space a download needs.

    Datasets installed in the data root or a shared root are planned as installed (nothing
    to fetch) unless ``force``. Without a manifest sizes are unknown. For the hdf5 layout,
    sizes saved by earlier downloads are used, else ``listed_size`` (when given) reads them.
    Whole archives need room for extraction plus the ``jobs`` largest archives at once (all
    of them with ``keep_archive``); hdf5 installs, and whole archives installed while
    downloading (``stream``), write members straight into place.
    """
    root_layout = RootLayout(settings.root)
    items = []
    for dataset in datasets:
        info = manifest.files.get(dataset.archive) if manifest else None
        installed = not force and installed_copy(settings, dataset) is not None
        done = 0
        if not installed:
            done = partial_bytes(root_layout, dataset.archive, info.md5 if info else None)
        hdf5_size = None
        if info is not None:
            saved = saved_archive_sizes(root_layout, info.key, info.md5)
            hdf5_size = saved.get(sizes_key(ArchiveLayout.HDF5, with_masks=with_masks))
            wanted = archive_layout is ArchiveLayout.HDF5 and not installed
            if hdf5_size is None and wanted and listed_size is not None:
                hdf5_size = listed_size(dataset, info)
        state = ItemState.PARTIAL if done else ItemState.ABSENT
        if manifest is not None and info is None:
            state = ItemState.NOT_IN_RECORD
        items.append(
            PlanItem(
                dataset_id=dataset.id,
                key=dataset.archive,
                url=info.url
                if info
                else file_download_url(settings.base_url, settings.record_id, dataset.archive),
                size=info.size if info else None,
                md5=info.md5 if info else None,
                state=ItemState.INSTALLED if installed else state,
                partial_bytes=done,
                hdf5_size=hdf5_size,
                archive_layout=archive_layout,
            )
        )
    parallel = len(items) if keep_archive else 0 if stream else jobs
    return Plan(
        items=tuple(items),
        needed_bytes=sum(i.to_fetch for i in items)
        if archive_layout is ArchiveLayout.HDF5
        else space_needed(items, parallel, None if keep_archive else settings.connections),
        free_bytes=free_bytes(settings.root),
        record_version=manifest.version if manifest else None,
        stream=stream and archive_layout is ArchiveLayout.FULL and not keep_archive,
        manifest_known=manifest is not None,
        record_files=tuple(manifest.files) if manifest else (),
    )


def estimated_hdf5_bytes(full_size: int, num_samples: int, pixels_per_image: int) -> int:
    """What the hdf5 layout of an archive takes when its directory has not been read yet:
    the archive less one uncompressed TIFF (pixels plus about 200 bytes of header) per image."""
    return max(0, full_size - num_samples * (pixels_per_image + 200))


def archive_sizes(dataset: Dataset, settings: Settings) -> dict[str, Any]:
    """Both layouts' sizes: exact when a download has read the archive, else estimated."""
    sizes = saved_archive_sizes(RootLayout(settings.root), dataset.archive)
    full = sizes.get(sizes_key(ArchiveLayout.FULL))
    hdf5 = sizes.get(sizes_key(ArchiveLayout.HDF5))
    estimated = hdf5 is None and full is not None
    if estimated and full is not None:
        size = dataset.input_size
        hdf5 = estimated_hdf5_bytes(
            full, dataset.num_samples, size.channels * size.height * size.width
        )
    return {"full": full, "hdf5": hdf5, "hdf5_estimated": estimated}
