"""``medimeta_cli.install``: installing archives safely, and archives fetched by other means."""

from __future__ import annotations

from pathlib import Path

import pytest

from medimeta_cli.errors import IntegrityError
from tests.conftest import FixtureData
from tests.helpers import make_downloader
from tests.support import archives
from tests.support import zenodo_server as zs


@pytest.mark.parametrize("kind", ["zip_slip", "absolute", "symlink", "wrong_id"])
def test_malicious_archives_are_refused(
    zenodo: zs.ZenodoServer, data_root: Path, tmp_path: Path, kind: archives.MaliciousKind
) -> None:
    bad = archives.build_malicious_archive(tmp_path, "cxr", kind)
    zenodo.replace_file("cxr.zip", bad)
    downloader, _ = make_downloader()
    [outcome] = downloader.download([downloader.catalog.get("cxr")])
    assert isinstance(outcome.error, IntegrityError), outcome
    assert not (data_root / "cxr").exists()
    assert not (tmp_path.parent / "evil.txt").exists()
    assert not any((data_root / ".medimeta" / "tmp").glob("*"))


def test_install_from_folder_and_single_zip(
    zenodo: zs.ZenodoServer, data_root: Path, fixture_data: FixtureData
) -> None:
    make_downloader()[0].manifest()  # saves the record, as `--print-urls` does online
    zenodo.clear_log()
    offline, _ = make_downloader(offline=True)
    outcomes = offline.install_from([fixture_data.archives])
    assert {o.dataset_id: o.status for o in outcomes} == {
        "crc": "installed",
        "cxr": "installed",
        "dr_regular": "installed",
        "organs_axial": "installed",
    }
    assert zenodo.requests == []
    assert (data_root / "organs_axial" / "masks").is_dir()
    assert fixture_data.archive("crc").exists()  # the user's copy is left alone
    [again] = offline.install_from([fixture_data.archive("crc")])
    assert again.status == "skipped"


def test_install_from_rejects_a_damaged_copy(
    zenodo: zs.ZenodoServer, data_root: Path, fixture_data: FixtureData, tmp_path: Path
) -> None:
    copy = tmp_path / "cxr.zip"
    data = bytearray(fixture_data.archive("cxr").read_bytes())
    data[3000] ^= 0xFF
    copy.write_bytes(bytes(data))
    downloader, _ = make_downloader()
    [outcome] = downloader.install_from([copy])
    assert isinstance(outcome.error, IntegrityError) and "md5" in outcome.error.message
    assert not (data_root / "cxr").exists()
