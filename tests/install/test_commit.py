"""``medimeta_cli.install.commit``: nothing becomes visible unless the proof of the mode's
check holds, for every mode (an archive whose md5 is still being computed, members, a
``--from`` folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medimeta_cli.errors import IntegrityError
from medimeta_cli.install.commit import InstallResult, Proof, commit_rule
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.records import ArchiveCheck, read_install_record
from tests.conftest import FixtureData
from tests.support import zenodo_server as zs
from tests.support.helpers import make_downloader


def _refuse() -> None:
    raise IntegrityError("crc.zip does not match the record (md5 ...)")


def test_a_pending_md5_that_fails_installs_nothing(
    zenodo: zs.ZenodoServer, data_root: Path, fixture_data: FixtureData
) -> None:
    downloader, _ = make_downloader()
    dataset = downloader.catalog.get("crc")
    info = downloader.manifest().archive("crc.zip")
    installer = downloader.installer()
    archive = fixture_data.archive("crc")
    ran: list[str] = []

    def failing() -> None:
        ran.append("md5")
        _refuse()

    with pytest.raises(IntegrityError, match="does not match the record"):
        installer.install_archive(dataset, archive, info, proof=Proof.md5("test", failing))
    assert ran == ["md5"]  # after the extraction, before the renames
    assert not (data_root / "crc").exists()
    assert read_install_record(RootLayout(data_root), "crc") is None
    assert not list(RootLayout(data_root).tmp_dir.iterdir())

    result = installer.install_archive(dataset, archive, info, proof=Proof.md5("test", ran.clear))
    assert result is InstallResult.INSTALLED
    record = read_install_record(RootLayout(data_root), "crc")
    assert record is not None and record.archive_check == ArchiveCheck.MD5.value


def test_the_rule_takes_only_a_proof_and_runs_a_pending_check_once() -> None:
    calls: list[int] = []
    proof = Proof.md5("test", lambda: calls.append(1))
    assert commit_rule(proof) is ArchiveCheck.MD5
    assert commit_rule(proof) is ArchiveCheck.MD5 and calls == [1]
    failing = Proof.md5("test", _refuse)
    for _ in range(2):  # told to every caller, computed once
        with pytest.raises(IntegrityError):
            commit_rule(failing)
    assert commit_rule(Proof.members("test")) is ArchiveCheck.MEMBERS
    assert commit_rule(Proof.folder("test")) is ArchiveCheck.FOLDER
    with pytest.raises(TypeError, match="only with a Proof"):
        commit_rule(ArchiveCheck.MD5)  # type: ignore[arg-type]
