"""What the download engine reports: events while it works, one outcome per dataset.

The engine never prints; the CLI turns events into progress bars and outcomes into
lines or JSON.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from medimeta_cli.errors import MedimetaError


class Phase(str, Enum):
    """The stage a dataset has reached (shown next to its progress bar)."""

    CHECKING_PARTIAL = "checking partial download"
    READING_DIRECTORY = "reading the archive's directory"
    VERIFYING = "verifying"
    EXTRACTING = "extracting"
    COPYING = "copying"  # an unzipped dataset folder (download --from <id>/)
    INSTALLED = "installed"
    INSTALLED_BY_ANOTHER_JOB = "installed by another job"
    SKIPPED = "skipped"
    FAILED = "failed"

    @property
    def logged(self) -> bool:
        """Whether a job log (stderr without a live display) gets a line for this phase:
        the long steps only; the outcome line reports the rest."""
        return self in (Phase.CHECKING_PARTIAL, Phase.VERIFYING, Phase.EXTRACTING, Phase.COPYING)


@dataclass(frozen=True)
class Event:
    """Something a progress display may want to show."""

    dataset_id: str


@dataclass(frozen=True)
class TransferStarted(Event):
    """Bytes of an archive are about to flow; ``done`` were already there (resume)."""

    total: int
    done: int


@dataclass(frozen=True)
class BytesTransferred(Event):
    """``count`` more bytes arrived."""

    count: int


@dataclass(frozen=True)
class PhaseChanged(Event):
    """The dataset moved on to another phase."""

    phase: Phase


@dataclass(frozen=True)
class Notice(Event):
    """A message for the user: a retry, a wait for a lock, an upstream change."""

    message: str
    warning: bool = False


EventSink = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The default sink: drops every event."""


@dataclass
class LoggedEvents:
    """An event sink that tells a logger what the engine does, for programs without a
    progress display (the Python API): each phase, each transfer's start, its progress at
    most every ``interval`` seconds per dataset, and every notice, at INFO (notices that
    are warnings at WARNING). Safe to call from the engine's threads."""

    logger: logging.Logger
    interval: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _bytes: dict[str, list[int]] = field(default_factory=dict, init=False)
    _last: dict[str, float] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __call__(self, event: Event) -> None:
        """Log ``event`` (progress only when ``interval`` has passed for its dataset)."""
        from medimeta_cli.fsutil import human_bytes

        name = event.dataset_id
        if isinstance(event, TransferStarted):
            with self._lock:
                self._bytes[name] = [event.done, event.total]
                self._last[name] = self.clock()
            resumed = f", resuming at {human_bytes(event.done)}" if event.done else ""
            self.logger.info("%s: downloading %s%s", name, human_bytes(event.total), resumed)
        elif isinstance(event, BytesTransferred):
            with self._lock:
                counted = self._bytes.setdefault(name, [0, 0])
                counted[0] += event.count
                now = self.clock()
                if now - self._last.get(name, now) < self.interval:
                    self._last.setdefault(name, now)
                    return
                self._last[name] = now
                done, total = counted
            share = f" ({100 * done / total:.0f}%)" if total else ""
            self.logger.info("%s: %s of %s%s", name, human_bytes(done), human_bytes(total), share)
        elif isinstance(event, PhaseChanged):
            self.logger.info("%s: %s", name, event.phase.value)
        elif isinstance(event, Notice):
            prefix = f"{name}: " if name else ""
            level = logging.WARNING if event.warning else logging.INFO
            self.logger.log(level, "%s%s", prefix, event.message)


class OutcomeStatus(str, Enum):
    """How the work on one dataset ended."""

    INSTALLED = "installed"
    SKIPPED = "skipped"
    FAILED = "failed"
    NOT_IN_RECORD = "not_in_record"  # the record lists no archive for it: nothing to fetch
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C or SIGTERM (nothing visible changed)

    @property
    def label(self) -> str:
        """How the status reads in a text line."""
        return "not in the record" if self is OutcomeStatus.NOT_IN_RECORD else self.value


@dataclass(frozen=True)
class Outcome:
    """What happened to one dataset."""

    dataset_id: str
    status: OutcomeStatus
    detail: str = ""
    path: Path | None = None
    archive_md5: str | None = None
    downloaded_bytes: int = 0
    resumed_from: int = 0
    seconds: float = 0.0
    error: MedimetaError | None = None

    @classmethod
    def failed(cls, dataset_id: str, error: MedimetaError, seconds: float) -> Outcome:
        """The outcome of a dataset whose work raised ``error``."""
        return cls(dataset_id, OutcomeStatus.FAILED, error.message, error=error, seconds=seconds)

    @classmethod
    def interrupted(cls, dataset_id: str, started: bool) -> Outcome:
        """The outcome of a dataset whose work Ctrl-C or SIGTERM stopped (or never began)."""
        detail = "stopped; run the same command again to resume" if started else "not started"
        return cls(dataset_id, OutcomeStatus.INTERRUPTED, detail)

    @classmethod
    def not_in_record(cls, dataset_id: str, error: MedimetaError) -> Outcome:
        """The outcome of a dataset whose archive the record does not list."""
        return cls(dataset_id, OutcomeStatus.NOT_IN_RECORD, error.message, error=error)

    def line(self) -> str:
        """One line for people: status, dataset, why (an install needs no why), where, and
        how much was downloaded."""
        from medimeta_cli.fsutil import human_bytes

        detail = "" if self.status is OutcomeStatus.INSTALLED else self.detail
        where = f"  {self.path}" if self.path else ""
        amount = ""
        if self.downloaded_bytes:
            amount = f"  ({human_bytes(self.downloaded_bytes)} in {self.seconds:.1f} s)"
        label = f"{self.status.label:<10}"
        if self.status is OutcomeStatus.NOT_IN_RECORD:
            label += " "  # the longer label stays apart from the id
        return f"{label}{self.dataset_id:<17}{detail}{where}{amount}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "id": self.dataset_id,
            "status": self.status.value,
            "detail": self.detail,
            "path": str(self.path) if self.path else None,
            "archive_md5": self.archive_md5,
            "downloaded_bytes": self.downloaded_bytes,
            "resumed_from": self.resumed_from,
            "seconds": round(self.seconds, 3),
            "error": None
            if self.error is None
            else {
                "type": type(self.error).__name__,
                "message": self.error.message,
                "hint": self.error.hint,
            },
        }


class DownloadInterrupted(KeyboardInterrupt):
    """A download stopped by Ctrl-C or SIGTERM; ``outcomes`` say what happened to every
    dataset asked for: finished (installed, skipped or failed) before it stopped, or
    ``interrupted``."""

    def __init__(self, outcomes: list[Outcome]) -> None:
        super().__init__()
        self.outcomes = outcomes
