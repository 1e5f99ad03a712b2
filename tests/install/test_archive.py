"""``medimeta_cli.install.archive``: safe inspection and extraction of real upstream-layout
archives."""

from __future__ import annotations

import hashlib
import shutil
import struct
import warnings
import zipfile
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from medimeta_cli.catalog.datasets import Dataset, SplitCounts
from medimeta_cli.catalog.file import load_catalog
from medimeta_cli.errors import IntegrityError
from medimeta_cli.install.archive import (
    ArchiveListing,
    HashedWriter,
    extract_archive,
    inspect_archive,
    member_cap,
    member_path,
)
from medimeta_cli.store.records import HASH_BLOCK_SIZE
from tests.conftest import FixtureData
from tests.support import archives


@pytest.fixture
def cxr(fixture_data: FixtureData) -> Dataset:
    return load_catalog(fixture_data.catalog).get("cxr")


def inspect(path: Path, dataset: Dataset) -> ArchiveListing:
    return inspect_archive(path, dataset, archive_size=path.stat().st_size)


def write_zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "w") as handle:
            for name, data in members:
                handle.writestr(name, data)
    return path


def block_hashes(data: bytes, block: int) -> tuple[str, ...]:
    if not data:
        return (hashlib.sha256(b"").hexdigest(),)
    return tuple(
        hashlib.sha256(data[i : i + block]).hexdigest() for i in range(0, len(data), block)
    )


# ----------------------------------------------------------------------------- inspect


def test_a_genuine_archive_is_accepted(fixture_data: FixtureData, cxr: Dataset) -> None:
    path = fixture_data.archive("cxr")
    listing = inspect(path, cxr)
    with zipfile.ZipFile(path) as handle:
        names = handle.namelist()
        total = sum(info.file_size for info in handle.infolist())
    assert [m.filename for m in listing.members] == names
    assert listing.total_bytes == total > 0
    files = sorted(n.removeprefix("cxr/") for n in names if not n.endswith("/"))
    assert files == archives.expected_files(fixture_data.specs["cxr"])


@pytest.mark.parametrize(
    ("kind", "member", "reason"),
    [
        ("zip_slip", "cxr/../../evil.txt", "outside the dataset folder"),
        ("absolute", archives.ABSOLUTE_EVIL_MEMBER, "absolute path"),
        ("symlink", "cxr/evil_link", "symbolic link"),
    ],
)
def test_unsafe_members_are_refused(
    tmp_path: Path, cxr: Dataset, kind: archives.MaliciousKind, member: str, reason: str
) -> None:
    path = archives.build_malicious_archive(tmp_path, "cxr", kind)
    with pytest.raises(IntegrityError, match=reason) as caught:
        inspect(path, cxr)
    assert repr(member) in caught.value.message
    assert "not a genuine MedIMeta archive" in caught.value.hint


def test_members_outside_the_dataset_folder_are_refused(
    tmp_path: Path, fixture_data: FixtureData, cxr: Dataset
) -> None:
    # A whole genuine archive of another dataset: nothing is below cxr/.
    with pytest.raises(IntegrityError, match=r"not inside the cxr/ folder"):
        inspect(fixture_data.archive("crc"), cxr)
    stray = write_zip(tmp_path / "cxr.zip", [("cxr/info.yaml", b"id: cxr\n"), ("README", b"hi")])
    with pytest.raises(IntegrityError, match=r"'README' is not inside the cxr/ folder"):
        inspect(stray, cxr)
    # A prefix that merely starts like the id is not the folder either.
    lookalike = write_zip(tmp_path / "other.zip", [("cxr_extra/info.yaml", b"id: cxr\n")])
    with pytest.raises(IntegrityError, match="not inside"):
        inspect(lookalike, cxr)


def test_duplicate_members_are_refused(tmp_path: Path, cxr: Dataset) -> None:
    ok = write_zip(tmp_path / "ok.zip", [("cxr/info.yaml", b"a"), ("cxr/LICENSE", b"b")])
    assert len(inspect(ok, cxr).members) == 2
    twice = write_zip(tmp_path / "cxr.zip", [("cxr/info.yaml", b"a"), ("cxr/info.yaml", b"b")])
    with pytest.raises(IntegrityError, match=r"'cxr/info\.yaml' appears twice"):
        inspect(twice, cxr)
    # Spellings of the same path are the same member.
    for other in ("cxr/./info.yaml", "cxr//info.yaml", "cxr\\info.yaml"):
        same = write_zip(tmp_path / "cxr.zip", [("cxr/info.yaml", b"a"), (other, b"b")])
        with pytest.raises(IntegrityError, match="appears twice"):
            inspect(same, cxr)


def _zeros_archive(path: Path, size: int) -> Path:
    """A small archive whose one member declares ``size`` bytes (deflated zeros)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as handle:
        handle.writestr("cxr/info.yaml", b"id: cxr\n")
        with handle.open("cxr/images.hdf5", "w") as sink:
            chunk = bytes(1 << 20)
            for _ in range(size // len(chunk)):
                sink.write(chunk)
            sink.write(bytes(size % len(chunk)))
    return path


def with_samples(dataset: Dataset, count: int) -> Dataset:
    """The dataset shrunk or grown to ``count`` images, all in train."""
    splits = SplitCounts(train=count, val=0, test=0)
    return replace(dataset, num_samples=count, splits=splits, original_splits=splits)


def test_archives_declaring_too_many_bytes_are_refused(tmp_path: Path, cxr: Dataset) -> None:
    tiny = with_samples(cxr, 1)
    small = _zeros_archive(tmp_path / "small.zip", 4 << 20)
    assert inspect(small, tiny).total_bytes == (4 << 20) + 8

    bomb = _zeros_archive(tmp_path / "cxr.zip", 300 << 20)
    archive_size = bomb.stat().st_size
    assert archive_size < 4 << 20  # tiny on disk...
    declared = 300 << 20
    limit = member_cap("images.hdf5", tiny)
    assert limit is not None
    assert declared > limit  # ...but more than one image can justify
    with pytest.raises(IntegrityError, match=f"declares {declared:,} bytes") as caught:
        inspect(bomb, tiny)
    assert f"({limit:,})" in caught.value.message
    # Enough images justify it (images.hdf5 holds them once, plus overhead).
    assert inspect(bomb, with_samples(cxr, 6_000)).total_bytes == declared + 8


def test_a_file_that_is_not_a_zip_is_refused(tmp_path: Path, cxr: Dataset) -> None:
    page = tmp_path / "cxr.zip"
    page.write_text("<html><body>Zenodo is in maintenance</body></html>")
    with pytest.raises(IntegrityError, match="not a readable zip archive"):
        inspect(page, cxr)
    with pytest.raises(IntegrityError, match="not a readable zip archive"):
        inspect_archive(tmp_path / "missing.zip", cxr, archive_size=0)


# ----------------------------------------------------------------------------- extract


def test_extract_writes_exactly_the_members_with_their_hashes(
    tmp_path: Path, fixture_data: FixtureData, cxr: Dataset
) -> None:
    path = fixture_data.archive("cxr")
    listing = inspect(path, cxr)
    dest = tmp_path / "staging" / "cxr"
    counted: list[int] = []
    entries = extract_archive(path, cxr, listing, dest, on_bytes=counted.append)

    written = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert written == archives.expected_files(fixture_data.specs["cxr"])
    assert sorted(e.path for e in entries) == written
    assert list((tmp_path / "staging").iterdir()) == [dest]  # nothing written beside it
    with zipfile.ZipFile(path) as handle:
        for entry in entries:
            data = (dest / entry.path).read_bytes()
            assert data == handle.read(f"cxr/{entry.path}")
            assert entry.size == len(data)
            assert entry.sha256 == block_hashes(data, HASH_BLOCK_SIZE)
            assert entry.mtime_ns == (dest / entry.path).stat().st_mtime_ns
    assert sum(counted) == listing.total_bytes


@pytest.mark.parametrize("workers", [1, 2, 5])
def test_extract_threads_give_the_same_files_in_archive_order(
    tmp_path: Path, fixture_data: FixtureData, cxr: Dataset, workers: int
) -> None:
    path = fixture_data.archive("cxr")
    listing = inspect(path, cxr)
    alone = extract_archive(path, cxr, listing, tmp_path / "alone", workers=1)
    together = extract_archive(path, cxr, listing, tmp_path / "together", workers=workers)
    assert together == tuple(
        replace(entry, mtime_ns=(tmp_path / "together" / entry.path).stat().st_mtime_ns)
        for entry in alone
    )
    in_archive_order = [member_path(m) for m in listing.members if not m.is_dir()]
    assert [entry.path for entry in together] == in_archive_order


def test_a_stop_seen_by_one_thread_stops_the_others(
    tmp_path: Path, fixture_data: FixtureData, cxr: Dataset
) -> None:
    path = fixture_data.archive("cxr")
    listing = inspect(path, cxr)
    seen: list[str] = []

    def stop_after_three() -> bool:
        seen.append("asked")
        return len(seen) > 3

    with pytest.raises(KeyboardInterrupt):
        extract_archive(
            path, cxr, listing, tmp_path / "out", workers=2, should_stop=stop_after_three
        )
    files = [f for f in (tmp_path / "out").rglob("*") if f.is_file()]
    # each thread finishes at most the member it had started
    assert len(files) <= 3 + 2


def test_extract_hashes_large_files_block_by_block(
    tmp_path: Path,
    fixture_data: FixtureData,
    cxr: Dataset,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    block = 100_000  # not a divisor of the 1 MiB copy chunk, so blocks straddle chunks
    monkeypatch.setattr("medimeta_cli.install.archive.HASH_BLOCK_SIZE", block)
    path = fixture_data.archive("cxr")
    entries = extract_archive(path, cxr, inspect(path, cxr), tmp_path / "cxr")
    [hdf5] = [e for e in entries if e.path == "images.hdf5"]
    data = (tmp_path / "cxr" / "images.hdf5").read_bytes()
    assert len(hdf5.sha256) == -(-len(data) // block) > 3
    assert hdf5.sha256 == block_hashes(data, block)
    # Files below one block still get exactly one hash.
    [license_entry] = [e for e in entries if e.path == "LICENSE"]
    assert license_entry.sha256 == block_hashes((tmp_path / "cxr" / "LICENSE").read_bytes(), block)


def test_odd_spellings_of_member_names_stay_inside_the_folder(tmp_path: Path, cxr: Dataset) -> None:
    # "cxr/" + "/<abs path>": a naive "strip the prefix" makes this an absolute path.
    escape = tmp_path / "escaped.txt"
    path = write_zip(
        tmp_path / "cxr.zip",
        [("cxr/info.yaml", b"id: cxr\n"), (f"cxr/{escape}", b"out"), ("cxr/./notes.txt", b"n")],
    )
    dest = tmp_path / "out" / "cxr"
    entries = extract_archive(path, cxr, inspect(path, cxr), dest)
    assert not escape.exists()
    inside = escape.relative_to("/").as_posix()
    assert sorted(e.path for e in entries) == sorted(["info.yaml", inside, "notes.txt"])
    assert (dest / inside).read_bytes() == b"out"
    assert (dest / "notes.txt").read_bytes() == b"n"


def _data_offset(path: Path, name: str) -> tuple[int, int]:
    """Where a stored member's bytes start in the zip file, and how many there are."""
    with zipfile.ZipFile(path) as handle:
        info = handle.getinfo(name)
    assert info.compress_type == zipfile.ZIP_STORED
    with open(path, "rb") as raw:
        raw.seek(info.header_offset)
        header = raw.read(30)
    assert header[:4] == b"PK\x03\x04"
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def test_a_member_with_a_wrong_crc_is_an_integrity_error(
    tmp_path: Path, fixture_data: FixtureData, cxr: Dataset
) -> None:
    path = shutil.copyfile(fixture_data.archive("cxr"), tmp_path / "cxr.zip")
    start, size = _data_offset(path, "cxr/images.hdf5")
    with open(path, "r+b") as raw:
        raw.seek(start + size // 2)
        value = raw.read(1)[0]
        raw.seek(start + size // 2)
        raw.write(bytes([value ^ 0x01]))
    listing = inspect(path, cxr)  # the directory is intact, so inspection passes
    with pytest.raises(IntegrityError, match="damaged") as caught:
        extract_archive(path, cxr, listing, tmp_path / "out")
    assert "images.hdf5" in caught.value.message


# ----------------------------------------------------------------------------- malformed names


LONG_NAME = "cxr/" + "n" * 300


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ([(LONG_NAME, b"x")], "has a name part longer than 255 bytes"),
        ([("cxr/" + "/".join(["d" * 200] * 25), b"x")], "has a path longer than 4096 bytes"),
        ([("cxr/clash", b"x"), ("cxr/clash/inner.txt", b"y")], "other members need a folder"),
        ([("cxr/clash/inner.txt", b"y"), ("cxr/clash", b"x")], "other members need a folder"),
        ([("cxr/clash/", None), ("cxr/clash", b"x")], "other members need a folder"),
    ],
    ids=["name-too-long", "path-too-long", "file-then-folder", "folder-then-file", "dir-entry"],
)
def test_malformed_member_names_are_refused_before_extraction(
    tmp_path: Path,
    fixture_data: FixtureData,
    cxr: Dataset,
    extra: list[tuple[str, bytes | None]],
    reason: str,
) -> None:
    """#9 item 10: such names ended in raw OSError messages while extracting."""
    path = archives.rewrite_archive(fixture_data.archive("cxr"), tmp_path / "bad", extra=extra)
    with pytest.raises(IntegrityError, match=reason) as caught:
        inspect(path, cxr)
    assert "the archive is malformed:" in caught.value.message
    assert "not a genuine MedIMeta archive" in caught.value.hint


def test_a_member_that_cannot_be_written_is_a_malformed_archive(
    tmp_path: Path, fixture_data: FixtureData, cxr: Dataset
) -> None:
    """Whatever the checks before extraction miss, a name the file system refuses is the
    archive's fault (exit 4), not a raw OSError. Here the listing is not re-checked, as
    for members fetched by range requests and listed earlier."""
    path = archives.rewrite_archive(
        fixture_data.archive("cxr"), tmp_path / "bad", extra=[(LONG_NAME, b"x")]
    )
    with zipfile.ZipFile(path) as handle:
        listing = ArchiveListing(tuple(handle.infolist()), 0)
    with pytest.raises(IntegrityError, match=r"the archive is malformed: .* cannot be written"):
        extract_archive(path, cxr, listing, tmp_path / "out")


def test_a_hashed_writer_never_writes_through_a_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"keep me")
    target = tmp_path / "staging" / "images.hdf5"
    target.parent.mkdir()
    target.symlink_to(outside)
    for append in (False, True):
        with pytest.raises(OSError, match=r"symbolic link|Too many levels"):
            HashedWriter(target, "images.hdf5", append=append)
    assert outside.read_bytes() == b"keep me"


def test_a_hashed_writer_empties_a_file_that_is_not_empty(tmp_path: Path) -> None:
    target = tmp_path / "staging" / "info.yaml"
    target.parent.mkdir()
    target.write_bytes(b"an older, longer content")
    writer = HashedWriter(target, "info.yaml")
    writer.write(b"new")
    entry = writer.finish()
    assert target.read_bytes() == b"new"
    assert entry.size == 3
    assert entry.sha256 == (hashlib.sha256(b"new").hexdigest(),)
    assert entry.mtime_ns == target.stat().st_mtime_ns


def test_a_hashed_writer_makes_its_folder(tmp_path: Path) -> None:
    target = tmp_path / "staging" / "images" / "000001.tiff"
    writer = HashedWriter(target, "images/000001.tiff")
    writer.store(b"stored ")
    writer.hash(b"stored ")
    writer.write(b"and written")
    entry = writer.finish()
    assert target.read_bytes() == b"stored and written"
    assert entry.sha256 == (hashlib.sha256(b"stored and written").hexdigest(),)
    assert writer.crc == zlib.crc32(b"stored and written")


@pytest.mark.parametrize("made", [True, False])
def test_a_writer_told_its_file_was_made_ahead_makes_it_when_it_was_not(
    tmp_path: Path, made: bool
) -> None:
    target = tmp_path / "staging" / "images" / "000002.tiff"
    if made:
        target.parent.mkdir(parents=True)
        target.write_bytes(b"")
    writer = HashedWriter(target, "images/000002.tiff", made_ahead=True)
    writer.write(b"tiff")
    assert writer.finish().size == 4
    assert target.read_bytes() == b"tiff"
