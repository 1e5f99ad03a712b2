"""How many connections a transfer over several of them may have open: the one rule that
slices (:mod:`medimeta_cli.fetch.segmented`) and pieces (:mod:`medimeta_cli.fetch.pieces`)
follow.

The first connection is measured alone where the budget knows a fast link
(``ConnectionBudget.fast_link``): one that fast stays alone, else the transfer opens its
share. Trouble (throttling, a cut connection) halves the connections and pauses as long as
the server or the retry policy says; after a quiet while with progress, one connection
more. Giving up is the client's policy, as for every other transfer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from medimeta_cli.fetch.connections import ConnectionBudget
from medimeta_cli.fetch.retry import RetryRule
from medimeta_cli.zenodo.client import RemoteClient

logger = logging.getLogger(__name__)

#: After trouble, one connection more after this many quiet seconds (and some progress).
GROW_AFTER = 10.0
#: The first connection is measured alone for this long, or for this many slices' worth
#: of bytes (``min_slice`` each), whichever comes first.
PROBE_SECONDS = 0.5
PROBE_SLICES = 4


class Trouble(Exception):
    """A request met throttling or a broken connection; the transfer adapts and retries."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class Politeness:
    """The connections a transfer of ``key`` may have open now (:attr:`limit`) and until
    when it must hold back after trouble (:attr:`hold_until`). Not thread-safe: the
    transfer calls it with its lock held. ``unit`` names a request's part in notices
    (``slice``, ``piece``)."""

    client: RemoteClient
    key: str
    budget: ConnectionBudget
    unit: str
    started: float
    limit: int = 1
    hold_until: float = 0.0
    _probe_until: float = 0.0
    _alone_is_enough: bool = False
    _calm_since: float = 0.0
    _fetched_at_trouble: int = 0
    _retry: RetryRule | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.limit = self.budget.share
        self._calm_since = self.started
        self._retry = RetryRule(self.client)
        if self.budget.fast_link is not None and self.limit > 1:
            self.limit, self._probe_until = 1, self.started + PROBE_SECONDS

    def update(self, now: float, fetched: int) -> None:
        """After measuring the first connection alone, keep it alone or open the share;
        later, one connection more after a quiet while with progress."""
        self._probe(now, fetched)
        self._grow(now, fetched)

    def _probe(self, now: float, fetched: int) -> None:
        if not self._probe_until:
            return
        if now < self._probe_until and fetched < PROBE_SLICES * self.budget.min_slice:
            return
        rate = fetched / max(now - self.started, 1e-3)
        self._probe_until = 0.0
        assert self.budget.fast_link is not None  # measured only with a threshold
        if rate >= self.budget.fast_link:
            self._alone_is_enough = True
            logger.info("%s: one connection does %.0f MB/s; no more", self.key, rate / 1e6)
            return
        self.limit = self.budget.share
        logger.info(
            "%s: one connection does %.0f MB/s; opening %d", self.key, rate / 1e6, self.limit
        )

    def _grow(self, now: float, fetched: int) -> None:
        if self._alone_is_enough or self._probe_until or self.limit >= self.budget.share:
            return
        if now - self._calm_since < GROW_AFTER:
            return
        if fetched - self._fetched_at_trouble < self.budget.min_slice:
            return
        self.limit += 1
        self._calm_since = now
        logger.info("%s: back to %d connection(s)", self.key, self.limit)

    def trouble(self, trouble: Trouble, now: float, fetched: int) -> str:
        """Fewer connections and a pause as the server or the retry policy asks; the
        notice to show. Raises the client's :class:`~medimeta_cli.errors.NetworkError`
        once it gives up (the retries spent with nothing moving)."""
        assert self._retry is not None
        self._probe_until = 0.0  # trouble tells more than a measurement: grow back slowly
        attempt = self._retry.count(fetched > self._fetched_at_trouble, trouble)
        self._fetched_at_trouble = fetched
        self._calm_since = now
        wait, _ = self.client.retry_delay(
            attempt, f"{trouble.reason} on {self.key}", trouble.retry_after, trouble
        )
        self.limit = max(1, self.limit // 2)
        self.hold_until = max(self.hold_until, now + wait)
        message = (
            f"{trouble.reason} on a {self.unit} of {self.key}; going on with "
            f"{self.limit} connection(s) in {wait:.1f} s"
        )
        logger.info("%s", message)
        return message
