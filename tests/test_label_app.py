"""The ``sjtui label`` screen driven with ``App.run_test()``.

On a private JACK dummy server: the real player (guitar and built-in-synth
drums mixed into one PortAudio output stream, and the MIDI variant with the
drums on a JACK MIDI port) under the screen; keys 0-5 write a row, s skips
without one, n + text saves the note, q exits and closes audio and MIDI.
A recording player stands in for the snapshot test (a fixed playhead).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from sjtui.grooves.store import GrooveStore
from sjtui.labels.loops import generated_loops
from sjtui.labels.session import LabelSession
from sjtui.labels.store import LabelStore
from sjtui.ui.label_app import LabelApp


@pytest.fixture(scope="module")
def loops():
    return generated_loops(2, seed=5)


@pytest.fixture()
def stores(tmp_path, monkeypatch):
    monkeypatch.setenv("SJTUI_DATA_DIR", str(tmp_path))
    grooves = GrooveStore(tmp_path)
    store = LabelStore.open(tmp_path, groove_store=grooves)
    yield grooves, store
    grooves.close()


class FixedPlayer:
    name = "built-in synth"

    def __init__(self):
        self.closed = False
        self.played = 0

    def play(self, loop, groove):
        self.played += 1

    def stop(self):
        pass

    def position_s(self):
        return 2.0

    def poll(self):
        return None

    def close(self):
        self.closed = True


async def _wait(pilot, condition, tries=200):
    for _ in range(tries):
        if condition():
            return True
        await pilot.pause(0.02)
    return condition()


def _session(stores, loops, player, **kwargs):
    grooves, store = stores
    return LabelSession(
        loops, grooves.load_library(), store, groove_of=grooves.get, player=player, close_store=True, **kwargs
    )


@pytest.mark.jack
@pytest.mark.asyncio
async def test_keys_on_the_real_player_through_jack(portaudio_jack, stores, loops, tmp_path):
    import jack

    from sjtui.labels.player import MixPlayer

    _, store = stores
    player = MixPlayer(48000, synth="numpy")
    # listen to what sjtui plays: a JACK client connected to PortAudio's output ports
    heard = []
    captured: list[np.ndarray] = []
    client = jack.Client("label-test-listener", no_start_server=True)
    inport = client.inports.register("in")

    @client.set_process_callback
    def process(frames):
        block = inport.get_array()
        heard.append(float(np.abs(block).max()))
        if len(captured) < 400:  # about 2 s from the start
            captured.append(block.copy())

    client.activate()
    sources = [p.name for p in client.get_ports(is_audio=True, is_output=True) if "PortAudio" in p.name]
    assert sources, "PortAudio's output port is not on the JACK graph"
    client.connect(sources[0], inport)
    session = _session(stores, loops, player, picks_per_loop=2)
    app = LabelApp(session)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            assert session.current is not None
            assert await _wait(pilot, lambda: len(heard) > 40 and max(heard[-40:]) > 0.05)
            assert await _wait(
                pilot, lambda: session.position_s() is not None and session.position_s() > 0.05
            )
            first = session.current
            # what PortAudio put on the JACK graph is the guitar + synth drums mix, sample for sample
            assert await _wait(pilot, lambda: len(captured) >= 400, 400)
            from sjtui.labels.player import render_pair
            from sjtui.synth.drums import DrumSynth

            out = np.concatenate(captured)
            expected = render_pair(first.loop, first.groove, DrumSynth(48000))
            start = int(np.flatnonzero(np.abs(out) > 0)[0])
            # the capture may begin a block or two into the loop (PortAudio's first buffers on a freshly
            # connected port): find where, within the first 16 blocks, then compare sample for sample
            offsets = [
                k
                for k in range(16 * 256)
                if np.allclose(expected[k : k + 64], out[start : start + 64], atol=1e-6)
            ]
            assert offsets, "the start of what was heard is not in the first blocks of the mix"
            lead = offsets[0]
            n = min(out.size - start, 24000)
            assert n > 4800
            # block by block: each 256-frame block heard is a block of the mix, at its place or, after an
            # xrun (PortAudio's JACK callback runs Python: on this shared 2-core machine it can miss a cycle),
            # a few blocks away; most blocks must be exact
            heard_blocks = out[start : start + n - n % 256].reshape(-1, 256)
            exact = 0
            for b, block in enumerate(heard_blocks):
                for shift in range(-4, 5):
                    k = lead + (b + shift) * 256
                    if (
                        0 <= k
                        and k + 256 <= expected.size
                        and np.allclose(block, expected[k : k + 256], atol=1e-6)
                    ):
                        exact += 1
                        break
            assert exact >= 0.8 * len(heard_blocks), f"{exact} of {len(heard_blocks)} blocks are the mix"
            await pilot.press("4")
            await pilot.pause()
            rows = store.rating_rows()
            assert [r["rating"] for r in rows] == [4] and rows[0]["groove_name"] == first.groove.name
            assert "rated 1" in str(app.query_one("#label-status").render())
            await pilot.press("s")
            await pilot.pause()
            assert store.count() == 1 and session.skipped == 1
            await pilot.press("n")
            await pilot.press(*"snare late")
            await pilot.press("enter")
            assert app.pending_note == "snare late"
            await pilot.press("2")
            await pilot.pause()
            rows = store.rating_rows()
            assert [r["rating"] for r in rows] == [4, 2] and rows[1]["note"] == "snare late"
            await pilot.press("p")  # replay: still playing, nothing saved
            await pilot.pause()
            assert store.count() == 2
            await pilot.press("q")
        assert app.return_code == 0
        assert not player.stream.stream.active and player.stream.stream.closed
        heard.clear()
        await _pause_s(0.2)
        assert not heard or max(heard) == 0.0  # silence after quitting
    finally:
        client.deactivate()
        client.close()
    with LabelStore.open(tmp_path, readonly=True) as again:
        assert [r["rating"] for r in again.rating_rows()] == [4, 2]


async def _pause_s(seconds):
    import asyncio

    await asyncio.sleep(seconds)


@pytest.mark.jack
@pytest.mark.asyncio
async def test_drums_to_a_jack_midi_port(portaudio_jack, stores, loops):
    """--midi-out: guitar on the audio output, the groove's notes arrive at a JACK MIDI port; q sends All Notes Off."""
    import jack

    from sjtui.labels.player import open_player

    received = []
    client = jack.Client("label-test-drums", no_start_server=True)
    midi_in = client.midi_inports.register("drums")

    note_on_frames = []

    @client.set_process_callback
    def process(frames):
        for offset, data in midi_in.incoming_midi_events():
            message = bytes(data)
            received.append(message)
            if message[0] & 0xF0 == 0x90 and message[2] > 0:
                note_on_frames.append(client.last_frame_time + offset)

    listener_xruns = []
    client.set_xrun_callback(listener_xruns.append)
    client.activate()
    try:
        player, reason = open_player(midi_in.name, sample_rate_hz=48000)
        assert reason is None and player.name.startswith("MIDI")
        session = _session(stores, loops, player)
        app = LabelApp(session)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            assert await _wait(pilot, lambda: bool(note_on_frames), 300)
            # the groove is played in time, not dumped at once: five separate note-on frames, as expected
            assert await _wait(pilot, lambda: len(set(note_on_frames)) >= 5, 400)
            from sjtui.labels.player import _pass_events

            pair = session.current
            expected = _pass_events(pair.loop, pair.groove, 0, 8)
            on = ((expected["status"] & 0xF0) == 0x90) & (expected["data2"] > 0)
            expected_frames = np.unique(expected["sample"][on])  # chords arrive in one frame
            got = np.unique(np.array(note_on_frames))
            n = min(len(got), len(expected_frames))
            relative_error = (got[:n] - got[0]) - (expected_frames[:n] - expected_frames[0])
            late = player.backend.late_events + player.backend.lost_events
            assert n > 4
            if listener_xruns:  # this listener may have missed a cycle's notes: no index lines up after it
                pass
            elif late == 0:  # frame-exact on the JACK MIDI port
                assert np.abs(relative_error).max() <= 1, (relative_error, got[:n], expected_frames[:n])
            else:  # a starved machine handed the backend events after their frame: it counted them
                assert np.count_nonzero(np.abs(relative_error) > 1) <= late, (late, relative_error)
            await pilot.press("3")
            await pilot.pause()
            assert stores[1].count() == 1
            await pilot.press("q")
        assert app.return_code == 0
        await _pause_s(0.1)
        assert any(m[0] & 0xF0 == 0xB0 and m[1] == 123 for m in received)  # All Notes Off on quit
    finally:
        client.deactivate()
        client.close()


@pytest.mark.jack
def test_unusable_midi_port_falls_back_to_the_synth(portaudio_jack):
    from sjtui.labels.player import MixPlayer, open_player

    player, reason = open_player("no-such-port-anywhere", sample_rate_hz=48000, synth="numpy")
    try:
        assert isinstance(player, MixPlayer)
        assert "no-such-port-anywhere" in reason and "built-in synth" in reason
    finally:
        player.close()


def test_no_audio_output_says_what_exists(monkeypatch):
    import sounddevice as sd

    from sjtui.errors import AudioError
    from sjtui.labels.player import open_player

    with pytest.raises(AudioError, match="Audio outputs here|--device"):
        open_player(None, device="no such output device 1234")
    assert sd is not None


@pytest.mark.asyncio
async def test_quit_closes_player_and_store(stores, loops):
    player = FixedPlayer()
    session = _session(stores, loops, player)
    app = LabelApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("5")
        await pilot.press("q")
    assert player.closed and app.return_code == 0
    with pytest.raises(Exception):  # noqa: B017 - the store's connection is closed
        stores[1].count()


@pytest.mark.asyncio
async def test_note_typed_ahead_in_one_read_is_kept(stores, loops):
    """A terminal delivers "n", the note and Enter in one read when typed fast or over SSH:
    every key is queued before the app handles "n", so the note input must have focus when
    the next key is taken off the queue (Widget.focus() only schedules it)."""
    from textual import events

    session = _session(stores, loops, FixedPlayer())
    app = LabelApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        typed = [("n", "n"), *((c if c != " " else "space", c) for c in "fill in late"), ("enter", "\r")]
        for key, character in typed:
            app.post_message(events.Key(key, character))
        assert await _wait(pilot, lambda: app.pending_note == "fill in late")
        app.post_message(events.Key("3", "3"))
        assert await _wait(pilot, lambda: stores[1].count() == 1)
        assert stores[1].rating_rows()[0]["note"] == "fill in late"
        await pilot.press("q")


@pytest.mark.asyncio
async def test_factory_error_is_shown_and_quit_returns_2():
    from sjtui.labels.errors import LabelError

    def failing():
        raise LabelError("no guitar loops to rate. Looked in: /somewhere")

    app = LabelApp(failing)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await _wait(pilot, lambda: app.start_error is not None)
        assert "Looked in: /somewhere" in str(app.query_one("#label-status").render())
        await pilot.press("4")  # nothing to rate: no crash
        await pilot.press("q")
    assert app.return_code == 2


def fixed_loop():
    """A loop whose onsets are fixed (the fake engine's riff), independent of the analysis being tuned."""
    from sjtui.dsp.fingerprint import ONSET_DTYPE, Fingerprint
    from sjtui.labels.loops import GuitarLoop
    from sjtui.meter import parse_meter
    from sjtui.ui.fake import riff_onsets

    meter = parse_meter("4/4")
    grid = riff_onsets(meter.steps_per_bar, seed=2)
    band, bar, step = np.nonzero(grid)
    onsets = np.zeros(band.size, dtype=ONSET_DTYPE)
    onsets["band"], onsets["bar"], onsets["step"], onsets["strength"] = band, bar, step, grid[band, bar, step]
    onsets = onsets[np.lexsort((onsets["band"], onsets["step"], onsets["bar"]))]
    fingerprint = Fingerprint(np.zeros_like(grid), np.zeros_like(grid), onsets, meter, 100.0, 0, 0.0)
    audio = np.zeros(int(4 * 4 * 60 / 100.0 * 48000), dtype=np.float32)
    return GuitarLoop(audio, 48000, 100.0, meter, 4, fingerprint, "generated",
                      {"riff_style": "straight8", "program": "clean"})  # fmt: skip


def test_label_screen_80x24(snap_compare, stores):
    session = _session(stores, [fixed_loop()], FixedPlayer(), seed=1)
    assert snap_compare(LabelApp(session), terminal_size=(80, 24))


@pytest.mark.asyncio
async def test_locked_database_message_on_screen_and_nothing_lost(stores, loops, tmp_path):
    import sqlite3

    from sjtui.labels.store import DB_FILENAME

    _, store = stores
    store.busy_timeout_s = 0.2
    store.conn.execute("PRAGMA busy_timeout = 200")
    session = _session(stores, loops, FixedPlayer())
    app = LabelApp(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("5")
        await pilot.pause()
        pair = session.current
        other = sqlite3.connect(tmp_path / DB_FILENAME, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            await pilot.press("1")
            await pilot.pause()
            status = str(app.query_one("#label-status").render())
            assert status.startswith("not saved:") and "lock" in status
            assert session.current is pair
        finally:
            other.execute("ROLLBACK")
            other.close()
        await pilot.press("1")  # the retry saves it
        await pilot.pause()
        assert "rated 2" in str(app.query_one("#label-status").render())
        await pilot.press("q")
    with LabelStore.open(tmp_path, readonly=True) as again:
        assert [r["rating"] for r in again.rating_rows()] == [5, 1]


def shipped_version() -> str:
    from sjtui.model.manifest import read_manifest
    from sjtui.model.runtime import SHIPPED_MODEL_DIR

    return str(read_manifest(SHIPPED_MODEL_DIR)["version"])


def _label_args(tmp_path, **overrides):
    import argparse

    from sjtui.commands import label

    parser = argparse.ArgumentParser()
    label.add_parser(parser.add_subparsers())
    args = parser.parse_args(["label", "--no-recordings", "--generated", "1", "--labels", str(tmp_path)])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


@pytest.mark.jack
def test_build_session_uses_the_active_model_for_pairing(portaudio_jack, tmp_path, monkeypatch):
    """The command's session: loops, the model's scores (finite for every groove), the synth player on JACK."""
    from sjtui.commands.label import build_session

    monkeypatch.setenv("SJTUI_DATA_DIR", str(tmp_path))
    session = build_session(_label_args(tmp_path, synth_engine="numpy"), log=lambda text: None)
    try:
        assert session.model_version == shipped_version() and session.player.name == "built-in synth"
        scores = session.scores_of(session.loops[0])
        embedded = np.isfinite(session.library.embeddings).all(axis=1)
        assert scores.shape == session.library.ids.shape and embedded.mean() > 0.9
        assert np.array_equal(np.isfinite(scores), embedded)  # NaN only for grooves the model cannot embed
        pair = session.start()
        assert pair.pick.strategy in ("favourite", "uncertain", "explore") and np.isfinite(pair.pick.score)
        session.rate(4)
    finally:
        session.close()
    with LabelStore.open(tmp_path, readonly=True) as store:
        assert [(r["rating"], r["model_version"]) for r in store.rating_rows()] == [(4, shipped_version())]


def test_cli_refuses_a_newer_database_and_leaves_it_alone(tmp_path):
    import sqlite3
    import subprocess
    import sys

    from sjtui.labels.store import DB_FILENAME

    with LabelStore.open(tmp_path):
        pass
    db = tmp_path / DB_FILENAME
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 7")
    conn.close()
    before = db.read_bytes()
    env = {**os.environ, "SJTUI_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "sjtui", "label", "--labels", str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "newer" in result.stderr and "7" in result.stderr
    assert db.read_bytes() == before


@pytest.mark.asyncio
async def test_player_fallback_and_skipped_loops_are_shown(stores, loops):
    session = _session(stores, loops, FixedPlayer())
    session.player_note = "MIDI output 'Gone' unusable (no such port); drums play on the built-in synth"
    session.problems.append("loop 3 (x.wav bar 1, 300 BPM 4/4): no groove fits this loop")
    app = LabelApp(session)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        log = app.query_one("#label-log").plain()
        assert "drums play on the built-in synth" in log and "no groove fits this loop" in log
        await pilot.press("q")
