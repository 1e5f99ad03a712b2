"""Knowing when the data is old: ``doctor``, ``list --json`` and ``download --record``
against the test server serving two versions of the record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.records import read_install_record
from tests.conftest import FixtureData
from tests.support import archives
from tests.support.helpers import install_from_server, invoke, invoke_json, unwrapped
from tests.support.zenodo_server import DEFAULT_RECORD_ID, ZenodoServer

NEWER = DEFAULT_RECORD_ID + 1


def publish(
    zenodo: ZenodoServer, fixture_data: FixtureData, tmp_path: Path, *, change_crc: bool
) -> tuple[Path, str]:
    """Publish version 2.0: crc.zip changed (or not), cxr.zip removed, extra.zip added;
    crc.zip of the new version and its md5."""
    files: dict[str, Path | bytes] = {
        p.name: p for p in sorted(fixture_data.archives.glob("*.zip"))
    }
    if change_crc:
        spec = archives.DatasetSpec(**{**vars(fixture_data.specs["crc"]), "seed": 99})
        files["crc.zip"] = archives.build_archive(spec, tmp_path / "v2")
    del files["cxr.zip"]
    files["extra.zip"] = b"new in version 2"
    zenodo.publish_version(files, version="2.0", published="2025-03-01")
    crc = files["crc.zip"]
    assert isinstance(crc, Path)
    return crc, archives.md5_of(crc)


def data_version(runner: CliRunner, *args: str) -> dict[str, Any]:
    report = invoke_json(runner, "doctor", *args)
    found: dict[str, Any] = next(c for c in report["checks"] if c["name"] == "data version")
    return found


def by_id(runner: CliRunner) -> dict[str, Any]:
    return {item["id"]: item for item in invoke_json(runner, "list")}


def test_doctor_and_list_say_that_a_newer_version_changed_an_installed_archive(
    runner: CliRunner,
    zenodo: ZenodoServer,
    data_root: Path,
    fixture_data: FixtureData,
    tmp_path: Path,
) -> None:
    install_from_server("crc", "dr_regular")
    old_md5 = archives.md5_of(fixture_data.archive("crc"))
    _, new_md5 = publish(zenodo, fixture_data, tmp_path, change_crc=True)
    # Before any check, list knows nothing (and asks nothing).
    zenodo.clear_log()
    assert by_id(runner)["crc"]["newer_version"] is None
    assert zenodo.requests == []

    check = data_version(runner)

    assert check["status"] == "warn"
    detail = check["detail"]
    assert detail.startswith(
        f"a newer version 2.0 of record {DEFAULT_RECORD_ID} exists (record {NEWER}, "
        "published 2025-03-01): "
    )
    assert f"crc.zip changed (md5 {old_md5} -> {new_md5}" in detail
    assert "cxr.zip removed" in detail and "extra.zip added" in detail
    assert "installed from an older version: crc (changed), dr_regular (unchanged)" in detail
    assert "--record latest crc dr_regular --force" in check["hint"]
    # list shows the saved check, without the network.
    zenodo.clear_log()
    listed = by_id(runner)
    assert listed["crc"]["newer_version"] == {"record_id": NEWER, "version": "2.0", "changed": True}
    assert listed["dr_regular"]["newer_version"] == {
        "record_id": NEWER,
        "version": "2.0",
        "changed": False,
    }
    assert listed["cxr"]["newer_version"] is None  # not installed
    assert zenodo.requests == []
    text = invoke(runner, "list", "--installed")
    assert text.exit_code == 0, text.stderr
    assert f"crc, dr_regular: a newer version of the record exists (record {NEWER}" in unwrapped(
        text.stderr
    )


def test_doctor_with_the_same_files_in_a_newer_version(
    runner: CliRunner, zenodo: ZenodoServer, data_root: Path
) -> None:
    install_from_server("crc")
    zenodo.publish_version(version="1.1")
    check = data_version(runner)
    assert check["status"] == "warn"
    assert check["detail"] == (
        f"a newer version 1.1 of record {DEFAULT_RECORD_ID} exists (record {NEWER}, published "
        "2025-03-01): same files; installed from an older version: crc (unchanged)"
    )
    assert by_id(runner)["crc"]["newer_version"]["changed"] is False


def test_doctor_when_the_record_is_the_latest(runner: CliRunner, zenodo: ZenodoServer) -> None:
    install_from_server("crc")
    check = data_version(runner)
    assert (check["status"], check["detail"]) == (
        "ok",
        f"record {DEFAULT_RECORD_ID} (version 1.0) is the latest version",
    )
    assert by_id(runner)["crc"]["newer_version"] is None


def test_doctor_offline_says_it_could_not_check(runner: CliRunner, zenodo: ZenodoServer) -> None:
    check = data_version(runner, "--offline")
    assert check["status"] == "skip" and "could not check" in check["detail"]
    assert zenodo.requests == []


def test_doctor_refuses_a_hostile_versions_answer_in_one_line(
    runner: CliRunner, zenodo: ZenodoServer, data_root: Path
) -> None:
    install_from_server("crc")
    answer = zenodo.record_json(zenodo.publish_version())
    answer["id"] = "../../etc"
    zenodo.latest_answer = answer
    check = data_version(runner)
    assert check["status"] == "warn"
    assert check["detail"].startswith(
        f"the latest-version answer for record {DEFAULT_RECORD_ID} was refused: record_id: "
    )
    assert "\n" not in check["detail"]
    assert not RootLayout(data_root).version_check_path.exists()
    assert by_id(runner)["crc"]["newer_version"] is None


def test_list_check_updates_asks_the_server(
    runner: CliRunner,
    zenodo: ZenodoServer,
    data_root: Path,
    fixture_data: FixtureData,
    tmp_path: Path,
) -> None:
    install_from_server("crc")
    publish(zenodo, fixture_data, tmp_path, change_crc=True)
    zenodo.clear_log()
    listed = {i["id"]: i for i in invoke_json(runner, "list", "--check-updates")}
    assert listed["crc"]["newer_version"] == {"record_id": NEWER, "version": "2.0", "changed": True}
    assert [r.endpoint for r in zenodo.requests] == ["record", "latest", "record"]
    offline = invoke(runner, "list", "--check-updates", "--offline")
    assert offline.exit_code != 0 and "offline" in offline.stderr


def test_download_record_latest_keeps_installed_data_unless_forced(
    runner: CliRunner,
    zenodo: ZenodoServer,
    data_root: Path,
    fixture_data: FixtureData,
    tmp_path: Path,
) -> None:
    layout, _ = install_from_server("crc")
    before = read_install_record(layout, "crc")
    _, new_md5 = publish(zenodo, fixture_data, tmp_path, change_crc=True)
    zenodo.clear_log()

    kept = invoke(runner, "download", "crc", "--record", "latest")

    assert kept.exit_code == 0, kept.stderr
    said = unwrapped(kept.stderr)
    assert f"the latest version of record {DEFAULT_RECORD_ID} is record {NEWER}" in said
    assert (
        f"crc: installed from record {DEFAULT_RECORD_ID}; crc.zip in the latest version: "
        "changed; kept as it is (--force replaces it)"
    ) in said
    assert read_install_record(layout, "crc") == before
    assert not any(r.endpoint == "download" for r in zenodo.requests)

    forced = invoke(runner, "download", "crc", "--record", "latest", "--force", "--json")

    assert forced.exit_code == 0, forced.stderr
    after = read_install_record(layout, "crc")
    assert after is not None
    assert (after.record_id, after.record_version, after.source_md5) == (NEWER, "2.0", new_md5)
    fetched = {r.path for r in zenodo.requests if r.endpoint == "download"}
    assert fetched == {f"/records/{NEWER}/files/crc.zip"}


def test_download_record_latest_installs_the_latest_and_knows_removed_files(
    runner: CliRunner,
    zenodo: ZenodoServer,
    data_root: Path,
    fixture_data: FixtureData,
    tmp_path: Path,
) -> None:
    publish(zenodo, fixture_data, tmp_path, change_crc=False)
    result = invoke(runner, "download", "dr_regular", "--record", "latest", "--json")
    assert result.exit_code == 0, result.stderr
    record = read_install_record(RootLayout(data_root), "dr_regular")
    assert record is not None and record.record_id == NEWER
    gone = invoke(runner, "download", "cxr", "--record", "latest")
    assert gone.exit_code != 0
    assert f"record {NEWER} has no file 'cxr.zip'" in unwrapped(gone.stderr)
    # A record id is taken as given, as MEDIMETA_RECORD would be: the older version.
    old = invoke(runner, "download", "cxr", "--record", str(DEFAULT_RECORD_ID), "--json")
    assert old.exit_code == 0, old.stderr
    cxr = read_install_record(RootLayout(data_root), "cxr")
    assert cxr is not None and cxr.record_id == DEFAULT_RECORD_ID


def test_download_record_refuses_what_is_not_a_record(
    runner: CliRunner, zenodo: ZenodoServer, data_root: Path
) -> None:
    result = invoke(runner, "download", "crc", "--record", "newest")
    assert result.exit_code == 2, result.stderr
    assert "--record takes 'latest' or a record id" in unwrapped(result.stderr)
    offline = invoke(runner, "download", "crc", "--record", "latest", "--offline")
    assert offline.exit_code != 0 and "offline" in offline.stderr
    assert zenodo.requests == []
