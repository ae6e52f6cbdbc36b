"""The jam screen over the real engine: a guitar recording fed as the input, drums out on a
real JACK MIDI port (private dummy server), keys pressed with Textual's pilot.

A JACK-Client MIDI input connected to sjtui's port records what the
engine sends, so quitting with q is checked at the receiver: every note-on
got its note-off and All Notes Off came on the drum channel.
"""

from __future__ import annotations

import threading

import pytest

from sjtui.ui.app import make_app
from sjtui.ui.screens.pickers import PickerScreen
from sjtui.ui.widgets.groove import DrumPattern
from sjtui.ui.widgets.log import EventLog
from sjtui.ui.widgets.onsets import OnsetGrid
from sjtui.ui.widgets.transport import TransportBar

pytestmark = [pytest.mark.jack, pytest.mark.asyncio, pytest.mark.slow]

RECORDING = "berklee_guitar_riff_cutup1.wav"


class MidiListener:
    """A JACK MIDI input recording every event sjtui sends, with its frame time."""

    def __init__(self):
        import jack

        self.client = jack.Client("sjtui-ui-test-listener", no_start_server=True)
        self.port = self.client.midi_inports.register("in")
        self.events: list[tuple[int, bytes]] = []
        self._lock = threading.Lock()
        self.xruns = 0  # a cycle this client missed can lose the events in it
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(self._xrun)
        self.client.activate()

    def _xrun(self, delay_usecs: float) -> None:
        self.xruns += 1

    def _process(self, frames: int) -> None:
        base = self.client.last_frame_time
        for offset, data in self.port.incoming_midi_events():
            with self._lock:
                self.events.append((base + offset, bytes(data)))

    def connect_from(self, port_name: str) -> None:
        self.client.connect(port_name, self.port)

    def messages(self) -> list[bytes]:
        with self._lock:
            return [data for _, data in self.events]

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


@pytest.fixture
def jam(portaudio_jack, guitar_audio_dir, tmp_path, monkeypatch):
    """(engine, listener): a real engine playing the recording in a loop, its drums going to the listener."""
    monkeypatch.setenv("SJTUI_DATA_DIR", str(tmp_path / "data"))
    from sjtui.engine import EngineOptions, create_engine

    library = tmp_path / "library"
    library.mkdir()
    options = EngineOptions(
        input=str(guitar_audio_dir / RECORDING), loop=True, library=str(library), model="none",
        midi_backend="jack", state_file=False,
    )  # fmt: skip
    engine = create_engine(options)
    listener = MidiListener()
    try:
        listener.connect_from(engine.output.backend.full_port_name)
        yield engine, listener
    finally:
        engine.close()
        listener.close()


async def wait_for(pilot, condition, timeout_s: float = 20.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("the engine did not get there in time")


def text_of(app, widget_type) -> str:
    return app.query_one(widget_type).plain()


async def test_real_engine_jam_driven_by_keys(jam):
    engine, listener = jam
    engine.start()
    app = make_app(engine)
    async with app.run_test(size=(100, 30)) as pilot:
        snapshot = lambda: app.last_snapshot
        await wait_for(pilot, lambda: snapshot().state == "playing" and snapshot().current is not None)
        await pilot.pause(0.2)
        transport = text_of(app, TransportBar)
        assert "PLAYING" in transport and RECORDING in transport
        assert "(virtual)" in transport  # the JACK port the drums go to
        assert text_of(app, DrumPattern).startswith("kick")
        await wait_for(pilot, lambda: snapshot().onset_grid is not None and snapshot().onset_grid.max() > 0)
        assert any(ch in text_of(app, OnsetGrid) for ch in "▁▂▃▄▅▆▇█")
        assert app.polls > 1

        await pilot.press("l")
        await wait_for(pilot, lambda: snapshot().locked)
        await pilot.pause(0.1)
        assert "LOCKED" in text_of(app, TransportBar)

        bpm = snapshot().transport.bpm
        await pilot.press("plus", "plus")
        await wait_for(pilot, lambda: abs(snapshot().transport.bpm - (bpm + 2)) < 1e-6)
        await pilot.press("minus")
        await wait_for(pilot, lambda: abs(snapshot().transport.bpm - (bpm + 1)) < 1e-6)
        await pilot.pause(0.1)
        assert f"{bpm + 1:5.1f} BPM" in text_of(app, TransportBar)

        await pilot.press("r")
        await wait_for(pilot, lambda: snapshot().recording)
        await pilot.press("r")
        await wait_for(pilot, lambda: not snapshot().recording)

        await pilot.press("4")
        await wait_for(
            pilot, lambda: snapshot().last_rating == 4 or any(e.level == "error" for e in snapshot().log[-3:])
        )
        log_text = " ".join(e.text for e in snapshot().log)

        await pilot.press("f", "s")
        await wait_for(pilot, lambda: "fill" in " ".join(e.text for e in snapshot().log[-6:]))
        await wait_for(pilot, lambda: "skip" in " ".join(e.text for e in snapshot().log[-6:]))

        await pilot.press("space")
        await wait_for(pilot, lambda: snapshot().state in ("stopping", "stopped", "idle"))
        await pilot.pause(0.1)
        assert "stop" in text_of(app, EventLog)
        assert note_ons(listener.messages()) > 0

        await pilot.press("q")
        await pilot.pause()
    assert engine.finished.is_set()
    assert snapshot().last_rating == 4, log_text
    messages = listener.messages()
    last_note_on = max(i for i, m in enumerate(messages) if len(m) == 3 and m[0] & 0xF0 == 0x90 and m[2] > 0)
    assert bytes([0xB9, 123, 0]) in messages[last_note_on:], (
        "All Notes Off on channel 10 after the last note-on"
    )
    assert count_open_notes(messages, all_notes_off_clears=listener.xruns > 0) == 0, (
        f"every note-on got its note-off at the receiver ({listener.xruns} listener xruns)"
    )


def note_ons(messages: list[bytes]) -> int:
    return sum(1 for m in messages if len(m) == 3 and m[0] & 0xF0 == 0x90 and m[2] > 0)


def count_open_notes(messages: list[bytes], *, all_notes_off_clears: bool = False) -> int:
    """Note-ons without a later note-off (at the receiver).

    ``all_notes_off_clears``: count All Notes Off / All Sound Off as ending every note
    on its channel, as a receiver does. For a listener that missed cycles (xruns), which
    may have lost a note-off among hundreds while the All Notes Off after it arrived.
    """
    sounding: dict[tuple[int, int], int] = {}
    for m in messages:
        if len(m) != 3:
            continue
        kind, channel = m[0] & 0xF0, m[0] & 0x0F
        if kind == 0x90 and m[2] > 0:
            sounding[(channel, m[1])] = sounding.get((channel, m[1]), 0) + 1
        elif kind == 0x80 or (kind == 0x90 and m[2] == 0):
            key = (channel, m[1])
            if sounding.get(key):
                sounding[key] -= 1
        elif all_notes_off_clears and kind == 0xB0 and m[1] in (120, 123):
            sounding = {key: n for key, n in sounding.items() if key[0] != channel}
    return sum(sounding.values())


async def test_real_engine_pickers_list_what_this_machine_has(jam):
    engine, _ = jam
    engine.start()
    app = make_app(engine)
    async with app.run_test(size=(100, 30)) as pilot:

        async def open_picker(key: str) -> PickerScreen:
            await pilot.press(key)
            await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen) and app.screen.loaded)
            return app.screen

        picker = await open_picker("d")
        assert any(c.label == "system" for c in picker.choices), [c.label for c in picker.choices]
        await pilot.press("escape")
        picker = await open_picker("m")
        labels = [c.label for c in picker.choices]
        listener_port = next(label for label in labels if "sjtui-ui-test-listener" in label)
        assert labels[-1].startswith("built-in synth")
        await pilot.press(*["down"] * labels.index(listener_port), "enter")  # drums to the listener's port
        await wait_for(pilot, lambda: "sjtui-ui-test-listener" in app.last_snapshot.midi_destination)
        await pilot.pause(0.1)
        assert "sjtui-ui-test-listener" in text_of(app, TransportBar)
        picker = await open_picker("c")
        assert [c.value[0] for c in picker.choices][:3] == ["auto", "internal", "tap"]
        await pilot.press("down", "enter")  # internal
        await pilot.pause(0.3)
        assert not isinstance(app.screen, PickerScreen)
        assert (
            "clock" in " ".join(e.text for e in app.last_snapshot.log[-5:]).lower()
            or app.last_snapshot.transport.source
        )
        await pilot.press("q")
        await pilot.pause()
    assert engine.finished.is_set()
