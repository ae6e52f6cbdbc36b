"""The jam screen driven with Textual's pilot over the in-memory fake engine.

Every key and every picker: the fake records the Command objects it
receives, and the screen's widgets are read back as text. States that are
hard to reach for real (MIDI clock lost, input device gone, no model, no
MIDI ports) come from the fake's scenarios.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading

import pytest

from sjtui.snapshot import (
    ChooseInput,
    ChooseMidiClockInput,
    ChooseMidiOutput,
    FillNow,
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
from sjtui.ui.app import JamApp, make_app
from sjtui.ui.fake import FakeEngine, frozen
from sjtui.ui.screens.help import HelpScreen
from sjtui.ui.screens.pickers import PickerScreen
from sjtui.ui.widgets.groove import DrumPattern
from sjtui.ui.widgets.keys import KeyBar
from sjtui.ui.widgets.log import EventLog
from sjtui.ui.widgets.meters import InputMeter
from sjtui.ui.widgets.onsets import OnsetGrid
from sjtui.ui.widgets.transport import TransportBar

pytestmark = pytest.mark.asyncio


def text_of(app: JamApp, widget_type) -> str:
    widget = app.query_one(widget_type)
    return widget.plain() if hasattr(widget, "plain") else widget.render().plain


async def wait_for(pilot, condition, tries: int = 100) -> None:
    for _ in range(tries):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError("the screen did not get there")


KEY_COMMANDS = [
    ("l", ToggleLock()),
    ("s", Skip()),
    ("f", FillNow()),
    ("plus", NudgeTempo(delta_bpm=1.0)),
    ("equals_sign", NudgeTempo(delta_bpm=1.0)),
    ("minus", NudgeTempo(delta_bpm=-1.0)),
    ("r", ToggleRecord()),
    *((str(n), Rate(rating=n)) for n in range(6)),
]


@pytest.mark.parametrize("key, command", KEY_COMMANDS, ids=[k for k, _ in KEY_COMMANDS])
async def test_key_sends_its_command(key, command):
    engine = frozen("jamming")
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press(key)
        await pilot.pause()
        assert engine.commands == [command]


async def test_space_starts_when_idle_and_stops_when_playing():
    engine = FakeEngine("idle")
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        assert "IDLE" in text_of(app, TransportBar)
        await pilot.press("space")
        await wait_for(pilot, lambda: app.last_snapshot.state == "playing")
        assert "PLAYING" in text_of(app, TransportBar)
        await pilot.press("space")
        await wait_for(pilot, lambda: app.last_snapshot.state == "stopped")
        assert engine.commands == [Start(), Stop()]
        assert "STOPPED" in text_of(app, TransportBar)


async def test_tap_carries_the_key_press_time():
    import time

    engine = frozen("jamming")
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        before = time.monotonic()
        await pilot.press("t", "t")
        await pilot.pause()
        after = time.monotonic()
    taps = engine.commands
    assert [type(c) for c in taps] == [Tap, Tap]
    assert before <= taps[0].time_s <= taps[1].time_s <= after


async def test_lock_shows_on_screen():
    engine = FakeEngine("jamming")
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        assert "LOCKED" not in text_of(app, TransportBar)
        await pilot.press("l")
        await wait_for(pilot, lambda: app.last_snapshot.locked)
        await pilot.pause(0.1)
        assert "LOCKED" in text_of(app, TransportBar)
        assert "groove locked" in text_of(app, EventLog)


async def test_tempo_keys_change_the_shown_tempo():
    engine = FakeEngine("jamming")
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("plus", "plus", "plus", "minus")
        await wait_for(pilot, lambda: app.last_snapshot.transport.bpm == 126.0)
        await pilot.pause(0.1)
        assert "126.0 BPM internal" in text_of(app, TransportBar)


async def test_q_quits_and_closes_the_engine_once():
    engine = frozen("jamming")
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("q")
        await pilot.pause()
    assert app.return_value == 0
    assert engine.close_calls == 1


async def test_the_engine_is_closed_however_the_app_ends():
    engine = frozen("jamming")
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        app.exit()
        await pilot.pause()
    assert engine.close_calls == 1


async def test_help_lists_every_key_and_closes():
    app = make_app(frozen("jamming"))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        help_text = str(app.screen.query_one("#help-text").render())
        for key in ("space", "l", "s", "f", "t", "+ / -", "0-5", "r", "d", "m", "c", "?", "q"):
            assert re.search(rf"^\s*{re.escape(key)}\s\s", help_text, re.MULTILINE), key
        await pilot.press("question_mark")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
        # q on the help screen goes back to the jam, it does not quit
        await pilot.press("question_mark", "q")
        await pilot.pause()
        assert app.is_running and not isinstance(app.screen, HelpScreen)


def picker_labels(screen: PickerScreen) -> list[str]:
    return [choice.label for choice in screen.choices]


def picker_note(screen: PickerScreen) -> str:
    return str(screen.query_one(".picker-note").render())


async def open_picker(pilot, app, key: str) -> PickerScreen:
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen) and app.screen.loaded)
    return app.screen


async def test_input_picker_lists_devices_and_sends_the_choice():
    engine = frozen("jamming")
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        picker = await open_picker(pilot, app, "d")
        assert picker_labels(picker) == engine.inputs
        assert "inputs" in engine.list_calls
        await pilot.press("down", "enter")
        await pilot.pause()
        assert not isinstance(app.screen, PickerScreen)
    assert engine.commands == [ChooseInput(device=engine.inputs[1])]


async def test_input_picker_takes_a_file_path(tmp_path):
    engine = frozen("jamming")
    app = make_app(engine)
    path = str(tmp_path / "riff.wav")
    async with app.run_test(size=(80, 24)) as pilot:
        await open_picker(pilot, app, "d")
        app.screen.query_one("Input").focus()
        await pilot.press(*path, "enter")
        await pilot.pause()
    assert engine.commands == [ChooseInput(device=path)]


async def test_input_picker_explains_when_no_device_exists():
    engine = frozen("no-device")
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        picker = await open_picker(pilot, app, "d")
        assert picker_labels(picker) == []
        note = picker_note(picker)
        assert "No audio input devices found" in note and "WAV or FLAC" in note
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, PickerScreen)
    assert engine.commands == []


async def test_midi_picker_offers_ports_virtual_port_and_synth():
    engine = frozen("jamming")
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        picker = await open_picker(pilot, app, "m")
        labels = picker_labels(picker)
        assert labels[:2] == engine.midi_outputs
        assert labels[2].startswith("sjtui (virtual port") and labels[3].startswith("built-in synth")
        await pilot.press("down", "down", "down", "enter")  # built-in synth
        await pilot.pause()
        picker = await open_picker(pilot, app, "m")
        await pilot.press("enter")  # first port
        await pilot.pause()
        picker = await open_picker(pilot, app, "m")
        await pilot.press("down", "down", "enter")  # virtual port
        await pilot.pause()
    assert engine.commands == [
        ChooseMidiOutput(port=None),
        ChooseMidiOutput(port=engine.midi_outputs[0]),
        ChooseMidiOutput(port="sjtui"),
    ]


class _SlowScan:
    """A port scan that takes until the test lets it finish (a slow device scan on a real rig)."""

    def __init__(self, scan):
        self.scan = scan
        self.release = threading.Event()

    def __call__(self):
        self.release.wait(10)
        return self.scan()


async def test_picker_keys_pressed_before_the_list_is_found_are_kept():
    engine = frozen("jamming")
    engine.list_midi_outputs = _SlowScan(engine.list_midi_outputs)
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("m", "down", "down", "enter")  # ports, ports, then the virtual port
        await pilot.pause()
        assert isinstance(app.screen, PickerScreen) and not app.screen.loaded
        engine.list_midi_outputs.release.set()
        await wait_for(pilot, lambda: not isinstance(app.screen, PickerScreen))
        # the player went on to type a path meanwhile: the list does not take the focus from them
        engine.list_inputs = _SlowScan(engine.list_inputs)
        await pilot.press("d", "tab", "down")
        await pilot.pause()
        engine.list_inputs.release.set()
        await wait_for(pilot, lambda: app.screen.loaded)
        assert app.screen.focused is app.screen.query_one("Input")
        assert app.screen.query_one("OptionList").highlighted == 0  # the typed-ahead "down" went to the path
        await pilot.press("escape")
        await pilot.pause()
    assert engine.commands == [ChooseMidiOutput(port="sjtui")]


async def test_midi_picker_explains_when_no_port_exists():
    engine = frozen("no-midi")
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        picker = await open_picker(pilot, app, "m")
        assert len(picker.choices) == 2
        note = picker_note(picker)
        assert (
            "No MIDI output ports" in note and "virtual port named sjtui" in note and "built-in synth" in note
        )


async def test_clock_picker_sets_the_source_and_the_midi_clock_input():
    engine = frozen("clock-lost")
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        picker = await open_picker(pilot, app, "c")
        assert picker_labels(picker)[-1] == "MIDI clock from Digitakt:midi_out"
        await pilot.press("down", "down", "down", "enter")
        await pilot.pause()
        await open_picker(pilot, app, "c")
        await pilot.press("down", "enter")  # internal
        await pilot.pause()
        await open_picker(pilot, app, "c")
        await pilot.press("enter")  # auto
        await pilot.pause()
    assert engine.commands == [
        ChooseMidiClockInput(port="Digitakt:midi_out"),
        SetClockSource(source="midi"),
        SetClockSource(source="internal"),
        SetClockSource(source="auto"),
    ]


async def test_clock_picker_explains_when_no_midi_input_exists():
    engine = frozen("jamming")
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        picker = await open_picker(pilot, app, "c")
        assert [c.value[0] for c in picker.choices] == ["auto", "internal", "tap"]
        assert "No MIDI inputs found" in picker_note(picker)


async def test_a_failing_device_scan_is_shown_not_raised():
    engine = frozen("jamming")

    def broken():
        raise OSError("PortAudio not initialised")

    engine.list_inputs = broken
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        picker = await open_picker(pilot, app, "d")
        assert "could not list them: PortAudio not initialised" in picker_note(picker)


# --- states that are hard to reach for real ---------------------------------------------------


async def test_clock_lost_is_shown_in_the_transport_and_the_log():
    app = make_app(frozen("clock-lost"))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "MIDI clock LOST" in text_of(app, TransportBar)
        assert text_of(app, EventLog).startswith("⚠ MIDI clock lost: holding 124.0 BPM")


async def test_clock_lost_while_jamming_appears_without_a_restart():
    engine = FakeEngine("jamming")
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.1)
        engine.set_state(source="midi", clock_state="lost")
        engine.warn("MIDI clock lost: holding 124.0 BPM", standing=True)
        await wait_for(pilot, lambda: "LOST" in text_of(app, TransportBar))
        assert "⚠ MIDI clock lost" in text_of(app, EventLog)


async def test_device_gone_is_shown():
    app = make_app(frozen("no-device"))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        transport = text_of(app, TransportBar)
        assert "in: none (d)" in transport
        assert "input device gone" in text_of(app, EventLog)
        assert "press space" in text_of(app, OnsetGrid) or "onsets appear here" in text_of(app, OnsetGrid)


async def test_no_model_is_shown():
    app = make_app(frozen("no-model"))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "no model" in text_of(app, TransportBar)
        assert "no model" in text_of(app, EventLog)


async def test_clip_warning_holds_on_the_input_meter():
    app = make_app(frozen("clipping"))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "CLIP!" in text_of(app, InputMeter)
    app = make_app(frozen("jamming"))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "CLIP!" not in text_of(app, InputMeter)


async def test_jamming_screen_shows_groove_candidates_and_onsets():
    engine = frozen("jamming")
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        snapshot = engine.snapshot()
        pattern_text = text_of(app, DrumPattern)
        assert pattern_text.splitlines()[0].startswith("kick  ")
        assert "▲" in pattern_text.splitlines()[-1]
        panel = app.query_one("#groove-panel")
        groove = snapshot.current
        assert panel.border_title == f"{groove.name} · {groove.style} · {groove.bpm:.0f} BPM"
        assert f"score {groove.score:.2f}" in panel.border_subtitle
        line = app.query_one("#candidate-line").plain()
        chosen = snapshot.next or snapshot.candidates[0]
        assert chosen.name in line or chosen.name.split("/")[-1].split(" (")[0] in line
        assert f"{chosen.score:.2f}" in line
        onset_rows = text_of(app, OnsetGrid).splitlines()
        assert len(onset_rows) == 4  # high, mid, low, ruler
        assert any(ch in onset_rows[0] for ch in "▁▂▃▄▅▆▇█")


async def test_every_key_is_in_the_key_bar_when_there_is_room_and_help_and_quit_always():
    app = make_app(frozen("jamming"))
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        bar = text_of(app, KeyBar)
        for hint in ("space play", "l lock", "s skip", "f fill", "t tap", "+/- bpm", "0-5 rate", "r rec",
                     "d input", "m midi", "c clock", "? help", "q quit"):  # fmt: skip
            assert hint in bar
    app = make_app(frozen("jamming"))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        bar = text_of(app, KeyBar)
        assert len(bar) <= 80
        for hint in ("space play", "l lock", "s skip", "0-5 rate", "? help", "q quit"):
            assert hint in bar


async def test_wide_screens_list_candidates_beside_the_pattern():
    app = make_app(frozen("jamming"))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert app.query_one("#candidate-list").display
        assert not app.query_one("#candidate-line").display
    app = make_app(frozen("jamming"))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert not app.query_one("#candidate-list").display
        assert app.query_one("#candidate-line").display


async def test_a_steady_snapshot_is_not_redrawn():
    """Widgets repaint only when what they draw changes: a frozen engine, many polls, one paint each."""
    app = make_app(frozen("jamming"), poll_hz=200)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 20)
        repaints = {type(view).__name__: view.repaints for view in app._views}
    assert all(count <= 2 for count in repaints.values()), repaints


async def test_a_broken_engine_snapshot_does_not_kill_the_screen():
    engine = frozen("jamming")
    calls = {"n": 0}
    original = engine.snapshot

    def flaky():
        calls["n"] += 1
        if calls["n"] % 2 == 0:
            raise RuntimeError("slot empty")
        return original()

    engine.snapshot = flaky
    app = make_app(engine, poll_hz=100)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 3)
        assert app.poll_errors >= 1 and app.is_running


async def test_no_color_draws_in_greys_only(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(frozen("jamming"))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        svg = app.export_screenshot()
    assert app.no_color
    colours = set(re.findall(r"#([0-9a-fA-F]{6})\b", svg))
    assert colours, "no colours found in the screenshot"
    window_chrome = {"ff5f57", "febc2e", "28c840", "c5c8c6"}  # the SVG's title-bar buttons and default text
    not_grey = [c for c in colours - window_chrome if len({c[0:2], c[2:4], c[4:6]}) > 1]
    assert not not_grey, not_grey
    assert "NO_COLOR" not in os.environ or os.environ["NO_COLOR"] == "1"


# --- an engine built by a factory while the screen is already up ------------------------------


async def test_a_factory_engine_starts_behind_a_drawn_screen():

    release = threading.Event()
    built: list[FakeEngine] = []

    def factory():
        release.wait(10)
        built.append(frozen("jamming"))
        return built[0]

    app = make_app(factory)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "starting: opening the input" in text_of(app, EventLog)
        assert "IDLE" in text_of(app, TransportBar)
        await pilot.press("l")  # nothing to send it to yet: dropped, not queued
        release.set()
        await wait_for(pilot, lambda: "PLAYING" in text_of(app, TransportBar))
        await pilot.press("s")
        await pilot.pause()
        await pilot.press("q")
        await pilot.pause()
    assert built[0].commands == [Skip()]
    assert built[0].close_calls == 1
    assert app.return_value == 0


async def test_a_factory_that_fails_shows_why_and_quits_with_2():
    from sjtui.errors import SjtuiError

    def factory():
        raise SjtuiError("no audio input device 'Scarlett': `sjtui devices` lists them")

    app = make_app(factory)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.start_error is not None)
        await pilot.pause(0.1)
        log = text_of(app, EventLog)
        assert "could not start: no audio input device 'Scarlett'" in log
        assert "ERROR" in text_of(app, TransportBar)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_value == 2


async def test_quitting_while_the_factory_runs_still_closes_the_engine():

    release = threading.Event()
    built: list[FakeEngine] = []

    def factory():
        release.wait(10)
        built.append(frozen("jamming"))
        return built[0]

    app = make_app(factory)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("q")
        await pilot.pause()
    release.set()
    for _ in range(100):
        if built and built[0].close_calls:
            break
        await asyncio.sleep(0.02)
    assert built and built[0].close_calls == 1
