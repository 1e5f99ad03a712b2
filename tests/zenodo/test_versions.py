"""Versions of the record: ``versions/latest`` against the test server serving two versions,
what changed in the file list, and hostile answers refused in one line."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from medimeta_cli.errors import RemoteDataError
from medimeta_cli.settings import resolve_settings
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.zenodo.record import load_saved_record, save_record
from medimeta_cli.zenodo.source import RecordSource, resolve_record
from medimeta_cli.zenodo.versions import ChangeKind, VersionReport, load_check
from tests.conftest import FixtureData
from tests.support import archives
from tests.support.zenodo_server import DEFAULT_RECORD_ID, VERSIONS, ZenodoServer, status


def changed_crc(fixture_data: FixtureData, folder: Path) -> Path:
    """crc.zip of a newer version: the same dataset, other images (another md5 and size)."""
    spec = archives.DatasetSpec(**{**vars(fixture_data.specs["crc"]), "seed": 99})
    return archives.build_archive(spec, folder)


def check(**flags: Any) -> VersionReport:
    source = RecordSource(resolve_settings(dict(flags)))
    try:
        return source.versions({})
    finally:
        source.close()


def test_a_newer_version_and_what_changed_in_its_files(
    zenodo: ZenodoServer, fixture_data: FixtureData, tmp_path: Path
) -> None:
    files: dict[str, Path | bytes] = {
        p.name: p for p in sorted(fixture_data.archives.glob("*.zip"))
    }
    files["crc.zip"] = changed_crc(fixture_data, tmp_path)
    del files["cxr.zip"]
    files["extra.zip"] = b"new in version 2"
    newer = zenodo.publish_version(files, version="2.0", published="2025-03-01")
    zenodo.clear_log()

    report = check()

    assert report.newer and report.latest.record_id == newer == DEFAULT_RECORD_ID + 1
    assert (report.latest.version, report.latest.published) == ("2.0", "2025-03-01")
    assert (report.latest.version_index, report.latest.is_latest) == (2, True)
    assert (report.current.version_index, report.current.is_latest) == (1, False)
    assert report.current.concept_id == report.latest.concept_id == zenodo.concept_id
    kinds = {c.key: c.kind for c in report.changes}
    assert kinds == {
        "crc.zip": ChangeKind.CHANGED,
        "cxr.zip": ChangeKind.REMOVED,
        "extra.zip": ChangeKind.ADDED,
    }
    crc = next(c for c in report.changes if c.key == "crc.zip")
    assert crc.old is not None and crc.new is not None
    assert crc.new.md5 == zenodo_md5(files["crc.zip"]) != crc.old.md5
    assert f"crc.zip changed (md5 {crc.old.md5} -> {crc.new.md5}" in report.line()
    assert "cxr.zip removed" in report.line() and "extra.zip added" in report.line()
    # One request for the record, one for its latest version (whose redirect is followed).
    assert [r.endpoint for r in zenodo.requests] == ["record", "latest", "record"]


def zenodo_md5(source: Path | bytes) -> str:
    return archives.md5_of(source) if isinstance(source, Path) else hashlib.md5(source).hexdigest()


def test_the_same_files_in_a_newer_version(zenodo: ZenodoServer) -> None:
    zenodo.publish_version(version="1.1")
    report = check()
    assert report.newer and report.changes == []
    assert "a newer version 1.1 of record 7884735 exists" in report.line()
    assert report.line().endswith("same files")


def test_the_latest_version_itself(zenodo: ZenodoServer) -> None:
    report = check()
    assert not report.newer and report.behind == ()
    assert report.line() == "record 7884735 (version 1.0) is the latest version"


def test_the_check_is_saved_for_list_with_the_installed_datasets(
    zenodo: ZenodoServer, data_root: Path, fixture_data: FixtureData, tmp_path: Path
) -> None:
    from tests.support.helpers import install_from_server

    layout, _ = install_from_server("crc", "dr_regular")
    files = {p.name: p for p in sorted(fixture_data.archives.glob("*.zip"))}
    files["crc.zip"] = changed_crc(fixture_data, tmp_path)
    newer = zenodo.publish_version(files)
    check()
    zenodo.stop()  # what list shows is read from the data root alone
    saved = load_check(layout)
    assert saved is not None and saved.latest.record_id == newer
    assert saved.newer_version("crc") == {"record_id": newer, "version": "2.0", "changed": True}
    assert saved.newer_version("dr_regular") == {
        "record_id": newer,
        "version": "2.0",
        "changed": False,
    }
    assert saved.newer_version("cxr") is None  # not installed


def test_saved_manifests_keep_the_version_fields(zenodo: ZenodoServer, data_root: Path) -> None:
    zenodo.publish_version()
    layout = RootLayout(data_root)
    layout.records_dir.mkdir(parents=True)
    report = check()
    save_record(layout, report.latest)
    again = load_saved_record(layout, report.latest.record_id, zenodo.url)
    assert again == report.latest


def test_an_offline_check_asks_nothing(zenodo: ZenodoServer, data_root: Path) -> None:
    from medimeta_cli.errors import OfflineError

    with pytest.raises(OfflineError):
        resolve_record(resolve_settings({"offline": True}), "latest")
    assert zenodo.requests == []


def _hostile(server: ZenodoServer, change: str) -> Any:
    newer = server.publish_version()
    answer: Any = server.record_json(newer)
    if change == "is_latest is a string":
        answer["versions"]["is_latest"] = "yes"
    elif change == "index is a string":
        answer["versions"]["index"] = "2"
    elif change == "versions is a list":
        answer["versions"] = [2]
    elif change == "id is not a number":
        answer["id"] = "7884736; rm -rf /"
    elif change == "id is a bool":
        answer["id"] = True
    elif change == "id is missing":
        del answer["id"]
    elif change == "parent is a string":
        answer["parent"] = "concept"
    elif change == "another concept":
        answer["parent"] = {"id": "42"}
    elif change == "older by index":
        answer["versions"]["index"] = 0  # refused by the model: versions count from 1
    elif change == "older than asked":
        # Asked about version 3, told that version 3 has index 1.
        asked = server.publish_version()
        answer = server.record_json(asked)
        answer["versions"]["index"] = 1
        server.latest_answer = answer
        return asked
    elif change == "older record":
        answer = server.record_json(DEFAULT_RECORD_ID)
        answer["versions"]["is_latest"] = True
        answer["id"] = DEFAULT_RECORD_ID - 5
    elif change == "not the latest":
        answer["versions"]["is_latest"] = False
    elif change == "not an object":
        answer = ["7884736"]
    server.latest_answer = answer
    return DEFAULT_RECORD_ID


HOSTILE = [
    ("is_latest is a string", "is_latest"),
    ("index is a string", "version_index"),
    ("versions is a list", "versions"),
    ("id is not a number", "record_id"),
    ("id is a bool", "record_id"),
    ("id is missing", "names no record id"),
    ("parent is a string", "concept_id"),
    ("another concept", "of concept record 42, not of 7884734"),
    ("older by index", "version_index"),
    ("older than asked", "(version index 1) is older than record 7884737 (version index 3)"),
    ("older record", "is older than record 7884735"),
    ("not the latest", "says it is not the latest"),
    ("not an object", "names no record id"),
]


@pytest.mark.parametrize(("change", "said"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_versions_answer_is_refused_in_one_line(
    zenodo: ZenodoServer, data_root: Path, change: str, said: str
) -> None:
    asked = _hostile(zenodo, change)
    with pytest.raises(RemoteDataError) as caught:
        check(record_id=asked)
    message = caught.value.message
    assert message.startswith(f"the latest-version answer for record {asked} was refused: ")
    assert said in message and "\n" not in message
    assert not RootLayout(data_root).version_check_path.exists()


def test_a_version_answered_with_an_error_is_a_remote_error(zenodo: ZenodoServer) -> None:
    zenodo.inject(VERSIONS, status(404))
    with pytest.raises(RemoteDataError, match="HTTP 404"):
        check()


@pytest.mark.parametrize("given", ["abc", "-3", "1.5", "0", ""])
def test_record_takes_latest_or_a_record_id(given: str, data_root: Path) -> None:
    from medimeta_cli.errors import UsageError

    with pytest.raises(UsageError, match="--record takes 'latest' or a record id"):
        resolve_record(resolve_settings(), given)
    settings, report = resolve_record(resolve_settings(), "7884736")
    assert (settings.record_id, report) == (7884736, None)


def test_what_list_reads_compares_each_install_record(data_root: Path) -> None:
    from dataclasses import replace

    from medimeta_cli.store.records import ArchiveCheck, write_install_record
    from medimeta_cli.zenodo.versions import LatestSeen, compare_installed
    from tests.support.helpers import sample_install_record

    layout = RootLayout(data_root)
    layout.installed_dir.mkdir(parents=True)
    base = sample_install_record()
    for record in (
        replace(base, dataset_id="same", archive_key="same.zip"),
        replace(base, dataset_id="changed", archive_key="changed.zip"),
        replace(base, dataset_id="gone", archive_key="gone.zip"),
        replace(base, dataset_id="folder", archive_key="folder.zip", archive_md5=None),
        replace(
            base,
            dataset_id="local",
            archive_key="local.zip",
            archive_check=ArchiveCheck.LOCAL.value,
        ),
        replace(base, dataset_id="latest", record_id=NEWER_ID),
        replace(base, dataset_id="other", record_id=1234),  # another record altogether
    ):
        write_install_record(layout, record)
    files = {k: (10, "0" * 32) for k in ("same.zip", "folder.zip", "local.zip", "latest.zip")}
    files["changed.zip"] = (10, "1" * 32)
    seen = LatestSeen(DEFAULT_RECORD_ID, NEWER_ID, "2.0", 7884734, files)
    check = compare_installed(layout, seen, None)
    assert {u.dataset_id: u.changed for u in check.behind} == {
        "same": False,
        "changed": True,
        "gone": True,
        "folder": None,
    }


NEWER_ID = DEFAULT_RECORD_ID + 1


@pytest.mark.parametrize(
    "saved",
    [
        "not json",
        '{"latest": {"asked": true, "record_id": 7884736, "files": {}}}',
        '{"latest": {"asked": 7884735, "record_id": "7884736", "files": {}}}',
        '{"latest": {"asked": 7884735, "record_id": 7884736, "files": {"a": {"size": -1}}}}',
        '{"latest": {"asked": 7884735, "record_id": 7884736, "files": {"a": []}}}',
        '{"latest": {"asked": 7884735, "record_id": 7884736, "version": 2, "files": {}}}',
    ],
)
def test_a_damaged_saved_check_is_not_used(data_root: Path, saved: str) -> None:
    layout = RootLayout(data_root)
    layout.records_dir.mkdir(parents=True)
    layout.version_check_path.write_text(saved, encoding="utf-8")
    assert load_check(layout) is None
