"""The download engine's events, shown by the progress display (download and verify --repair)."""

from __future__ import annotations

from typing import Any

from medimeta_cli.cli.output import ProgressDisplay


def event_sink(display: ProgressDisplay) -> Any:
    """Translate the download engine's events into the display."""
    from medimeta_cli import events as engine

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
