"""The transport bar: play state, tempo and its source, meter, position, lock, next decision, outputs."""

from __future__ import annotations

from sjtui.snapshot import EngineSnapshot
from sjtui.ui.widgets.base import SnapshotView, StripBuilder

STATE_LABELS = {
    "idle": "■ IDLE",
    "count-in": "◆ COUNT-IN",
    "playing": "▶ PLAYING",
    "stopping": "■ STOPPING",
    "stopped": "■ STOPPED",
    "error": "✖ ERROR",
}
SOURCE_LABELS = {"internal": "internal", "tap": "tap", "midi": "MIDI clock", "detected": "detected"}


def tempo_text(snapshot: EngineSnapshot) -> str:
    """``"124.0 BPM detected 87%"``, ``"120.0 BPM MIDI clock LOST"`` ..."""
    t = snapshot.transport
    text = f"{t.bpm:5.1f} BPM {SOURCE_LABELS.get(t.source, t.source)}"
    if t.source == "detected" and t.confidence is not None:
        text += f" {t.confidence * 100:.0f}%"
    if t.clock_state != "ok":
        text += " " + t.clock_state.upper()
    return text


def position_text(snapshot: EngineSnapshot) -> str:
    """``"bar 13:3"``: 1-based bar and beat."""
    t = snapshot.transport
    return f"bar {t.bar + 1}:{int(t.beat) + 1}"


def decision_text(snapshot: EngineSnapshot) -> str:
    t = snapshot.transport
    if snapshot.state != "playing":
        return ""
    if snapshot.locked:
        return "LOCKED"
    return f"next pick {t.bars_to_decision:.1f} bars ({t.seconds_to_decision:.0f} s)"


class TransportBar(SnapshotView):
    """Two lines: what is playing and when the next decision comes; where it goes and what is recorded."""

    COMPONENT_CLASSES = {
        "transport-bar--state",
        "transport-bar--playing",
        "transport-bar--tempo",
        "transport-bar--dim",
        "transport-bar--locked",
        "transport-bar--alert",
        "transport-bar--rec",
        "transport-bar--plain",
    }

    DEFAULT_CSS = """
    TransportBar { height: 2; }
    TransportBar > .transport-bar--state { text-style: bold; }
    TransportBar > .transport-bar--playing { color: $text-success; text-style: bold; }
    TransportBar > .transport-bar--tempo { text-style: bold; }
    TransportBar > .transport-bar--dim { color: $foreground 65%; }
    TransportBar > .transport-bar--locked { color: $text-warning; text-style: bold reverse; }
    TransportBar > .transport-bar--alert { color: $text-error; text-style: bold; }
    TransportBar > .transport-bar--rec { color: $text-error; text-style: bold; }
    TransportBar > .transport-bar--plain { color: $foreground; }
    """

    def view_key(self, snapshot: EngineSnapshot, now_s: float):
        t = snapshot.transport
        return (
            snapshot.state,
            tempo_text(snapshot),
            t.meter,
            position_text(snapshot),
            decision_text(snapshot),
            snapshot.locked,
            snapshot.silent,
            snapshot.midi_destination,
            snapshot.clock_out,
            snapshot.recording,
            snapshot.recording_path,
            snapshot.input_name,
            snapshot.model_version,
            snapshot.library_size,
            self.size.width,
        )

    def draw(self, out: StripBuilder) -> None:
        snapshot = self.snapshot
        t = snapshot.transport
        style = self.style
        dim = style("transport-bar--dim")
        alert = style("transport-bar--alert")
        width = self.content_size.width or self.size.width

        # each part: (rank, [(text, style), ...]); rank 0 always shows, higher ranks leave first
        first: list[tuple] = []
        state = STATE_LABELS.get(snapshot.state, snapshot.state.upper())
        state_style = {"playing": "transport-bar--playing", "error": "transport-bar--alert"}.get(
            snapshot.state, "transport-bar--state"
        )
        first.append((0, [(state, style(state_style))]))
        first.append(
            (0, [(tempo_text(snapshot), alert if t.clock_state == "lost" else style("transport-bar--tempo"))])
        )
        first.append((3, [(t.meter, None)]))
        if snapshot.state in ("playing", "count-in", "stopping"):
            first.append((1, [(position_text(snapshot), None)]))
        decision = decision_text(snapshot)
        if decision:
            first.append(
                (
                    0 if snapshot.locked else 2,
                    [(decision, style("transport-bar--locked") if snapshot.locked else dim)],
                )
            )
        if snapshot.silent and snapshot.state == "playing":
            first.append((4, [("silent", dim)]))

        second: list[tuple] = []
        midi = [
            ("MIDI → ", dim),
            (snapshot.midi_destination or "none (m)", None if snapshot.midi_destination else alert),
        ]
        second.append((0, midi))
        if snapshot.clock_out:
            second.append((6, [("+clock", dim)], " "))
        if snapshot.recording:
            second.append((0, [("● REC", style("transport-bar--rec"))]))
            if snapshot.recording_path:
                second.append((7, [(snapshot.recording_path.rsplit("/", 1)[-1], dim)], " "))
        else:
            second.append((5, [("○ not recording", dim)]))
        input_name = shorten(snapshot.input_name, max(24, width // 2 - 4)) or "none (d)"
        second.append((1, [("in: ", dim), (input_name, None if snapshot.input_name else alert)]))
        second.append(
            (
                2 if snapshot.model_version else 0,
                [(snapshot.model_version or "no model", dim if snapshot.model_version else alert)],
            )
        )
        if snapshot.library_size:
            second.append((8, [(f"· {snapshot.library_size:,} grooves", dim)], " "))

        plain = style("transport-bar--plain")
        for k, parts in enumerate((first, second)):
            if k:
                out.newline()
            for n, part in enumerate(fit_parts(parts, width)):
                if n:
                    out.add(separator(part), dim)
                for segment, segment_style in part[1]:
                    out.add(segment, segment_style or plain)


def shorten(text: str, max_length: int) -> str:
    """``text`` cut in the middle with "…" to at most ``max_length`` characters (ends tell names apart)."""
    if len(text) <= max_length:
        return text
    head = (max_length - 1) // 2
    return text[:head] + "…" + text[len(text) - (max_length - 1 - head) :]


def separator(part: tuple) -> str:
    """What goes before a part: its own (a space for details of the part before) or " │ "."""
    return part[2] if len(part) > 2 else " │ "


def fit_parts(parts: list[tuple], width: int) -> list[tuple]:
    """Leave out the highest-ranked parts until the line fits ``width`` cells.

    A part is ``(rank, [(text, style), ...])`` or ``(rank, segments, separator)``;
    rank 0 always stays.
    """
    shown = list(parts)

    def length(items) -> int:
        text = sum(sum(len(t) for t, _ in part[1]) for part in items)
        return text + sum(len(separator(part)) for part in items[1:])

    while length(shown) > width:
        worst = max(range(len(shown)), key=lambda i: shown[i][0])
        if shown[worst][0] == 0:
            break
        del shown[worst]
    return shown
