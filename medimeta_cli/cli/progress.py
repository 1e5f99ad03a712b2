"""Progress for people: the live display, the engine's events, and the plain lines of a
job log.

A terminal gets rich's live bars (:class:`ProgressDisplay`).
Everywhere else (a batch job's log file, a pipe, ``NO_COLOR``, ``TERM=dumb``) a
:class:`JobLog` writes calm lines instead: one per dataset at a steady interval (the
``progress_interval`` setting, and 10% more progress, whichever comes later), a rate and
an ETA only once they mean something, and a summary line when each dataset is done.
Every line is plain text under :data:`MAX_LINE` characters: no escape codes, no
carriage returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from medimeta_cli.cli.output import Output, plain_lines
from medimeta_cli.events import Phase

#: Progress this much further than the last line (in percent) before the next one.
STEP_PERCENT = 10.0
#: Without that much progress, a line still comes after this many intervals: a job log
#: that stays silent for an hour looks like a hung job.
HEARTBEAT_INTERVALS = 30
#: A rate (and an ETA) is shown once a stage has run this long...
RATE_AFTER_SECONDS = 3.0
#: ...and has moved this many bytes (or one item of another unit).
RATE_AFTER_BYTES = 64 * 1024

#: Engine phases after which no more bytes arrive for a dataset from the network: the
#: bytes that follow (hashing an archive, copying a folder) are another stage.
_STAGE_PHASES = (Phase.VERIFYING, Phase.EXTRACTING, Phase.COPYING)
#: Engine phases that end a dataset's work; each gets the dataset's summary line.
_FINAL_PHASES = (Phase.INSTALLED, Phase.INSTALLED_BY_ANOTHER_JOB, Phase.SKIPPED, Phase.FAILED)


def event_sink(display: ProgressDisplay) -> Any:
    """Translate the download engine's events into the display."""
    from medimeta_cli import events as engine

    display.expect_outcomes()

    def handle(event: engine.Event) -> None:
        if isinstance(event, engine.BytesTransferred):
            display.advance(event.dataset_id, event.count)
        elif isinstance(event, engine.TransferStarted):
            display.start(event.dataset_id, event.total, event.done)
        elif isinstance(event, engine.PhaseChanged):
            display.phase(event.dataset_id, event.phase.value, logged=event.phase.logged)
        elif isinstance(event, engine.Notice):
            prefix = f"{event.dataset_id}: " if event.dataset_id else ""
            display.notice(prefix + event.message, warning=event.warning)

    return handle


def duration(seconds: float) -> str:
    """``4.2 s``, ``12 min 05 s``, ``3 h 07 min``: readable at a glance in a log."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


@dataclass
class _Track:
    """One dataset's progress in the current stage, and what its summary needs."""

    stage: str
    first_seen: float
    total: int = 0
    done: int = 0
    started: bool = False
    stage_started: float = 0.0
    stage_count: int = 0  # moved in this stage (all attempts), for its rate
    transferred: int = 0  # moved in the display's own stage, for the summary
    own_seconds: float = 0.0  # time spent in the display's own stage before this one
    last_line: float = 0.0
    last_percent: float = 0.0
    summarised: bool = False

    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 100.0

    def own_stage_seconds(self, own: str, now: float) -> float:
        """Time spent in the display's own stage (``own``), for the summary's mean rate."""
        running = now - self.stage_started if self.started and self.stage == own else 0.0
        return self.own_seconds + running

    def new_stage(self, stage: str, now: float, own: str) -> None:
        self.own_seconds = self.own_stage_seconds(own, now)
        self.stage = stage
        self.stage_started = self.last_line = now
        self.stage_count = 0
        self.last_percent = self.percent()


class JobLog:
    """Plain progress lines for a log file; the caller serialises calls (one lock).

    ``verb`` names the display's own work (``downloading``, ``hashing``, ``exporting``);
    ``unit`` is ``bytes`` or a plural noun (``images``). With :meth:`expect_outcomes`
    (the download engine), a dataset's summary comes with its final phase; otherwise when
    its count reaches its total, or at :meth:`finish`.
    """

    def __init__(
        self,
        write: Callable[[str], None],
        *,
        verb: str,
        unit: str,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self.verb = verb
        self.unit = unit
        self.interval = interval
        self._clock = clock
        self._tracks: dict[str, _Track] = {}
        self._outcomes_by_phase = False

    def expect_outcomes(self) -> None:
        """Summaries come with the engine's final phases (installed, skipped, failed)."""
        self._outcomes_by_phase = True

    def notice(self, text: str) -> None:
        """A message, cleaned and wrapped as every line of the log."""
        for line in plain_lines(text):
            self._write(line)

    def _track(self, name: str, now: float) -> _Track:
        track = self._tracks.get(name)
        if track is None:
            track = self._tracks[name] = _Track(self.verb, now)
        return track

    def start(self, name: str, total: int, done: int) -> None:
        """A count of ``total`` begins (again, on a retry), ``done`` of it already there."""
        now = self._clock()
        track = self._track(name, now)
        track.total, track.done = total, done
        if not track.started:
            track.new_stage(track.stage, now, self.verb)
            track.started = True

    def advance(self, name: str, count: int) -> None:
        """``count`` more; a line when the interval and the step have both passed."""
        now = self._clock()
        track = self._track(name, now)
        if not track.started:
            track.new_stage(track.stage, now, self.verb)
            track.started = True
        track.done += count
        track.stage_count += count
        if track.stage == self.verb:
            track.transferred += count
        if not self._outcomes_by_phase and track.total and track.done >= track.total:
            self._summary(name, track, "done", now)
            return
        since = now - track.last_line
        stepped = track.percent() - track.last_percent >= STEP_PERCENT
        if since >= self.interval and (stepped or since >= HEARTBEAT_INTERVALS * self.interval):
            track.last_line, track.last_percent = now, track.percent()
            self._write(self._progress_line(name, track, now))

    def phase(self, name: str, phase: str, *, logged: bool) -> None:
        """The engine moved a dataset on: a line for the long steps, a summary at the end."""
        now = self._clock()
        track = self._track(name, now)
        if phase in _FINAL_PHASES:
            self._summary(name, track, phase, now)
            return
        if phase in _STAGE_PHASES:
            track.new_stage(phase, now, self.verb)
        if logged:
            self.notice(f"{name}: {phase}")

    def finish(self, *, failed: bool) -> None:
        """The display closes: a summary for each dataset that has none yet (unless the
        command failed: its error says what happened)."""
        if failed:
            return
        now = self._clock()
        for name, track in self._tracks.items():
            if track.started and not track.summarised:
                self._summary(name, track, "finished", now)

    def _amount(self, count: float) -> str:
        from medimeta_cli.fsutil import human_bytes

        if self.unit == "bytes":
            return human_bytes(count)
        return f"{count:,.0f} {self.unit}"

    def _rate(self, count: float, seconds: float) -> str:
        from medimeta_cli.fsutil import human_bytes

        rate = count / max(seconds, 1e-6)
        return f"{human_bytes(rate)}/s" if self.unit == "bytes" else f"{rate:,.0f} {self.unit}/s"

    def _progress_line(self, name: str, track: _Track, now: float) -> str:
        from medimeta_cli.fsutil import human_bytes

        if self.unit == "bytes":
            amounts = f"{human_bytes(track.done)} of {human_bytes(track.total)}"
        else:
            amounts = f"{track.done:,} of {track.total:,} {self.unit}"
        line = f"{track.stage}: {name} {amounts} ({track.percent():.0f}%)"
        seconds = now - track.stage_started
        enough = RATE_AFTER_BYTES if self.unit == "bytes" else 1
        if seconds >= RATE_AFTER_SECONDS and track.stage_count >= enough:
            line += f", {self._rate(track.stage_count, seconds)}"
            if track.total > track.done:
                left = (track.total - track.done) * seconds / track.stage_count
                line += f", ETA {duration(left)}"
        return plain_lines(line)[0]

    def _summary(self, name: str, track: _Track, what: str, now: float) -> None:
        if track.summarised:
            return
        track.summarised = True
        line = f"{self.verb}: {name} {what}"
        if track.started:
            line += f" in {duration(now - track.first_seen)}"
        if track.transferred:
            amount = self._amount(track.transferred)
            if not self._outcomes_by_phase and track.total and track.done < track.total:
                amount += f" of {self._amount(track.total)}"
            own = track.own_stage_seconds(self.verb, now)
            line += f", {amount} at {self._rate(track.transferred, own)}"
        self._write(plain_lines(line)[0])


class ProgressDisplay:
    """Shows byte progress per dataset and in total on stderr, from any thread.

    A live rich display with bars, rate and ETA on a colour terminal; plain lines
    at a steady interval otherwise (a job log: :class:`JobLog`);
    nothing with ``--quiet``. Use it as a context manager.
    """

    def __init__(
        self,
        out: Output,
        *,
        verb: str = "downloading",
        interval: float | None = None,
        unit: str = "bytes",
    ) -> None:
        import threading

        self.out = out
        self.verb = verb
        self.unit = unit
        self.interval = out.progress_interval if interval is None else interval
        self._lock = threading.Lock()
        self._live = out.stderr_color and not out.quiet
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}
        self._totals: dict[str, int] = {}
        self._done: dict[str, int] = {}
        self._total_task: Any = None
        self._log = (
            None
            if self._live or out.quiet
            else JobLog(self._write_line, verb=verb, unit=unit, interval=self.interval)
        )

    def _write_line(self, line: str) -> None:
        self.out.stderr.write(line + "\n")
        self.out.stderr.flush()

    def expect_outcomes(self) -> None:
        """Each dataset's work ends with a final phase (the download engine's events)."""
        if self._log is not None:
            self._log.expect_outcomes()

    def __enter__(self) -> ProgressDisplay:
        if self._live:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            counts: tuple[Any, ...] = (
                (DownloadColumn(binary_units=True), TransferSpeedColumn())
                if self.unit == "bytes"
                else (MofNCompleteColumn(), TimeElapsedColumn())
            )
            self._progress = Progress(
                TextColumn("{task.description:<24}"),
                BarColumn(),
                *counts,
                TimeRemainingColumn(),
                console=Console(file=self.out.stderr),
                transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
        if self._log is not None:
            with self._lock:
                self._log.finish(failed=exc_type is not None)

    def notice(self, message: str, *, warning: bool = False) -> None:
        """A message that must not garble the bars."""
        if self.out.quiet:
            return
        text = ("warning: " if warning else "") + message
        with self._lock:
            if self._progress is not None:
                self._progress.console.print(text, markup=False, highlight=False)
            elif self._log is not None:
                self._log.notice(text)

    def start(self, name: str, total: int, done: int = 0) -> None:
        """A byte stream of ``total`` bytes begins, ``done`` of them already there."""
        with self._lock:
            self._totals[name] = total
            self._done[name] = done
            if self._progress is not None:
                if name in self._tasks:
                    self._progress.update(self._tasks[name], total=total, completed=done)
                else:
                    self._tasks[name] = self._progress.add_task(name, total=total, completed=done)
                self._update_total()
            elif self._log is not None:
                self._log.start(name, total, done)

    def advance(self, name: str, count: int) -> None:
        """``count`` more bytes of ``name``."""
        with self._lock:
            self._done[name] = self._done.get(name, 0) + count
            if self._progress is not None:
                self._progress.advance(self._tasks[name], count)
                if self._total_task is not None:
                    self._progress.advance(self._total_task, count)
            elif self._log is not None:
                self._log.advance(name, count)

    def _update_total(self) -> None:
        total, done = sum(self._totals.values()), sum(self._done.values())
        if len(self._totals) < 2:
            return
        if self._total_task is None:
            self._total_task = self._progress.add_task("total", total=total, completed=done)
        else:
            self._progress.update(self._total_task, total=total, completed=done)

    def phase(self, name: str, phase: str, *, logged: bool) -> None:
        """A dataset moved on (extracting, installed, ...); without a live display, a line
        on stderr when ``logged``."""
        with self._lock:
            if self._progress is not None and name in self._tasks:
                self._progress.update(self._tasks[name], description=f"{name} {phase}"[:24])
                return
            if self._log is not None:
                self._log.phase(name, phase, logged=logged)
                return
        if logged:
            self.notice(f"{name}: {phase}")
