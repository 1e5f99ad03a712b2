"""``--domain`` means domains and aliases first, and ids take the spellings domains take:
every command that selects datasets, run as the user runs it (a real process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import FixtureData, InstalledData
from tests.support.helpers import medimeta_process as medimeta
from tests.support.zenodo_server import ZenodoServer

FUNDUS = ["dr_regular", "dr_uwf", "fundus", "glaucoma"]
NOTICE = "'fundus' is also a dataset id; give it as an argument for that dataset alone"


@pytest.mark.parametrize(
    "args",
    [
        ["list", "--domain", "fundus", "--json"],
        ["download", "--domain", "fundus", "--dry-run", "--offline", "--json"],
    ],
)
def test_an_alias_that_is_also_an_id_selects_the_domain_and_says_so(args: list[str]) -> None:
    proc = medimeta(*args)
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    items = listed if isinstance(listed, list) else listed["items"]
    assert [item["id"] for item in items] == FUNDUS
    assert proc.stderr.count(NOTICE) == 1, proc.stderr


def test_derm_is_every_dermatology_dataset() -> None:
    proc = medimeta("list", "--domain", "derm", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [item["id"] for item in json.loads(proc.stdout)] == ["derm", "skinl_derm", "skinl_photo"]
    assert "'derm' is also a dataset id" in proc.stderr


def test_verify_and_remove_take_the_domain_too(data_root: Path) -> None:
    # Nothing is installed: verify has nothing to check in the domain; the notice is said.
    proc = medimeta("verify", "--domain", "fundus")
    assert proc.stderr.count(NOTICE) == 1, proc.stderr
    proc = medimeta("remove", "--domain", "fundus", "--yes")
    assert proc.stderr.count(NOTICE) == 1, proc.stderr


@pytest.mark.parametrize("spelling", ["dr-regular", "DR_Regular"])
def test_ids_take_the_spellings_of_domains(spelling: str, installed: InstalledData) -> None:
    info = medimeta("info", spelling, "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["id"] == "dr_regular"
    verify = medimeta("verify", spelling, "--json")
    assert verify.returncode == 0, verify.stderr
    assert [report["id"] for report in json.loads(verify.stdout)] == ["dr_regular"]


def test_download_from_takes_the_spellings_of_domains(
    zenodo: ZenodoServer, fixture_data: FixtureData
) -> None:
    archive = fixture_data.archive("dr_regular")
    proc = medimeta("download", "DR-Regular", "--from", str(archive), "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [item["id"] for item in json.loads(proc.stdout)] == ["dr_regular"]


def test_the_api_ensure_takes_the_spellings_of_domains(zenodo: ZenodoServer) -> None:
    from medimeta_cli import api

    folders = api.ensure(["DR-Regular"])
    assert list(folders) == ["dr_regular"]
    assert folders["dr_regular"].name == "dr_regular"


def test_the_api_domains_mean_domains_first(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from medimeta_cli import api

    # The bundled catalog, and a record that holds none of the fundus archives: each
    # selected dataset gets its outcome, so the outcomes tell what was selected.
    with ZenodoServer({"readme.txt": b"not an archive"}) as server:
        monkeypatch.setenv("MEDIMETA_BASE_URL", server.url)
        with caplog.at_level("WARNING", logger="medimeta_cli"):
            outcomes = api.download(domains=["fundus"])
    assert [outcome.dataset_id for outcome in outcomes] == FUNDUS
    assert [r.getMessage() for r in caplog.records].count(
        NOTICE + " (--domain fundus selects 4 datasets)"
    ) == 1
