"""Checks of the software: Python, medimeta-cli, its dependencies and the platform."""

from __future__ import annotations

import platform

from medimeta_cli.doctor.checks import Check, CheckStatus, timed

# ----------------------------------------------------------------------------- versions

_DISTRIBUTIONS = (
    "httpx",
    "h5py",
    "numpy",
    "Pillow",
    "pydantic",
    "typer",
    "rich",
    "certifi",
)


@timed
def check_versions() -> Check:
    """Python, medimeta-cli and its dependencies, read from package metadata (nothing heavy is
    imported), and the platform."""
    from importlib.metadata import PackageNotFoundError, version

    from medimeta_cli._version import __version__

    parts = [f"Python {platform.python_version()}", f"medimeta-cli {__version__}"]
    missing = []
    for distribution in _DISTRIBUTIONS:
        try:
            parts.append(f"{distribution} {version(distribution)}")
        except PackageNotFoundError:
            missing.append(distribution)
            parts.append(f"{distribution} missing")
    parts.append(f"on {platform.system()} {platform.release()} {platform.machine()}")
    if missing:
        return Check(
            "versions",
            CheckStatus.WARN,
            ", ".join(parts),
            f"Reinstall medimeta-cli to get {', '.join(missing)} "
            "(pip install --force-reinstall medimeta-cli).",
        )
    return Check("versions", CheckStatus.OK, ", ".join(parts))
