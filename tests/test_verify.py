"""``medimeta_cli.verify`` on datasets installed through the real download engine."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from medimeta_cli.catalog import Dataset, load_catalog
from medimeta_cli.layout import RootLayout
from medimeta_cli.records import (
    FileManifest,
    forget_install,
    read_file_manifest,
    read_install_record,
    write_install_record,
)
from medimeta_cli.settings import resolve_settings
from medimeta_cli.status import State, local_status
from medimeta_cli.verify import Problem, hash_blocks, verify_dataset
from tests.helpers import flip_byte, install_from_server, read_only_view
from tests.support import zenodo_server as zs

LABELS = "task_labels/disease labels.npy"


# ----------------------------------------------------------------------------- helpers


@pytest.fixture
def cxr(zenodo: zs.ZenodoServer) -> tuple[RootLayout, Dataset]:
    layout, catalog = install_from_server("cxr")
    return layout, catalog.get("cxr")


def truncate_half(path: Path) -> tuple[int, int]:
    """Cut a file to half its size; return (old size, new size)."""
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)
    return size, size // 2


def kinds(problems: tuple[Problem, ...]) -> set[tuple[str, str]]:
    return {(p.path, p.kind) for p in problems}


def files_on_disk(folder: Path) -> dict[str, int]:
    return {
        p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()
    }


# ----------------------------------------------------------------------------- fast


def test_clean_install_is_ok_in_every_mode(cxr: tuple[RootLayout, Dataset]) -> None:
    layout, dataset = cxr
    record = read_install_record(layout, "cxr")
    assert record is not None
    on_disk = files_on_disk(layout.dataset_dir("cxr"))
    for mode in ("fast", "full", "deep"):
        report = verify_dataset(layout, dataset, mode=mode)
        assert (report.status, report.ok, report.problems) == ("ok", True, ()), report
        assert report.mode == mode
        assert report.files_checked == len(on_disk) == record.file_count
    assert verify_dataset(layout, dataset, mode="fast").bytes_hashed == 0


def test_fast_finds_missing_extra_and_truncated_files(cxr: tuple[RootLayout, Dataset]) -> None:
    layout, dataset = cxr
    folder = layout.dataset_dir("cxr")
    (folder / "images" / "000003.tiff").unlink()
    (folder / "notes.txt").write_text("mine\n")
    (folder / "images" / "copy.tiff").write_bytes(b"II*\x00")
    old, new = truncate_half(folder / LABELS)

    report = verify_dataset(layout, dataset, mode="fast")

    assert (report.status, report.ok) == ("damaged", False)
    assert kinds(report.problems) == {
        ("images/000003.tiff", "missing"),
        ("notes.txt", "extra"),
        ("images/copy.tiff", "extra"),
        (LABELS, "changed"),
    }
    [changed] = [p for p in report.problems if p.kind == "changed"]
    assert f"{new:,}" in changed.detail and f"{old:,}" in changed.detail
    assert changed.describe() == f"changed: {LABELS} ({changed.detail})"


def test_fast_does_not_read_contents_but_full_finds_a_flipped_byte_in_hdf5(
    cxr: tuple[RootLayout, Dataset],
) -> None:
    layout, dataset = cxr
    hdf5 = layout.dataset_dir("cxr") / "images.hdf5"
    flip_byte(hdf5, hdf5.stat().st_size // 2)

    fast = verify_dataset(layout, dataset, mode="fast")
    assert (fast.status, fast.problems) == ("ok", ())

    full = verify_dataset(layout, dataset, mode="full")
    assert (full.status, full.ok) == ("damaged", False)
    assert kinds(full.problems) == {("images.hdf5", "changed")}
    # The damaged file is not "refreshed" into the record: it stays damaged.
    assert not verify_dataset(layout, dataset, mode="full").ok


# ----------------------------------------------------------------------------- full


def test_full_hashes_every_byte_and_agrees_with_the_record(
    cxr: tuple[RootLayout, Dataset],
) -> None:
    layout, dataset = cxr
    folder = layout.dataset_dir("cxr")
    manifest = read_file_manifest(layout, "cxr")
    record = read_install_record(layout, "cxr")
    assert manifest is not None and record is not None
    # The record holds the SHA-256 of each file (all are below one block here).
    for entry in manifest.files:
        data = (folder / entry.path).read_bytes()
        assert entry.size == len(data)
        assert entry.sha256 == (hashlib.sha256(data).hexdigest(),)
    counted: list[int] = []
    report = verify_dataset(layout, dataset, mode="full", jobs=2, on_bytes=counted.append)
    total = sum(files_on_disk(folder).values())
    assert report.ok and report.problems == ()
    assert report.bytes_hashed == total == record.total_bytes == sum(e.size for e in manifest.files)
    assert sum(counted) == total


def test_touched_file_is_changed_for_fast_ok_for_full_and_then_refreshed(
    cxr: tuple[RootLayout, Dataset],
) -> None:
    layout, dataset = cxr
    license_file = layout.dataset_dir("cxr") / "LICENSE"
    info = license_file.stat()
    os.utime(license_file, ns=(info.st_atime_ns, info.st_mtime_ns + 5_000_000_000))

    fast = verify_dataset(layout, dataset, mode="fast")
    assert not fast.ok
    assert kinds(fast.problems) == {("LICENSE", "changed")}

    # Without recording, nothing is refreshed.
    assert verify_dataset(layout, dataset, mode="full", record_result=False).ok
    assert not verify_dataset(layout, dataset, mode="fast", record_result=False).ok

    full = verify_dataset(layout, dataset, mode="full")
    assert (full.status, full.problems) == ("ok", ())
    manifest = read_file_manifest(layout, "cxr")
    assert manifest is not None
    [entry] = [e for e in manifest.files if e.path == "LICENSE"]
    assert entry.mtime_ns == info.st_mtime_ns + 5_000_000_000
    again = verify_dataset(layout, dataset, mode="fast")
    assert (again.status, again.problems) == ("ok", ())


def _rewrite_manifest(layout: RootLayout, block_size: int) -> FileManifest:
    """Re-record every file with a small block size, hashing with ``hash_blocks``."""
    manifest = read_file_manifest(layout, "cxr")
    record = read_install_record(layout, "cxr")
    assert manifest is not None and record is not None
    folder = layout.dataset_dir("cxr")
    files = []
    for entry in manifest.files:
        count = max(1, -(-entry.size // block_size))
        digests = hash_blocks(folder / entry.path, block_size, range(count), lambda n: None)
        files.append(replace(entry, sha256=tuple(digests[i] for i in range(count))))
    small = FileManifest(tuple(files), block_size)
    write_install_record(layout, record, small)
    return small


def test_multi_block_files_are_checked_block_by_block(cxr: tuple[RootLayout, Dataset]) -> None:
    layout, dataset = cxr
    block = 16 * 1024
    hdf5 = layout.dataset_dir("cxr") / "images.hdf5"
    data = hdf5.read_bytes()
    assert len(data) > 4 * block, "the fixture's images.hdf5 should span several blocks"
    manifest = _rewrite_manifest(layout, block)
    [entry] = [e for e in manifest.files if e.path == "images.hdf5"]
    # hash_blocks agrees with hashlib on each slice (the last one may be short).
    assert entry.sha256 == tuple(
        hashlib.sha256(data[i : i + block]).hexdigest() for i in range(0, len(data), block)
    )

    clean = verify_dataset(layout, dataset, mode="full", jobs=3)
    assert (clean.status, clean.problems) == ("ok", ())
    assert clean.bytes_hashed == sum(e.size for e in manifest.files)

    flip_byte(hdf5, 2 * block + 123)  # inside the third block
    assert verify_dataset(layout, dataset, mode="fast").ok
    damaged = verify_dataset(layout, dataset, mode="full", jobs=3)
    assert kinds(damaged.problems) == {("images.hdf5", "changed")}
    assert hashlib.sha256(hdf5.read_bytes()[2 * block : 3 * block]).hexdigest() != entry.sha256[2]


def test_a_record_missing_block_hashes_is_not_taken_as_proof(
    cxr: tuple[RootLayout, Dataset],
) -> None:
    layout, dataset = cxr
    manifest = _rewrite_manifest(layout, 16 * 1024)
    record = read_install_record(layout, "cxr")
    assert record is not None
    files = tuple(
        replace(e, sha256=e.sha256[:2]) if e.path == "images.hdf5" else e for e in manifest.files
    )
    write_install_record(layout, record, FileManifest(files, manifest.block_size))
    report = verify_dataset(layout, dataset, mode="full")
    assert kinds(report.problems) == {("images.hdf5", "changed")}


# ----------------------------------------------------------------------------- deep


def test_deep_finds_a_truncated_label_file(cxr: tuple[RootLayout, Dataset]) -> None:
    layout, dataset = cxr
    truncate_half(layout.dataset_dir("cxr") / LABELS)
    report = verify_dataset(layout, dataset, mode="deep")
    assert (report.status, report.ok) == ("damaged", False)
    structure = [p for p in report.problems if p.kind == "structure"]
    assert [p.path for p in structure] == [LABELS]
    assert structure[0].detail
    # fast and full only see a size change, never a structure problem.
    assert "structure" not in {
        p.kind for p in verify_dataset(layout, dataset, mode="full").problems
    }


# ----------------------------------------------------------------------------- untracked


def test_untracked_dataset_is_ok_and_deep_still_checks_its_structure(
    cxr: tuple[RootLayout, Dataset],
) -> None:
    layout, dataset = cxr
    forget_install(layout, "cxr")
    for mode in ("fast", "full", "deep"):
        report = verify_dataset(layout, dataset, mode=mode)
        assert (report.status, report.ok) == ("untracked", True), report
        assert kinds(report.problems) == {(".", "untracked")}
        assert report.bytes_hashed == 0
    truncate_half(layout.dataset_dir("cxr") / LABELS)
    assert verify_dataset(layout, dataset, mode="full").ok  # nothing to compare with
    deep = verify_dataset(layout, dataset, mode="deep")
    assert (deep.status, deep.ok) == ("damaged", False)
    assert (LABELS, "structure") in kinds(deep.problems)
    # Nothing is recorded for a dataset without a record.
    assert not layout.install_record_path("cxr").exists()
    assert local_status(layout.root, "cxr").state is State.INSTALLED


def test_absent_dataset(zenodo: zs.ZenodoServer, data_root: Path) -> None:
    settings = resolve_settings()
    report = verify_dataset(RootLayout(data_root), load_catalog(settings.catalog).get("crc"))
    assert (report.status, report.ok) == ("absent", False)


# ----------------------------------------------------------------------------- recording


def test_results_are_stamped_into_the_install_record(cxr: tuple[RootLayout, Dataset]) -> None:
    layout, dataset = cxr
    assert local_status(layout.root, "cxr").state is State.INSTALLED

    verify_dataset(layout, dataset, mode="full")
    status = local_status(layout.root, "cxr")
    assert status.state is State.VERIFIED and status.checked_at
    record = read_install_record(layout, "cxr")
    assert record is not None and record.last_check is not None
    assert (record.last_check.ok, record.last_check.mode, record.last_check.problems) == (
        True,
        "full",
        0,
    )

    (layout.dataset_dir("cxr") / "LICENSE").unlink()
    (layout.dataset_dir("cxr") / "extra.txt").write_text("x")
    verify_dataset(layout, dataset, mode="fast")
    assert local_status(layout.root, "cxr").state is State.DAMAGED
    record = read_install_record(layout, "cxr")
    assert record is not None and record.last_check is not None
    assert (record.last_check.ok, record.last_check.mode, record.last_check.problems) == (
        False,
        "fast",
        2,
    )

    # record_result=False leaves the stamp alone.
    (layout.dataset_dir("cxr") / "extra.txt").unlink()
    verify_dataset(layout, dataset, mode="fast", record_result=False)
    assert local_status(layout.root, "cxr").state is State.DAMAGED


@pytest.fixture
def read_only_root(zenodo: zs.ZenodoServer, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(writable source, read-only bind mount of it)."""
    source, mounted = tmp_path / "src", tmp_path / "ro"
    source.mkdir()
    mounted.mkdir()
    install_from_server("cxr", root=source)
    with read_only_view(source, mounted):
        yield source, mounted


def test_read_only_root_can_be_verified(read_only_root: tuple[Path, Path]) -> None:
    source, mounted = read_only_root
    layout = RootLayout(mounted)
    dataset = load_catalog(resolve_settings().catalog).get("cxr")
    with pytest.raises(OSError):
        (mounted / "probe").write_text("x")
    record_before = layout.install_record_path("cxr").read_bytes()

    for mode in ("fast", "full", "deep"):
        report = verify_dataset(layout, dataset, mode=mode)
        assert (report.status, report.problems) == ("ok", ()), report
    assert layout.install_record_path("cxr").read_bytes() == record_before
    assert local_status(mounted, "cxr").state is State.INSTALLED

    # Damage made through the writable side is still found through the read-only one.
    hdf5 = source / "cxr" / "images.hdf5"
    flip_byte(hdf5, 100)
    license_file = source / "cxr" / "LICENSE"
    os.utime(license_file, ns=(0, license_file.stat().st_mtime_ns + 10**9))
    full = verify_dataset(layout, dataset, mode="full")
    assert kinds(full.problems) == {("images.hdf5", "changed")}
    # The touched file could not be re-stamped, so fast still flags it.
    assert (
        "LICENSE",
        "changed",
    ) in kinds(verify_dataset(layout, dataset, mode="fast").problems)
    assert layout.install_record_path("cxr").read_bytes() == record_before
