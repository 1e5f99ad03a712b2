"""``medimeta_cli.fetch.retry``: progress resets the count; a stalled trickle is no progress."""

from __future__ import annotations

import httpx
import pytest

from medimeta_cli.errors import NetworkError
from medimeta_cli.fetch.retry import RetryRule
from medimeta_cli.zenodo.client import RemoteClient, RetryPolicy
from medimeta_cli.zenodo.transport import StalledRead


def _client(retries: int, waits: list[float] | None = None) -> RemoteClient:
    policy = RetryPolicy(retries=retries, backoff_base=0.001, backoff_cap=0.002)
    sleep = waits.append if waits is not None else (lambda seconds: None)
    return RemoteClient("http://127.0.0.1:9", 1, timeout=1, policy=policy, sleep=sleep)


def _stall() -> httpx.ReadTimeout:
    error = httpx.ReadTimeout("stalled")
    error.__cause__ = StalledRead("too few bytes over the stall window")
    return error


def test_progress_resets_the_count_and_a_stall_does_not() -> None:
    with _client(3) as client:
        rule = RetryRule(client)
        assert rule.count(progressed=False) == 1
        assert rule.count(progressed=False) == 2
        assert rule.count(progressed=True, error=httpx.ReadError("cut")) == 1
        assert rule.count(progressed=False) == 2
        # A few bytes then silence until the watch cut it: no progress.
        assert rule.count(progressed=True, error=_stall()) == 3


def test_the_client_waits_and_gives_up_after_its_retries() -> None:
    waits: list[float] = []
    with _client(2, waits) as client:
        rule = RetryRule(client)
        rule.retry("cut")
        rule.retry("cut", progressed=True, error=_stall())
        assert len(waits) == 2
        with pytest.raises(NetworkError, match="giving up after 3 attempts: cut"):
            rule.retry("cut")
        rule.retry("moved on", progressed=True)  # progress: the count starts again
        assert rule.attempt == 1 and len(waits) == 3
