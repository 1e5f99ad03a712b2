"""The result of one doctor check, and what every check shares."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, ParamSpec

P = ParamSpec("P")


class CheckStatus(str, Enum):
    """How a check came out."""

    OK = "ok"
    #: Downloads will work, but something deserves a look.
    WARN = "warn"
    #: Downloads will fail until this is fixed.
    FAIL = "fail"
    #: The check could not run (offline, nothing to check, or an earlier check failed).
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    name: str
    status: CheckStatus
    detail: str
    hint: str | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        """Whether this check found something that will make downloads fail."""
        return self.status is CheckStatus.FAIL

    @property
    def needs_attention(self) -> bool:
        """Whether the check warned or failed, so its hint is worth showing."""
        return self.status in (CheckStatus.WARN, CheckStatus.FAIL)

    def rows(self) -> list[list[str]]:
        """Table rows: the check, and its hint right under it when it needs attention."""
        rows = [[self.name, self.status.value, self.detail]]
        if self.hint and self.needs_attention:
            rows.append(["", "", f"hint: {self.hint}"])
        return rows

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "name": self.name,
            "status": self.status.value,
            "detail": self.detail,
            "hint": self.hint,
            "seconds": round(self.seconds, 3),
        }


def timed(function: Callable[P, Check]) -> Callable[P, Check]:
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


def summary(checks: Sequence[Check]) -> str:
    """One line for the end of the report: failures and warnings, or that all passed."""
    failed = sum(check.status is CheckStatus.FAIL for check in checks)
    warned = sum(check.status is CheckStatus.WARN for check in checks)
    if failed or warned:
        return f"{failed} failed, {warned} warning(s)"
    return "all checks passed"


def crashed(name: str, exc: Exception) -> Check:
    """A failed check saying that the check itself raised ``exc``."""
    return Check(
        name,
        CheckStatus.FAIL,
        f"the check itself crashed: {type(exc).__name__}: {exc}",
        "Report this problem to the medimeta-cli developers.",
    )
