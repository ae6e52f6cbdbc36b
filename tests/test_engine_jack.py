"""The jam engine end to end on a private JACK server: guitar into the audio input, drums captured frame-exact.

A JACK-Client feeder plays the guitar into PortAudio's input (the engine's
DeviceInput) or the engine plays a file as if live; sjtui's MIDI goes out
through its sample-accurate JACK backend into a JACK-Client MIDI input that
stamps every event with its frame. The checks compare those frames with
the engine's own bar reports: the clock's Start is the first groove's
downbeat, ticks are 24 per beat at the set tempo, every note is the groove's
step plus its offset, switches sit on 4-bar boundaries, and whatever ends
the jam (close, SIGTERM, SIGKILL + clean-up) leaves no note on.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from sjtui.config import EngineConfig
from sjtui.engine import EngineOptions, create_engine
from sjtui.midi.events import groove_events
from tests.test_audio_device import JackFeeder
from tests.test_engine_fast import library_dir, random_model, song  # noqa: F401 - fixtures

pytestmark = pytest.mark.jack

REPO = Path(__file__).resolve().parent.parent
RECORDING = "berklee_guitar_riff_cutup5.wav"  # 20 s of riff, 44.1 kHz
SR = 48000


@pytest.fixture(autouse=True)
def private_runtime_dir(tmp_path, monkeypatch):
    """MIDI state files (for clean-up after SIGKILL) of this test only."""
    monkeypatch.setenv("SJTUI_RUNTIME_DIR", str(tmp_path / "runtime"))


class MidiCapture:
    """A JACK MIDI input that keeps (frame, bytes) of everything it receives."""

    def __init__(self, name: str):
        import jack

        self.client = jack.Client(name, no_start_server=True)
        self.port = self.client.midi_inports.register("in")
        self.events: list[tuple[int, bytes]] = []
        self._lock = threading.Lock()
        self.xruns = 0
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(self._xrun)
        self.client.activate()

    @property
    def port_name(self) -> str:
        return self.port.name

    def _process(self, frames: int) -> None:
        base = self.client.last_frame_time
        got = [(base + offset, bytes(data)) for offset, data in self.port.incoming_midi_events()]
        if got:
            with self._lock:
                self.events.extend(got)

    def _xrun(self, delay_usecs) -> None:
        self.xruns += 1

    def take(self) -> list[tuple[int, bytes]]:
        with self._lock:
            out, self.events = self.events, []
        return out

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


@pytest.fixture
def capture(jack_server):
    cap = MidiCapture("sjtui-test-capture")
    yield cap
    cap.close()


def sounding_after(events) -> set:
    """(channel, note) pairs still on after the events, in order."""
    on = set()
    for _, data in events:
        kind = data[0] & 0xF0
        if kind == 0x90 and data[2] > 0:
            on.add((data[0] & 0x0F, data[1]))
        elif kind == 0x80 or kind == 0x90:
            on.discard((data[0] & 0x0F, data[1]))
        elif kind == 0xB0 and data[1] in (120, 123):
            on = {k for k in on if k[0] != data[0] & 0x0F}
    return on


def exact_fraction(got, want) -> float:
    """Share of the wanted events (frame, data...) that arrived exactly (same frame and bytes)."""
    remaining = collections.Counter(got)
    hits = 0
    for event in want:
        if remaining[event] > 0:
            remaining[event] -= 1
            hits += 1
    return hits / max(1, len(want))


def expected_note_ons(engine, reports):
    """(frame, note, velocity) of every note the reports say was played, from the grooves' VHO."""
    lib = engine.library
    tm = engine.transport.tempo_map
    offset = engine.output.backend.frame_offset
    rows = []
    for r in reports:
        g = r["groove"]
        if g is None or g["id"] is None:
            continue
        groove = lib.groove(lib.index_of(g["id"]))
        events = groove_events(
            groove, tm, r["bar"], from_bar=r["groove_bar"], n_bars=1, channel=9, dynamics=r["dynamics"]
        )
        ons = events[(events["status"] & 0xF0) == 0x90]
        rows += [
            (int(s) + offset, int(n), int(v)) for s, n, v in zip(ons["sample"], ons["data1"], ons["data2"])
        ]
    return sorted(rows)


def tm_bar(engine, sample: int) -> float:
    """The bar (0-based) that ``sample`` of the engine's timeline falls in."""
    return float(engine.transport.tempo_map.sample_to_bar(sample))


def test_grooves_clock_and_switches_land_exactly_on_the_grid(
    portaudio_jack, capture, library_dir, random_model
):  # noqa: F811
    config = EngineConfig(switch_margin=0.0, min_bars_between_switches=4)
    samples, _ = song([("straight8", 6, 1.0), ("funk16", 6, 1.0)])
    engine = create_engine(
        EngineOptions(
            input="system", midi_out=capture.port_name, midi_backend="jack", clock_out=True, bpm=120.0,
            model=str(random_model), library=str(library_dir), config=config, state_file=False,
        )
    )  # fmt: skip
    feeder = JackFeeder([samples])
    reports = []
    try:
        engine.start()
        feeder.connect_to_portaudio()
        feeder.playing = True
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and len([r for r in reports if r["groove"]]) < 9:
            try:
                reports.append(engine.bar_reports.get(timeout=0.1))
            except Exception:
                pass
            assert engine.error is None
    finally:
        engine.close()
        feeder.close()
    time.sleep(0.2)
    events = capture.take()
    played = [r for r in reports if r["groove"] is not None]
    assert len(played) >= 9, reports
    first = played[0]
    offset = engine.output.backend.frame_offset

    # MIDI clock: Start exactly on the first groove's downbeat, then 24 ticks per beat at 120 BPM
    # (a cycle the capture missed, an xrun, loses what was in it: then Start may be missing)
    starts = [f for f, d in events if d == b"\xfa"]
    assert len(starts) == 1 or (not starts and capture.xruns), (starts, capture.xruns)
    start = first["sample"] + offset
    assert starts in ([start], [])
    backend = engine.output.backend
    ticks = [f for f, d in events if d == b"\xf8"]
    assert ticks[0] == start or capture.xruns, (ticks[:3], start)
    want_ticks = [start + 1000 * k for k in range(len(ticks))]  # 48000 * 60 / 120 / 24 frames per tick
    assert any(d == b"\xfc" for f, d in events)  # Stop at the end

    # the notes: every note-on at its groove step + offset, with the groove's velocity x dynamics
    # up to the last reported bar's end or the Stop that closing sent, whichever is first (a loaded
    # machine reads the reports late; notes after the Stop are rightly never sent)
    stop = next(f for f, d in events if d == b"\xfc")
    last_end = min(
        played[-1]["sample"] + offset + 2 * SR, stop
    )  # capture frames: engine samples + frame offset
    got = sorted((f, d[1], d[2]) for f, d in events if d[0] == 0x99 and d[2] > 0 and f < last_end)
    want = [row for row in expected_note_ons(engine, played) if row[0] < last_end]
    missing = sorted((collections.Counter(want) - collections.Counter(got)).elements())
    last_bar_start = played[-1]["sample"] + offset
    assert want and len(got) >= 0.9 * len(want), (
        len(got),
        len(want),
        [(f - last_bar_start, n) for f, n, _ in missing[:20]],
    )
    tick_share, note_share = exact_fraction(ticks, want_ticks), exact_fraction(got, want)
    trouble = capture.xruns + backend.late_events + backend.lost_events
    print(
        f"exact: ticks {tick_share:.4f}, notes {note_share:.4f}; xruns {capture.xruns}, late {backend.late_events}"
    )
    if trouble == 0:
        extra = sorted((collections.Counter(got) - collections.Counter(want)).elements())
        bar_of = {r["bar"]: r for r in played}
        where = sorted({int(tm_bar(engine, f - offset)) for f, _, _ in missing + extra})
        detail = (missing[:6], extra[:6], [(b, bar_of.get(b)) for b in where[:3]])
        assert tick_share == 1.0 and note_share == 1.0 and len(got) == len(want), detail
    else:
        # JACK reported xruns (an overloaded machine: two cores shared with other jobs): events of
        # the cycles it dropped or delayed are off; everything else must still be exact
        detail = (tick_share, note_share, capture.xruns, got[:4], want[:4])
        assert tick_share >= 0.9 and note_share >= 0.9, detail
    # the first groove's first note is on its downbeat (or its own micro-offset from it)
    assert got[0][0] - start < 0.05 * SR

    # switches: on 4-bar boundaries counted from the first groove's bar
    switches = [r["bar"] for r in played if r["switched"]]
    assert switches[0] == first["bar"]
    assert all((b - first["bar"]) % 4 == 0 for b in switches), switches
    assert all((r["window_start"] - first["bar"]) % 4 == 0 for r in played if r["groove"]["kind"] == "groove")

    # nothing left on after close: note-offs and All Notes Off on channel 10
    assert sounding_after(events) == set()
    notes_only = [(f, d) for f, d in events if d[0] & 0xF0 in (0x80, 0x90)]
    assert not sounding_after(notes_only) or any(d[:2] == bytes([0xB9, 123]) for _, d in events)
    assert any(d[:2] == bytes([0xB9, 123]) for _, d in events)


def _jam_process(capture, library_dir, runtime_dir, extra=(), config_text=None, tmp_path=None):
    env = dict(
        os.environ, SJTUI_RUNTIME_DIR=str(runtime_dir), SJTUI_DATA_DIR=str(library_dir), PYTHONUNBUFFERED="1"
    )
    args = [
        sys.executable, "-m", "sjtui", "jam", "--headless", "--json", "--input",
        str(REPO.parent / "shared" / "datasets" / "guitar-audio" / RECORDING), "--loop", "--bpm", "120",
        "--midi-out", capture.port_name, "--midi-backend", "jack", "--model", "none", *extra,
    ]  # fmt: skip
    if config_text is not None:
        path = tmp_path / "config.toml"
        path.write_text(config_text)
        args += ["--config", str(path)]
    return subprocess.Popen(
        args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_bars(proc, n: int, timeout_s: float = 40.0) -> list[dict]:
    reports = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len([r for r in reports if r["groove"]]) < n:
        line = proc.stdout.readline()
        if not line:
            break
        reports.append(json.loads(line))
    assert len([r for r in reports if r["groove"]]) >= n, (
        reports,
        proc.stderr.read() if proc.poll() is not None else "",
    )
    return reports


def test_sigterm_of_a_headless_jam_leaves_no_note_on(capture, guitar_audio_dir, library_dir, tmp_path):  # noqa: F811
    proc = _jam_process(
        capture,
        library_dir,
        tmp_path / "run",
        ["--clock-out"],
        "[engine]\nnote_length_ms = 400.0\n",
        tmp_path,
    )
    try:
        reports = _wait_bars(proc, 2)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.2)
    events = capture.take()
    assert rc == 128 + signal.SIGTERM, proc.stderr.read()
    assert reports[-1]["bpm"] == 120.0
    assert any(d[0] == 0x99 and d[2] > 0 for _, d in events)
    assert sounding_after(events) == set()
    assert any(d[:2] == bytes([0xB9, 123]) for _, d in events)
    assert events[-1][1] in (bytes([0xB9, 123, 0]), bytes([0xB9, 120, 0])) or any(
        d == b"\xfc" for _, d in events
    )
    assert not list((tmp_path / "run").glob("midi-out-*.json"))  # a clean stop removes its state file


def test_sigkill_of_a_headless_jam_silences_its_midi_process(
    capture, guitar_audio_dir, library_dir, tmp_path
):  # noqa: F811
    """Default: the MIDI output runs in a child process, which sees its parent die and silences itself."""
    proc = _jam_process(
        capture, library_dir, tmp_path / "run", (), "[engine]\nnote_length_ms = 1500.0\n", tmp_path
    )
    try:
        _wait_bars(proc, 2)
        time.sleep(0.37)
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 5
    events = []
    while time.monotonic() < deadline:
        events += capture.take()
        if any(d[:2] == bytes([0xB9, 123]) for _, d in events) and not list(
            (tmp_path / "run").glob("midi-out-*.json")
        ):
            break
        time.sleep(0.1)
    time.sleep(0.2)
    events += capture.take()
    assert any(d[0] == 0x99 and d[2] > 0 for _, d in events)
    assert sounding_after(events) == set()
    assert any(d[:2] == bytes([0xB9, 123]) for _, d in events)  # All Notes Off from the orphaned child
    assert not list((tmp_path / "run").glob("midi-out-*.json"))  # it stopped cleanly: no state file left


def test_sigkill_of_a_headless_jam_is_cleaned_up_by_the_parent(
    capture, guitar_audio_dir, library_dir, tmp_path
):  # noqa: F811
    from sjtui.midi.state import cleanup_after

    # long notes: at any moment some drum is sounding when the process dies; the scheduler in the
    # jam's own process (midi_process = false), so nothing of it survives the kill
    proc = _jam_process(
        capture,
        library_dir,
        tmp_path / "run",
        (),
        "[engine]\nnote_length_ms = 1500.0\nmidi_process = false\n",
        tmp_path,
    )
    try:
        _wait_bars(proc, 2)
        time.sleep(0.37)
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.2)
    before = capture.take()
    left_on = sounding_after(before)
    assert left_on, "with 1.5 s notes something must have been sounding at the kill"
    report = cleanup_after(proc.pid, directory=tmp_path / "run")
    assert report is not None
    time.sleep(0.2)
    after = capture.take()
    assert sounding_after(before + after) == set()
    assert not list((tmp_path / "run").glob("midi-out-*.json"))


def test_a_midi_port_that_vanishes_is_reported_and_the_jam_goes_on(
    jack_server, library_dir, guitar_audio_dir
):  # noqa: F811
    target = MidiCapture("sjtui-test-vanish")
    engine = create_engine(
        EngineOptions(
            input=str(guitar_audio_dir / RECORDING), loop=True, midi_out=target.port_name, midi_backend="jack",
            bpm=120.0, model="none", library=str(library_dir), state_file=False,
        )
    )  # fmt: skip
    reports = []
    try:
        engine.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len([r for r in reports if r["groove"]]) < 2:
            try:
                reports.append(engine.bar_reports.get(timeout=0.1))
            except Exception:
                pass
        assert target.take(), "the target port received nothing before it vanished"
        target.close()
        gone_at = len(reports)
        deadline = time.monotonic() + 10
        warned = False
        while time.monotonic() < deadline and not (warned and len(reports) >= gone_at + 2):
            try:
                reports.append(engine.bar_reports.get(timeout=0.1))
            except Exception:
                pass
            warned = any("sjtui-test-vanish" in w for w in engine.snapshot().warnings)
        assert warned, engine.snapshot().warnings
        assert len(reports) >= gone_at + 2 and reports[-1]["groove"] is not None  # the jam goes on
        assert engine.error is None and engine.output.error is None
    finally:
        engine.close()


def test_changing_the_midi_output_and_the_input_while_jamming(capture, library_dir, guitar_audio_dir):  # noqa: F811
    from sjtui import snapshot as snap

    other = MidiCapture("sjtui-test-other")
    engine = create_engine(
        EngineOptions(
            input=str(guitar_audio_dir / RECORDING), loop=True, midi_out=capture.port_name, midi_backend="jack",
            bpm=120.0, model="none", library=str(library_dir), state_file=False,
        )
    )  # fmt: skip

    def bars(n, timeout_s=20.0):
        got = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len([r for r in got if r["groove"]]) < n:
            try:
                got.append(engine.bar_reports.get(timeout=0.1))
            except Exception:
                pass
            assert engine.error is None
        assert len([r for r in got if r["groove"]]) >= n, got
        return got

    try:
        engine.start()
        bars(2)
        engine.send(snap.ChooseMidiOutput(other.port_name))
        bars(2)
        first = capture.take()
        assert any(d[0] == 0x99 and d[2] > 0 for _, d in first)
        assert sounding_after(first) == set() and any(d[:2] == bytes([0xB9, 123]) for _, d in first)
        second = other.take()
        assert any(d[0] == 0x99 and d[2] > 0 for _, d in second), "the new port gets the drums"
        assert engine.snapshot().midi_destination == other.port_name
        engine.send(snap.ChooseInput(str(guitar_audio_dir / "berklee_guitar_riff_cutup4.wav")))
        bars(2)
        assert "berklee_guitar_riff_cutup4" in engine.snapshot().input_name
        assert any(d[0] == 0x99 and d[2] > 0 for _, d in other.take())
    finally:
        engine.close()
        time.sleep(0.1)
        rest = other.take()
        other.close()
    assert sounding_after(second + rest) == set()


def test_after_sigkill_the_next_jam_cleans_up_on_start(
    capture, guitar_audio_dir, library_dir, tmp_path, monkeypatch
):  # noqa: F811
    runtime = tmp_path / "run"
    proc = _jam_process(
        capture,
        library_dir,
        runtime,
        (),
        "[engine]\nnote_length_ms = 1500.0\nmidi_process = false\n",
        tmp_path,
    )
    try:
        _wait_bars(proc, 2)
        time.sleep(0.37)
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.2)
    before = capture.take()
    assert sounding_after(before), "with 1.5 s notes something must have been sounding at the kill"
    assert list(runtime.glob(f"midi-out-{proc.pid}.json"))
    # the next start (here an engine in this process, same runtime folder) silences what the dead one left
    monkeypatch.setenv("SJTUI_RUNTIME_DIR", str(runtime))
    engine = create_engine(
        EngineOptions(
            input=str(guitar_audio_dir / RECORDING), loop=True, midi_out=capture.port_name, midi_backend="jack",
            bpm=120.0, model="none", library=str(library_dir),
        )
    )  # fmt: skip
    try:
        engine.start()
        time.sleep(0.3)
        assert any("cleaned up" in e.text for e in engine.snapshot().log), [
            e.text for e in engine.snapshot().log
        ]
    finally:
        engine.close()
    time.sleep(0.2)
    after = capture.take()
    assert sounding_after(before + after) == set()
    assert not list(runtime.glob(f"midi-out-{proc.pid}.json"))


CLOCK_SENDER_PROCESS = textwrap.dedent(
    """
    import sys, threading
    import jack

    client = jack.Client(sys.argv[1], no_start_server=True)
    port = client.midi_outports.register("out")
    frames_per_tick = int(sys.argv[2])
    state = {"go": False, "next": None, "start": None}
    started = threading.Event()

    def process(frames):
        port.clear_buffer()
        if not state["go"]:
            return
        base = client.last_frame_time
        if state["next"] is None:
            state["next"] = state["start"] = base + 10
            port.write_midi_event(10, b"\\xfa")
            started.set()
        while state["next"] < base + frames:
            port.write_midi_event(state["next"] - base, b"\\xf8")
            state["next"] += frames_per_tick

    client.set_process_callback(process)
    client.activate()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "go":
            state["go"] = True
            started.wait(5)
            print(state["start"], flush=True)
        elif line.strip() == "quit":
            break
    client.deactivate()
    client.close()
    """
)


class ClockSender:
    """A JACK MIDI output in a child process sending Start, then clock ticks exactly every
    ``frames_per_tick`` frames. A child, because rtmidi (the engine's clock input) holds the GIL
    while it opens or closes its JACK client, and a Python JACK callback in this process would
    deadlock with it (seen in CI: the suite hung here)."""

    def __init__(self, name: str, frames_per_tick: int):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CLOCK_SENDER_PROCESS, name, str(frames_per_tick)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout.readline().strip() == "ready"
        self.start_frame: int | None = None

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        self.start_frame = int(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(10)


def test_following_an_incoming_midi_clock(jack_server, library_dir, guitar_audio_dir, tmp_path):  # noqa: F811
    # Taken again (once) when the engine itself recorded that the receive side's timing was disturbed:
    # its follower moved the timeline (a burst of ticks stamped late) or its sample clock saw the
    # stream step against the wall clock. Both come from a machine that starved JACK or the engine
    # (one CI run put a bar 830 frames off, 768 + 18 allowed) and both are counted by the product.
    failures = []
    for _ in range(2):
        played, events, drift_frames, frame_offset, start_frame, disturbed = _follow_clock_take(
            library_dir, guitar_audio_dir
        )
        assert len(played) >= 5, played
        assert all(abs(r["bpm"] - 100.0) < 1.0 for r in played[1:]), [r["bpm"] for r in played]
        assert any(d[0] == 0x99 and d[2] > 0 for _, d in events), "no drum note reached the capture"
        assert sounding_after(events) == set()
        # the drums' bars fall on the sender's bar lines (4 beats = 96 ticks) within three JACK periods
        # (16 ms; measured 7-8 ms on this machine, up to 11 ms loaded): rtmidi stamps clock messages up
        # to one period early (tests/test_midi_clock_jack.py), the follower steers its map, and the JACK
        # output's frames are tied to the audio input's clock once at start, so the drift of the
        # server's frame clock against the wall clock since then (measured in the take) adds to it
        bar_frames = 96 * 1200
        tolerance = 768 + drift_frames
        offs = [
            abs((r["sample"] + frame_offset - start_frame + bar_frames / 2) % bar_frames - bar_frames / 2)
            for r in played[1:]
        ]
        if max(offs) <= tolerance:
            return
        failures.append((offs, tolerance, disturbed))
        assert any(disturbed.values()), (offs, tolerance, disturbed)
    pytest.fail(f"bars off the sender's bar lines in both takes, each disturbed: {failures}")


def _follow_clock_take(library: Path, guitar_dir: Path):
    # Every JACK client with a Python callback (clock sender, capture) lives in a child process:
    # the engine's rtmidi clock input holds the GIL while it opens and closes its JACK client.
    import jack

    from tests.test_midi_jack import ProcessCapture

    sender = ClockSender("sjtui-test-clock", 1200)  # 100 BPM at 48 kHz
    capture = ProcessCapture("sjtui-test-capture")
    engine = create_engine(
        EngineOptions(
            input=str(guitar_dir / RECORDING), loop=True, clock="midi", clock_in="sjtui-test-clock",
            midi_out=capture.port_name, midi_backend="jack", model="none", library=str(library),
            state_file=False,
        )
    )  # fmt: skip
    reports = []
    probe = jack.Client("sjtui-test-clock-probe", no_start_server=True)
    try:
        engine.start()
        frames0, seconds0 = probe.frame_time, time.monotonic()
        time.sleep(0.3)
        sender.go()
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline and len([r for r in reports if r["groove"]]) < 5:
            try:
                reports.append(engine.bar_reports.get(timeout=0.1))
            except Exception:
                pass
        assert engine.snapshot().transport.source == "midi"
        # the dummy server's frame clock against the wall clock the file input is paced on: it
        # falls behind when the machine starves jackd of CPU
        drift_frames = abs((probe.frame_time - frames0) - (time.monotonic() - seconds0) * 48000)
        disturbed = {
            "timeline shifts": engine.transport.midi_clock.shifts,
            "sample clock steps": engine.sample_clock.steps,
        }
        frame_offset = engine.output.backend.frame_offset
    finally:
        engine.close()
        sender.close()
        probe.close()
    time.sleep(0.1)
    events = capture.update().events
    capture.close()
    played = [r for r in reports if r["groove"]]
    return played, events, drift_frames, frame_offset, sender.start_frame, disturbed


def test_a_killed_midi_process_is_reported_and_the_parent_silences_what_it_left(
    capture, library_dir, guitar_audio_dir, tmp_path, monkeypatch
):  # noqa: F811
    """The MIDI child dies by SIGKILL mid-jam: the engine says so and sends the note-offs from its state file."""
    monkeypatch.setenv("SJTUI_RUNTIME_DIR", str(tmp_path / "run"))
    engine = create_engine(
        EngineOptions(
            input=str(guitar_audio_dir / RECORDING), loop=True, midi_out=capture.port_name, midi_backend="jack",
            bpm=120.0, model="none", library=str(library_dir), config=EngineConfig(note_length_ms=1500.0),
        )
    )  # fmt: skip
    try:
        engine.start()
        reports = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len([r for r in reports if r["groove"]]) < 2:
            try:
                reports.append(engine.bar_reports.get(timeout=0.1))
            except Exception:
                pass
        time.sleep(0.37)
        os.kill(engine.output.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("died" in w for w in engine.snapshot().warnings):
            time.sleep(0.05)
        warnings = engine.snapshot().warnings
        time.sleep(0.3)
        events = capture.take()
    finally:
        engine.close()
    assert any("MIDI process" in w and "died" in w for w in warnings), warnings
    assert any(d[0] == 0x99 and d[2] > 0 for _, d in events)
    assert sounding_after(events) == set()
    assert any(d[:2] == bytes([0xB9, 123]) for _, d in events)  # All Notes Off sent by the parent
    assert not list((tmp_path / "run").glob("midi-out-*.json"))
