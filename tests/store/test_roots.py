"""The data roots of an invocation and their state on disk."""

from __future__ import annotations

from pathlib import Path

from medimeta_cli.settings import resolve_settings
from medimeta_cli.store.roots import RootKind, RootState, root_states
from tests.support.helpers import install_stub


def test_data_root_first_then_shared_roots(tmp_path: Path) -> None:
    install_stub(tmp_path / "shared", "crc")
    settings = resolve_settings(
        {"root": tmp_path / "root"}, environ={"MEDIMETA_PATH": str(tmp_path / "shared")}
    )
    data, shared = root_states(settings, ("crc", "cxr"))
    assert (data.kind, data.exists, data.access, data.datasets) == (
        RootKind.DATA,
        False,
        "missing",
        (),
    )
    assert (shared.kind, shared.access, shared.datasets) == (RootKind.SHARED, "writable", ("crc",))


def test_json_and_row(tmp_path: Path) -> None:
    install_stub(tmp_path, "cxr")
    state = RootState.probe(tmp_path, RootKind.SHARED, ("crc", "cxr"))
    assert state.to_json() == {
        "path": str(tmp_path),
        "kind": "shared (read-only)",
        "exists": True,
        "writable": True,
        "datasets": ["cxr"],
    }
    assert state.row() == [str(tmp_path), "shared (read-only)", "writable", "1"]
