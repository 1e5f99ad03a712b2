"""Polite HTTP access to the Zenodo record: retries, rate limits and streamed bodies.
The record's manifest as one run sees it is :mod:`medimeta_cli.zenodo.source`.

Only commands that talk to the record import this module (it loads httpx);
``list`` and ``info`` take URLs from :mod:`medimeta_cli.catalog.datasets`.
"""

from __future__ import annotations

import errno
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import httpx

from medimeta_cli._version import __version__
from medimeta_cli.catalog.datasets import DOI, record_api_url
from medimeta_cli.errors import NetworkError, RemoteDataError
from medimeta_cli.fsutil import utc_now
from medimeta_cli.zenodo.record import (
    Manifest,
    parse_record,
)
from medimeta_cli.zenodo.transport import ReadWatch, large_read_mounts
from medimeta_cli.zenodo.versions import parse_latest

logger = logging.getLogger(__name__)

USER_AGENT = f"medimeta-cli/{__version__} (+https://doi.org/{DOI})"

#: Statuses worth retrying: timeouts, throttling and server trouble.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def content_range(response: httpx.Response) -> tuple[int, int | None] | None:
    """First byte and total size (None for ``*``) of a 206 answer's ``Content-Range``."""
    match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
    if match is None:
        return None
    total = match.group(3)
    return int(match.group(1)), None if total == "*" else int(total)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


@dataclass
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter."""

    retries: int = 8
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    max_server_wait: float = 900.0
    #: Retries, and the longest wait before each, when nobody is there (see
    #: :func:`unreachable`): a refused connection or an unknown name does not mend within
    #: minutes, so a couple of quick tries tell a blip from an outage, then the run fails.
    unreachable_retries: int = 2
    unreachable_wait: float = 1.0

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry ``attempt`` (1-based) when the server gave no hint."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


class RateLimiter:
    """Paces requests by the server's ``X-RateLimit-*`` headers, shared by all threads."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self._lock = threading.Lock()
        self._remaining: int | None = None
        self._reset_at: float | None = None
        self._sleep = sleep

    def update(self, headers: Mapping[str, str]) -> None:
        """Remember what the last response said about the budget left."""
        remaining, reset = headers.get("x-ratelimit-remaining"), headers.get("x-ratelimit-reset")
        with self._lock:
            if remaining is not None and remaining.strip().isdigit():
                self._remaining = int(remaining)
            if reset is not None:
                with suppress(ValueError):
                    self._reset_at = float(reset)

    def pause_needed(self, now: float | None = None) -> float:
        """Seconds to wait before the next request so as not to run into a 429."""
        now = time.time() if now is None else now
        with self._lock:
            if self._remaining is None or self._remaining > 1 or self._reset_at is None:
                return 0.0
            return max(0.0, min(self._reset_at - now, 120.0))

    def before_request(self, on_notice: Callable[[str], None] | None) -> None:
        """Sleep if the budget is spent, and count this request against it."""
        pause = self.pause_needed()
        if pause > 0:
            logger.info("rate limit reached; pausing %.0f s", pause)
            if on_notice is not None:
                on_notice(f"rate limit reached; pausing {pause:.0f} s")
            self._sleep(pause)
            with self._lock:
                self._remaining = None
        with self._lock:
            if self._remaining is not None:
                self._remaining -= 1


class RemoteClient:
    """HTTP access to one Zenodo record: the record API and ranged file downloads."""

    def __init__(
        self,
        base_url: str,
        record_id: int,
        *,
        timeout: float = 30.0,
        policy: RetryPolicy | None = None,
        on_notice: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        stall_seconds: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.record_id = record_id
        self.policy = policy or RetryPolicy()
        self.on_notice = on_notice
        self.sleep = sleep
        self.limiter = RateLimiter(sleep)
        #: Set once nobody answered (:func:`unreachable`): every later request of the run
        #: fails at once instead of trying again (several datasets, parallel slices).
        self.gone: NetworkError | None = None
        # Reads wake up twice a second: a cancelled run stops, a stalled transfer is cut.
        watch = ReadWatch(should_stop or (lambda: False), stall_seconds)
        self.http = httpx.Client(
            headers={"User-Agent": USER_AGENT},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            follow_redirects=True,
            transport=transport,
            # Archives stream through connections that read the socket in large steps.
            mounts=large_read_mounts(watch) if transport is None else None,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _notice(self, message: str) -> None:
        if self.on_notice is not None:
            self.on_notice(message)

    def retry_delay(
        self,
        attempt: int,
        reason: str,
        retry_after: float | None = None,
        error: BaseException | None = None,
    ) -> tuple[float, int]:
        """Seconds to wait before retry ``attempt`` (1-based) after ``error`` (or a status),
        and how many retries this trouble gets; or raise :class:`NetworkError` when no
        retry is worth it.

        The one place that tells "nobody is there" (:func:`unreachable`: a couple of quick
        retries, then a hint to work offline) from "busy, come back later" (throttling,
        server errors, timeouts, resets: the polite back-off, the server's wishes first).
        """
        if self.gone is not None:
            raise NetworkError(self.gone.message, hint=self.gone.hint)
        policy = self.policy
        what = unreachable(error) if error is not None else None
        if what is not None:
            quick = min(policy.retries, policy.unreachable_retries)
            if attempt > quick:
                logger.info("giving up after %d attempt(s): %s", attempt, reason)
                tries = "1 attempt" if attempt == 1 else f"{attempt} attempts"
                self.gone = NetworkError(f"{what} ({tries}): {reason}", hint=UNREACHABLE_HINT)
                raise self.gone
            return min(policy.backoff(attempt), policy.unreachable_wait), quick
        if attempt > policy.retries:
            logger.info("giving up after %d attempt(s): %s", attempt, reason)
            tries = "1 attempt" if attempt == 1 else f"{attempt} attempts"
            raise NetworkError(f"giving up after {tries}: {reason}")
        if retry_after is not None and retry_after > policy.max_server_wait:
            raise NetworkError(
                f"{reason}; the server asks to wait {retry_after:.0f} s",
                hint="Try again later; the command resumes where it stopped.",
            )
        wait = retry_after if retry_after is not None else policy.backoff(attempt)
        return wait, policy.retries

    def retry_wait(
        self,
        attempt: int,
        reason: str,
        retry_after: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Wait before retry ``attempt`` (1-based), or raise when no retry is worth it
        (:meth:`retry_delay`)."""
        wait, retries = self.retry_delay(attempt, reason, retry_after, error)
        logger.info(
            "%s; retry %d/%d in %.1f s%s",
            reason,
            attempt,
            retries,
            wait,
            " (as the server asked)" if retry_after is not None else "",
        )
        self._notice(f"{reason}; retry {attempt}/{retries} in {wait:.1f} s")
        self.sleep(wait)

    @contextmanager
    def stream(
        self, url: str, headers: Mapping[str, str] | None = None, *, retry: bool = True
    ) -> Iterator[httpx.Response]:
        """``GET url`` as a stream, retrying connection errors and retryable statuses.

        Yields the first response whose status is not retryable; the caller
        decides what a 404 or a 416 means. With ``retry=False`` (the slices of a
        segmented transfer, whose engine adapts to trouble itself) the first response
        is yielded whatever its status, and a connection error is raised; the rate
        limit is honoured either way.
        """
        attempt = 0
        while True:
            if self.gone is not None:  # found unreachable in this run: say so at once
                raise NetworkError(self.gone.message, hint=self.gone.hint)
            self.limiter.before_request(self._notice)
            try:
                request = self.http.build_request("GET", url, headers=headers)
                logger.debug("GET %s (range %s)", url, request.headers.get("range", "none"))
                response = self.http.send(request, stream=True)
            except _HOPELESS as exc:
                raise hopeless_request(exc, url) from exc
            except httpx.TransportError as exc:
                if not retry:
                    raise
                attempt += 1
                self.retry_wait(attempt, f"{type(exc).__name__} on {url}: {exc}", error=exc)
                continue
            self.limiter.update(response.headers)
            logger.debug("HTTP %d from %s", response.status_code, url)
            if retry and response.status_code in RETRYABLE_STATUSES:
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                if retry_after is None and response.status_code == 429:
                    retry_after = self.limiter.pause_needed() or None
                response.close()
                attempt += 1
                self.retry_wait(attempt, f"HTTP {response.status_code} from {url}", retry_after)
                continue
            try:
                yield response
            except httpx.DecodingError as exc:
                # identity is asked for; a body encoded anyway and broken is the server's.
                raise RemoteDataError(
                    f"the server sent a body that cannot be decoded for {url} ({exc})"
                ) from exc
            finally:
                response.close()
            return

    def fetch_record(self) -> Manifest:
        """Fetch and validate the record's manifest."""
        payload = self._get_json(record_api_url(self.base_url, self.record_id))
        return parse_record(
            payload, record_id=self.record_id, base_url=self.base_url, fetched_at=utc_now()
        )

    def fetch_latest(self) -> Manifest:
        """Fetch and validate the manifest of the record's latest version (one request,
        ``versions/latest``, whose redirect is followed); not yet compared with the record
        (:func:`medimeta_cli.zenodo.versions.check_latest` does that)."""
        url = record_api_url(self.base_url, self.record_id) + "/versions/latest"
        payload = self._get_json(url)
        return parse_latest(
            payload, asked=self.record_id, base_url=self.base_url, fetched_at=utc_now()
        )

    def _get_json(self, url: str) -> object:
        """The JSON body of a 200 answer to ``GET url``; :class:`RemoteDataError` else."""
        with self.stream(url, {"Accept": "application/json"}) as response:
            if response.status_code != 200:
                raise RemoteDataError(
                    f"the record API answered HTTP {response.status_code} for {url}",
                    hint="Check MEDIMETA_BASE_URL and MEDIMETA_RECORD, or try again later.",
                )
            body = response.read()
        try:
            payload: object = json.loads(body)
        except ValueError:
            kind = response.headers.get("content-type", "unknown content")
            raise RemoteDataError(f"the record API sent {kind}, not JSON ({url})") from None
        return payload


#: Faults no retry can mend: the request itself, or where the server sends it, is wrong
#: (a redirect loop, an invalid URL, a scheme httpx cannot speak, a request httpx refuses
#: to send). Retried, they only delay the same answer.
_HOPELESS = (
    httpx.TooManyRedirects,
    httpx.InvalidURL,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)


def hopeless_request(exc: Exception, url: str) -> NetworkError:
    """The one-line :class:`NetworkError` (exit 3) for a request that cannot succeed."""
    if isinstance(exc, httpx.TooManyRedirects):
        what = "the server redirects in a loop (too many redirects)"
    elif isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        what = f"the URL cannot be requested ({exc})"
    else:
        what = f"the request cannot be sent ({type(exc).__name__}: {exc})"
    return NetworkError(
        f"{what}: {url[:200]}",
        hint="Check MEDIMETA_BASE_URL and any proxy settings; should they be right, the "
        "server is misconfigured: try again later.",
    )


def network_error(exc: httpx.HTTPError | httpx.InvalidURL, url: str) -> NetworkError:
    """Any httpx fault that reached a use case unhandled, as the network trouble it is."""
    if isinstance(exc, _HOPELESS):
        return hopeless_request(exc, url)
    return NetworkError(f"{type(exc).__name__} on {url[:200]}: {exc}")


#: What to do when nobody is there: every way round the network, and the way to check it.
UNREACHABLE_HINT = (
    "Nobody answers there: is there network here (compute nodes often have none)? Use "
    "--offline with data installed elsewhere, `medimeta download --print-urls` where there "
    "is network to fetch the archives by other means (then `download --from PATH`), or "
    "`medimeta doctor` to check the way to the server."
)

#: errno values of a connection that found nobody: refused, no route, no network.
_NOBODY_ERRNOS = {
    errno.ECONNREFUSED: "connection refused",
    errno.EHOSTUNREACH: "no route to the server's host",
    errno.ENETUNREACH: "the network is unreachable",
}
#: The same, as httpx's text says them (errors made without the OS error behind them).
_NOBODY_TEXTS = {
    "name or service not known": "cannot resolve the server's name",
    "name resolution": "cannot resolve the server's name",
    "nodename nor servname": "cannot resolve the server's name",
    "connection refused": "connection refused",
    "no route to host": "no route to the server's host",
    "network is unreachable": "the network is unreachable",
}


def unreachable(error: BaseException) -> str | None:
    """What says that nobody is there (the name does not resolve, the connection is refused,
    no route, no network), or None for trouble that may pass (a timeout, a reset, a status).

    Only a failure to connect counts, never one mid-transfer: the causes of ``error`` are
    looked through for the OS error behind the connect error.
    """
    import socket

    chain: list[BaseException] = []
    seen: BaseException | None = error
    while seen is not None and len(chain) < 16:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    if not any(isinstance(e, httpx.ConnectError) for e in chain):
        return None
    for cause in chain:
        if isinstance(cause, socket.gaierror):
            return "cannot resolve the server's name"
        if isinstance(cause, OSError) and cause.errno in _NOBODY_ERRNOS:
            return _NOBODY_ERRNOS[cause.errno]
    text = " ".join(str(e) for e in chain).lower()
    return next((what for words, what in _NOBODY_TEXTS.items() if words in text), None)
