"""``medimeta doctor``: find out why downloads would fail before they do.

Each check looks at one thing a download depends on (the record API, proxies,
certificates, free space, write permission, file locks, the clock, versions,
shared roots) and returns a :class:`Check`: ``ok``, ``warn``, ``fail`` or
``skip``, one line of detail and, when something is wrong, a hint. Nothing here
prints; the CLI decides how results are shown.

Checks really try things (a request to the record API, a file written and
removed, a lock taken by this process and contended by a second one) and leave
nothing behind: folders they had to create are removed again.
"""

from __future__ import annotations

import errno
import functools
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, Protocol

from medimeta_cli.errors import (
    DiskSpaceError,
    MedimetaError,
    NetworkError,
    PermissionDeniedError,
)
from medimeta_cli.fsutil import free_bytes, human_bytes, unique_suffix
from medimeta_cli.layout import RootLayout
from medimeta_cli.settings import Settings

if TYPE_CHECKING:
    from medimeta_cli.catalog import Catalog
    from medimeta_cli.record import Manifest
    from medimeta_cli.remote import RemoteClient

Status = Literal["ok", "warn", "fail", "skip"]

#: Clock skew (seconds) above which HTTP dates from the server are misjudged noticeably.
CLOCK_WARN_SECONDS = 30.0
#: Clock skew (seconds) above which rate-limit pauses and ``Retry-After`` dates go badly wrong.
CLOCK_FAIL_SECONDS = 300.0
#: Free space below this multiple of what ``download --all`` needs earns a warning: other
#: programs write to the same disk while a download of many hours runs.
SPACE_MARGIN = 1.2
#: Parallel downloads assumed for ``download --all`` (its ``--jobs`` default).
DEFAULT_JOBS = 2
#: Seconds allowed for the second process of the lock check (start-up included).
LOCK_CHILD_TIMEOUT = 15.0

_LOCKS_HINT = (
    "Set MEDIMETA_LOCKS=0 (or use a data root on a local disk): installs stay safe without "
    "locks, but two jobs may download the same dataset twice."
)
_CLOCK_HINT = (
    "Synchronise the system clock (NTP, e.g. `timedatectl set-ntp true`, or ask your "
    "administrator): `Retry-After` dates and rate-limit reset times are compared with it, so "
    "waits between retries would be too short or too long."
)

P = ParamSpec("P")


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    name: str
    status: Status
    detail: str
    hint: str | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        """Whether this check found something that will make downloads fail."""
        return self.status == "fail"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "hint": self.hint,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class RecordProbe:
    """What the request to the record API found, for the checks that build on it."""

    check: Check
    manifest: Manifest | None = None
    server_date: str | None = None
    received_at: float | None = None
    rate_remaining: int | None = None


class FileLockLike(Protocol):
    """The part of :class:`filelock.FileLock` the lock check uses."""

    def acquire(self, timeout: float) -> object:
        """Take the lock, waiting at most ``timeout`` seconds."""

    def release(self) -> object:
        """Give the lock back."""


LockFactory = Callable[[str], FileLockLike]
ClientFactory = Callable[[Settings], "RemoteClient"]


def _timed(function: Callable[P, Check]) -> Callable[P, Check]:
    """Fill in how long a check took."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Check:
        started = time.monotonic()
        check = function(*args, **kwargs)
        return replace(check, seconds=time.monotonic() - started)

    return wrapper


def any_failed(checks: Sequence[Check]) -> bool:
    """Whether any check failed (warnings do not count)."""
    return any(check.failed for check in checks)


# ----------------------------------------------------------------------------- all checks


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
        probe = RecordProbe(_crashed("record API", exc))
    if catalog is None:
        catalog_error: MedimetaError | None = None
        try:
            from medimeta_cli.catalog import load_catalog

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
    ]
    checks = [probe.check]
    for name, step in steps:
        try:
            checks.append(step())
        except Exception as exc:
            checks.append(_crashed(name, exc))
    return checks


def _crashed(name: str, exc: Exception) -> Check:
    return Check(
        name,
        "fail",
        f"the check itself crashed: {type(exc).__name__}: {exc}",
        "Report this problem to the medimeta-cli developers.",
    )


# ----------------------------------------------------------------------------- record API


def default_client(
    settings: Settings, on_notice: Callable[[str], None] | None = None
) -> RemoteClient:
    """A client that gives up quickly: the doctor reports, it does not persist."""
    from medimeta_cli.remote import RemoteClient, RetryPolicy

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
            Check(name, "skip", "offline mode is on (--offline or MEDIMETA_OFFLINE): not contacted")
        )
    import httpx

    from medimeta_cli.catalog import record_api_url

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
        check = Check(name, "fail", f"{url}: {exc.message}", _network_hint(exc.message, exc.hint))
    except httpx.HTTPError as exc:  # not retried by the client: redirects, decoding, ...
        message = f"{type(exc).__name__}: {exc}"
        check = Check(name, "fail", f"{url}: {message}", _network_hint(message, None))
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
        check = Check(name, "ok", f"{url} " + ", ".join(parts))
    return RecordProbe(
        replace(check, seconds=time.monotonic() - started),
        manifest=manifest,
        server_date=seen.get("date"),
        received_at=seen.get("received_at"),
        rate_remaining=seen.get("remaining"),
    )


def _network_hint(message: str, hint: str | None) -> str:
    if "CERTIFICATE_VERIFY_FAILED" in message or "certificate verify failed" in message:
        return (
            "The server's certificate is not trusted. Behind a TLS-inspecting proxy, set "
            "SSL_CERT_FILE to your organisation's CA bundle (see the certificates check)."
        )
    if hint is None or hint == NetworkError.default_hint:
        # The generic hint talks about resuming a download; the doctor has nothing to resume.
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


@_timed
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
        return Check(name, "ok", "no proxy variables set (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY)")
    detail = "; ".join(found)
    uses_proxy = any(not entry.upper().startswith("NO_PROXY=") for entry in found)
    if uses_proxy and record_check is not None and record_check.failed:
        return Check(
            name,
            "warn",
            detail + " (and the record API could not be reached)",
            "Check the proxy address and credentials, or add the server to NO_PROXY if it "
            "should be reached directly.",
        )
    return Check(name, "ok", detail)


# ----------------------------------------------------------------------------- certificates


@_timed
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
                "fail",
                f"SSL_CERT_FILE={cert_file} does not exist; every https request will fail",
                "Point SSL_CERT_FILE at an existing PEM bundle, or unset it to use certifi's.",
            )
        try:
            ssl.create_default_context(cafile=cert_file)
        except (ssl.SSLError, OSError) as exc:
            return Check(
                name,
                "fail",
                f"SSL_CERT_FILE={cert_file} cannot be loaded: {exc}",
                "Point SSL_CERT_FILE at a PEM bundle of CA certificates, or unset it.",
            )
        return Check(name, "ok", f"SSL_CERT_FILE={cert_file}")
    if cert_dir:
        if not Path(cert_dir).is_dir():
            return Check(
                name,
                "fail",
                f"SSL_CERT_DIR={cert_dir} is not a folder; every https request will fail",
                "Point SSL_CERT_DIR at an existing folder of CA certificates, or unset it.",
            )
        return Check(name, "ok", f"SSL_CERT_DIR={cert_dir}")
    try:
        import certifi
    except ImportError:
        return Check(
            name,
            "fail",
            "certifi (the CA bundle httpx uses) is not installed",
            "Reinstall medimeta-cli (pip install --force-reinstall medimeta-cli).",
        )
    bundle = certifi.where()
    if not Path(bundle).is_file():
        return Check(
            name,
            "fail",
            f"certifi's bundle {bundle} is missing",
            "Reinstall certifi (pip install --force-reinstall certifi).",
        )
    ignored = [v for v in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if environ.get(v)]
    if ignored:
        # A common surprise: a corporate CA configured for requests or curl only.
        variable = ignored[0]
        return Check(
            name,
            "warn",
            f"certifi bundle {bundle}; {variable} is set but httpx ignores it",
            f"If the server needs that CA, set SSL_CERT_FILE={environ[variable]} too.",
        )
    return Check(name, "ok", f"certifi bundle {bundle}")


# ----------------------------------------------------------------------------- disk space


@_timed
def check_disk_space(
    settings: Settings,
    catalog: Catalog | None,
    fetched: Manifest | None,
    *,
    jobs: int = DEFAULT_JOBS,
    catalog_error: MedimetaError | None = None,
) -> Check:
    """Free space on the data root against what ``download --all`` would ask for.

    Sizes come from the record just fetched or, failing that, the saved copy;
    the need is computed exactly as ``download`` computes it (archives plus
    extraction, resumed downloads counted).
    """
    from medimeta_cli.plan import plan_download
    from medimeta_cli.record import load_saved_record

    name = "disk space"
    root = settings.root
    free = free_bytes(root)
    if catalog is None:
        why = f": {catalog_error.message}" if catalog_error else ""
        return Check(
            name,
            "warn",
            f"{human_bytes(free)} free in {root}; the catalog could not be read{why}",
            catalog_error.hint if catalog_error else None,
        )
    manifest, source = fetched, "the record fetched now"
    if manifest is None:
        manifest = load_saved_record(RootLayout(root), settings.record_id, settings.base_url)
        source = f"the saved record ({manifest.fetched_at or 'undated'})" if manifest else ""
    if manifest is None:
        return Check(
            name,
            "warn",
            f"{human_bytes(free)} free in {root}; space needed unknown "
            "(no record fetched and none saved)",
            "Run `medimeta doctor` (or `medimeta download --dry-run --all`) with network access "
            "to learn the archive sizes.",
        )
    # Planned exactly as `download --all` plans: what is installed here or in a shared root
    # (MEDIMETA_PATH) is skipped, resumed downloads count what is left.
    plan = plan_download(settings, catalog.datasets, manifest, jobs=jobs)
    items = [item for item in plan.pending if item.size is not None]
    unknown = sum(1 for item in plan.pending if item.size is None)
    missing = f"; {unknown} dataset(s) of the catalog missing from the record" if unknown else ""
    # `download` refuses datasets the record lacks: a catalog and record that do not match.
    mismatch_hint = "Check MEDIMETA_RECORD, MEDIMETA_BASE_URL and MEDIMETA_CATALOG."
    if not items:
        return Check(
            name,
            "warn" if unknown else "ok",
            f"nothing left to download{missing}; {human_bytes(free)} free in {root}",
            mismatch_hint if unknown else None,
        )
    needed = plan.needed_bytes
    detail = (
        f"`download --all` needs {human_bytes(needed)} for {len(items)} dataset(s) "
        f"(archives plus extraction), {human_bytes(free)} free in {root} "
        f"(sizes from {source}){missing}"
    )
    if needed > free:
        return Check(
            name,
            "fail",
            f"not enough space: {detail}",
            "Free some space, point --root / MEDIMETA_HOME at a larger file system, or "
            "download fewer datasets.",
        )
    if needed * SPACE_MARGIN > free:
        return Check(
            name,
            "warn",
            f"little room to spare: {detail}",
            DiskSpaceError.default_hint,
        )
    if unknown:
        return Check(name, "warn", detail, mismatch_hint)
    return Check(name, "ok", detail)


# ----------------------------------------------------------------------------- write permission


@contextmanager
def _created_dirs(path: Path) -> Iterator[Path]:
    """Create ``path`` (and missing parents) for the block, then remove what was created,
    so probing a data root that does not exist yet leaves no empty folders behind."""
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    created: list[Path] = []
    try:
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:  # another process made it meanwhile: not ours to remove
                continue
            created.append(folder)
        yield path
    finally:
        for folder in reversed(created):
            with suppress(OSError):  # not empty: someone else now uses it
                folder.rmdir()


@_timed
def check_write_permission(root: Path) -> Check:
    """Create (and remove) a file in the state folder ``<root>/.medimeta/``."""
    name = "write permission"
    state_dir = RootLayout(root).state_dir
    existed = root.exists()
    try:
        with _created_dirs(state_dir):
            probe = state_dir / f".doctor-write.{unique_suffix()}"
            probe.write_bytes(b"")
            probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return Check(
                name,
                "fail",
                f"cannot write in {state_dir}: {reason}",
                PermissionDeniedError.default_hint,
            )
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return Check(
                name, "fail", f"cannot write in {state_dir}: {reason}", DiskSpaceError.default_hint
            )
        return Check(
            name,
            "fail",
            f"cannot write in {state_dir}: {reason}",
            "Check the path and its permissions.",
        )
    later = "" if existed else " (the data root does not exist yet; downloads will create it)"
    return Check(name, "ok", f"can write in {state_dir}{later}")


# ----------------------------------------------------------------------------- file locks

#: Run by the second process: try the lock once, without waiting, and say what happened.
_CHILD_SCRIPT = r"""
import sys
from filelock import FileLock, Timeout
lock = FileLock(sys.argv[1])
try:
    lock.acquire(timeout=0)
except Timeout:
    sys.stdout.write("busy\n")
except OSError as exc:
    sys.stdout.write(f"error {exc}\n")
else:
    lock.release()
    sys.stdout.write("acquired\n")
"""


def _default_lock_factory(path: str) -> FileLockLike:
    from filelock import FileLock

    return FileLock(path)


def _try_in_child(path: Path) -> str:
    """``busy``, ``acquired``, ``error ...`` or ``hung``: what a second process got."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD_SCRIPT, str(path)],
            capture_output=True,
            text=True,
            timeout=LOCK_CHILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "hung"
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        last = proc.stderr.strip().splitlines()
        return f"error {last[-1] if last else f'exit code {proc.returncode}'}"
    return lines[-1]


@_timed
def check_file_locks(
    root: Path, *, lock_factory: LockFactory | None = None, enabled: bool = True
) -> Check:
    """Take a lock in ``<root>/.medimeta/locks/`` and have a second process contend for it:
    it must be refused while we hold the lock and succeed once we let go."""
    from filelock import Timeout

    name = "file locks"
    factory = lock_factory or _default_lock_factory
    locks_dir = RootLayout(root).locks_dir
    off = " (MEDIMETA_LOCKS=0 turns them off anyway)" if not enabled else ""
    # Broken locks only matter while they are in use; with MEDIMETA_LOCKS=0 they are not.
    bad: Status = "fail" if enabled else "ok"
    try:
        with _created_dirs(locks_dir):
            path = locks_dir / f".doctor.{unique_suffix()}.lock"
            try:
                lock = factory(str(path))
                try:
                    lock.acquire(timeout=5.0)
                except Timeout:
                    return Check(
                        name,
                        "warn",
                        f"could not take a fresh lock in {locks_dir} within 5 s",
                        _LOCKS_HINT,
                    )
                except OSError as exc:
                    return Check(
                        name,
                        "warn" if enabled else "ok",
                        f"flock is refused in {locks_dir}: {exc}{off}",
                        _LOCKS_HINT if enabled else None,
                    )
                try:
                    while_held = _try_in_child(path)
                finally:
                    lock.release()
                after = _try_in_child(path) if while_held == "busy" else "not tried"
            finally:
                path.unlink(missing_ok=True)
    except OSError as exc:
        return Check(
            name, "skip", f"cannot create {locks_dir}: {exc.strerror or exc} (see write permission)"
        )
    if while_held == "busy" and after == "acquired":
        return Check(
            name, "ok", f"a second process waits while the lock is held in {locks_dir}{off}"
        )
    if while_held == "acquired":
        return Check(
            name,
            bad,
            f"a second process took the lock this one holds: locks do not work in {locks_dir}{off}",
            _LOCKS_HINT if enabled else None,
        )
    if while_held == "hung" or after == "hung":
        return Check(
            name,
            bad,
            f"trying the lock hung for {LOCK_CHILD_TIMEOUT:.0f} s in {locks_dir}{off}",
            _LOCKS_HINT if enabled else None,
        )
    if while_held.startswith("error") or after.startswith("error"):
        problem = while_held if while_held.startswith("error") else after
        return Check(
            name,
            "warn" if enabled else "ok",
            f"flock fails in {locks_dir}: {problem.removeprefix('error').strip()}{off}",
            _LOCKS_HINT if enabled else None,
        )
    return Check(
        name,
        bad,
        f"a released lock stayed taken for a second process in {locks_dir}{off}",
        _LOCKS_HINT if enabled else None,
    )


# ----------------------------------------------------------------------------- clock


@_timed
def check_clock(probe: RecordProbe) -> Check:
    """Compare the server's ``Date`` header with the local clock when the answer arrived."""
    from email.utils import parsedate_to_datetime

    name = "clock"
    if probe.server_date is None or probe.received_at is None:
        why = "offline" if probe.check.status == "skip" else "no answer from the server"
        return Check(name, "skip", f"no server Date header to compare with ({why})")
    try:
        server = parsedate_to_datetime(probe.server_date).timestamp()
    except (TypeError, ValueError):
        return Check(name, "skip", f"the server's Date header {probe.server_date!r} is not a date")
    # Date has whole seconds: the server's clock read somewhere in [Date, Date + 1).
    skew = probe.received_at - (server + 0.5)
    direction = "ahead of" if skew > 0 else "behind"
    detail = f"local clock {abs(skew):.0f} s {direction} the server (Date: {probe.server_date})"
    if abs(skew) > CLOCK_FAIL_SECONDS:
        return Check(name, "fail", detail, _CLOCK_HINT)
    if abs(skew) > CLOCK_WARN_SECONDS:
        return Check(name, "warn", detail, _CLOCK_HINT)
    if abs(skew) < 2:
        detail = f"in step with the server (Date: {probe.server_date})"
    return Check(name, "ok", detail)


# ----------------------------------------------------------------------------- versions

_DISTRIBUTIONS = (
    "httpx",
    "h5py",
    "numpy",
    "Pillow",
    "pydantic",
    "typer",
    "rich",
    "filelock",
    "certifi",
)


@_timed
def check_versions() -> Check:
    """Python, medimeta-cli and its dependencies, read from package metadata (nothing heavy is
    imported), and the platform."""
    from importlib.metadata import PackageNotFoundError, version

    from medimeta_cli import __version__

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
            "warn",
            ", ".join(parts),
            f"Reinstall medimeta-cli to get {', '.join(missing)} "
            "(pip install --force-reinstall medimeta-cli).",
        )
    return Check("versions", "ok", ", ".join(parts))


# ----------------------------------------------------------------------------- shared roots


@_timed
def check_shared_roots(shared_roots: Sequence[Path]) -> Check:
    """Each ``MEDIMETA_PATH`` entry: there, readable, and how many datasets it holds."""
    name = "shared roots"
    if not shared_roots:
        return Check(name, "skip", "MEDIMETA_PATH is not set")
    parts = []
    problems = []
    for shared in shared_roots:
        if not shared.is_dir():
            parts.append(f"{shared}: missing")
            problems.append(str(shared))
        elif not os.access(shared, os.R_OK | os.X_OK):
            parts.append(f"{shared}: not readable")
            problems.append(str(shared))
        else:
            try:
                count = sum(1 for _ in shared.glob("*/info.yaml"))
            except OSError as exc:
                parts.append(f"{shared}: unreadable ({exc.strerror or exc})")
                problems.append(str(shared))
                continue
            parts.append(f"{shared}: {count} dataset(s)")
    if problems:
        return Check(
            name,
            "warn",
            "; ".join(parts),
            f"Fix or drop {', '.join(problems)} in MEDIMETA_PATH (entries are separated by "
            f"{os.pathsep!r}).",
        )
    return Check(name, "ok", "; ".join(parts))
