"""Zip-bomb budgets from facts the archive cannot inflate: each member is bounded by what
it can plausibly be, whatever the archive's own info.yaml claims about the dataset."""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medimeta_cli.catalog.datasets import Dataset, InputSize, SplitCounts
from medimeta_cli.errors import IntegrityError
from medimeta_cli.install.archive import check_members, member_cap
from tests.conftest import FixtureData
from tests.support import archives
from tests.support.helpers import invoke, write_installed

LOCAL = dataclasses.replace(archives.tiny_spec("lab_scans"), seed=3)


def zeros_member(archive: Path, name: str, size: int) -> Path:
    """Append a member of ``size`` zero bytes, deflated (a few kilobytes on disk)."""
    with (
        zipfile.ZipFile(archive, "a", compression=zipfile.ZIP_DEFLATED) as handle,
        handle.open(name, "w", force_zip64=True) as sink,
    ):
        chunk = bytes(1 << 20)
        for _ in range(size // len(chunk)):
            sink.write(chunk)
        sink.write(bytes(size % len(chunk)))
    return archive


def local_archive(tmp_path: Path, *, drop: tuple[str, ...] = ()) -> Path:
    folder, _ = write_installed(LOCAL, tmp_path / "unzipped")
    for name in drop:
        (folder / name).unlink()
    return archives.archive_from_folder(folder, tmp_path / "zips")


def claiming(dataset: Dataset, count: int) -> Dataset:
    """The dataset as an info.yaml claiming ``count`` images describes it."""
    splits = SplitCounts(train=count, val=0, test=0)
    return dataclasses.replace(dataset, num_samples=count, splits=splits, original_splits=splits)


@pytest.mark.parametrize(
    ("member", "size"),
    [("LICENSE", 8 << 20), ("images/000000.tiff", 8 << 20), ("splits/extra.txt", 8 << 20)],
)
def test_a_member_larger_than_it_can_be_is_refused(
    runner: CliRunner,
    fixture_data: FixtureData,
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    member: str,
    size: int,
) -> None:
    """Before, the budget was one total for the whole archive: an 8 MiB LICENSE of a
    dataset of ten small images installed."""
    monkeypatch.setenv("MEDIMETA_CATALOG", str(fixture_data.catalog))
    archive = local_archive(tmp_path, drop=(member,) if member != "splits/extra.txt" else ())
    zeros_member(archive, f"lab_scans/{member}", size)
    assert archive.stat().st_size < 1 << 20
    result = invoke(runner, "download", "--from", str(archive), "--offline")
    assert result.exit_code == 4, result.stderr
    assert f"member 'lab_scans/{member}' declares {size:,} bytes" in result.stderr
    assert not (data_root / "lab_scans").exists()


def test_an_honest_archive_of_the_same_dataset_installs(
    runner: CliRunner,
    fixture_data: FixtureData,
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEDIMETA_CATALOG", str(fixture_data.catalog))
    archive = local_archive(tmp_path)
    result = invoke(runner, "download", "--from", str(archive), "--offline")
    assert result.exit_code == 0, result.stderr
    assert (data_root / "lab_scans" / "info.yaml").is_file()


def test_claiming_more_images_never_enlarges_small_files(tmp_path: Path) -> None:
    """A 3 MB zip claiming 200,000 images once earned a 2 GiB LICENSE."""
    _, dataset = write_installed(LOCAL, tmp_path)
    many = claiming(dataset, 200_000)
    for member in ("info.yaml", "LICENSE", "images/000001.tiff", "masks/000001.tiff"):
        assert member_cap(member, many) == member_cap(member, dataset)
        assert (member_cap(member, many) or 0) < 2 << 20
    # Members that hold a line or a number per image grow with the claim, and no more.
    assert member_cap("splits/train.txt", many) == 200_000 * 24 + 4096
    assert member_cap("task_labels/binary task.npy", many) == 200_000 * 8 * 2 + 4096


def test_images_hdf5_is_bounded_by_the_shape_it_declares(tmp_path: Path) -> None:
    _, dataset = write_installed(LOCAL, tmp_path)
    size = dataset.input_size
    pixels = dataset.num_samples * size.channels * size.height * size.width
    cap = member_cap("images.hdf5", dataset)
    assert cap is not None and pixels < cap < pixels * 2 + (32 << 20)
    bigger = dataclasses.replace(dataset, input_size=InputSize(3, size.height * 2, size.width))
    assert (member_cap("images.hdf5", bigger) or 0) > cap


def _members(names_sizes: list[tuple[str, int]]) -> list[zipfile.ZipInfo]:
    infos = []
    for name, size in names_sizes:
        info = zipfile.ZipInfo(name)
        info.file_size = size
        infos.append(info)
    return infos


def test_members_of_no_known_kind_share_one_allowance(tmp_path: Path) -> None:
    _, dataset = write_installed(LOCAL, tmp_path)
    fine = _members([("lab_scans/README.md", 100 << 20), ("lab_scans/notes.pdf", 100 << 20)])
    check_members(fine, dataset, archive_size=1 << 20, name="lab_scans.zip")
    too_much = [*fine, *_members([("lab_scans/more.bin", 100 << 20)])]
    with pytest.raises(IntegrityError, match=r"more\.bin.*files of no known kind"):
        check_members(too_much, dataset, archive_size=1 << 20, name="lab_scans.zip")
