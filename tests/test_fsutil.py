"""``medimeta_cli.fsutil``: atomic writes, space and permission checks, error translation."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from medimeta_cli.errors import DiskSpaceError, PermissionDeniedError
from medimeta_cli.fsutil import (
    TreeRemoval,
    atomic_directory,
    atomic_output,
    atomic_write_bytes,
    atomic_write_text,
    ensure_space,
    ensure_writable_dir,
    human_bytes,
    read_json_object,
    remove_tree,
    require_real_folders,
    translate_os_error,
    unique_suffix,
)
from tests.support.helpers import read_only_view, tmpfs


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A read-only bind mount of a folder holding one file, ``kept.txt``."""
    source, mounted = tmp_path / "src", tmp_path / "ro"
    source.mkdir()
    (source / "kept.txt").write_text("kept")
    with read_only_view(source, mounted):
        yield mounted


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs."""
    with tmpfs(tmp_path / "small") as small:
        yield small


# ----------------------------------------------------------------------------- atomic writes


def test_atomic_write_creates_replaces_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "state.json"
    atomic_write_text(target, "first \u2013 ü")
    assert target.read_bytes() == "first \u2013 ü".encode()
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    atomic_write_bytes(target, b"\x00third")
    assert target.read_bytes() == b"\x00third"
    assert os.listdir(target.parent) == ["state.json"]


def test_a_failed_write_keeps_the_old_content_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state.json"
    atomic_write_text(target, "old")

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["state.json"]

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["state.json"]


def test_a_failed_rename_leaves_no_temp_file(tmp_path: Path) -> None:
    # A folder in the way: the write succeeds, the rename fails.
    blocked = tmp_path / "state.json"
    (blocked / "inside").mkdir(parents=True)
    with pytest.raises(OSError):
        atomic_write_text(blocked, "text")
    assert os.listdir(tmp_path) == ["state.json"]
    assert os.listdir(blocked) == ["inside"]


def test_atomic_output_streams_and_cleans_up_after_a_failure(tmp_path: Path) -> None:
    target = tmp_path / "arrays.npy"
    with atomic_output(target, durable=False) as handle:
        handle.write(b"first ")
        handle.write(b"part")
        assert not target.exists()  # nothing visible until the block ends
    assert target.read_bytes() == b"first part"
    with pytest.raises(RuntimeError), atomic_output(target) as handle:
        handle.write(b"half")
        raise RuntimeError("stopped")
    assert target.read_bytes() == b"first part"
    assert os.listdir(tmp_path) == ["arrays.npy"]


def test_atomic_directory_replaces_the_target_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic_directory(target) as staging:
        assert staging.name.startswith(".out.partial-") and not target.exists()
        (staging / "a.txt").write_text("one")
    assert os.listdir(target) == ["a.txt"]
    with pytest.raises(KeyboardInterrupt), atomic_directory(target) as staging:
        (staging / "b.txt").write_text("two")
        raise KeyboardInterrupt
    assert os.listdir(target) == ["a.txt"]
    with atomic_directory(target) as staging:
        (staging / "c.txt").write_text("three")
    assert os.listdir(target) == ["c.txt"]
    assert os.listdir(tmp_path) == ["out"]


def test_atomic_write_on_a_full_disk(tiny_tmpfs: Path) -> None:
    (tiny_tmpfs / "state.json").write_text("old")
    with pytest.raises(OSError) as caught:
        atomic_write_bytes(tiny_tmpfs / "state.json", bytes(2 << 20))
    assert caught.value.errno == errno.ENOSPC
    assert isinstance(translate_os_error(caught.value, "state.json"), DiskSpaceError)
    assert os.listdir(tiny_tmpfs) == ["state.json"]
    assert (tiny_tmpfs / "state.json").read_text() == "old"


def test_unique_suffix_differs_per_call() -> None:
    assert len({unique_suffix() for _ in range(100)}) == 100
    assert str(os.getpid()) in unique_suffix()


# ----------------------------------------------------------------------------- space


def test_ensure_space_raises_with_the_numbers(tiny_tmpfs: Path) -> None:
    free = shutil.disk_usage(tiny_tmpfs).free
    assert 0 < free <= 1 << 20
    ensure_space(tiny_tmpfs, free, "the archive")  # exactly fits
    needed = 5 << 20
    with pytest.raises(DiskSpaceError) as caught:
        ensure_space(tiny_tmpfs / "not" / "yet", needed, "crc.zip")
    message = caught.value.message
    assert "crc.zip" in message and str(tiny_tmpfs / "not" / "yet") in message
    assert f"need {human_bytes(needed)}" in message and "5.0 MiB" in message
    assert f"{human_bytes(free)} free" in message


def test_ensure_space_on_an_ordinary_disk(tmp_path: Path) -> None:
    ensure_space(tmp_path / "missing" / "folder", 1, "one byte")
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(DiskSpaceError, match=r"need .* free"):
        ensure_space(tmp_path, free + (1 << 40), "a lot")


# ----------------------------------------------------------------------------- permissions


def test_ensure_writable_dir_creates_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    ensure_writable_dir(target)
    ensure_writable_dir(target)
    assert target.is_dir() and os.listdir(target) == []


def test_ensure_writable_dir_on_a_read_only_mount(read_only_dir: Path) -> None:
    with pytest.raises(PermissionDeniedError, match="cannot write to") as caught:
        ensure_writable_dir(read_only_dir)
    assert str(read_only_dir) in caught.value.message
    assert "Read-only" in caught.value.message
    with pytest.raises(PermissionDeniedError):
        ensure_writable_dir(read_only_dir / "new" / "folder")
    assert os.listdir(read_only_dir) == ["kept.txt"]


def test_ensure_writable_dir_on_a_full_disk(tmp_path: Path) -> None:
    # A tmpfs with 3 inodes: its root and two files; the write probe finds no room.
    with tmpfs(tmp_path / "full", "size=1m,nr_inodes=3") as full:
        (full / "a").write_text("a")
        (full / "b").write_text("b")
        with pytest.raises(DiskSpaceError, match="no space left") as caught:
            ensure_writable_dir(full)
        assert str(full) in caught.value.message
        assert sorted(os.listdir(full)) == ["a", "b"]


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_disk_full_errors_become_disk_space_errors(code: int) -> None:
    error = translate_os_error(OSError(code, os.strerror(code)), "crc.zip into /data")
    assert isinstance(error, DiskSpaceError)
    assert "crc.zip into /data" in error.message and os.strerror(code) in error.message


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.EPERM])
def test_read_only_errors_become_permission_errors(code: int) -> None:
    error = translate_os_error(OSError(code, os.strerror(code)), "crc into /data")
    assert isinstance(error, PermissionDeniedError)
    assert "crc into /data" in error.message and os.strerror(code) in error.message


def test_other_errors_pass_through() -> None:
    original = OSError(errno.ENOENT, "No such file or directory")
    assert translate_os_error(original, "x") is original


def test_a_real_read_only_error_is_translated(read_only_dir: Path) -> None:
    with pytest.raises(OSError) as caught:
        (read_only_dir / "new.txt").write_text("x")
    assert caught.value.errno == errno.EROFS
    assert isinstance(translate_os_error(caught.value, "new.txt"), PermissionDeniedError)


# ----------------------------------------------------------------------------- misc


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (10 * 1024**2, "10.0 MiB"),
        (int(2.5 * 1024**3), "2.5 GiB"),
        (3 * 1024**4, "3.0 TiB"),
        (2048 * 1024**4, "2048.0 TiB"),
    ],
)
def test_human_bytes(count: int, text: str) -> None:
    assert human_bytes(count) == text


def test_remove_tree(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "file").write_text("x")
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "file").write_text("keep me")
    link = tmp_path / "link"
    link.symlink_to(kept)
    remove_tree(link)  # the link goes, not what it points to
    assert not link.exists() and (kept / "file").read_text() == "keep me"
    remove_tree(folder)
    remove_tree(folder)  # already gone: fine
    single = tmp_path / "single"
    single.write_text("x")
    remove_tree(single)
    assert sorted(os.listdir(tmp_path)) == ["kept"]


def test_remove_tree_counts_what_it_freed_and_collects_errors(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a").write_bytes(b"x" * 100)
    (folder / "b").write_bytes(b"y" * 20)
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "file").write_bytes(b"keep me")
    (folder / "link").symlink_to(kept, target_is_directory=True)
    removal = remove_tree(folder)
    link_size = len(str(kept))  # a link's own size is the length of its target
    assert (removal.bytes, removal.files, removal.errors) == (120 + link_size, 3, ())
    assert removal.complete and removal.first_error() is None
    assert not folder.exists() and (kept / "file").read_bytes() == b"keep me"
    assert remove_tree(folder) == TreeRemoval(0, 0)  # already gone: nothing freed
    source = tmp_path / "source"
    (source / "inner").mkdir(parents=True)
    (source / "inner" / "file").write_bytes(b"z")
    with read_only_view(source, tmp_path / "ro") as view:
        partial = remove_tree(view / "inner")
    assert not partial.complete and (partial.bytes, partial.files) == (0, 0)
    first = partial.first_error()
    assert first is not None and "Read-only file system" in first
    assert (source / "inner" / "file").exists()


def test_state_files_are_read_without_following_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text('{"pid": 1}')
    assert read_json_object(outside) == {"pid": 1}
    link = tmp_path / "note.json"
    link.symlink_to(outside)
    assert read_json_object(link) is None
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    assert read_json_object(fifo) is None  # and does not block


def test_require_real_folders(tmp_path: Path) -> None:
    from medimeta_cli.errors import LinkRefusedError

    (tmp_path / "real").mkdir()
    (tmp_path / "file").write_text("")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    require_real_folders([tmp_path / "real", tmp_path / "missing"])
    with pytest.raises(LinkRefusedError, match="link is a symbolic link; it is never followed"):
        require_real_folders([tmp_path / "real", tmp_path / "link"])
    with pytest.raises(LinkRefusedError, match="file is not a folder"):
        require_real_folders([tmp_path / "file"])
