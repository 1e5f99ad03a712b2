"""medimeta-cli: command-line data manager for MedIMeta, the Medical Imaging Meta-Dataset.

A library core with a thin command line on top. The core never prints and never
imports typer or rich: it takes progress callbacks, returns result objects that
render themselves (``to_json()``), logs with :mod:`logging` and raises from the one
error tree in :mod:`medimeta_cli.errors`. Only :mod:`medimeta_cli.cli` talks to people.

Subpackages by concern; the folder tree is the architecture:

- ``catalog/``: the bundled catalog (datasets, tasks, domains), catalog files, citations.
- ``zenodo/``: the source: the record's manifest and polite HTTP access to it (a second
  source, a mirror or S3, would plug in beside it).
- ``fetch/``: transfers of archives over HTTP behind one interface: whole, in slices, chosen
  members, or streamed into staging while they download.
- ``install/``: zip safety, the installer and its one commit (the commit rule: nothing
  becomes visible without the proof of its mode's check), and ``--from`` folders.
- ``store/``: the data root: its layout, install records, partials, state, locks,
  ownership of temporary names, removal and pruning.
- ``dataset/``: an installed dataset: the upstream format, its self-description (the
  one gate for what it says), images, labels and splits, checks, verification,
  selections, and the meta-training sources of a cross-domain target.
- ``download/``: the plan, one dataset's job under its lock, and a whole run.
- ``export/``, ``sample/``, ``doctor/``: what is made of installed data, and diagnosis.
- ``api/``: the Python API; ``cli/``: the command line over the same use cases.
- Foundations at the top level: ``errors``, ``events``, ``fsutil``, ``hashing``, ``text``,
  ``settings``.

Layers, top to bottom. A module imports from its own layer and the layers below it,
never from a layer above, and no two modules import each other, directly or through
others (``tests/test_layers.py`` checks every import, at any depth, against this map).
A module's layer is that of the longest name below that it starts with::

    9  cli
    8  api
    7  download doctor
    6  download.job
    5  fetch install export sample download.plan dataset.verify dataset.verify_installed
       store.remove store.prune
    4  dataset
    3  store zenodo
    2  catalog.build catalog.citation settings
    1  catalog errors events fsutil hashing text _version
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medimeta_cli.api import ensure, stats

from medimeta_cli._version import __version__

# ``download``, ``verify`` and ``export`` of the API stay in ``medimeta_cli.api``: here
# those names are the modules of the same name.
__all__ = ["__version__", "ensure", "stats"]

# Public name -> module that defines it, imported on first use so that importing the
# package (and ``medimeta --help``) stays light.
_LAZY = {"ensure": "medimeta_cli.api", "stats": "medimeta_cli.api"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
