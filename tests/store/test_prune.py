"""Planning a prune in the core: when another host's leftovers count as abandoned."""

from __future__ import annotations

import json
import time
from pathlib import Path

from medimeta_cli.store.layout import RootLayout
from medimeta_cli.store.prune import plan_prune


def test_other_hosts_leftovers_go_after_a_day(tmp_path: Path) -> None:
    layout = RootLayout(tmp_path)
    layout.partial_dir.mkdir(parents=True)
    stem = "crc.zip.elsewhere.42.0badc0de"
    (layout.partial_dir / f"{stem}.part").write_bytes(b"x" * 10)
    (layout.partial_dir / f"{stem}.json").write_text(json.dumps({"host": "elsewhere", "pid": 42}))
    assert plan_prune(layout) == []
    [item] = plan_prune(layout, now=time.time() + 25 * 3600)
    assert (item.kind, item.path.name) == ("partial", f"{stem}.part")
    assert item.reason == "untouched for 25 h (by a job on elsewhere)"
