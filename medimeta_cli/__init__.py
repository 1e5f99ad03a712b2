"""medimeta-cli: command-line data manager for MedIMeta, the Medical Imaging Meta-Dataset.

A library core with a thin command line on top. The core never prints and never
imports typer or rich: it takes progress callbacks, returns result objects that
render themselves (``to_json()``), logs with :mod:`logging` and raises from the one
error tree in :mod:`medimeta_cli.errors`. Only :mod:`medimeta_cli.cli` talks to people.

Layers, top to bottom. A module imports from its own layer and the layers below it,
never from a layer above (``tests/test_layers.py`` checks every import against this map)::

    6  cli
    5  download doctor api
    4  plan ranged segments transfer streamed install folder_import job
    4  selection export sample verify remove prune
    3  remote archive installed images reader structure essentials status roots
    2  catalog catalog_file catalog_build citation settings record records partials locking slices
    1  errors events fsutil layout ownership upstream largereads connections hashing

- 6, the command line: typer options, sessions, output, exit codes (``cli/cmd_*.py``,
  one module per command; shared helpers in private ``cli/_*.py`` modules).
- 5, whole operations: downloading datasets (``download``), diagnosing a machine
  (``doctor/``: network, storage, environment), and the Python API (``api``:
  ``ensure``, ``download``, ``verify``, ``export``) with the command line's settings.
- 4, engines over one dataset: what to fetch and the space it needs (``plan``), HTTP
  transfers of whole archives or of chosen members (``transfer``, ``ranged``), every
  member of a whole archive straight into staging, md5 checked (``streamed``), whole
  archives in several slices at once within the run's connections (``segments``), installing
  (``install``; unzipped dataset folders: ``folder_import``), one dataset's job under its
  lock (``job``); selections, exports (``export/``), episodes (``sample``), verification,
  removal and pruning.
- 3, access to things outside the process: the record over HTTP (``remote``), zip
  archives (``archive``), an installed dataset's own description, its ``info.yaml``
  (``installed``), its images, labels and splits (``images``, ``reader``), the upstream
  structure checks (full, and the quick ``essentials``), a dataset's local state and
  the data roots.
- 2, facts and local records: the bundled catalog, settings, the record manifest
  (``record``), install records (``records``), partial downloads and locks, and the
  slices of a segmented download (``slices``).
- 1, foundations: the error tree, engine events, file-system helpers, the layout of a
  data root, ownership of temporary names, the upstream file names, and the socket
  read size and read watch (cancellation, stalls) of this tool's own HTTP client, the
  run's budget of connections (``connections``), and the md5 of archives (``hashing``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medimeta_cli.api import ensure

__version__ = "0.1.0"

# ``download``, ``verify`` and ``export`` of the API stay in ``medimeta_cli.api``: here
# those names are the modules of the same name.
__all__ = ["__version__", "ensure"]

# Public name -> module that defines it, imported on first use so that importing the
# package (and ``medimeta --help``) stays light.
_LAZY = {"ensure": "medimeta_cli.api"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
