"""The environment check of ``medimeta doctor``: versions from package metadata."""

from __future__ import annotations

import json
import subprocess
import sys

from medimeta_cli import __version__
from medimeta_cli.doctor.environment import check_versions


def test_versions_come_from_metadata_without_importing_heavy_modules() -> None:
    probe = (
        "import json, sys\n"
        "from medimeta_cli.doctor.environment import check_versions\n"
        "check = check_versions()\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'h5py', 'numpy', 'PIL'})\n"
        "print(json.dumps([check.status, check.detail, heavy]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    status, detail, heavy = json.loads(proc.stdout)
    assert heavy == []
    assert status == "ok"
    assert detail.startswith("Python ")
    assert f"medimeta-cli {__version__}" in detail
    for name in ("httpx", "h5py", "numpy", "Pillow", "pydantic", "typer", "rich"):
        assert f"{name} " in detail
    assert check_versions().status == "ok"
