"""``medimeta doctor``: find out why downloads would fail before they do.

Each check looks at one thing a download depends on (the record API, proxies,
certificates, free space, write permission, file locks, the clock, versions,
shared roots) or at the data (a newer version of the record) and returns a
:class:`Check`: ``ok``, ``warn``, ``fail`` or ``skip``, one line of detail and, when
something is wrong, a hint. Nothing here prints; the CLI decides how results are shown.

Checks really try things (a request to the record API, a file written and
removed, a lock taken by this process and contended by a second one) and leave
nothing behind: folders they had to create are removed again.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from medimeta_cli.doctor.checks import Check, CheckStatus, any_failed, crashed, summary
from medimeta_cli.doctor.data_version import check_data_version
from medimeta_cli.doctor.environment import check_versions
from medimeta_cli.doctor.network import (
    ClientFactory,
    RecordProbe,
    check_certificates,
    check_clock,
    check_proxy,
    default_client,
    probe_record_api,
)
from medimeta_cli.doctor.storage import (
    LockFactory,
    check_disk_space,
    check_file_locks,
    check_shared_roots,
    check_write_permission,
)
from medimeta_cli.errors import MedimetaError
from medimeta_cli.settings import Settings

if TYPE_CHECKING:
    from medimeta_cli.catalog.datasets import Catalog

__all__ = ["Check", "CheckStatus", "any_failed", "run_checks", "summary"]


def run_checks(
    settings: Settings,
    *,
    client_factory: ClientFactory | None = None,
    lock_factory: LockFactory | None = None,
    catalog: Catalog | None = None,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
    on_notice: Callable[[str], None] | None = None,
) -> list[Check]:
    """Run every check, in an order where later checks use what earlier ones found.

    A check that crashes becomes a failed check naming the exception, so one
    bug never hides the results of the others.
    """
    environ = os.environ if environ is None else environ
    if client_factory is None:
        client_factory = functools.partial(default_client, on_notice=on_notice)
    try:
        probe = probe_record_api(settings, client_factory=client_factory, clock=clock)
    except Exception as exc:  # a bug in one check must not hide the others
        probe = RecordProbe(crashed("record API", exc))
    if catalog is None:
        catalog_error: MedimetaError | None = None
        try:
            from medimeta_cli.catalog.file import load_catalog

            catalog = load_catalog(settings.catalog)
        except MedimetaError as exc:
            catalog_error = exc
    else:
        catalog_error = None
    steps: list[tuple[str, Callable[[], Check]]] = [
        ("proxy", lambda: check_proxy(environ, record_check=probe.check)),
        ("certificates", lambda: check_certificates(environ)),
        (
            "disk space",
            lambda: check_disk_space(
                settings, catalog, probe.manifest, catalog_error=catalog_error
            ),
        ),
        ("write permission", lambda: check_write_permission(settings.root)),
        (
            "file locks",
            lambda: check_file_locks(
                settings.root, lock_factory=lock_factory, enabled=settings.locks
            ),
        ),
        ("clock", lambda: check_clock(probe)),
        ("versions", check_versions),
        ("shared roots", lambda: check_shared_roots(settings.shared_roots)),
        (
            "data version",
            lambda: check_data_version(settings, probe, client_factory=client_factory),
        ),
    ]
    checks = [probe.check]
    for name, step in steps:
        try:
            checks.append(step())
        except Exception as exc:
            checks.append(crashed(name, exc))
    return checks
