"""Checks of the way to the server: the record API, proxies, certificates and the clock."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medimeta_cli.doctor.checks import Check, CheckStatus, timed
from medimeta_cli.errors import MedimetaError, NetworkError
from medimeta_cli.settings import Settings

if TYPE_CHECKING:
    from medimeta_cli.zenodo.client import RemoteClient
    from medimeta_cli.zenodo.record import Manifest

#: Clock skew (seconds) above which HTTP dates from the server are misjudged noticeably.
CLOCK_WARN_SECONDS = 30.0
#: Clock skew (seconds) above which rate-limit pauses and ``Retry-After`` dates go badly wrong.
CLOCK_FAIL_SECONDS = 300.0

_CLOCK_HINT = (
    "Synchronise the system clock (NTP, e.g. `timedatectl set-ntp true`, or ask your "
    "administrator): `Retry-After` dates and rate-limit reset times are compared with it, so "
    "waits between retries would be too short or too long."
)


@dataclass(frozen=True)
class RecordProbe:
    """What the request to the record API found, for the checks that build on it."""

    check: Check
    manifest: Manifest | None = None
    server_date: str | None = None
    received_at: float | None = None


ClientFactory = Callable[[Settings], "RemoteClient"]


# ----------------------------------------------------------------------------- record API


def default_client(
    settings: Settings, on_notice: Callable[[str], None] | None = None
) -> RemoteClient:
    """A client that gives up quickly: the doctor reports, it does not persist."""
    from medimeta_cli.zenodo.client import RemoteClient, RetryPolicy

    return RemoteClient(
        settings.base_url,
        settings.record_id,
        timeout=min(settings.timeout, 10.0),
        # One retry tells a blip from an outage; short waits keep the doctor fast.
        policy=RetryPolicy(
            retries=min(settings.retries, 1),
            backoff_base=0.5,
            backoff_cap=1.0,
            max_server_wait=5.0,
        ),
        on_notice=on_notice,
    )


def probe_record_api(
    settings: Settings,
    *,
    client_factory: ClientFactory | None = None,
    clock: Callable[[], float] = time.time,
) -> RecordProbe:
    """GET the record once (one retry at most): latency, file count, rate limit and the
    server's ``Date`` header, stamped with ``clock()`` when the answer arrived."""
    name = "record API"
    started = time.monotonic()
    if settings.offline:
        return RecordProbe(
            Check(
                name,
                CheckStatus.SKIP,
                "offline mode is on (--offline or MEDIMETA_OFFLINE): not contacted",
            )
        )
    import httpx

    from medimeta_cli.catalog.datasets import record_api_url

    url = record_api_url(settings.base_url, settings.record_id)
    seen: dict[str, Any] = {"attempts": 0}

    def on_request(request: httpx.Request) -> None:
        seen["attempts"] += 1
        seen["sent"] = time.monotonic()

    def on_response(response: httpx.Response) -> None:
        # Headers of the last answer: the one that was parsed (or that failed).
        seen["latency"] = time.monotonic() - seen.get("sent", started)
        seen["received_at"] = clock()
        seen["date"] = response.headers.get("date")
        remaining = response.headers.get("x-ratelimit-remaining")
        if remaining is not None and remaining.strip().isdigit():
            seen["remaining"] = int(remaining)

    factory = client_factory or default_client
    manifest: Manifest | None = None
    check: Check
    try:
        client = factory(settings)
        try:
            hooks = client.http.event_hooks  # added to, so a factory's own hooks still run
            client.http.event_hooks = {
                "request": [*hooks.get("request", []), on_request],
                "response": [*hooks.get("response", []), on_response],
            }
            manifest = client.fetch_record()
        finally:
            client.close()
    except MedimetaError as exc:
        check = Check(
            name, CheckStatus.FAIL, f"{url}: {exc.message}", _network_hint(exc.message, exc.hint)
        )
    except httpx.HTTPError as exc:  # not retried by the client: redirects, decoding, ...
        message = f"{type(exc).__name__}: {exc}"
        check = Check(name, CheckStatus.FAIL, f"{url}: {message}", _network_hint(message, None))
    else:
        latency_ms = 1000.0 * seen.get("latency", time.monotonic() - started)
        parts = [f"answered in {latency_ms:.0f} ms: {len(manifest.files)} files"]
        if manifest.version:
            parts.append(f"version {manifest.version}")
        retries = seen["attempts"] - 1
        if retries:
            parts.append(f"after {retries} {'retry' if retries == 1 else 'retries'}")
        if "remaining" in seen:
            parts.append(f"{seen['remaining']} requests left in the rate-limit window")
        check = Check(name, CheckStatus.OK, f"{url} " + ", ".join(parts))
    return RecordProbe(
        replace(check, seconds=time.monotonic() - started),
        manifest=manifest,
        server_date=seen.get("date"),
        received_at=seen.get("received_at"),
    )


def _network_hint(message: str, hint: str | None) -> str:
    if "CERTIFICATE_VERIFY_FAILED" in message or "certificate verify failed" in message:
        return (
            "The server's certificate is not trusted. Behind a TLS-inspecting proxy, set "
            "SSL_CERT_FILE to your organisation's CA bundle (see the certificates check)."
        )
    from medimeta_cli.zenodo.client import UNREACHABLE_HINT

    if hint is None or hint in (NetworkError.default_hint, UNREACHABLE_HINT):
        # The generic hints talk about resuming a download, or send the user to the doctor.
        return (
            "Check the connection, the proxy variables (see the proxy check) and "
            "MEDIMETA_BASE_URL; behind a firewall, download elsewhere and use "
            "`medimeta download --from PATH`."
        )
    return hint


# ----------------------------------------------------------------------------- proxy

_PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


def mask_credentials(value: str) -> str:
    """``http://user:secret@host:3128`` -> ``http://user:***@host:3128`` (values without a
    password come back unchanged)."""
    from urllib.parse import urlsplit, urlunsplit

    has_scheme = "://" in value
    try:
        parts = urlsplit(value if has_scheme else f"//{value}")
    except ValueError:
        return "***"  # unparsable: show nothing rather than a secret
    if parts.password is None:
        return value
    user = parts.username or ""
    netloc = f"{user}:***@{parts.netloc.rpartition('@')[2]}"
    masked = urlunsplit(parts._replace(netloc=netloc))
    return masked if has_scheme else masked.removeprefix("//")


@timed
def check_proxy(environ: Mapping[str, str], *, record_check: Check | None = None) -> Check:
    """Which proxy variables are set (in either case; httpx reads both), passwords masked.

    Informative only, unless the record API could not be reached while a proxy
    is configured: then the proxy is the first suspect.
    """
    name = "proxy"
    found = [
        f"{variable}={mask_credentials(environ[variable])}"
        for wanted in _PROXY_VARIABLES
        for variable in sorted(environ)
        if variable.upper() == wanted and environ[variable].strip()
    ]
    if not found:
        return Check(
            name, CheckStatus.OK, "no proxy variables set (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY)"
        )
    detail = "; ".join(found)
    uses_proxy = any(not entry.upper().startswith("NO_PROXY=") for entry in found)
    if uses_proxy and record_check is not None and record_check.failed:
        return Check(
            name,
            CheckStatus.WARN,
            detail + " (and the record API could not be reached)",
            "Check the proxy address and credentials, or add the server to NO_PROXY if it "
            "should be reached directly.",
        )
    return Check(name, CheckStatus.OK, detail)


# ----------------------------------------------------------------------------- certificates


@timed
def check_certificates(environ: Mapping[str, str]) -> Check:
    """The CA bundle httpx verifies servers with: ``SSL_CERT_FILE``, ``SSL_CERT_DIR`` or
    certifi's, and whether it exists (and, for a file, loads)."""
    import ssl

    name = "certificates"
    cert_file = environ.get("SSL_CERT_FILE", "")
    cert_dir = environ.get("SSL_CERT_DIR", "")
    if cert_file:  # httpx prefers it over SSL_CERT_DIR and certifi
        if not Path(cert_file).is_file():
            return Check(
                name,
                CheckStatus.FAIL,
                f"SSL_CERT_FILE={cert_file} does not exist; every https request will fail",
                "Point SSL_CERT_FILE at an existing PEM bundle, or unset it to use certifi's.",
            )
        try:
            ssl.create_default_context(cafile=cert_file)
        except (ssl.SSLError, OSError) as exc:
            return Check(
                name,
                CheckStatus.FAIL,
                f"SSL_CERT_FILE={cert_file} cannot be loaded: {exc}",
                "Point SSL_CERT_FILE at a PEM bundle of CA certificates, or unset it.",
            )
        return Check(name, CheckStatus.OK, f"SSL_CERT_FILE={cert_file}")
    if cert_dir:
        if not Path(cert_dir).is_dir():
            return Check(
                name,
                CheckStatus.FAIL,
                f"SSL_CERT_DIR={cert_dir} is not a folder; every https request will fail",
                "Point SSL_CERT_DIR at an existing folder of CA certificates, or unset it.",
            )
        return Check(name, CheckStatus.OK, f"SSL_CERT_DIR={cert_dir}")
    try:
        import certifi
    except ImportError:
        return Check(
            name,
            CheckStatus.FAIL,
            "certifi (the CA bundle httpx uses) is not installed",
            "Reinstall medimeta-cli (pip install --force-reinstall medimeta-cli).",
        )
    bundle = certifi.where()
    if not Path(bundle).is_file():
        return Check(
            name,
            CheckStatus.FAIL,
            f"certifi's bundle {bundle} is missing",
            "Reinstall certifi (pip install --force-reinstall certifi).",
        )
    ignored = [v for v in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if environ.get(v)]
    if ignored:
        # A common surprise: a corporate CA configured for requests or curl only.
        variable = ignored[0]
        return Check(
            name,
            CheckStatus.WARN,
            f"certifi bundle {bundle}; {variable} is set but httpx ignores it",
            f"If the server needs that CA, set SSL_CERT_FILE={environ[variable]} too.",
        )
    return Check(name, CheckStatus.OK, f"certifi bundle {bundle}")


# ----------------------------------------------------------------------------- clock


@timed
def check_clock(probe: RecordProbe) -> Check:
    """Compare the server's ``Date`` header with the local clock when the answer arrived."""
    from email.utils import parsedate_to_datetime

    name = "clock"
    if probe.server_date is None or probe.received_at is None:
        why = "offline" if probe.check.status is CheckStatus.SKIP else "no answer from the server"
        return Check(name, CheckStatus.SKIP, f"no server Date header to compare with ({why})")
    try:
        server = parsedate_to_datetime(probe.server_date).timestamp()
    except (TypeError, ValueError):
        return Check(
            name, CheckStatus.SKIP, f"the server's Date header {probe.server_date!r} is not a date"
        )
    # Date has whole seconds: the server's clock read somewhere in [Date, Date + 1).
    skew = probe.received_at - (server + 0.5)
    direction = "ahead of" if skew > 0 else "behind"
    detail = f"local clock {abs(skew):.0f} s {direction} the server (Date: {probe.server_date})"
    if abs(skew) > CLOCK_FAIL_SECONDS:
        return Check(name, CheckStatus.FAIL, detail, _CLOCK_HINT)
    if abs(skew) > CLOCK_WARN_SECONDS:
        return Check(name, CheckStatus.WARN, detail, _CLOCK_HINT)
    if abs(skew) < 2:
        detail = f"in step with the server (Date: {probe.server_date})"
    return Check(name, CheckStatus.OK, detail)
