"""One invocation: settings resolved once, an output, logging, and errors turned into exit codes.

Every command runs its body in ``with session(common) as s:``, where ``common`` is the
:class:`~medimeta_cli.cli.options.CommonOptions` that
:func:`~medimeta_cli.cli.options.with_common_options` collected from its command line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import typer

from medimeta_cli.catalog.datasets import Catalog
from medimeta_cli.catalog.file import load_catalog
from medimeta_cli.cli._logs import log_to_stderr
from medimeta_cli.cli.exit_codes import ExitCode, exit_code_for
from medimeta_cli.cli.options import CommonOptions
from medimeta_cli.cli.output import Output
from medimeta_cli.errors import MedimetaError, NotInstalledError
from medimeta_cli.settings import Settings, resolve_settings
from medimeta_cli.store.status import LocalStatus, locate, root_of


@dataclass
class Session:
    """What a command works with."""

    settings: Settings
    out: Output

    def locate(self, dataset_id: str) -> LocalStatus:
        """State of a dataset in the data root, or in a shared root (``MEDIMETA_PATH``)."""
        return locate(self.settings.root, self.settings.shared_roots, dataset_id)

    def installed_root(self, dataset_id: str) -> Path:
        """The data root an installed dataset is read from; :class:`NotInstalledError` if none."""
        root = root_of(self.locate(dataset_id))
        if root is None:
            roots = ", ".join(str(r) for r in (self.settings.root, *self.settings.shared_roots))
            raise NotInstalledError(dataset_id, roots)
        return root

    @cached_property
    def catalog(self) -> Catalog:
        """The bundled catalog, or the one ``MEDIMETA_CATALOG`` names (validated strictly)."""
        return load_catalog(self.settings.catalog)


def _env_debug() -> bool:
    import os

    return os.environ.get("MEDIMETA_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


@contextmanager
def session(options: CommonOptions | None = None) -> Iterator[Session]:
    """Resolve settings from the common options, yield a session, and report any error.

    The package's log records go to stderr meanwhile: debug records with ``--debug``
    or ``MEDIMETA_DEBUG``, warnings otherwise, errors only with ``--quiet``. An error
    is reported on stderr, and with ``--json`` as a JSON object on stdout too, unless the
    command printed its result already.
    """
    options = options or CommonOptions()
    debug = options.debug or _env_debug()
    out = Output(json_mode=options.json, quiet=options.quiet, debug=debug)
    try:
        with log_to_stderr(debug=debug, quiet=options.quiet):
            settings = resolve_settings(options.setting_flags())
            out.debug = settings.debug
            out.progress_interval = settings.progress_interval
            yield Session(settings=settings, out=out)
    except (typer.Exit, typer.Abort):
        raise
    except (MedimetaError, KeyboardInterrupt) as error:
        code = exit_code_for(error)
        out.fail(error, code)
        raise typer.Exit(int(code)) from None
    except Exception as error:
        out.fail(error, ExitCode.FAILURE)
        raise typer.Exit(int(ExitCode.FAILURE)) from None
