"""Dataset states (absent, partial, installed, verified, damaged) and sizes in ``list``."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from medimeta_cli.fsutil import human_bytes
from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.records import (
    CheckStamp,
    read_install_record,
    stamp_check,
    write_install_record,
)
from medimeta_cli.store.status import State, local_status
from tests.support import zenodo_server as zs
from tests.support.helpers import (
    install_from_server,
    install_stub,
    invoke,
    invoke_json,
    sample_install_record,
)


def test_absent_until_info_yaml_exists(tmp_path: Path) -> None:
    assert local_status(tmp_path, "crc").state is State.ABSENT
    (tmp_path / "crc").mkdir()
    assert local_status(tmp_path, "crc").state is State.ABSENT
    folder = install_stub(tmp_path, "crc")
    status = local_status(tmp_path, "crc")
    # Unpacked by hand: no install record, so no size either.
    assert (status.state, status.path, status.size_bytes) == (State.INSTALLED, folder, None)
    assert read_install_record(RootLayout(tmp_path), "crc") is None
    assert status.to_json()["state"] == "installed"


def test_partial_state_with_percent(tmp_path: Path) -> None:
    partial = RootLayout(tmp_path).partial_dir
    partial.mkdir(parents=True)
    (partial / "crc.zip.host.1.abc.json").write_text(json.dumps({"size": 200, "md5": "x"}))
    (partial / "crc.zip.host.1.abc.part").write_bytes(b"\0" * 50)
    status = local_status(tmp_path, "crc")
    assert (status.state, status.percent) == (State.PARTIAL, 25.0)
    assert status.describe() == "partial 25%"


def test_partial_in_slices_counts_bytes_done_not_the_file_size(tmp_path: Path) -> None:
    """A download in slices has the archive's size from its start: 30 of 200 bytes done."""
    partial = RootLayout(tmp_path).partial_dir
    partial.mkdir(parents=True)
    state = {"size": 200, "md5": "x", "slices": [[0, 100, 20], [100, 200, 110]]}
    (partial / "crc.zip.host.1.abc.json").write_text(json.dumps(state))
    (partial / "crc.zip.host.1.abc.part").write_bytes(b"\0" * 200)
    assert local_status(tmp_path, "crc").percent == 15.0
    # Slices that do not tile the archive are not trusted: no byte counts then.
    state["slices"] = [[0, 100, 20], [120, 200, 130]]
    (partial / "crc.zip.host.1.abc.json").write_text(json.dumps(state))
    assert local_status(tmp_path, "crc").percent == 0.0


def test_verified_and_damaged_states_come_from_the_last_check(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path)
    install_stub(tmp_path, "crc")
    write_install_record(layout, sample_install_record())
    assert local_status(tmp_path, "crc").state is State.INSTALLED
    stamp_check(layout, "crc", CheckStamp("2026-11-28T10:00:00+00:00", True, "full"))
    status = local_status(tmp_path, "crc")
    assert (status.state, status.checked_at) == (State.VERIFIED, "2026-11-28T10:00:00+00:00")
    assert status.describe() == "verified 2026-11-28"
    stamp_check(layout, "crc", CheckStamp("2026-11-29T10:00:00+00:00", False, "fast", 2))
    assert local_status(tmp_path, "crc").state is State.DAMAGED


def test_list_shows_sizes_from_install_records(
    runner: CliRunner, zenodo: zs.ZenodoServer, data_root: Path
) -> None:
    layout, _ = install_from_server("crc")
    record = read_install_record(layout, "crc")
    assert record is not None
    install_stub(data_root, "cxr")  # unpacked by hand: no record, size unknown
    result = invoke(runner, "list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split()[-2:] == ["STATE", "SIZE"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["crc"].endswith(f"installed  {human_bytes(record.total_bytes)}")
    assert rows["cxr"].endswith("installed  ?")
    assert rows["dr_regular"].endswith("absent     -")
    sizes = {item["id"]: item["size_bytes"] for item in invoke_json(runner, "list")}
    assert sizes["crc"] == record.total_bytes and sizes["cxr"] is None


def test_an_unreadable_install_record_is_damage(tmp_path: Path) -> None:
    """#9 item 9: an unreadable record made the dataset look merely installed."""
    layout = RootLayout(tmp_path)
    install_stub(tmp_path, "crc")
    write_install_record(layout, sample_install_record())
    layout.install_record_path("crc").write_text("[1,2,3]")
    assert local_status(tmp_path, "crc").state is State.DAMAGED
    layout.install_record_path("crc").unlink()
    assert local_status(tmp_path, "crc").state is State.INSTALLED  # untracked, not damaged
