"""The event log: standing warnings first, then the latest events, as many as fit."""

from __future__ import annotations

from sjtui.snapshot import EngineSnapshot, LogEntry
from sjtui.ui.widgets.base import SnapshotView, StripBuilder

LEVEL_MARKS = {"info": "·", "warning": "⚠", "error": "✖"}


def entry_line(entry: LogEntry) -> str:
    """``" 31.0s ⚠ MIDI clock lost"``."""
    return f"{entry.time_s:6.1f}s {LEVEL_MARKS.get(entry.level, '·')} {entry.text}"


class EventLog(SnapshotView):
    """Warnings that still hold (``snapshot.warnings``), then the newest log entries, newest last."""

    COMPONENT_CLASSES = {"event-log--info", "event-log--warning", "event-log--error", "event-log--standing"}

    DEFAULT_CSS = """
    EventLog { height: 1fr; min-height: 1; }
    EventLog > .event-log--info { color: $foreground 70%; }
    EventLog > .event-log--warning { color: $text-warning; }
    EventLog > .event-log--error { color: $text-error; text-style: bold; }
    EventLog > .event-log--standing { color: $text; background: $warning 30%; text-style: bold; }
    """

    def view_key(self, snapshot: EngineSnapshot, now_s: float):
        last = snapshot.log[-1] if snapshot.log else None
        return (snapshot.warnings, len(snapshot.log), last, self.size.height, self.size.width)

    def draw(self, out: StripBuilder) -> None:
        snapshot = self.snapshot
        height = max(self.size.height, 1)
        lines: list[tuple[str, str]] = []
        if snapshot.warnings:
            lines.append(("⚠ " + " · ".join(snapshot.warnings), "event-log--standing"))
        room = height - len(lines)
        if room > 0:
            for entry in snapshot.log[-room:]:
                lines.append(
                    (
                        entry_line(entry),
                        f"event-log--{entry.level}" if entry.level in LEVEL_MARKS else "event-log--info",
                    )
                )
        for k, (line, style) in enumerate(lines):
            if k:
                out.newline()
            out.add(line, self.style(style))
