"""Install while downloading: all members of a whole archive streamed into a members folder,
every CRC-32 and the md5 over all the archive's bytes checked, no archive file on disk."""

from __future__ import annotations

import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from medimeta_cli.catalog.datasets import RECORD_ID
from medimeta_cli.errors import IntegrityError, NetworkError
from medimeta_cli.fetch.result import MembersFolder, TransferContext, TransferUnavailable
from medimeta_cli.fetch.streamed import StreamedTransfer
from medimeta_cli.install.archive import member_path
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.zenodo.client import RemoteClient, RetryPolicy
from medimeta_cli.zenodo.record import ArchiveInfo
from tests.conftest import FixtureData
from tests.fetch.test_ranged import pass_listing_requests
from tests.support import archives
from tests.support import zenodo_server as zs
from tests.support.helpers import make_downloader, wait_for


@pytest.fixture
def client(zenodo: zs.ZenodoServer) -> Iterator[RemoteClient]:
    policy = RetryPolicy(retries=3, backoff_base=0.01, backoff_cap=0.02)
    with RemoteClient(zenodo.url, RECORD_ID, timeout=5, policy=policy) as remote:
        yield remote


def _fetch(client: RemoteClient, data_root: Path, dataset_id: str) -> MembersFolder:
    downloader, _ = make_downloader()
    info: ArchiveInfo = client.fetch_record().archive(f"{dataset_id}.zip")
    transfer = StreamedTransfer(TransferContext(client, RootLayout(data_root)))
    fetched = transfer.fetch(downloader.catalog.get(dataset_id), info)
    assert isinstance(fetched.content, MembersFolder)
    return fetched.content


def _infos(archive: Path) -> list[zipfile.ZipInfo]:
    with zipfile.ZipFile(archive) as handle:
        return sorted(handle.infolist(), key=lambda i: i.header_offset)


def _ranges(zenodo: zs.ZenodoServer, key: str) -> list[str]:
    return [g.range or "" for g in zenodo.requests_for(key, method="GET")]


def test_every_member_streams_in_with_the_archive_md5_and_no_archive_file(
    zenodo: zs.ZenodoServer, client: RemoteClient, data_root: Path, fixture_data: FixtureData
) -> None:
    archive = fixture_data.archive("crc")
    zenodo.clear_log()
    members = _fetch(client, data_root, "crc")
    with zipfile.ZipFile(archive) as handle:
        expected = {member_path(i): handle.read(i) for i in handle.infolist() if not i.is_dir()}
    found = {
        p.relative_to(members.data).as_posix(): p.read_bytes()
        for p in members.data.rglob("*")
        if p.is_file()
    }
    assert found == expected
    assert {e.path for e in members.entries} == set(expected)
    size = archive.stat().st_size
    # The whole archive in one ordered request after the directory, never as a file.
    assert f"bytes=0-{size - 1}" in _ranges(zenodo, "crc.zip")
    partial = RootLayout(data_root).partial_dir
    assert not list(partial.glob("*.part"))
    on_disk = sum(p.stat().st_size for p in data_root.rglob("*") if p.is_file())
    assert on_disk < sum(len(b) for b in expected.values()) + 64 * 1024 < size + 64 * 1024


def test_a_flipped_byte_in_a_member_is_refused_and_nothing_is_kept(
    zenodo: zs.ZenodoServer, client: RemoteClient, data_root: Path, fixture_data: FixtureData
) -> None:
    archive = fixture_data.archive("cxr")
    last = [i for i in _infos(archive) if not i.is_dir()][-1]
    pass_listing_requests(zenodo, archive)
    zenodo.inject("cxr.zip", zs.corrupt(offset=last.header_offset + 30 + len(last.filename) + 1))
    with pytest.raises(IntegrityError, match="CRC-32"):
        _fetch(client, data_root, "cxr")
    assert not list(RootLayout(data_root).partial_dir.iterdir())


@pytest.mark.parametrize("where", ["local header", "central directory"])
def test_a_flipped_byte_outside_every_member_is_caught_by_the_md5(
    zenodo: zs.ZenodoServer,
    client: RemoteClient,
    data_root: Path,
    fixture_data: FixtureData,
    where: str,
) -> None:
    archive = fixture_data.archive("cxr")
    with zipfile.ZipFile(archive) as handle:
        directory = handle.start_dir
    first = next(i for i in _infos(archive) if not i.is_dir())
    # The modification time: read by no member check, only the md5 covers it.
    offset = first.header_offset + 10 if where == "local header" else directory + 12
    pass_listing_requests(zenodo, archive)
    zenodo.inject("cxr.zip", zs.corrupt(offset=offset))
    with pytest.raises(IntegrityError, match="md5"):
        _fetch(client, data_root, "cxr")
    assert not list(RootLayout(data_root).partial_dir.iterdir())


def test_a_cut_continues_where_the_md5_stopped(
    zenodo: zs.ZenodoServer, client: RemoteClient, data_root: Path, fixture_data: FixtureData
) -> None:
    archive = fixture_data.archive("crc")
    pass_listing_requests(zenodo, archive)
    zenodo.inject("crc.zip", zs.cut_after(3_000_000))
    zenodo.clear_log()
    members = _fetch(client, data_root, "crc")
    assert len(members.entries) == len([i for i in _infos(archive) if not i.is_dir()])
    starts = [int(r.split("=")[1].split("-")[0]) for r in _ranges(zenodo, "crc.zip") if r]
    assert starts[-2] == 0 and 2_900_000 < starts[-1] <= 3_000_000, starts
    assert zenodo.bytes_sent("crc.zip") < archive.stat().st_size + 200_000


def test_a_cut_inside_the_central_directory_resumes_and_installs(
    zenodo: zs.ZenodoServer, client: RemoteClient, data_root: Path, fixture_data: FixtureData
) -> None:
    """The directory's bytes are compared with the ones read ahead even when the stream
    that carries them is cut in the middle and resumed there."""
    archive = fixture_data.archive("crc")
    with zipfile.ZipFile(archive) as handle:
        directory_offset = handle.start_dir
    size = archive.stat().st_size
    assert size - directory_offset > 200  # room for a cut inside the directory
    pass_listing_requests(zenodo, archive)
    zenodo.inject("crc.zip", zs.cut_after(directory_offset + 100))
    zenodo.clear_log()
    members = _fetch(client, data_root, "crc")
    assert len(members.entries) == len([i for i in _infos(archive) if not i.is_dir()])
    starts = [int(r.split("=")[1].split("-")[0]) for r in _ranges(zenodo, "crc.zip") if r]
    assert starts[-2] == 0 and directory_offset < starts[-1] <= directory_offset + 100, starts


def test_a_server_without_ranges_leaves_it_to_the_whole_archive(
    zenodo: zs.ZenodoServer, client: RemoteClient, data_root: Path
) -> None:
    zenodo.ranges_enabled = False
    with pytest.raises(TransferUnavailable):
        _fetch(client, data_root, "cxr")
    partial = RootLayout(data_root).partial_dir
    assert not partial.exists() or not list(partial.iterdir())


def test_a_cut_inside_a_deflated_member_starts_the_pass_again(
    zenodo: zs.ZenodoServer,
    client: RemoteClient,
    data_root: Path,
    fixture_data: FixtureData,
    tmp_path: Path,
) -> None:
    source = fixture_data.archive("cxr")
    deflated = archives.deflated_copy(source, tmp_path / "cxr.zip")
    zenodo.replace_file("cxr.zip", deflated)
    pass_listing_requests(zenodo, deflated)
    zenodo.inject("cxr.zip", zs.cut_after(50_000))
    zenodo.clear_log()
    members = _fetch(client, data_root, "cxr")
    starts = [int(r.split("=")[1].split("-")[0]) for r in _ranges(zenodo, "cxr.zip") if r]
    assert starts[-2:] == [0, 0], starts  # the md5 cannot continue inside deflate: again
    with zipfile.ZipFile(deflated) as handle:
        for entry in members.entries:
            assert (members.data / entry.path).read_bytes() == handle.read(f"cxr/{entry.path}")


def test_a_stopped_pass_leaves_no_members_behind(
    zenodo: zs.ZenodoServer, data_root: Path, fixture_data: FixtureData
) -> None:
    archive = fixture_data.archive("crc")
    pass_listing_requests(zenodo, archive)
    zenodo.inject("crc.zip", zs.cut_after(3_000_000))
    broken = RemoteClient(
        zenodo.url, RECORD_ID, timeout=5, policy=RetryPolicy(retries=0, backoff_base=0.01)
    )
    with broken, pytest.raises(NetworkError):
        _fetch(broken, data_root, "crc")
    # Its md5 could not go on in a later run, so nothing of it is kept.
    assert not list(RootLayout(data_root).partial_dir.glob("crc.zip.members.*"))


def _killed_mid_pass(zenodo: zs.ZenodoServer, data_root: Path) -> Path:
    """Run a streamed fetch in a process killed with SIGKILL once members are being written;
    the members folder it leaves."""
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tests.fetch.test_streamed import fetch_with_fresh_client\n"
        "fetch_with_fresh_client(sys.argv[1], Path(sys.argv[2]), 'crc')\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, zenodo.url, str(data_root)], cwd=Path(__file__).parents[2]
    )
    try:
        partial = RootLayout(data_root).partial_dir
        wait_for(lambda: any(partial.glob("crc.zip.members.*/data/*")))
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    [left] = RootLayout(data_root).partial_dir.glob("crc.zip.members.*")
    return left


def fetch_with_fresh_client(url: str, data_root: Path, dataset_id: str) -> MembersFolder:
    """A streamed fetch with its own client (for a process of its own)."""
    policy = RetryPolicy(retries=3, backoff_base=0.01, backoff_cap=0.02)
    with RemoteClient(url, RECORD_ID, timeout=5, policy=policy) as remote:
        return _fetch(remote, data_root, dataset_id)


def test_files_left_by_a_killed_run_are_not_trusted(
    zenodo: zs.ZenodoServer, client: RemoteClient, data_root: Path, fixture_data: FixtureData
) -> None:
    archive = fixture_data.archive("crc")
    pass_listing_requests(zenodo, archive)
    zenodo.inject("crc.zip", zs.stall_after(3_000_000))
    left = _killed_mid_pass(zenodo, data_root)
    planted = next(p for p in (left / "data").rglob("*") if p.is_file())
    planted.write_bytes(b"not what the archive holds")
    (left / "data" / "planted.txt").write_text("not in the archive")
    zenodo.clear_log()
    members = _fetch(client, data_root, "crc")
    assert not (members.data / "planted.txt").exists()
    with zipfile.ZipFile(archive) as handle:
        for entry in members.entries:
            assert (members.data / entry.path).read_bytes() == handle.read(f"crc/{entry.path}")
    starts = [int(r.split("=")[1].split("-")[0]) for r in _ranges(zenodo, "crc.zip") if r]
    assert starts[-1] == 0, starts  # the md5 covers this run's bytes only
