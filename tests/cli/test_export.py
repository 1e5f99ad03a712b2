"""``medimeta export`` as users and SLURM arrays run it."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import InstalledData
from tests.support.helpers import installed_script, invoke, invoke_json, unwrapped


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_default_output_folder_and_json(
    runner: CliRunner, installed: InstalledData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke_json(runner, "export", "crc", "--split", "train,val", "--jobs", "1")
    assert result["out"] == str(tmp_path / "crc-tissue_class")
    assert result["status"] == "exported" and result["complete"] is True
    assert set(result["counts"]) == {"train", "val"}
    assert (tmp_path / "crc-tissue_class" / "train" / "metadata.csv").is_file()
    assert not (tmp_path / "crc-tissue_class" / "test").exists()


def test_webdataset_export_in_its_default_folder_with_a_shard_size(
    runner: CliRunner, installed: InstalledData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ("export", "crc", "--format", "WebDataset", "--shard-size", "6images", "-j", "1")
    result = invoke_json(runner, *args)
    out = tmp_path / "crc-tissue_class-webdataset"
    assert (result["out"], result["status"], result["images"]) == (str(out), "exported", 36)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert [s["samples"] for s in manifest["splits"]["train"]["shards"]] == [6, 6, 6, 2]
    assert sorted(p.name for p in out.glob("crc-val-*.tar")) == [
        "crc-val-000000.tar",
        "crc-val-000001.tar",
    ]
    provenance = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["format"]["shard_size"] == "6images"
    assert invoke_json(runner, *args)["status"] == "up to date"


def test_metadata_csv_reads_as_an_imagefolder_table(
    runner: CliRunner, installed: InstalledData, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    invoke(runner, "export", "cxr", "--task", "patient sex", "--out", str(out), "-j", "1")
    for split in ("train", "val", "test"):
        with open(out / split / "metadata.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert rows and all((out / split / row["file_name"]).is_file() for row in rows)
        assert {row["label_name"] for row in rows} <= {"F", "M"}
        assert {row["file_name"].split("/")[0] for row in rows} <= {"00_F", "01_M"}
        assert all(row["label"] == {"F": "0", "M": "1"}[row["label_name"]] for row in rows)


def test_multilabel_export_says_how_labels_are_stored(
    runner: CliRunner, installed: InstalledData, tmp_path: Path
) -> None:
    result = invoke(
        runner, "export", "cxr", "--task", "disease labels", "--out", str(tmp_path / "o"), "-j", "1"
    )
    assert result.exit_code == 0
    assert "multi-label" in result.stderr and "0/1 columns in metadata.csv" in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["crc", "--classes", "ADI,lymfocytes"], 2, "did you mean 'lymphocytes (LYM)'"),
        (["cxr"], 2, "choose one with --task"),
        (["crc", "--split", "training"], 2, "unknown split 'training'"),
        (["crc", "--rgb", "--grayscale"], 2, "exclude each other"),
        (["crc", "--shard", "4/3"], 2, "shard 4/3 does not exist"),
        (["crc", "--shard", "1/0"], 2, "the number of shards must be at least 1"),
        (["crc", "--format", "tfrecord"], 2, "'tfrecord' is not one of"),
        (["pneumonia"], 2, "unknown dataset"),
        (["crc", "--format", "webdataset", "--shard-size", "1000"], 2, "(bytes or images?)"),
        (["crc", "--shard-size", "1GB"], 2, "the imagefolder format writes none"),
    ],
)
def test_bad_input_exit_codes(
    runner: CliRunner,
    installed: InstalledData,
    tmp_path: Path,
    args: list[str],
    code: int,
    message: str,
) -> None:
    result = invoke(runner, "export", *args, "--out", str(tmp_path / "o"))
    assert result.exit_code == code, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "o").exists()


def test_not_installed_exit_code(
    runner: CliRunner, fixture_data: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMETA_CATALOG", str(fixture_data.catalog))  # type: ignore[attr-defined]
    result = invoke(runner, "export", "crc", "--out", str(tmp_path / "o"))
    assert result.exit_code == 8
    assert "medimeta download crc" in result.stderr


def test_existing_output_needs_overwrite(
    runner: CliRunner, installed: InstalledData, tmp_path: Path
) -> None:
    out = tmp_path / "o"
    assert invoke(runner, "export", "crc", "--out", str(out), "-j", "1").exit_code == 0
    again = invoke(runner, "export", "crc", "--out", str(out), "-j", "1")
    assert again.exit_code == 0 and "up to date" in again.stdout
    other = invoke(runner, "export", "crc", "--out", str(out), "--limit", "2")
    assert other.exit_code == 2 and "--overwrite" in other.stderr
    replaced = invoke(runner, "export", "crc", "--out", str(out), "--limit", "2", "--overwrite")
    assert replaced.exit_code == 0


@pytest.mark.slow
def test_slurm_array_of_shards_makes_one_export(installed: InstalledData, tmp_path: Path) -> None:
    """Shards run at the same time, as array jobs do, and together equal one whole export."""
    env = {
        **os.environ,
        "MEDIMETA_HOME": str(installed.root),
        "MEDIMETA_CATALOG": str(installed.catalog_path),
    }
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    base = [installed_script(), "export", "dr_regular", "--task", "DR level", "-j", "1", "--quiet"]
    subprocess.run([*base, "--out", str(whole)], env=env, check=True)
    jobs = [
        subprocess.Popen([*base, "--out", str(sharded), "--shard", f"{i}/4"], env=env)
        for i in (1, 2, 3, 4)
    ]
    assert [job.wait(timeout=120) for job in jobs] == [0, 0, 0, 0]
    provenance = {
        name: json.loads((folder / "provenance.json").read_text())
        for name, folder in (("whole", whole), ("sharded", sharded))
    }
    assert provenance["whole"]["command"] != provenance["sharded"]["command"]
    files = {name: files_of(folder) for name, folder in (("whole", whole), ("sharded", sharded))}
    files["whole"].pop("provenance.json")
    files["sharded"].pop("provenance.json")
    assert files["whole"] == files["sharded"]


@pytest.fixture
def outside_arrays(monkeypatch: pytest.MonkeyPatch) -> None:
    """No job array variables, even when the tests themselves run in a batch job."""
    for name in list(os.environ):
        if name.startswith(("SLURM_ARRAY_", "LSB_JOBINDEX", "PBS_ARRAY")) or name == "PBS_ARRAYID":
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("shard", "message", "hint"),
    [
        ("0/8", "shard 0/8 does not exist: shards count from 1", "--shard auto"),
        ("auto", "--shard auto: this is not a task of a job array", "--shard I/N"),
        ("auto/x", "'x', not a whole number", "--shard auto/8"),
    ],
)
@pytest.mark.usefixtures("outside_arrays")
def test_shard_errors_point_to_auto(
    runner: CliRunner, installed: InstalledData, tmp_path: Path, shard: str, message: str, hint: str
) -> None:
    """`--shard $SLURM_ARRAY_TASK_ID/8` under --array=0-7 fails for task 0: say what to use."""
    result = invoke(runner, "export", "crc", "--shard", shard, "--out", str(tmp_path / "o"))
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr and hint in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.usefixtures("outside_arrays")
@pytest.mark.parametrize("shard", ["0/8", "auto"])
def test_a_bad_shard_is_a_usage_error_before_the_data_is_looked_at(
    runner: CliRunner, data_root: Path, tmp_path: Path, shard: str
) -> None:
    """A script's wrong --shard must say so (exit 2), not "not installed" (exit 8)."""
    result = invoke(runner, "export", "crc", "--shard", shard, "--out", str(tmp_path / "o"))
    assert result.exit_code == 2, result.stderr
    assert "--shard auto" in result.stderr


@pytest.mark.usefixtures("outside_arrays")
@pytest.mark.parametrize(
    "fmt",
    [
        "imagefolder",
        pytest.param(
            "parquet",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("pyarrow") is None, reason="needs pyarrow"
            ),
        ),
    ],
)
def test_shard_auto_in_an_array_from_0_makes_one_export(
    runner: CliRunner, installed: InstalledData, tmp_path: Path, fmt: str
) -> None:
    """Tasks 0..3 of an array (as SLURM numbers them) write shards 1..4, the whole export."""
    base = ["export", "crc", "--format", fmt, "-j", "1", "--quiet", "--json"]
    invoke(runner, *base, "--out", str(tmp_path / "whole"))
    array = {"SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "3"}
    array |= {"SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_STEP": "1"}
    results = [
        invoke(
            runner,
            *base,
            "--out",
            str(tmp_path / "sharded"),
            "--shard",
            "auto",
            env={**array, "SLURM_ARRAY_TASK_ID": str(task)},
        )
        for task in (3, 0, 2, 1)
    ]
    assert [r.exit_code for r in results] == [0] * 4, [r.stderr for r in results]
    assert [json.loads(r.stdout)["complete"] for r in results] == [False, False, False, True]
    files = {name: files_of(tmp_path / name) for name in ("whole", "sharded")}
    for name in files:
        files[name].pop("provenance.json")
    assert files["whole"] == files["sharded"]


def test_progress_is_plain_when_piped(installed: InstalledData, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MEDIMETA_HOME": str(installed.root),
        "MEDIMETA_CATALOG": str(installed.catalog_path),
    }
    proc = subprocess.run(
        [installed_script(), "export", "crc", "--out", str(tmp_path / "o"), "--format", "numpy"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "exporting:" in proc.stderr and "images" in proc.stderr
    assert "\x1b[" not in proc.stderr
    assert proc.stdout.startswith("exported: ")


def test_choices_match_case_insensitively_and_help_lists_them(
    runner: CliRunner, installed: InstalledData, tmp_path: Path
) -> None:
    out = tmp_path / "o"
    result = invoke(
        runner, "export", "crc", "--split", "val", "--format", "NumPy", "--out", str(out), "-j", "1"
    )
    assert result.exit_code == 0, result.stderr
    assert (out / "val" / "images.npy").is_file()
    jpeg = invoke(
        runner,
        "export",
        "crc",
        "--split",
        "val",
        "--image-format",
        "JPEG",
        "-o",
        str(tmp_path / "j"),
    )
    assert jpeg.exit_code == 0, jpeg.stderr
    assert next((tmp_path / "j" / "val").rglob("*.jpg"))
    # Wide enough that the choices stay on one line.
    usage = invoke(runner, "export", "--help", env={"COLUMNS": "200"})
    assert "imagefolder|numpy|webdataset|parquet" in usage.stdout
    assert "png|jpeg|tiff" in usage.stdout


# ----------------------------------------------------------------------------- --out in a root


@pytest.fixture
def own_root(
    installed_session: InstalledData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A private copy of the installed fixture datasets (a failing test may destroy it)."""
    import shutil

    root = tmp_path / "data"
    shutil.copytree(installed_session.root, root, symlinks=True)
    monkeypatch.setenv("MEDIMETA_HOME", str(root))
    monkeypatch.setenv("MEDIMETA_CATALOG", str(installed_session.catalog_path))
    return root


def _out_for(where: str, root: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """The --out spelling of each way into a data root, and extra arguments."""
    link = tmp_path / "link-to-root"
    link.symlink_to(root)
    outs = {
        "root": (str(root), ["--overwrite"]),
        "dataset": (str(root / "crc"), ["--overwrite"]),
        "inside dataset": (str(root / "crc" / "sub"), []),
        "state folder": (str(root / ".medimeta" / "x"), []),
        "through a link": (str(link / "crc"), ["--overwrite"]),
        "dotdot": (str(tmp_path / "elsewhere" / ".." / "data"), ["--overwrite"]),
        "parent of root": (str(tmp_path), ["--overwrite"]),
        "shard into dataset": (str(root / "crc"), ["--shard", "1/2"]),
        "shard into root": (str(root), ["--shard", "2/2"]),
        "shard parent": (str(tmp_path), ["--shard", "1/2"]),
    }
    return outs[where]


@pytest.mark.parametrize(
    "where",
    [
        "root",
        "dataset",
        "inside dataset",
        "state folder",
        "through a link",
        "dotdot",
        "parent of root",
        "shard into dataset",
        "shard into root",
        "shard parent",
    ],
)
def test_out_in_a_data_root_is_refused(
    runner: CliRunner, own_root: Path, tmp_path: Path, where: str
) -> None:
    before = files_of(own_root)
    out, extra = _out_for(where, own_root, tmp_path)
    result = invoke(runner, "export", "crc", "--out", out, "-j", "1", *extra)
    assert result.exit_code == 2, result.stderr
    assert "an export never writes there" in unwrapped(result.stderr)
    assert "outside every data root" in result.stderr
    assert files_of(own_root) == before
    assert not (own_root / "crc" / "sub").exists()


def test_out_in_a_shared_root_is_refused(
    runner: CliRunner, own_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    shared = tmp_path / "lab"
    shutil.copytree(own_root, shared, symlinks=True)
    monkeypatch.setenv("MEDIMETA_PATH", str(shared))
    before = files_of(shared)
    for extra in (["--overwrite"], ["--shard", "1/2"]):
        result = invoke(runner, "export", "crc", "--out", str(shared / "cxr"), "-j", "1", *extra)
        assert result.exit_code == 2, result.stderr
        assert f"the data folder {shared}" in result.stderr
    assert files_of(shared) == before


def test_out_in_a_bind_mount_of_the_root_is_refused(
    runner: CliRunner, own_root: Path, tmp_path: Path
) -> None:
    """A bind mount shows the root under another name that no path comparison can see."""
    from tests.support.helpers import read_only_view

    before = files_of(own_root)
    with read_only_view(own_root, tmp_path / "view") as view:
        result = invoke(runner, "export", "crc", "--out", str(view / "crc" / "x"), "-j", "1")
    assert result.exit_code == 2, result.stderr
    assert "lies inside the data folder" in result.stderr
    assert files_of(own_root) == before


def test_sample_export_into_a_root_is_refused(
    runner: CliRunner, own_root: Path, tmp_path: Path
) -> None:
    before = files_of(own_root)
    result = invoke(
        runner, "sample", "crc", "--per-class", "1", "--export", str(own_root / "crc" / "s")
    )
    assert result.exit_code == 2, result.stderr
    assert "an export never writes there" in unwrapped(result.stderr)
    assert files_of(own_root) == before


def test_a_damaged_dataset_is_exported_only_with_force(
    runner: CliRunner, zenodo: object, data_root: Path, tmp_path: Path
) -> None:
    from tests.support.helpers import install_from_server

    install_from_server("crc")
    (data_root / "crc" / "LICENSE").unlink()
    assert invoke(runner, "verify", "crc").exit_code == 4
    out = tmp_path / "o"
    refused = invoke(runner, "export", "crc", "--out", str(out), "-j", "1")
    assert refused.exit_code == 4, refused.stderr
    assert "crc was found damaged by verify" in refused.stderr
    assert "verify --repair crc" in refused.stderr and "--force" in refused.stderr
    assert not out.exists()
    forced = invoke(runner, "export", "crc", "--out", str(out), "-j", "1", "--force")
    assert forced.exit_code == 0, forced.stderr
    assert "exporting it anyway" in forced.stderr
    assert (out / "provenance.json").is_file()


def test_a_lost_split_file_is_an_integrity_error(
    runner: CliRunner, own_root: Path, tmp_path: Path
) -> None:
    (own_root / "crc" / "splits" / "val.txt").unlink()
    result = invoke(runner, "export", "crc", "--split", "val", "--out", str(tmp_path / "o"))
    assert result.exit_code == 4, result.stderr
    assert "splits/val.txt of 'crc' is missing, but info.yaml gives the val split" in result.stderr
    assert not (tmp_path / "o").exists()


def test_a_task_name_in_other_case_is_resolved_to_the_exact_name(
    runner: CliRunner, installed: InstalledData, tmp_path: Path
) -> None:
    """The official loader raises for MedIMeta(root, "dr_regular", "clarity")."""
    out = tmp_path / "o"
    result = invoke(
        runner, "export", "dr_regular", "--task", "clarity", "--out", str(out), "-j", "1"
    )
    assert result.exit_code == 0, result.stderr
    assert "task 'clarity' is 'Clarity'" in result.stderr
    assert "MedIMeta(root, 'dr_regular', 'Clarity')" in result.stderr
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["task"] == provenance["selection"]["task"] == "Clarity"
    assert json.loads((out / "classes.json").read_text())["task"] == "Clarity"
    exact = invoke(runner, "export", "dr_regular", "--task", "Clarity", "--out", str(out))
    assert exact.exit_code == 0 and "is 'Clarity'" not in exact.stderr


def test_a_split_lacking_a_class_is_reported(
    runner: CliRunner, installed: InstalledData, tmp_path: Path
) -> None:
    out = tmp_path / "o"
    result = invoke(runner, "export", "crc", "--out", str(out), "-j", "1")
    assert result.exit_code == 0, result.stderr
    assert "the val split has no images of 1 class: 01_background (BACK)" in result.stderr
    assert "the test split has no images of 1 class: 00_adipose (ADI)" in result.stderr
    assert "allow_empty=True" in result.stderr
    document = invoke_json(runner, "export", "crc", "--out", str(out))
    assert document["status"] == "up to date"
    assert document["empty_class_folders"] == {
        "val": ["01_background (BACK)"],
        "test": ["00_adipose (ADI)"],
    }


def test_the_command_line_and_the_api_word_the_damaged_refusal_alike(
    runner: CliRunner, zenodo: object, data_root: Path, tmp_path: Path
) -> None:
    """Both go through one export use case; before, each worded the refusal its own way."""
    from medimeta_cli import api
    from medimeta_cli.errors import IntegrityError
    from tests.support.helpers import install_from_server

    install_from_server("crc")
    (data_root / "crc" / "LICENSE").unlink()
    assert invoke(runner, "verify", "crc").exit_code == 4
    out = tmp_path / "o"
    refused = invoke(runner, "export", "crc", "--out", str(out), "-j", "1", "--json")
    assert refused.exit_code == 4, refused.stderr
    shown = json.loads(refused.stdout or refused.stderr)["error"]
    with pytest.raises(IntegrityError) as raised:
        api.export("crc", out, jobs=1)
    assert raised.value.message == shown["message"]
    assert raised.value.hint == shown["hint"]
    assert not out.exists()


# ----------------------------------------------------------------------------- parquet


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="needs pyarrow")
def test_parquet_export_of_every_task_into_its_default_folder(
    runner: CliRunner, installed: InstalledData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ("export", "dr_regular", "--format", "parquet", "--task", "all", "-j", "1")
    result = invoke_json(runner, *args)
    out = tmp_path / "dr_regular-all-parquet"
    assert result["out"] == str(out) and result["status"] == "exported"
    names = sorted(p.name for p in (out / "data").iterdir())
    assert names == [f"{s}-00000-of-00001.parquet" for s in ("test", "train", "val")]
    assert {"README.md", "classes.json", "provenance.json"} <= {p.name for p in out.iterdir()}
    provenance = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["format"]["format"] == "parquet"
    assert provenance["format"]["image_format"] == "png"
    assert invoke_json(runner, *args)["status"] == "up to date"
    # Another image format is another export, never taken for this one.
    again = invoke(runner, *args, "--image-format", "jpeg")
    assert again.exit_code == 2 and "already exists" in unwrapped(again.stderr)
