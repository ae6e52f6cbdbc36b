"""The jam screen: a Textual app that polls the engine's snapshot and turns keys into commands.

The app never waits for the engine: about 30 times a second it reads the
latest :class:`~sjtui.snapshot.EngineSnapshot` (a reference swap on the
engine side) and hands it to each widget, which repaints only if what it
draws changed. Keys become :class:`~sjtui.snapshot.Command` objects put on
the engine's queue with ``engine.send``. Quitting calls ``engine.close()``
(all notes off, MIDI ports closed) exactly once, however the app ends.

Build it with :func:`make_app` (tests drive it with ``App.run_test()``),
run it with :func:`run_app`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical

from sjtui.snapshot import (
    ChooseInput,
    ChooseMidiClockInput,
    ChooseMidiOutput,
    Command,
    EngineLike,
    EngineSnapshot,
    FillNow,
    LogEntry,
    NudgeTempo,
    Rate,
    SetClockSource,
    Skip,
    Start,
    Stop,
    Tap,
    ToggleLock,
    ToggleRecord,
)
from sjtui.ui.screens.help import HelpScreen
from sjtui.ui.screens.pickers import Picked, clock_picker, input_picker, midi_output_picker
from sjtui.ui.widgets.base import SnapshotView
from sjtui.ui.widgets.groove import Candidates, DrumPattern, groove_subtitle, groove_title
from sjtui.ui.widgets.keys import KeyBar, KeyHint
from sjtui.ui.widgets.log import EventLog
from sjtui.ui.widgets.meters import BandMeters, InputMeter
from sjtui.ui.widgets.onsets import OnsetGrid
from sjtui.ui.widgets.transport import TransportBar

POLL_HZ = 30.0
TEMPO_STEP_BPM = 1.0
POLL_ERROR_NOTICE_S = 30.0  # how long an engine failure stays on screen, and repeats at most
STOPPED_STATES = ("idle", "stopped", "error")

# The key bar: order as shown; rank 0 never leaves, higher ranks leave first on narrow terminals.
KEY_HINTS = [
    KeyHint("space", "play", 0),
    KeyHint("l", "lock", 1),
    KeyHint("s", "skip", 2),
    KeyHint("f", "fill", 6),
    KeyHint("t", "tap", 4),
    KeyHint("+/-", "bpm", 6),
    KeyHint("0-5", "rate", 3),
    KeyHint("r", "rec", 5),
    KeyHint("d", "input", 8),
    KeyHint("m", "midi", 7),
    KeyHint("c", "clock", 9),
    KeyHint("?", "help", 0),
    KeyHint("q", "quit", 0),
]


class GroovePanel(Vertical):
    """The bordered box around the drum pattern; its titles name the groove and its score."""

    def show(self, snapshot: EngineSnapshot) -> None:
        title = groove_title(snapshot.current)
        subtitle = groove_subtitle(snapshot)
        if self.border_title != title:
            self.border_title = title
        if self.border_subtitle != subtitle:
            self.border_subtitle = subtitle


class OnsetPanel(Horizontal):
    """The bordered box around the band meters and the onset grid."""

    def show(self, snapshot: EngineSnapshot) -> None:
        t = snapshot.transport
        if snapshot.onset_grid is None:
            title = "onsets"
        else:
            first = t.bar - t.step // max(t.steps_per_bar, 1) + 1
            title = f"onsets · bars {first}–{first + 3}"
        if self.border_title != title:
            self.border_title = title


class StartingEngine:
    """Stands in for the engine while a factory builds it: an idle snapshot saying so, or the error."""

    def __init__(self) -> None:
        self._snapshot = EngineSnapshot(
            state="idle",
            log=(LogEntry(0.0, "info", "starting: opening the input, the groove library and MIDI…"),),
        )

    def failed(self, error: BaseException) -> None:
        text = f"could not start: {error}"
        self._snapshot = EngineSnapshot(
            state="error",
            warnings=(text, "press q to quit"),
            log=(*self._snapshot.log, LogEntry(0.0, "error", text)),
        )

    def snapshot(self) -> EngineSnapshot:
        return self._snapshot

    def send(self, command: Command) -> None:
        pass

    def list_inputs(self) -> list[str]:
        return []

    def list_midi_outputs(self) -> list[str]:
        return []

    def list_midi_inputs(self) -> list[str]:
        return []

    def close(self) -> None:
        pass


class JamApp(App[int]):
    """The jam screen over any :class:`~sjtui.snapshot.EngineLike` engine."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses elsewhere find it too
    TITLE = "sjtui"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]
    ENABLE_COMMAND_PALETTE = False

    BINDINGS = [
        Binding("space", "toggle_play", "Play/Stop", key_display="space"),
        Binding("l", "lock", "Lock"),
        Binding("s", "skip", "Skip"),
        Binding("f", "fill", "Fill"),
        Binding("t", "tap", "Tap"),
        Binding("plus", "tempo(1)", "Tempo", key_display="+/-"),
        Binding("equals_sign", "tempo(1)", "Tempo up", show=False),
        Binding("minus", "tempo(-1)", "Tempo down", show=False),
        Binding("0", "rate(0)", "Rate", key_display="0-5"),
        *(Binding(str(n), f"rate({n})", f"Rate {n}", show=False) for n in range(1, 6)),
        Binding("r", "record", "Rec"),
        Binding("d", "pick_input", "Input"),
        Binding("m", "pick_midi", "MIDI"),
        Binding("c", "pick_clock", "Clock"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit_jam", "Quit"),
        Binding("ctrl+c", "quit_jam", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        engine: EngineLike | Callable[[], EngineLike],
        *,
        poll_hz: float = POLL_HZ,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._factory: Callable[[], EngineLike] | None = None
        if not hasattr(engine, "snapshot") and callable(engine):
            # a factory: the screen comes up at once and the engine is built (and started) in a worker
            self._factory = engine
            engine = StartingEngine()
        self.engine = engine
        self.start_error: BaseException | None = None
        self.poll_hz = poll_hz
        self.clock = clock
        self.polls = 0
        self.last_snapshot: EngineSnapshot = EngineSnapshot()
        self.poll_errors = 0
        self._poll_error: tuple[str, float] | None = None  # the failure last shown, and when
        self._engine_closed = False
        self._views: list[SnapshotView] = []

    # --- layout ----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield TransportBar(id="transport")
        yield InputMeter(id="input-meter")
        with OnsetPanel(id="onset-panel"):
            yield BandMeters(id="band-meters")
            yield OnsetGrid(id="onset-grid")
        with Horizontal(id="groove-row"):
            with GroovePanel(id="groove-panel"):
                yield DrumPattern(id="drum-pattern")
            yield Candidates(listing=True, id="candidate-list")
        yield Candidates(id="candidate-line")
        yield EventLog(id="event-log")
        yield KeyBar(KEY_HINTS, id="key-bar")

    def on_mount(self) -> None:
        self._views = list(self.query(SnapshotView).results())
        self._onset_panel = self.query_one(OnsetPanel)
        self._groove_panel = self.query_one(GroovePanel)
        self.poll()
        self.set_interval(1.0 / self.poll_hz, self.poll, name="snapshot-poll")
        if self._factory is not None:
            self._build_engine()

    @work(thread=True, exclusive=True, group="engine-start", exit_on_error=False)
    def _build_engine(self) -> None:
        """Create and start the engine off the UI thread (opening devices and the library takes a while)."""
        try:
            engine = self._factory()
        except Exception as error:  # noqa: BLE001 - shown on screen; run_app prints it again after the screen closes
            try:
                self.call_from_thread(self._engine_failed, error)
            except RuntimeError:  # the app has already gone
                pass
            return
        try:
            self.call_from_thread(self._engine_ready, engine)
        except RuntimeError:  # the player quit while it was starting: still close it cleanly
            engine.close()

    def _engine_ready(self, engine: EngineLike) -> None:
        if self._engine_closed:  # quit while starting
            engine.close()
            return
        self.engine = engine
        self.poll()

    def _engine_failed(self, error: BaseException) -> None:
        self.start_error = error
        if isinstance(self.engine, StartingEngine):
            self.engine.failed(error)
        self.poll()

    # --- the poll ----------------------------------------------------------------------------------

    def poll(self) -> None:
        """Read the engine's latest snapshot and hand it to every widget (never blocks on the engine)."""
        try:
            snapshot = self.engine.snapshot()
        except Exception as error:  # noqa: BLE001 - a broken engine must not take the screen down with it
            self.poll_errors += 1
            now_s = self.clock()
            shown = self._poll_error
            # each new failure once, the same one again only after the last notice has gone
            if shown is None or shown[0] != str(error) or now_s - shown[1] > POLL_ERROR_NOTICE_S:
                self._poll_error = (str(error), now_s)
                self.notify(f"engine snapshot failed: {error}", severity="error", timeout=POLL_ERROR_NOTICE_S)
            return
        now_s = self.clock()
        self.polls += 1
        self.last_snapshot = snapshot
        for view in self._views:
            view.show(snapshot, now_s)
        self._onset_panel.show(snapshot)
        self._groove_panel.show(snapshot)

    # --- commands ----------------------------------------------------------------------------------

    def send(self, command: Command) -> None:
        if isinstance(self.engine, StartingEngine):
            self.notify(
                "the engine is not running yet" if self.start_error is None else "the engine did not start"
            )
            return
        try:
            self.engine.send(command)
        except Exception as error:  # noqa: BLE001 - e.g. a full command queue: say so, keep the jam going
            self.notify(f"{type(command).__name__} not sent: {error}", severity="warning")

    def action_toggle_play(self) -> None:
        self.send(Start() if self.last_snapshot.state in STOPPED_STATES else Stop())

    def action_lock(self) -> None:
        self.send(ToggleLock())

    def action_skip(self) -> None:
        self.send(Skip())

    def action_fill(self) -> None:
        self.send(FillNow())

    def action_tap(self) -> None:
        self.send(Tap(time_s=time.monotonic()))

    def action_tempo(self, direction: int) -> None:
        self.send(NudgeTempo(delta_bpm=TEMPO_STEP_BPM * direction))

    def action_rate(self, rating: int) -> None:
        self.send(Rate(rating=rating))
        if self.last_snapshot.current is None:
            self.notify("nothing is playing yet: the rating goes to the next pairing", timeout=3)

    def action_record(self) -> None:
        self.send(ToggleRecord())

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_pick_input(self) -> None:
        def chosen(picked: Picked | None) -> None:
            if picked is not None:
                self.send(ChooseInput(device=str(picked.value)))

        self.push_screen(input_picker(self.engine.list_inputs), chosen)

    def action_pick_midi(self) -> None:
        def chosen(picked: Picked | None) -> None:
            if picked is not None:
                self.send(ChooseMidiOutput(port=picked.value))

        self.push_screen(midi_output_picker(self.engine.list_midi_outputs), chosen)

    def action_pick_clock(self) -> None:
        def chosen(picked: Picked | None) -> None:
            if picked is None:
                return
            source, port = picked.value
            if source == "midi":
                self.send(ChooseMidiClockInput(port=port))
            self.send(SetClockSource(source=source))

        self.push_screen(clock_picker(self.engine.list_midi_inputs), chosen)

    def action_quit_jam(self) -> None:
        self.close_engine()
        self.exit(2 if self.start_error is not None else 0)

    # --- shutdown ----------------------------------------------------------------------------------

    def close_engine(self) -> None:
        """``engine.close()`` once: all notes off, MIDI ports closed, threads joined."""
        if not self._engine_closed:
            self._engine_closed = True
            self.engine.close()

    def on_unmount(self) -> None:
        self.close_engine()


def make_app(
    engine: EngineLike | Callable[[], EngineLike] | None = None,
    *,
    poll_hz: float = POLL_HZ,
    clock: Callable[[], float] = time.monotonic,
) -> JamApp:
    """The jam screen over ``engine`` (a fake engine playing a demo riff when None).

    ``engine`` may also be a function returning a started engine: the screen
    then draws its first frame at once and builds the engine in a worker
    thread (opening the input, the library and MIDI takes most of a second);
    an error from it is shown on screen and quitting returns 2.
    """
    if engine is None:
        from sjtui.ui.fake import FakeEngine

        engine = FakeEngine("jamming")
    return JamApp(engine, poll_hz=poll_hz, clock=clock)


def run_app(engine: EngineLike | Callable[[], EngineLike], **kwargs) -> int:
    """Run the jam screen in this terminal until the player quits; the engine is closed on any exit.

    ``engine``: an engine, or a function returning a started one (see :func:`make_app`).
    """
    app = make_app(engine, **kwargs)
    try:
        result = app.run()
    finally:
        app.close_engine()
    if app.start_error is not None:
        import sys

        print(f"sjtui: {app.start_error}", file=sys.stderr)
        return 2
    return int(result or 0)
