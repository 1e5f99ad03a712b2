"""The retry rule of every transfer: progress resets the count; a stalled trickle is no progress.

A flaky link that still makes progress should not run out of retries, so an attempt that
moved the transfer forward starts the count again; one that only trickled until the read
watch cut it (:func:`medimeta_cli.zenodo.transport.stalled`) counts as a failed attempt
like any other. Waiting, and giving up once the retries are used, is the client's
(:meth:`RemoteClient.retry_delay`, its :class:`RetryPolicy`), which alone tells "nobody is
there" (a few quick retries) from "busy, come back later" (the polite back-off).
"""

from __future__ import annotations

from dataclasses import dataclass

from medimeta_cli.zenodo.client import RemoteClient
from medimeta_cli.zenodo.transport import stalled


@dataclass
class RetryRule:
    """Counts the attempts of one transfer."""

    client: RemoteClient
    attempt: int = 0

    def count(self, progressed: bool, error: BaseException | None = None) -> int:
        """Count a failed attempt that ``progressed`` (or not) and ended with ``error``;
        the attempt number the next retry is (1 after progress that was not a stall)."""
        if progressed and not (error is not None and stalled(error)):
            self.attempt = 1
        else:
            self.attempt += 1
        return self.attempt

    def retry(
        self,
        reason: str,
        *,
        progressed: bool = False,
        error: BaseException | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Count the attempt, then wait as the client's policy says (or raise
        :class:`~medimeta_cli.errors.NetworkError` once the retries are used up, or at once
        when ``error`` says that nobody is there)."""
        self.client.retry_wait(self.count(progressed, error), reason, retry_after, error)
