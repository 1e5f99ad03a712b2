"""Local state of datasets in a data root."""

from __future__ import annotations

from pathlib import Path

from medimeta_cli.cache import RootLayout, State, local_status
from tests.helpers import install_stub


def test_absent_until_info_yaml_exists(tmp_path: Path) -> None:
    assert local_status(tmp_path, "crc").state is State.ABSENT
    (tmp_path / "crc").mkdir()
    assert local_status(tmp_path, "crc").state is State.ABSENT
    folder = install_stub(tmp_path, "crc")
    status = local_status(tmp_path, "crc")
    assert status.state is State.INSTALLED
    assert status.path == folder
    assert status.to_json() == {"state": "installed", "path": str(folder)}


def test_layout_keeps_state_out_of_dataset_folders(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path)
    assert layout.dataset_dir("crc") == tmp_path / "crc"
    assert layout.state_dir == tmp_path / ".medimeta"
