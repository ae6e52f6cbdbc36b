"""The ``sjtui label`` screen: hear a guitar loop with a groove, rate it 0-5.

It draws a :class:`~sjtui.labels.session.LabelSession` with the jam
screen's widgets (the loop's onset grid, the groove's drum pattern, both
with the playhead of what is heard) and turns keys into session calls:

0-5 rate (committed at once, then the next pair) · p / enter replay ·
s skip (nothing saved) · n note (an input; enter keeps it for the next
rating, escape drops it) · ? help · q quit (audio and MIDI closed).

Like the jam screen it polls (about 30 Hz) for the playhead; the session is
built by a factory in a worker thread so the screen is up at once, and an
error from building it is shown on screen (quitting then returns 2).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from textual import work
from textual.actions import SkipAction
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Static

from sjtui.constants import BARS_PER_WINDOW, STEPS_PER_BEAT
from sjtui.snapshot import EngineSnapshot, GrooveInfo, LogEntry, TransportInfo
from sjtui.ui.widgets.base import SnapshotView
from sjtui.ui.widgets.groove import DrumPattern
from sjtui.ui.widgets.keys import KeyBar, KeyHint
from sjtui.ui.widgets.log import EventLog
from sjtui.ui.widgets.onsets import OnsetGrid

POLL_HZ = 30.0

LABEL_KEY_HINTS = [
    KeyHint("0-5", "rate", 0),
    KeyHint("p", "replay", 1),
    KeyHint("s", "skip", 1),
    KeyHint("n", "note", 2),
    KeyHint("?", "help", 3),
    KeyHint("q", "quit", 0),
]

HELP_TEXT = """\
sjtui label: rate how well the drums fit the guitar

  0-5      rate this pair (0 = clashes, 5 = perfect); saved at once, next pair
  p, enter replay the pair from its first beat
  s        skip: no rating, next pair
  n        write a note; enter keeps it for your next rating, escape drops it
  q        quit (every confirmed rating is already saved)

Pairs mix the model's favourites, pairs it is unsure about and random
grooves, so each rating teaches it the most (see sjtui/labels/pairing.py).
`sjtui train` learns from the ratings; `sjtui model list` shows the versions."""


class LabelHeader(Static):
    """What is playing: the loop, the groove, why it was chosen, where the drums go."""


def loop_onset_grid(loop) -> np.ndarray:
    """``(n_bands, bars, steps_per_bar)`` float32 onset strengths of a loop, scaled to 0..1."""
    grid = loop.fingerprint.onset_grid()
    top = float(grid.max()) if grid.size else 0.0
    return grid / top if top > 0 else grid


def groove_pattern(groove, bars: int = BARS_PER_WINDOW) -> np.ndarray:
    """``(n_voices, bars * steps_per_bar)`` velocities 0..1, the groove repeated over ``bars`` bars."""
    spb = groove.meter.steps_per_bar
    reps = -(-bars // groove.bars)
    pattern = np.tile(groove.velocities, (reps, 1))[: bars * spb].T.copy()
    pattern.flags.writeable = False
    return pattern


class LabelApp(App[int]):
    """The labelling screen over a :class:`~sjtui.labels.session.LabelSession` (or a factory of one)."""

    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "sjtui label"
    AUTO_FOCUS = None  # keys go to the bindings; the note input takes focus only when n opens it
    ENABLE_COMMAND_PALETTE = False

    CSS = """
    #label-header { padding: 0 1; background: $boost; height: auto; }
    #label-status { padding: 0 1; height: auto; }
    #label-status.-error { color: $text-error; text-style: bold; }
    #note-input { display: none; height: 3; }
    #note-input.-open { display: block; }
    #label-onset-panel { height: 6; border: round $primary 60%; border-title-color: $foreground; }
    #label-groove-panel { height: auto; border: round $secondary 60%; border-title-color: $foreground;
                          border-subtitle-color: $foreground 80%; border-subtitle-align: left; }
    #label-log { padding: 0 1; }
    """

    BINDINGS = [
        Binding("0", "rate(0)", "Rate", key_display="0-5"),
        *(Binding(str(n), f"rate({n})", f"Rate {n}", show=False) for n in range(1, 6)),
        Binding("p", "replay", "Replay"),
        Binding("enter", "replay", "Replay", show=False),
        Binding("s", "skip", "Skip"),
        # priority: handled as the app takes the key off its queue, so the note input has focus
        # before the keys typed right after n (one terminal read) are passed on
        Binding("n", "note", "Note", priority=True),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit_label", "Quit"),
        Binding("ctrl+c", "quit_label", "Quit", show=False, priority=True),
    ]

    def __init__(self, session, *, poll_hz: float = POLL_HZ, notes: tuple[str, ...] = ()) -> None:
        super().__init__()
        self._factory: Callable | None = None
        if callable(session) and not hasattr(session, "rate"):
            self._factory = session
            session = None
        self.session = session
        self.poll_hz = poll_hz
        self.start_error: BaseException | None = None
        self.pending_note = ""
        self.last_error: str | None = None
        self._session_closed = False
        self._log_entries: list[LogEntry] = [LogEntry(0.0, "info", text) for text in notes]
        self._t0 = time.monotonic()
        self._views: list[SnapshotView] = []
        self._pair_key = None
        self._pair_snapshot = EngineSnapshot()
        self._problems_shown = 0

    # --- layout ----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield LabelHeader("starting: loading loops, the groove library and the model…", id="label-header")
        with Horizontal(id="label-onset-panel"):
            yield OnsetGrid(id="label-onsets")
        with Vertical(id="label-groove-panel"):
            yield DrumPattern(id="label-drums")
        yield Static("", id="label-status")
        yield Input(placeholder="note for the next rating (enter keeps it, escape drops it)", id="note-input")
        yield EventLog(id="label-log")
        yield KeyBar(LABEL_KEY_HINTS, id="label-keys")

    def on_mount(self) -> None:
        self._views = list(self.query(SnapshotView).results())
        self.query_one("#label-onset-panel").border_title = "guitar onsets"
        self.query_one("#label-groove-panel").border_title = "groove"
        self.set_interval(1.0 / self.poll_hz, self.poll, name="label-poll")
        if self._factory is not None:
            self.refresh_pair()
            self._build_session()
        else:
            self._session_ready(self.session)

    @work(thread=True, exclusive=True, group="label-start", exit_on_error=False)
    def _build_session(self) -> None:
        try:
            session = self._factory()
        except Exception as error:  # noqa: BLE001 - shown on screen, printed again after it closes
            try:
                self.call_from_thread(self._session_failed, error)
            except RuntimeError:
                pass
            return
        try:
            self.call_from_thread(self._session_ready, session)
        except RuntimeError:  # quit while starting
            session.close()

    def _session_ready(self, session) -> None:
        if self._session_closed:
            session.close()
            return
        self.session = session
        note = getattr(session, "player_note", None)
        if note:
            self.log_line("warning", note)
        try:
            session.start()
        except Exception as error:  # noqa: BLE001 - e.g. the output device went away
            self.show_error(str(error))
        self.refresh_pair()

    def _session_failed(self, error: BaseException) -> None:
        self.start_error = error
        self.query_one(LabelHeader).update("could not start the labelling session")
        self.show_error(f"{error}\npress q to quit")
        self.log_line("error", str(error))

    # --- drawing ---------------------------------------------------------------------------------
    def log_line(self, level: str, text: str) -> None:
        self._log_entries.append(LogEntry(time.monotonic() - self._t0, level, text))
        del self._log_entries[:-20]
        self.poll()

    def show_error(self, text: str | None) -> None:
        self.last_error = text
        status = self.query_one("#label-status", Static)
        if text:
            status.set_class(True, "-error")
            status.update(text)
        else:
            status.set_class(False, "-error")
            self._update_status()

    def _update_status(self) -> None:
        session = self.session
        if session is None or self.last_error:
            return
        parts = [f"rated {session.rated}", f"skipped {session.skipped}"]
        if session.last_saved is not None:
            parts.append(f"last saved #{session.last_saved}")
        if self.pending_note:
            parts.append(f"note: {self.pending_note[:40]}")
        prompt = (
            "how well do the drums fit? 0-5" if session.current is not None else "all pairs done: q quits"
        )
        self.query_one("#label-status", Static).update(f"{prompt} · " + " · ".join(parts))

    def refresh_pair(self) -> None:
        """Header, onset grid and drum pattern of the current pair; loops passed over since, in the log."""
        from sjtui.labels.session import loop_label

        session = self.session
        problems = getattr(session, "problems", [])
        for problem in problems[self._problems_shown :]:
            self.log_line("warning", problem)
        self._problems_shown = len(problems)
        pair = None if session is None else session.current
        if session is not None:
            header = self.query_one(LabelHeader)
            if pair is None:
                header.update(f"done: {session.rated} rated, {session.skipped} skipped. q quits")
            else:
                loop, groove, pick = pair.loop, pair.groove, pair.pick
                score = "" if not np.isfinite(pick.score) else f" {pick.score:+.2f}"
                drums = getattr(getattr(session, "player", None), "name", "no player")
                header.update(
                    f"pair {pair.number} · loop {pair.loop_index + 1}/{len(session.loops)}: {loop_label(loop)}\n"
                    f"groove {groove.name} · chosen as {pick.strategy}{score} · drums: {drums}"
                )
            self._update_status()
        if pair is None:
            self._pair_snapshot = EngineSnapshot(state="idle", log=tuple(self._log_entries))
        else:
            loop, groove = pair.loop, pair.groove
            spb = loop.meter.steps_per_bar
            info = GrooveInfo(
                id=int(getattr(groove, "id", None) or pair.pick.groove_id),
                name=groove.name,
                style=str(getattr(groove, "style", "")),
                bpm=float(groove.bpm),
                meter=str(groove.meter),
                score=None if not np.isfinite(pair.pick.score) else float(pair.pick.score),
                pattern=groove_pattern(groove, loop.bars),
            )
            self._pair_snapshot = EngineSnapshot(
                state="playing",
                transport=TransportInfo(bpm=float(loop.bpm), meter=str(loop.meter), steps_per_bar=spb),
                onset_grid=loop_onset_grid(loop),
                current=info,
            )
            self.query_one("#label-groove-panel").border_title = f"groove · {groove.name}"
            self.query_one(
                "#label-groove-panel"
            ).border_subtitle = (
                f"{getattr(groove, 'style', '')} · {groove.bpm:.0f} BPM · played at {loop.bpm:.0f}"
            )
        self.poll()

    def poll(self) -> None:
        """Move the playhead to what is heard; show player problems."""
        if not self._views:
            return
        snapshot = self._pair_snapshot
        session = self.session
        if session is not None and session.current is not None:
            player = getattr(session, "player", None)
            problem = player.poll() if player is not None else None
            if problem:
                self._log_entries.append(LogEntry(time.monotonic() - self._t0, "warning", problem))
            position_s = session.position_s()
            t = snapshot.transport
            if position_s is None:
                step, bar = 0, 0
            else:
                loop = session.current.loop
                total_steps = loop.bars * t.steps_per_bar
                step = int(position_s * loop.bpm / 60.0 * STEPS_PER_BEAT) % max(total_steps, 1)
                bar = step // t.steps_per_bar
            transport = TransportInfo(
                bpm=t.bpm, meter=t.meter, steps_per_bar=t.steps_per_bar, step=step, bar=bar,
                beat=(step % t.steps_per_bar) / STEPS_PER_BEAT,
            )  # fmt: skip
            snapshot = EngineSnapshot(
                state="playing" if position_s is not None else "stopped",
                transport=transport,
                onset_grid=snapshot.onset_grid,
                current=snapshot.current,
                log=tuple(self._log_entries),
            )
        else:
            snapshot = EngineSnapshot(state=snapshot.state, log=tuple(self._log_entries))
        now_s = time.monotonic()
        for view in self._views:
            view.show(snapshot, now_s)

    # --- keys --------------------------------------------------------------------------------------
    def _has_pair(self) -> bool:
        if self.session is None:
            self.notify("still starting" if self.start_error is None else "the session did not start")
            return False
        if self.session.current is None:
            self.notify("every pair is done: q quits", timeout=3)
            return False
        return True

    def action_rate(self, rating: int) -> None:
        if not self._has_pair():
            return
        from sjtui.errors import SjtuiError

        try:
            row = self.session.rate(rating, self.pending_note)
        except SjtuiError as error:
            # locked / read-only / full disk: the store's message; the pair and the note stay
            self.show_error(f"not saved: {error}")
            self.log_line("error", f"rating {rating} not saved: {error}")
            return
        self.log_line(
            "info",
            f"saved rating {rating} (#{row})"
            + (f" with note {self.pending_note!r}" if self.pending_note else ""),
        )
        self.pending_note = ""
        self.show_error(None)
        self.refresh_pair()

    def action_replay(self) -> None:
        if self._has_pair():
            self.session.replay()

    def action_skip(self) -> None:
        if not self._has_pair():
            return
        self.session.skip()
        self.pending_note = ""
        self.log_line("info", "skipped (nothing saved)")
        self.show_error(None)
        self.refresh_pair()

    def action_note(self) -> None:
        note_input = self.query_one("#note-input", Input)
        if note_input.has_class("-open"):
            raise SkipAction()  # an n typed into the note
        note_input.value = self.pending_note
        note_input.add_class("-open")
        self.set_focus(note_input)  # now: focus() would only schedule it behind the queued keys

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.pending_note = event.value.strip()
        self._close_note()

    def on_key(self, event) -> None:
        note_input = self.query_one("#note-input", Input)
        if event.key == "escape" and note_input.has_class("-open"):
            self.pending_note = ""
            self._close_note()
            event.stop()

    def _close_note(self) -> None:
        note_input = self.query_one("#note-input", Input)
        note_input.remove_class("-open")
        self.set_focus(None)
        self._update_status()

    def action_help(self) -> None:
        self.notify(HELP_TEXT, title="keys", timeout=15)

    def action_quit_label(self) -> None:
        self.close_session()
        code = 2 if self.start_error is not None else 0
        self.exit(code, return_code=code)

    # --- shutdown ----------------------------------------------------------------------------------
    def close_session(self) -> None:
        """Close the player (audio stream, MIDI: All Notes Off) and the store, once."""
        if self._session_closed:
            return
        self._session_closed = True
        if self.session is not None:
            self.session.close()

    def on_unmount(self) -> None:
        self.close_session()


def run_label_app(session, **kwargs) -> int:
    """Run the labelling screen until the player quits; the session is closed on any exit."""
    app = LabelApp(session, **kwargs)
    try:
        result = app.run()
    finally:
        app.close_session()
    if app.start_error is not None:
        import sys

        print(f"sjtui label: {app.start_error}", file=sys.stderr)
        return 2
    return int(result or 0)
