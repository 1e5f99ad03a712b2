"""Whether the installed data is old: a newer version of the record, and what changed."""

from __future__ import annotations

from medimeta_cli.doctor.checks import Check, CheckStatus, timed
from medimeta_cli.doctor.network import ClientFactory, RecordProbe, default_client
from medimeta_cli.errors import MedimetaError, RemoteDataError
from medimeta_cli.settings import Settings
from medimeta_cli.store.layout import RootLayout

NAME = "data version"


@timed
def check_data_version(
    settings: Settings, probe: RecordProbe, *, client_factory: ClientFactory | None = None
) -> Check:
    """Ask for the record's latest version (one request, after the record API check) and
    compare it with the record and the installed datasets; the check is saved for ``list``.

    ``ok`` when the record is the latest and nothing installed is older; ``warn`` when a
    newer version exists or the answer was refused; ``skip`` offline or without an answer.
    """
    if settings.offline:
        return Check(
            NAME, CheckStatus.SKIP, "offline mode is on: could not check for a newer version"
        )
    if probe.manifest is None:
        return Check(
            NAME,
            CheckStatus.SKIP,
            "could not check for a newer version: the record API did not answer",
        )
    import httpx

    from medimeta_cli.zenodo.versions import check_latest, report_versions

    layout = RootLayout(settings.root)
    try:
        client = (client_factory or default_client)(settings)
        try:
            latest = client.fetch_latest()
        finally:
            client.close()
        check_latest(probe.manifest, latest)
    except RemoteDataError as exc:
        return Check(
            NAME,
            CheckStatus.WARN,
            exc.message,
            "The server's answer about versions is not trusted; installed data is unchanged. "
            "Try again later, or check MEDIMETA_BASE_URL.",
        )
    except (MedimetaError, httpx.HTTPError) as exc:
        message = exc.message if isinstance(exc, MedimetaError) else f"{type(exc).__name__}"
        return Check(NAME, CheckStatus.SKIP, f"could not check for a newer version: {message}")
    report = report_versions(layout, probe.manifest, latest, latest.fetched_at)
    if not report.newer and not report.behind:
        return Check(NAME, CheckStatus.OK, report.line())
    ids = " ".join(u.dataset_id for u in report.behind) or "ID"
    return Check(
        NAME,
        CheckStatus.WARN,
        report.line(),
        f"`medimeta download --record latest {ids} --force` installs the latest version; "
        "without --force installed data is kept as it is.",
    )
