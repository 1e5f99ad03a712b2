"""``medimeta_cli.store.partials``: partial downloads are claimed, resumed, discarded and kept."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from medimeta_cli.catalog.file import load_catalog
from medimeta_cli.errors import DiskSpaceError, NetworkError, PermissionDeniedError
from medimeta_cli.events import Notice
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.ownership import owner_stamp
from medimeta_cli.store.partials import claim_partial, partial_bytes
from medimeta_cli.store.records import read_install_record
from medimeta_cli.store.status import State, local_status
from medimeta_cli.zenodo.record import ArchiveInfo
from tests.conftest import FixtureData
from tests.support import archives
from tests.support import zenodo_server as zs
from tests.support.helpers import make_downloader, tmpfs


def test_resume_across_runs(zenodo: zs.ZenodoServer, data_root: Path) -> None:
    size = zenodo.file_size("crc.zip")
    cut = size // 2
    zenodo.inject("crc.zip", zs.cut_after(cut))
    first, _ = make_downloader(retries=0)
    [failed] = first.download([first.catalog.get("crc")])
    assert isinstance(failed.error, NetworkError)
    assert not (data_root / "crc").exists()
    [part] = (data_root / ".medimeta" / "partial").glob("crc.zip.*.part")
    assert part.stat().st_size == cut
    second, _ = make_downloader()
    [outcome] = second.download([second.catalog.get("crc")])
    assert outcome.status == "installed"
    assert outcome.resumed_from == cut
    assert outcome.downloaded_bytes == size - cut
    assert zenodo.requests_for("crc.zip", method="GET")[-1].range == f"bytes={cut}-"
    assert zenodo.bytes_sent("crc.zip") == size


def test_partial_of_an_old_version_is_discarded(
    zenodo: zs.ZenodoServer, data_root: Path, fixture_data: FixtureData, tmp_path: Path
) -> None:
    zenodo.inject("crc.zip", zs.cut_after(4000))
    make_downloader(retries=0)[0].download([load_catalog(fixture_data.catalog).get("crc")])
    changed = archives.DatasetSpec(**{**vars(fixture_data.specs["crc"]), "seed": 7})
    zenodo.replace_file("crc.zip", archives.build_archive(changed, tmp_path))
    downloader, events = make_downloader()
    [outcome] = downloader.download([downloader.catalog.get("crc")])
    assert outcome.status == "installed" and outcome.resumed_from == 0
    assert any("another version" in e.message for e in events if isinstance(e, Notice))
    record = read_install_record(RootLayout(data_root), "crc")
    assert record is not None and record.archive_md5 == zenodo.file_md5("crc.zip")


def test_disk_filling_up_mid_transfer_keeps_the_partial(
    zenodo: zs.ZenodoServer,
    tmp_path: Path,
    fixture_data: FixtureData,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    size = zenodo.file_size("crc.zip")
    with tmpfs(tmp_path / "small", f"size={size // 2}") as small:
        downloader, _ = make_downloader(root=small)
        # Pretend the space check passed, as it may when another job fills the disk meanwhile.
        import medimeta_cli.download.run as engine

        monkeypatch.setattr(engine, "ensure_space", lambda *a, **k: None)
        [outcome] = downloader.download([downloader.catalog.get("crc")])
        assert isinstance(outcome.error, DiskSpaceError)
        [part] = (small / ".medimeta" / "partial").glob("crc.zip.*.part")
        assert 0 < part.stat().st_size < size


def test_keep_archive(zenodo: zs.ZenodoServer, data_root: Path) -> None:
    downloader, _ = make_downloader()
    downloader.download([downloader.catalog.get("cxr")], keep_archive=True)
    kept = data_root / ".medimeta" / "archives" / "cxr.zip"
    assert archives.md5_of(kept) == zenodo.file_md5("cxr.zip")


def _leave_partial(
    layout: RootLayout, info: ArchiveInfo, name: str, size: int, **sidecar: object
) -> Path:
    """A partial download as another job leaves it: ``<key>.<name>.part`` and its sidecar."""
    layout.partial_dir.mkdir(parents=True, exist_ok=True)
    part = layout.partial_dir / f"{info.key}.{name}.part"
    part.write_bytes(b"x" * size)
    data = {"key": info.key, "size": info.size, "md5": info.md5, "host": "elsewhere", "pid": 1}
    part.with_suffix(".json").write_text(json.dumps({**data, **sidecar}))
    os.utime(part, (1, 1))  # untouched for ages: its job on another host is gone
    return part


def test_the_largest_partial_of_this_version_is_claimed_and_stamped(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path)
    info = ArchiveInfo("crc.zip", 1000, "a" * 32, "http://x/crc.zip")
    _leave_partial(layout, info, "small", 10)
    _leave_partial(layout, info, "large", 300)
    _leave_partial(layout, info, "old", 500, md5="b" * 32)
    notices: list[str] = []
    mine = claim_partial(layout, info, notices.append)
    assert mine.size() == 300 and mine.resume_offset(info.size) == 300
    assert json.loads(mine.sidecar.read_text())["pid"] == os.getpid()
    assert json.loads(mine.sidecar.read_text())["host"] == owner_stamp()["host"]
    assert notices == ["discarding a partial download of another version of crc.zip"]
    assert partial_bytes(layout, "crc.zip", info.md5) == 300
    assert sorted(p.name.split(".")[2] for p in layout.partial_dir.glob("*.part")) == sorted(
        [mine.part.name.split(".")[2], "small"]
    )


def test_a_partial_a_live_job_writes_is_left_alone(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path)
    info = ArchiveInfo("crc.zip", 1000, "a" * 32, "http://x/crc.zip")
    busy = _leave_partial(layout, info, "busy", 300, **{**owner_stamp(), "pid": os.getppid()})
    mine = claim_partial(layout, info, lambda message: None)
    assert busy.exists() and mine.part != busy and mine.size() == 0
    assert json.loads(mine.sidecar.read_text())["url"] == info.url


def test_a_partial_larger_than_the_archive_starts_over_and_finish_keeps_or_drops(
    tmp_path: Path,
) -> None:
    layout = RootLayout(tmp_path)
    info = ArchiveInfo("crc.zip", 100, "a" * 32, "http://x/crc.zip")
    _leave_partial(layout, info, "big", 300)
    mine = claim_partial(layout, info, lambda message: None)
    assert mine.resume_offset(info.size) == 0 and not mine.part.exists()
    mine.part.write_bytes(b"PK")
    kept = layout.archives_dir / info.key
    mine.finish(kept)
    assert kept.read_bytes() == b"PK" and not mine.sidecar.exists()
    again = claim_partial(layout, info, lambda message: None)
    again.part.write_bytes(b"PK")
    again.finish(None)
    assert list(layout.partial_dir.iterdir()) == []


# ----------------------------------------------------------------------------- never through links

_HOUR_AGO = time.time() - 3600


def _victim(tmp_path: Path) -> Path:
    """A file outside the data root, one hour old, that a planted partial points at."""
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "notes.txt"
    victim.write_bytes(b"precious lab notes\n" * 100)
    os.utime(victim, (_HOUR_AGO, _HOUR_AGO))
    return victim


def _plant(data_root: Path, zenodo: zs.ZenodoServer, victim: Path, kind: str) -> Path:
    """A partial named like another host's, with the record's size and md5, whose ``.part``
    is a symlink or hard link to ``victim``, or a file of another user."""
    partial_dir = data_root / ".medimeta" / "partial"
    partial_dir.mkdir(parents=True)
    part = partial_dir / "crc.zip.otherhost.1.0badc0de.part"
    if kind == "symlink":
        part.symlink_to(victim)
    elif kind == "hard link":
        os.link(victim, part)
    else:
        part.write_bytes(victim.read_bytes())
        os.chown(part, 54321, 54321)
    os.utime(part, (_HOUR_AGO, _HOUR_AGO), follow_symlinks=False)
    sidecar = part.with_suffix(".json")
    info = {"key": "crc.zip", "url": zenodo.download_url("crc.zip")}
    stamp = {"size": zenodo.file_size("crc.zip"), "md5": zenodo.file_md5("crc.zip")}
    sidecar.write_text(json.dumps({**info, **stamp, "host": "otherhost", "pid": 1}))
    os.utime(sidecar, (_HOUR_AGO, _HOUR_AGO))
    return part


@pytest.mark.parametrize("kind", ["symlink", "hard link", "another user's file"])
def test_a_planted_partial_is_set_aside_never_appended_to(
    zenodo: zs.ZenodoServer, data_root: Path, tmp_path: Path, kind: str
) -> None:
    if kind == "another user's file" and os.geteuid() != 0:
        pytest.skip("only root can make a file of another user")
    victim = _victim(tmp_path)
    before = (victim.read_bytes(), victim.stat().st_mtime_ns)
    _plant(data_root, zenodo, victim, kind)
    downloader, events = make_downloader()
    [outcome] = downloader.download([downloader.catalog.get("crc")])
    assert outcome.status == "installed", outcome
    # Fetched afresh, not "resumed" at the planted file's size.
    assert outcome.resumed_from == 0
    assert zenodo.bytes_sent("crc.zip") == zenodo.file_size("crc.zip")
    assert (victim.read_bytes(), victim.stat().st_mtime_ns) == before
    [aside] = (data_root / ".medimeta" / "partial").glob("crc.zip.set-aside.*.part")
    assert aside.is_symlink() == (kind == "symlink")
    assert any("set aside" in e.message for e in events if isinstance(e, Notice))


def test_partial_files_are_opened_without_following_links(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path / "root")
    info = ArchiveInfo("crc.zip", 1000, "a" * 32, "http://x/crc.zip")
    mine = claim_partial(layout, info, lambda message: None)
    victim = _victim(tmp_path)
    mine.part.symlink_to(victim)  # swapped in after the claim
    with pytest.raises(PermissionDeniedError, match="not a regular file of this user"):
        mine.open_append()
    with pytest.raises(PermissionDeniedError):
        mine.hash_into(hashlib.md5())
    assert mine.size() == 0 and victim.read_bytes().startswith(b"precious")


def test_a_symlinked_sidecar_is_not_read(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path / "root")
    info = ArchiveInfo("crc.zip", 1000, "a" * 32, "http://x/crc.zip")
    elsewhere = tmp_path / "sidecar.json"
    elsewhere.write_text(json.dumps({"size": 1000, "md5": "a" * 32, "host": "h", "pid": 1}))
    layout.partial_dir.mkdir(parents=True)
    (layout.partial_dir / "crc.zip.h.1.0badc0de.json").symlink_to(elsewhere)
    (layout.partial_dir / "crc.zip.h.1.0badc0de.part").write_bytes(b"x" * 500)
    os.utime(layout.partial_dir / "crc.zip.h.1.0badc0de.part", (1, 1))
    assert partial_bytes(layout, "crc.zip", info.md5) == 0
    assert local_status(layout.root, "crc").state is State.ABSENT
    assert claim_partial(layout, info, lambda message: None).size() == 0


def _members_folder(root: Path, progress: dict[str, object], pieces: dict[str, int]) -> Path:
    folder = RootLayout(root).partial_dir / "crc.zip.members.abc"
    (folder / "pieces").mkdir(parents=True)
    (folder / "progress.json").write_text(json.dumps(progress), encoding="utf-8")
    for name, length in pieces.items():
        (folder / "pieces" / name).write_bytes(b"x" * length)
    return folder


def test_a_members_folder_in_pieces_counts_its_checkpoint_and_the_pieces_ahead(
    tmp_path: Path,
) -> None:
    # Checkpoint at byte 300; piece 0 holds 500 bytes (200 beyond it), piece 500 holds 100.
    window = {"hashed": 300, "index": 1, "journal": 0, "holes": [], "current": None}
    _members_folder(tmp_path, {"size": 1000, "window": window}, {"0": 500, "500": 100})
    status = local_status(tmp_path, "crc")
    assert status.state is State.PARTIAL and status.percent == 60.0
    assert status.describe() == "partial 60%"
    # Not an archive to resume: the transfers still start their own way.
    assert partial_bytes(RootLayout(tmp_path), "crc.zip", None) == 0


def test_a_members_folder_without_a_checkpoint_or_through_a_link_is_not_a_partial(
    tmp_path: Path,
) -> None:
    elsewhere = _members_folder(tmp_path / "other", {"size": 1000, "window": {"hashed": 9}}, {})
    partial_dir = RootLayout(tmp_path).partial_dir
    partial_dir.mkdir(parents=True)
    (partial_dir / "crc.zip.members.link").symlink_to(elsewhere, target_is_directory=True)
    assert local_status(tmp_path, "crc").state is State.ABSENT
    # A members folder of --layout hdf5 (no checkpoint of a pass) says nothing of a percent.
    folder = _members_folder(tmp_path, {"size": 1000, "done": {}}, {})
    assert local_status(tmp_path, "crc").state is State.ABSENT
    # Spill files reached through a link are not counted: the checkpoint's bytes only.
    window = {"hashed": 100, "index": 0, "journal": 0, "holes": [], "current": None}
    (folder / "progress.json").write_text(json.dumps({"size": 1000, "window": window}))
    (folder / "pieces").rmdir()
    spill = tmp_path / "other" / "spill"
    spill.mkdir()
    (spill / "0").write_bytes(b"x" * 900)
    (folder / "pieces").symlink_to(spill, target_is_directory=True)
    assert local_status(tmp_path, "crc").percent == 10.0
