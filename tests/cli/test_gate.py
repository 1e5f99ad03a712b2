"""A task name that resolves outside the dataset is refused by every command (exit 4),
and nothing outside the dataset is read."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from medimeta_cli import api
from medimeta_cli.errors import IntegrityError
from tests.conftest import FixtureData
from tests.support import archives
from tests.support.helpers import invoke, invoke_json, unwrapped, write_installed

#: From task_labels/ of <root>/<id>/, three levels up is the data root's parent.
EVIL = "../../../outside/evil"


def plant(folder: Path) -> Path:
    """Rename the folder's first task to EVIL and move its labels to where that name leads
    (outside the dataset), with a value no real label file has; returns that file."""
    info = folder / "info.yaml"
    text = info.read_text(encoding="utf-8")
    first = text.split("task_name: ", 1)[1].split("\n", 1)[0]
    info.write_text(text.replace(f"task_name: {first}", f"task_name: {json.dumps(EVIL)}", 1))
    inside = folder / "task_labels" / f"{yaml.safe_load(text)['tasks'][0]['task_name']}.npy"
    outside = (folder / "task_labels" / f"{EVIL}.npy").resolve()
    outside.parent.mkdir(parents=True, exist_ok=True)
    labels = np.load(inside)
    inside.unlink()
    np.save(outside, labels)
    return outside


@pytest.fixture
def evil_crc(data_root: Path, fixture_data: FixtureData, monkeypatch: pytest.MonkeyPatch) -> Path:
    """crc installed in the data root with a task name that leaves the dataset."""
    monkeypatch.setenv("MEDIMETA_CATALOG", str(fixture_data.catalog))
    write_installed(archives.CXR, data_root)
    folder, _ = write_installed(archives.CRC, data_root)
    outside = plant(folder)
    assert outside.is_file() and not outside.is_relative_to(folder)
    return outside


def _refused(result: object) -> None:
    stderr = result.stderr  # type: ignore[attr-defined]
    assert result.exit_code == 4, stderr  # type: ignore[attr-defined]
    assert f"names task '{EVIL}'" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("how", ["folder", "archive"])
def test_download_from_refuses_a_task_name_that_leaves_the_dataset(
    runner: CliRunner,
    fixture_data: FixtureData,
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    monkeypatch.setenv("MEDIMETA_CATALOG", str(fixture_data.catalog))
    # An archive of a catalog id is checked against the record first: a local one here.
    specs = (archives.tiny_spec("lab_scans"), archives.CRC)
    for spec in specs if how == "folder" else specs[:1]:
        folder, _ = write_installed(spec, tmp_path / "unzipped")
        # The planted file sits where the name leads from the data root's copy too.
        assert plant(folder) == data_root.parent / "outside" / "evil.npy"
        source = folder if how == "folder" else archives.archive_from_folder(folder, tmp_path)
        result = invoke(runner, "download", "--from", str(source), "--offline")
        _refused(result)
        assert not (data_root / spec.id).exists()


def test_export_sample_verify_info_refuse_it_and_nothing_outside_is_read(
    runner: CliRunner, evil_crc: Path, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    _refused(invoke(runner, "export", "crc", "--format", "numpy", "--out", str(out)))
    assert not out.exists()
    _refused(invoke(runner, "sample", "crc", "--per-class", "1"))
    _refused(invoke(runner, "info", "crc"))
    for mode in ("--full", "--deep"):
        result = invoke(runner, "verify", "crc", mode)
        assert result.exit_code == 4, result.stderr
        assert f"names task '{EVIL}'" in result.stdout


def test_list_lists_the_others_and_flags_it(runner: CliRunner, evil_crc: Path) -> None:
    listed = {item["id"]: item for item in invoke_json(runner, "list", "--installed")}
    assert "refused" not in listed["cxr"] and listed["cxr"]["state"] == "installed"
    assert f"names task '{EVIL}'" in listed["crc"]["refused"]
    text = invoke(runner, "list", "--installed")
    assert text.exit_code == 0
    crc_row = next(line for line in text.stdout.splitlines() if line.startswith("crc"))
    assert "damaged (info.yaml refused)" in crc_row


def test_a_local_dataset_with_such_a_name_is_listed_as_refused(
    runner: CliRunner, fixture_data: FixtureData, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMETA_CATALOG", str(fixture_data.catalog))
    write_installed(archives.CRC, data_root)
    folder, _ = write_installed(archives.tiny_spec("lab_scans"), data_root)
    plant(folder)
    listed = {item["id"]: item for item in invoke_json(runner, "list", "--installed")}
    assert "refused" not in listed["crc"]
    assert f"names task '{EVIL}'" in listed["lab_scans"]["refused"]
    result = invoke(runner, "verify", "lab_scans", "--full")
    assert result.exit_code == 4


def test_the_python_api_refuses_it(evil_crc: Path, data_root: Path, tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match="names task"):
        api.ensure("crc", offline=True)
    out = tmp_path / "export"
    with pytest.raises(IntegrityError, match="names task"):
        api.export("crc", out, format="numpy")
    assert not out.exists()
    assert api.ensure("cxr", offline=True)["cxr"] == data_root / "cxr"


# --------------------------------------------------------------------------- the rules
# Each class of issue 17's section A, through the real command line: a dataset in the
# MedIMeta format from elsewhere (``lab_scans``) that says something the gate refuses is
# refused by ``download --from`` (exit 4, one line, nothing installed), and one planted in
# the data root breaks no command for the others.

LOCAL = dataclasses.replace(archives.CRC, id="lab_scans", seed=7)


def _edit_info(folder: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    info = yaml.safe_load((folder / "info.yaml").read_text(encoding="utf-8"))
    edit(info)
    (folder / "info.yaml").write_text(yaml.safe_dump(info, sort_keys=False), encoding="utf-8")


def _refused_in_one_line(result: Any, *words: str) -> None:
    # One error line (a job log wraps a long one onto indented continuation lines).
    stderr = unwrapped(result.stderr)
    assert result.exit_code == 4, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    for word in words:
        assert word in errors[0], errors[0]
    for leak in ("Traceback", "MemoryError", "RecursionError", "OverflowError", "\x1b", "\r"):
        assert leak not in stderr


def _from_folder(runner: CliRunner, folder: Path, data_root: Path, *words: str) -> None:
    started = time.monotonic()
    result = invoke(runner, "download", "--from", str(folder), "--offline")
    assert time.monotonic() - started < 10
    _refused_in_one_line(result, *words)
    assert not (data_root / folder.name).exists()


def _laughs(levels: int) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, levels + 1)]
    return "\n".join(lines) + f"\nname: *l{levels}\n"


HOSTILE = {
    # 9**6 lols: small enough to have parsed before (and been accepted as a name).
    "laughs": lambda text: _laughs(6) + text.replace("name:", "old_name:", 1),
    "deep": lambda text: text.replace("name:", f"name: {'[' * 50_000}{']' * 50_000}\nold:", 1),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_yaml_is_refused_and_spares_the_other_datasets(
    runner: CliRunner,
    fixture_data: FixtureData,
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    monkeypatch.setenv("MEDIMETA_CATALOG", str(fixture_data.catalog))
    folder, _ = write_installed(LOCAL, tmp_path / "from")
    info = folder / "info.yaml"
    info.write_text(HOSTILE[kind](info.read_text(encoding="utf-8")), encoding="utf-8")
    _from_folder(runner, folder, data_root, "info.yaml")

    _spares_the_others(runner, data_root, info.read_bytes())


def _spares_the_others(runner: CliRunner, data_root: Path, info: bytes) -> None:
    """``info`` planted as the info.yaml of an installed crc breaks nothing for cxr."""
    write_installed(archives.CXR, data_root)
    planted, _ = write_installed(archives.CRC, data_root)
    (planted / "info.yaml").write_bytes(info.replace(b"lab_scans", b"crc"))
    started = time.monotonic()
    listed = {item["id"]: item for item in invoke_json(runner, "list", "--installed")}
    assert listed["cxr"]["state"] == "installed" and "refused" not in listed["cxr"]
    assert "crc" in listed
    assert invoke(runner, "list").exit_code == 0
    assert invoke(runner, "info", "cxr").exit_code == 0
    for args in (("verify", "crc"), ("verify", "--deep", "crc"), ("info", "crc")):
        result = invoke(runner, *args)
        # info shows the catalog's entry in place of an unreadable one, or refuses it.
        assert result.exit_code == (4 if args[0] == "verify" else result.exit_code)
        assert result.exit_code in (0, 4), (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr
    assert time.monotonic() - started < 10


def _key(old: int, new: Any) -> Callable[[dict[str, Any]], None]:
    def edit(info: dict[str, Any]) -> None:
        labels = info["tasks"][0]["labels"]
        labels[new] = labels.pop(old)

    return edit


def _field(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda info: info.__setitem__(name, value)


NUMBERS = {
    "count-inf": (_field("total_num_samples", float("inf")), "total_num_samples is inf"),
    "size-nan": (_field("input_size", [3, float("nan"), 224]), "input_size is nan"),
    "size-huge": (_field("input_size", [3, 20_000, 20_000]), "1 to 4096 pixels"),
    "key-inf": (_key(1, float("inf")), "a label key is inf"),
    "key-2**70": (_key(1, 2**70), "beyond int64"),
    "key-1.9": (_key(1, 1.9), "a label key is 1.9"),
}


@pytest.mark.parametrize("case", sorted(NUMBERS))
def test_numbers_are_checked(
    runner: CliRunner,
    fixture_data: FixtureData,
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    monkeypatch.setenv("MEDIMETA_CATALOG", str(fixture_data.catalog))
    edit, words = NUMBERS[case]
    folder, _ = write_installed(LOCAL, tmp_path / "from")
    _edit_info(folder, edit)
    _from_folder(runner, folder, data_root, words)
    # Planted in the data root, it breaks no command for the others.
    _spares_the_others(runner, data_root, (folder / "info.yaml").read_bytes())


def _task(name: str, index: int = 0) -> Callable[[dict[str, Any]], None]:
    return lambda info: info["tasks"][index].__setitem__("task_name", name)


NAMES = {
    "escape": (_task("tissue\x1b[2J\x1b[31mclass"), "control character"),
    "newline": (_task("tissue\nerror: forged line"), "control character"),
    "carriage-return": (_task("tissue\rclass"), "control character"),
    "long": (_task("t" * 300), "longer than 100"),
}


@pytest.mark.parametrize("case", sorted(NAMES))
def test_names_are_data_and_reach_no_terminal_raw(
    runner: CliRunner,
    fixture_data: FixtureData,
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    monkeypatch.setenv("MEDIMETA_CATALOG", str(fixture_data.catalog))
    edit, words = NAMES[case]
    folder, _ = write_installed(LOCAL, tmp_path / "from")
    task = yaml.safe_load((folder / "info.yaml").read_text())["tasks"][0]["task_name"]
    _edit_info(folder, edit)
    new = yaml.safe_load((folder / "info.yaml").read_text())["tasks"][0]["task_name"]
    if len(new) < 255:  # the label file follows its task's name
        (folder / "task_labels" / f"{task}.npy").rename(folder / "task_labels" / f"{new}.npy")
    _from_folder(runner, folder, data_root, words)


def test_task_names_that_differ_only_in_case_are_refused(
    runner: CliRunner,
    fixture_data: FixtureData,
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEDIMETA_CATALOG", str(fixture_data.catalog))
    spec = dataclasses.replace(archives.DR_REGULAR, id="lab_scans")
    folder, _ = write_installed(spec, tmp_path / "from")
    info = yaml.safe_load((folder / "info.yaml").read_text())
    first, second = (task["task_name"] for task in info["tasks"][:2])
    (folder / "task_labels" / f"{second}.npy").rename(
        folder / "task_labels" / f"{first.upper()}.npy"
    )
    _edit_info(folder, _task(first.upper(), 1))
    _from_folder(runner, folder, data_root, "one name in any case")


def _labels(folder: Path, change: Callable[[np.ndarray], np.ndarray]) -> None:
    info = yaml.safe_load((folder / "info.yaml").read_text())
    path = folder / "task_labels" / f"{info['tasks'][0]['task_name']}.npy"
    np.save(path, change(np.load(path)))


def _at_first(value: float) -> Callable[[np.ndarray], np.ndarray]:
    def change(labels: np.ndarray) -> np.ndarray:
        changed = labels.astype(np.float64)
        changed[0] = value
        return changed

    return change


LABELS = {
    "fraction": (_at_first(1.5), "1.5"),
    "nan": (_at_first(float("nan")), "nan"),
    "infinite": (_at_first(float("inf")), "inf"),
    "unknown-key": (_at_first(99), "99"),
}


@pytest.mark.parametrize("case", sorted(LABELS))
def test_label_values_are_checked_before_anyone_uses_them(
    runner: CliRunner,
    fixture_data: FixtureData,
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    monkeypatch.setenv("MEDIMETA_CATALOG", str(fixture_data.catalog))
    change, value = LABELS[case]
    folder, _ = write_installed(LOCAL, tmp_path / "from")
    _labels(folder, change)
    _from_folder(runner, folder, data_root, "task_labels/", value)

    # Installed anyway (by other means): never exported or sampled, --force or not.
    installed, _ = write_installed(archives.CRC, data_root)
    _labels(installed, change)
    for force in ((), ("--force",)):
        out = tmp_path / f"export{len(force)}"
        result = invoke(runner, "export", "crc", "--format", "numpy", "--out", str(out), *force)
        _refused_in_one_line(result, "task_labels/", value)
        assert not out.exists()
    _refused_in_one_line(invoke(runner, "sample", "crc", "--per-class", "1"), "task_labels/")
    result = invoke(runner, "verify", "crc", "--deep")
    assert result.exit_code == 4 and "task_labels/" in result.stdout and value in result.stdout


def test_multilabel_values_other_than_0_and_1_are_refused(
    runner: CliRunner,
    fixture_data: FixtureData,
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEDIMETA_CATALOG", str(fixture_data.catalog))
    spec = dataclasses.replace(archives.CXR, id="lab_scans")
    folder, _ = write_installed(spec, tmp_path / "from")
    info = yaml.safe_load((folder / "info.yaml").read_text())
    multilabel = next(t for t in info["tasks"] if t["task_target"] == "MULTILABEL_CLASSIFICATION")
    path = folder / "task_labels" / f"{multilabel['task_name']}.npy"
    labels = np.load(path)
    labels[0, 0] = 2
    np.save(path, labels)
    _from_folder(runner, folder, data_root, "values other than 0 and 1")


def _duplicate_line(folder: Path) -> None:
    path = folder / "splits" / "train.txt"
    lines = path.read_text().split("\n")
    lines[1] = lines[0]
    path.write_text("\n".join(lines))


def _miscount(info: dict[str, Any]) -> None:
    counts = info["splits_num_samples"]
    counts["train"] += 1
    counts["val"] -= 1


def test_counts_and_split_files_agree(
    runner: CliRunner,
    fixture_data: FixtureData,
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEDIMETA_CATALOG", str(fixture_data.catalog))
    miscounted, _ = write_installed(LOCAL, tmp_path / "a")
    _edit_info(miscounted, _miscount)
    _from_folder(runner, miscounted, data_root, "splits/", "lines, expected")

    repeated, _ = write_installed(LOCAL, tmp_path / "b")
    _duplicate_line(repeated)
    _from_folder(runner, repeated, data_root, "splits/train.txt", "more than once")

    # Installed anyway: export refuses it instead of exporting one image twice.
    installed, _ = write_installed(archives.CRC, data_root)
    _duplicate_line(installed)
    out = tmp_path / "export"
    result = invoke(runner, "export", "crc", "--format", "numpy", "--out", str(out))
    _refused_in_one_line(result, "splits/train.txt", "more than once")
    assert not out.exists()
