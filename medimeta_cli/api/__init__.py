"""The Python API: datasets for scripts and training jobs, as the command line gets them.

::

    from medimeta_cli import ensure
    from medimeta import MedIMeta  # the official loader

    folder = ensure("crc")["crc"]            # <root>/crc, installed and checked
    data = MedIMeta(folder.parent, "crc", "tissue class")

Settings resolve as for the command line: an argument given here (not None) wins, then
the ``MEDIMETA_*`` variable, then the default (:mod:`medimeta_cli.settings`). Nothing
is printed: results come back as the objects the commands render (``to_json()``),
errors are raised from :mod:`medimeta_cli.errors` with a ``hint``, and the engine logs
with :mod:`logging` under ``medimeta_cli`` (no handler is configured here).

Many processes may call :func:`ensure` at once (every rank of a ``torchrun`` or
``srun`` job): each dataset is fetched under its lock by one of them while the others
wait, then all return the same folder.
"""

from __future__ import annotations

from medimeta_cli.api._arguments import PathLike
from medimeta_cli.api.episodes import (
    check_episodes,
    export_episodes,
    load_episodes,
    sample,
    sample_protocol,
    write_episodes,
)
from medimeta_cli.api.exports import export, stats
from medimeta_cli.api.installs import download, ensure, sources_for, verify

__all__ = [
    "PathLike",
    "check_episodes",
    "download",
    "ensure",
    "export",
    "export_episodes",
    "load_episodes",
    "sample",
    "sample_protocol",
    "sources_for",
    "stats",
    "verify",
    "write_episodes",
]
