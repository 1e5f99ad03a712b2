"""``medimeta download --from``: a dry run writes nothing, options that cannot apply are
refused, ids select among what ``--from`` offers, and extra paths are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support import archives
from tests.support.archives import tiny_spec
from tests.support.helpers import invoke, invoke_json, write_installed


def _tree(path: Path) -> list[str]:
    """Every entry below ``path`` (nothing when it does not exist)."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


@pytest.fixture
def offered(tmp_path: Path) -> dict[str, Path]:
    """Two dataset folders outside the catalog and a folder of two archives: no record
    is needed to install any of them."""
    lab, _ = write_installed(tiny_spec("lab_scans"), tmp_path / "folders")
    two, _ = write_installed(tiny_spec("lab_two", seed=1), tmp_path / "folders")
    zips = tmp_path / "zips"
    archives.build_archive(tiny_spec("zip_one", seed=2), zips)
    archives.build_archive(tiny_spec("zip_two", seed=3), zips)
    return {"lab": lab, "two": two, "zips": zips}


def test_a_dry_run_from_writes_nothing(
    runner: CliRunner, data_root: Path, offered: dict[str, Path]
) -> None:
    """Before, `download --from X --dry-run` installed X for real."""
    args = ("download", "--from", str(offered["lab"]), "--from", str(offered["zips"]))
    result = invoke(runner, *args, "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "nothing was written" in result.stdout
    for dataset_id in ("lab_scans", "zip_one", "zip_two"):
        assert dataset_id in result.stdout
    assert _tree(data_root) == []

    listed = json.loads(invoke(runner, *args, "--dry-run", "--json").stdout)
    assert [(i["id"], i["kind"], i["action"]) for i in listed] == [
        ("lab_scans", "folder", "install"),
        ("zip_one", "archive", "install"),
        ("zip_two", "archive", "install"),
    ]
    assert all(item["size"] > 0 for item in listed)
    assert _tree(data_root) == []

    invoke_json(runner, "download", "--from", str(offered["lab"]))
    before = _tree(data_root)
    [again] = json.loads(invoke(runner, *args[:3], "--dry-run", "--json", "--force").stdout)
    assert again["action"] == "reinstall"
    assert _tree(data_root) == before


@pytest.mark.parametrize(
    "option",
    [
        ("--layout", "hdf5"),
        ("--layout", "full"),
        ("--stream",),
        ("--with-masks",),
        ("--keep-archive",),
        ("--jobs", "3"),
        ("--connections", "2"),
        ("--print-urls",),
        ("--url-format", "aria2c"),
        ("--domain", "radiology"),
        ("--all",),
    ],
)
def test_options_that_cannot_apply_with_from_are_refused(
    runner: CliRunner, data_root: Path, offered: dict[str, Path], option: tuple[str, ...]
) -> None:
    """Before, --layout and --stream (and the rest) were silently ignored with --from."""
    result = invoke(runner, "download", "--from", str(offered["lab"]), *option)
    assert result.exit_code == 2, (option, result.stdout, result.stderr)
    assert f"{option[0]} cannot be combined with --from" in result.stderr
    assert not (data_root / "lab_scans").exists()


def test_ids_select_among_what_from_offers(
    runner: CliRunner, data_root: Path, offered: dict[str, Path]
) -> None:
    """Before, `download lab2 --from DIR` installed everything in DIR."""
    sources = ("--from", str(offered["lab"]), "--from", str(offered["two"]))
    outcomes = invoke_json(runner, "download", "LAB_TWO", *sources)
    assert [(o["id"], o["status"]) for o in outcomes] == [("lab_two", "installed")]
    assert not (data_root / "lab_scans").exists()

    outcomes = invoke_json(runner, "download", "zip_two", "--from", str(offered["zips"]))
    assert [(o["id"], o["status"]) for o in outcomes] == [("zip_two", "installed")]
    assert not (data_root / "zip_one").exists()

    result = invoke(runner, "download", "lab2", "zip_one", "--from", str(offered["zips"]))
    assert result.exit_code == 2, result.stderr
    assert "--from offers no 'lab2'; it offers zip_one, zip_two" in result.stderr
    assert not (data_root / "zip_one").exists()  # nothing is installed before the check


def test_an_extra_path_after_from_is_refused(
    runner: CliRunner, data_root: Path, offered: dict[str, Path]
) -> None:
    """`--from A B` took A and silently dropped B; now B is refused with the way to give
    it, and nothing is installed."""
    for extra in (str(offered["two"]), str(offered["zips"] / "zip_one.zip")):
        result = invoke(runner, "download", "--from", str(offered["lab"]), extra)
        assert result.exit_code == 2, result.stderr
        assert "is a path, not a dataset id" in result.stderr
        assert f"--from {extra}" in result.stderr
    assert _tree(data_root) == []


def test_a_folder_name_that_is_not_utf8_exits_4_in_one_line(
    runner: CliRunner, data_root: Path, offered: dict[str, Path]
) -> None:
    """Before: an internal UnicodeEncodeError (exit 1, "report the traceback")."""
    with open(Path(offered["lab"], "images.hdf5").parent / "bad\udcff.txt", "wb") as handle:
        handle.write(b"x")
    result = invoke(runner, "download", "--from", str(offered["lab"]))
    assert result.exit_code == 4, result.stderr
    assert "is not valid UTF-8" in result.stderr and "Traceback" not in result.stderr
    assert not (data_root / "lab_scans").exists()
