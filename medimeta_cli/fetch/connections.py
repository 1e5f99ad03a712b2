"""The HTTP connections of one download run: a budget shared by every transfer.

Whatever ``--jobs`` says, a run never has more connections open to the server than
``--connections`` (``MEDIMETA_CONNECTIONS``): Zenodo blocks clients that open many
downloads at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: No slice is planned smaller than this: below it a second request is not worth it.
MIN_SLICE = 8 * 1024 * 1024
#: A running slice with at least this much left is split for an idle connection.
SPLIT_AT = 32 * 1024 * 1024
#: A first connection at least this fast (bytes per second) is kept alone: the server does
#: not cap connections (Zenodo's run at about 5-30 MB/s each), and on a link that fast more
#: connections only cost CPU (on loopback 8 connections took 2.8 s per GB, one 1.6 s).
FAST_LINK = 128e6


class ConnectionBudget:
    """The connections of one run, shared by every transfer (thread-safe; never exceeded).

    ``sharers`` is how many transfers run at once (``--jobs``): each plans at most its
    fair share, so that no dataset waits for another's slices to end. A transfer first
    measures one connection; at ``fast_link`` bytes per second or more it stays alone.
    """

    def __init__(
        self,
        total: int,
        sharers: int = 1,
        *,
        min_slice: int = MIN_SLICE,
        split_at: int = SPLIT_AT,
        fast_link: float | None = FAST_LINK,
    ) -> None:
        if total < 1:
            raise ValueError("a run needs at least one connection")
        self.total = total
        self.share = max(1, total // max(1, sharers))
        self.min_slice = min_slice
        self.split_at = split_at
        #: None: every transfer opens its connections at once, without measuring the first.
        self.fast_link = fast_link
        self._cond = threading.Condition()
        self._used = 0
        self.most_used = 0

    def try_acquire(self) -> bool:
        """Take a connection if one is free."""
        with self._cond:
            if self._used >= self.total:
                return False
            self._used += 1
            self.most_used = max(self.most_used, self._used)
            return True

    def acquire(self, should_stop: Callable[[], bool]) -> None:
        """Take a connection, waiting for one (KeyboardInterrupt when the run stops)."""
        with self._cond:
            while self._used >= self.total:
                if should_stop():
                    raise KeyboardInterrupt
                self._cond.wait(0.25)
            self._used += 1
            self.most_used = max(self.most_used, self._used)

    def release(self) -> None:
        """Give a connection back."""
        with self._cond:
            self._used -= 1
            self._cond.notify_all()

    def plan(self, size: int) -> int:
        """How many slices a fresh transfer of ``size`` bytes starts with (1: one stream)."""
        return max(1, min(self.share, size // self.min_slice))


@contextmanager
def one_connection(
    budget: ConnectionBudget | None, should_stop: Callable[[], bool]
) -> Iterator[None]:
    """One connection of the run's budget (if any) for as long as a single stream runs."""
    if budget is None:
        yield
        return
    budget.acquire(should_stop)
    try:
        yield
    finally:
        budget.release()
