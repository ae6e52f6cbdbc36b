"""The current groove: its drum pattern with the playhead, its facts, and the next candidates."""

from __future__ import annotations

import numpy as np

from sjtui.constants import BARS_PER_WINDOW, DRUM_VOICES, STEPS_PER_BEAT
from sjtui.snapshot import EngineSnapshot, GrooveInfo
from sjtui.ui.widgets.base import SnapshotView, StripBuilder
from sjtui.ui.widgets.cells import block_glyphs, columns_per_bar, playhead_cell, pool_max

VOICE_LABELS = {
    "kick": "kick",
    "snare": "snare",
    "closed_hat": "hat",
    "open_hat": "open",
    "low_tom": "tom L",
    "mid_tom": "tom M",
    "high_tom": "tom H",
    "crash": "crash",
    "ride": "ride",
}
LABEL_WIDTH = 6


def format_played(bars: int, bpm: float, meter_beats: float = 4.0) -> str:
    """``"6 bars · 0:12"``: how long a groove has played, in bars and minutes:seconds at ``bpm``."""
    seconds = round(bars * meter_beats * 60.0 / max(bpm, 1e-6))
    return f"{bars} bar{'s' if bars != 1 else ''} · {seconds // 60}:{seconds % 60:02d}"


def groove_title(groove: GrooveInfo | None) -> str:
    if groove is None:
        return "groove"
    return f"{groove.name} · {groove.style} · {groove.bpm:.0f} BPM"


def groove_subtitle(snapshot: EngineSnapshot) -> str:
    groove = snapshot.current
    if groove is None:
        return ""
    parts = []
    if groove.score is not None:
        parts.append(f"score {groove.score:.2f}")
    beats = snapshot.transport.steps_per_bar / STEPS_PER_BEAT
    parts.append("played " + format_played(groove.bars_played, snapshot.transport.bpm, beats))
    if snapshot.last_rating is not None:
        parts.append(f"rated {snapshot.last_rating}/5")
    if snapshot.locked:
        parts.append("LOCKED")
    return " · ".join(parts)


class DrumPattern(SnapshotView):
    """Voices × grid cells of the current groove's 4-bar window, playhead column highlighted.

    Only voices the pattern uses get a row (kick, snare and hat always do),
    so most patterns take 3 to 6 rows.
    """

    COMPONENT_CLASSES = {
        "drum-pattern--label",
        "drum-pattern--hit",
        "drum-pattern--grid",
        "drum-pattern--playhead",
        "drum-pattern--empty",
    }

    DEFAULT_CSS = """
    DrumPattern { height: auto; }
    DrumPattern > .drum-pattern--label { color: $foreground 70%; }
    DrumPattern > .drum-pattern--hit { color: $text-primary; text-style: bold; }
    DrumPattern > .drum-pattern--grid { color: $foreground 30%; }
    DrumPattern > .drum-pattern--playhead { background: $accent 35%; }
    DrumPattern > .drum-pattern--empty { color: $foreground 60%; text-style: italic; }
    """

    def view_key(self, snapshot: EngineSnapshot, now_s: float):
        groove = snapshot.current
        t = snapshot.transport
        if groove is None or groove.pattern is None:
            return ("empty", snapshot.state)
        n_steps = groove.pattern.shape[1]
        steps_per_bar = max(n_steps // BARS_PER_WINDOW, 1)
        columns = columns_per_bar(steps_per_bar, self._max_columns())
        return (
            groove.id,
            id(groove.pattern),
            playhead_cell(t.step, steps_per_bar // columns),
            self.size.width,
        )

    def show(self, snapshot: EngineSnapshot, now_s: float) -> None:
        rows_before = self._rows(self.snapshot)
        super().show(snapshot, now_s)
        if self._rows(snapshot) != rows_before:
            self.refresh(layout=True)

    def _rows(self, snapshot: EngineSnapshot) -> int:
        groove = snapshot.current
        if groove is None or groove.pattern is None:
            return 2
        return len(self.voices_shown(groove.pattern)) + 1

    def _max_columns(self) -> int:
        return (self.size.width - LABEL_WIDTH - (BARS_PER_WINDOW - 1)) // BARS_PER_WINDOW

    @staticmethod
    def voices_shown(pattern: np.ndarray) -> list[int]:
        used = np.flatnonzero(pattern.max(axis=1) > 0)
        always = [DRUM_VOICES.index(v) for v in ("kick", "snare", "closed_hat")]
        return sorted(set(used.tolist()) | set(always))

    def get_content_height(self, container, viewport, width: int) -> int:
        return self._rows(self.snapshot)

    def draw(self, out: StripBuilder) -> None:
        snapshot = self.snapshot
        groove = snapshot.current
        if groove is None or groove.pattern is None:
            text = "no groove yet: sjtui picks one after listening to a few bars"
            if snapshot.state in ("idle", "stopped"):
                text = "no groove playing: press space to start"
            out.add(text, self.style("drum-pattern--empty"))
            return
        pattern = groove.pattern
        n_steps = pattern.shape[1]
        steps_per_bar = max(n_steps // BARS_PER_WINDOW, 1)
        columns = columns_per_bar(steps_per_bar, self._max_columns())
        n_cells = BARS_PER_WINDOW * columns
        cell_steps = steps_per_bar // columns
        play_cell = min(playhead_cell(snapshot.transport.step, cell_steps), n_cells - 1)
        glyphs = block_glyphs(pool_max(pattern[:, : n_cells * cell_steps], n_cells), threshold=1e-3)
        beat_cells = max(columns * STEPS_PER_BEAT // steps_per_bar, 1)

        label = self.style("drum-pattern--label")
        hit = self.style("drum-pattern--hit")
        grid = self.style("drum-pattern--grid")
        playhead = self.style("drum-pattern--playhead", partial=True)
        hit_now, grid_now = hit + playhead, grid + playhead

        for row, voice in enumerate(self.voices_shown(pattern)):
            if row:
                out.newline()
            out.add(VOICE_LABELS[DRUM_VOICES[voice]].ljust(LABEL_WIDTH), label)
            for cell in range(n_cells):
                column = cell % columns
                if cell and column == 0:
                    out.add("│", grid)
                char = glyphs[voice, cell]
                now = cell == play_cell
                if char == " ":
                    out.add("·" if column % beat_cells == 0 else " ", grid_now if now else grid)
                else:
                    out.add(char, hit_now if now else hit)
        out.newline()
        ruler = [" "] * (n_cells + BARS_PER_WINDOW - 1)
        ruler[play_cell + play_cell // columns] = "▲"
        out.add(" " * LABEL_WIDTH + "".join(ruler), label)


class Candidates(SnapshotView):
    """The next candidates with their scores: one line (narrow screens) or a list (wide)."""

    COMPONENT_CLASSES = {
        "candidates--title", "candidates--next", "candidates--score", "candidates--dim", "candidates--plain",
    }  # fmt: skip

    DEFAULT_CSS = """
    Candidates { height: 1; }
    Candidates > .candidates--title { color: $foreground 70%; }
    Candidates > .candidates--next { color: $text-accent; text-style: bold; }
    Candidates > .candidates--score { color: $text-primary; }
    Candidates > .candidates--dim { color: $foreground 60%; }
    Candidates > .candidates--plain { color: $foreground; }
    """

    def __init__(self, *, listing: bool = False, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.listing = listing

    def view_key(self, snapshot: EngineSnapshot, now_s: float):
        nxt = snapshot.next
        return (
            tuple((g.id, g.score) for g in snapshot.candidates),
            None if nxt is None else nxt.id,
            snapshot.locked,
            round(snapshot.transport.bars_to_decision, 0) if nxt is not None else None,
        )

    def draw(self, out: StripBuilder) -> None:
        snapshot = self.snapshot
        title = self.style("candidates--title")
        nxt_style = self.style("candidates--next")
        score = self.style("candidates--score")
        dim = self.style("candidates--dim")
        plain = self.style("candidates--plain")
        candidates = snapshot.candidates
        if not candidates:
            out.add("next: ", title)
            out.add("no candidates yet", dim)
            return
        if self.listing:
            out.add("next candidates" + (" (locked: kept)" if snapshot.locked else ""), title)
            for rank, groove in enumerate(candidates, 1):
                chosen = snapshot.next is not None and groove.id == snapshot.next.id
                out.newline()
                out.add(f"{'▸' if chosen else ' '}{rank} ", nxt_style if chosen else title)
                out.add(groove.name, nxt_style if chosen else plain)
                out.newline()
                out.add(f"   {groove.style} · {groove.bpm:.0f} BPM · ", dim)
                out.add(f"{groove.score:.2f}" if groove.score is not None else "-", score)
            return
        if snapshot.next is not None and not snapshot.locked:
            out.add("switching to ", title)
            out.add(snapshot.next.name, nxt_style)
            out.add(f" ({snapshot.next.score:.2f}) at the next window · then ", dim)
        else:
            out.add("locked; " if snapshot.locked else "", dim)
            out.add("next: ", title)
        shown = [
            g for g in candidates if snapshot.next is None or snapshot.locked or g.id != snapshot.next.id
        ]
        for rank, groove in enumerate(shown):
            if rank:
                out.add(" · ", dim)
            out.add(f"{groove.style} {_short(groove.name)} ", plain)
            out.add(f"{groove.score:.2f}" if groove.score is not None else "-", score)


def _short(name: str) -> str:
    """``"funk/groove3 (4-4)"`` -> ``"groove3"``: the part that tells GMD grooves apart."""
    base = name.split("/")[-1]
    return base.split(" (")[0]
