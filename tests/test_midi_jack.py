"""sjtui's MIDI out on a private JACK server, captured by a JACK client with frame-exact arrival times.

JACK backend: notes at exactly the frames of the groove's grid and offsets,
clock ticks exactly 1000 frames apart at 120 BPM. rtmidi backend (JACK API):
every event within one period of its frame. Child processes stopped,
crashing, SIGTERM/SIGINT-ed leave no note on; a SIGKILL-ed child is cleaned
up by the parent or by the next start; a destination that vanishes is
reported and playback goes on or stops without a hang.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from sjtui.midi.backends import JackMidiBackend, RtMidiBackend, jack_connect
from sjtui.midi.events import (
    ALL_NOTES_OFF,
    CLOCK,
    CONTINUE,
    NOTE_OFF,
    NOTE_ON,
    SONG_POSITION,
    START,
    STOP,
    MidiError,
    groove_events,
)
from sjtui.midi.ports import choose_api, list_all_ports
from sjtui.midi.scheduler import MidiScheduler
from sjtui.midi.state import cleanup_after, state_path
from sjtui.transport.timebase import TempoMap
from tests.test_midi_events import random_groove

pytestmark = [pytest.mark.jack, pytest.mark.slow]

RATE = 48000
PERIOD = 256
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Capture:
    """A JACK client with a MIDI input port recording (frame, bytes) and (frame, monotonic) anchors."""

    def __init__(self, name: str = "cap"):
        import jack

        self.client = jack.Client(name, no_start_server=True)
        self.port = self.client.midi_inports.register("in")
        self.events: list[tuple[int, bytes]] = []
        self.anchors: list[tuple[int, float]] = []
        self.xruns = 0
        self.xrun_frames: list[int] = []  # the server's frame clock at each xrun notice
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(self._xrun)
        self.client.activate()

    def _xrun(self, delay_usecs: float) -> None:
        self.xruns += 1
        self.xrun_frames.append(self.client.frame_time)

    def xruns_among_events(self, margin_frames: int = 4 * PERIOD) -> int:
        """Xruns from shortly before the first captured event to shortly after the last: those that
        can have cost events (a client starting or stopping costs xruns too, before or after them)."""
        if not self.events:
            return 0
        first, last = self.events[0][0] - margin_frames, self.events[-1][0] + margin_frames
        return sum(first <= f <= last for f in self.xrun_frames)

    def _process(self, frames: int) -> None:
        base = self.client.last_frame_time
        if len(self.anchors) < 2000:
            self.anchors.append((base, time.monotonic()))
        for offset, data in self.port.incoming_midi_events():
            self.events.append((base + offset, bytes(data)))

    @property
    def port_name(self) -> str:
        return self.port.name

    def notes(self):
        # whole 3-byte messages: CI once captured a 1-byte event with a note status, around the
        # SIGKILL of a child mid-cycle (most likely its cut-off write); a receiver drops such a message
        return [(f, d) for f, d in self.events if len(d) == 3 and d[0] & 0xF0 in (NOTE_ON, NOTE_OFF)]

    def balance(self) -> dict[int, int]:
        """Note-ons minus note-offs per note."""
        out: dict[int, int] = {}
        for _, d in self.notes():
            on = d[0] & 0xF0 == NOTE_ON and d[2] > 0
            out[d[1]] = out.get(d[1], 0) + (1 if on else -1)
        return out

    def all_notes_off_after_last_note_on(self, channel: int = 9) -> bool:
        last_on = max((i for i, (_, d) in enumerate(self.events) if d[0] == NOTE_ON | channel), default=-1)
        return any(d == bytes([0xB0 | channel, ALL_NOTES_OFF, 0]) for _, d in self.events[last_on + 1 :])

    def frame_clock(self):
        """A clock in JACK frames on time.monotonic: a robust line through the anchors so far (frozen).

        Callback wake-ups are late by a variable delay: fit, drop anchors off the
        line by more than 3 median deviations, fit again.
        """
        anchors = np.array(self.anchors[50:], dtype=np.float64)
        t0 = anchors[0, 1]
        t, f = anchors[:, 1] - t0, anchors[:, 0]
        slope, intercept = np.polyfit(t, f, 1)
        residual = f - (intercept + slope * t)
        keep = (
            np.abs(residual - np.median(residual))
            <= 3 * np.median(np.abs(residual - np.median(residual))) + 1
        )
        slope, intercept = np.polyfit(t[keep], f[keep], 1)
        return lambda: intercept + slope * (time.monotonic() - t0)

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


CAPTURE_PROCESS = textwrap.dedent(
    """
    import json, sys, time
    import jack

    client = jack.Client(sys.argv[1], no_start_server=True)
    port = client.midi_inports.register("in")
    events, anchors, xruns = [], [], []

    def process(frames):
        base = client.last_frame_time
        if len(anchors) < 2000:
            anchors.append((base, time.monotonic()))
        for offset, data in port.incoming_midi_events():
            events.append((base + offset, bytes(data).hex()))

    client.set_process_callback(process)
    client.set_xrun_callback(lambda delay: xruns.append(client.frame_time))
    client.activate()
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "dump":
            print(json.dumps({"events": events, "anchors": anchors, "xruns": xruns}), flush=True)
        elif command == "unregister":
            port.unregister()
            print("ok", flush=True)
        elif command == "quit":
            break
    client.deactivate()
    client.close()
    """
)


class ProcessCapture(Capture):
    """The same capture in a child process, for the rtmidi backend.

    python-rtmidi holds the GIL while it opens or closes its JACK client (which
    waits for the JACK cycle), so a Python JACK callback in the same process
    would deadlock with it; a DAW is another process anyway.
    """

    def __init__(self, name: str = "pcap"):
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CAPTURE_PROCESS, name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline().strip() == "ready"
        self.events, self.anchors, self.xrun_frames = [], [], []

    @property
    def port_name(self) -> str:
        return f"{self.name}:in"

    def _ask(self, command: str) -> str:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline()

    def update(self) -> ProcessCapture:
        data = json.loads(self._ask("dump"))
        self.events = [(int(f), bytes.fromhex(h)) for f, h in data["events"]]
        self.anchors = [(int(f), float(t)) for f, t in data["anchors"]]
        self.xrun_frames = [int(f) for f in data["xruns"]]
        return self

    def unregister(self) -> None:
        assert self._ask("unregister").strip() == "ok"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(10)


@pytest.fixture
def process_capture(jack_server, tmp_path, monkeypatch):
    monkeypatch.setenv("SJTUI_RUNTIME_DIR", str(tmp_path / "run"))
    cap = ProcessCapture()
    yield cap
    cap.close()


@pytest.fixture
def capture(jack_server, tmp_path, monkeypatch):
    monkeypatch.setenv("SJTUI_RUNTIME_DIR", str(tmp_path / "run"))
    cap = Capture()
    yield cap
    try:
        cap.close()
    except Exception:
        pass


def wait_for(predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def expected_pairs(events) -> list[tuple[int, bytes]]:
    return [(int(e["sample"]), bytes([int(e["status"]), int(e["data1"]), int(e["data2"])])) for e in events]


def play(scheduler: MidiScheduler, bars: int = 4, bpm: float = 120.0, lead_s: float = 0.15, **options):
    start = int(scheduler.clock() + lead_s * RATE)
    tempo_map = TempoMap.constant(RATE, bpm, anchor_sample=start)
    events = groove_events(random_groove(21, bars=bars), tempo_map, 0, **options)
    scheduler.clock_start(tempo_map)
    scheduler.submit(events)
    return tempo_map, events


def judged_despite_xruns(capture, take, judge, tries: int = 3):
    """Run ``take()`` and ``judge(result)`` (which asserts); take again only when the judgement fails
    and the server had an xrun among the captured events. A late cycle loses or shifts the events in it
    for reasons outside the code under test (with 2 shared cores a Python client can miss its cycle),
    while starting and stopping a JACK client costs xruns around the events at nearly every take on a
    loaded machine, so a take is not thrown away for an xrun that did no harm. A failure without an xrun
    among the events fails at once. Returns the result of the take that passed."""
    lossy = []
    for _ in range(tries):
        capture.events.clear()
        capture.xrun_frames.clear()
        result = take()
        try:
            judge(result)
            return result
        except AssertionError as error:
            if capture.xruns_among_events() == 0:
                raise
            lossy.append((capture.xruns_among_events(), str(error).splitlines()[0][:200]))
    pytest.fail(f"every take failed with xruns among its events ({lossy}): the machine is too busy to judge")


def _c_backend():
    from sjtui.midi import jack_out

    if not jack_out.available():
        pytest.skip("the C JACK MIDI output was not built (JACK's headers missing)")
    return jack_out.CJackMidiBackend


@pytest.fixture(params=["python", "c"])
def jack_backend(request, monkeypatch):
    """Each JACK MIDI output: JACK-Client's Python callback, and the C client (what
    ``jack_midi_backend`` picks where it was built); ``SJTUI_JACK_MIDI`` set to match for
    code (a child process, the clean-up) that picks one itself."""
    monkeypatch.setenv("SJTUI_JACK_MIDI", request.param)
    return JackMidiBackend if request.param == "python" else _c_backend()


def test_jack_backend_is_frame_exact(capture, jack_backend):
    backend = jack_backend(client_name="sjtui-exact", connect_to=capture.port_name)

    def attempt():
        with MidiScheduler(backend) as scheduler:
            tempo_map, events = play(scheduler, bars=2)
            end = int(events["sample"].max()) + 2000
            scheduler.clock_stop(end)
            assert wait_for(lambda: backend.now_sample() > end + 4 * PERIOD)
            assert wait_for(lambda: any(d == bytes([STOP]) for _, d in capture.events), 3)
        return tempo_map, events, end, scheduler

    def judge(result):
        tempo_map, events, end, scheduler = result
        assert capture.notes() == expected_pairs(events)  # exact frames, bytes and order
        start = int(tempo_map.tick_to_sample(0))
        ticks = np.array([f for f, d in capture.events if d == bytes([CLOCK])])
        assert ticks[0] == start and set(np.diff(ticks).tolist()) == {1000}  # 24 per beat at 120 BPM
        assert ticks.size == int(np.ceil((end - start) / 1000))
        realtime = [(f, d) for f, d in capture.events if d[0] >= 0xF0 and d != bytes([CLOCK])]
        assert realtime[0] == (start, bytes([START])) and realtime[1] == (end, bytes([STOP]))
        assert set(capture.balance().values()) == {0}
        assert capture.all_notes_off_after_last_note_on()
        assert scheduler.min_lead_samples > 30e-3 * RATE  # handed over a lookahead ahead

    backend.close = lambda: None  # reuse the client across attempts; closed below
    try:
        judged_despite_xruns(capture, attempt, judge)
    finally:
        jack_backend.close(backend)


def test_jack_backend_continue_from_a_song_position_and_tempo_change(capture, jack_backend):
    backend = jack_backend(client_name="sjtui-spp", connect_to=capture.port_name)

    def attempt():
        with MidiScheduler(backend) as scheduler:
            start = int(scheduler.clock() + 0.15 * RATE)
            tempo_map = TempoMap.constant(RATE, 150.0, anchor_sample=start, anchor_beat=8.0)  # bar 2 in 4/4
            scheduler.clock_start(tempo_map, tick=8 * 24)
            change = start + RATE // 2
            scheduler.set_tempo_map(tempo_map.with_tempo(change, 100.0))
            assert wait_for(lambda: backend.now_sample() > change + RATE)
        return start, change

    def judge(result):
        start, change = result
        spp_value = 8 * 24 // 6
        realtime = [(f, d) for f, d in capture.events if d[0] >= 0xF0 and d != bytes([CLOCK])]
        assert realtime[0] == (start, bytes([SONG_POSITION, spp_value & 0x7F, spp_value >> 7]))
        assert realtime[1] == (start, bytes([CONTINUE]))
        assert realtime[-1][1] == bytes([STOP])
        ticks = np.array([f for f, d in capture.events if d == bytes([CLOCK])])
        assert ticks[0] == start
        gaps = np.diff(ticks)
        assert set(gaps[ticks[1:] <= change].tolist()) == {800}  # 150 BPM
        assert set(gaps[ticks[:-1] >= change].tolist()) <= {1200}  # 100 BPM

    backend.close = lambda: None
    try:
        judged_despite_xruns(capture, attempt, judge)
    finally:
        jack_backend.close(backend)


def test_the_c_output_needs_no_gil(process_capture):
    """Events handed over, then this process holds the GIL for 1.5 s (a busy thread with a long
    switch interval, as a garbage collection or a long numpy-free loop would): the C callback
    puts every event out at its exact frame meanwhile; a Python callback could not run at all."""
    import sys
    import threading

    backend = _c_backend()(client_name="sjtui-nogil", connect_to=process_capture.port_name)
    failures = []
    try:
        for _ in range(3):
            start = int(backend.now_sample()) + 4800  # 0.1 s from now
            frames = start + np.arange(150) * 480  # 1.5 s of 10 ms steps
            for k, frame in enumerate(frames):
                backend.schedule(int(frame), bytes([NOTE_ON | 9, 36 + k % 12, 100]))
            interval = sys.getswitchinterval()
            sys.setswitchinterval(2.0)  # the busy thread keeps the GIL until it is done
            try:

                def hog():
                    deadline = time.monotonic() + 1.8
                    while time.monotonic() < deadline:
                        pass

                thread = threading.Thread(target=hog)
                thread.start()
                thread.join()
            finally:
                sys.setswitchinterval(interval)
            backend.send_now([bytes([0xB9, 123, 0])])
            assert wait_for(lambda: len([f for f, _ in process_capture.update().events if f >= start]) >= 150, 5)
            got = [(f, d) for f, d in process_capture.events if f >= start and d[0] == NOTE_ON | 9]
            want = [(int(f), bytes([NOTE_ON | 9, 36 + k % 12, 100])) for k, f in enumerate(frames)]
            xruns = [f for f in process_capture.xrun_frames if start <= f <= frames[-1] + 1024]
            if got == want and backend.late_events == 0:
                return
            # a cycle the capture (a Python callback in its own process) missed loses its events
            failures.append((len(got), backend.late_events, len(xruns)))
            if not xruns:
                break
    finally:
        backend.close()
    pytest.fail(f"events off their frames while the GIL was held (got, late, capture xruns): {failures}")


def test_the_c_output_is_the_default_and_refuses_what_it_cannot_send(capture, monkeypatch):
    from sjtui.midi.backends import jack_midi_backend, open_backend

    c_backend = _c_backend()
    monkeypatch.delenv("SJTUI_JACK_MIDI", raising=False)
    backend = open_backend("jack", connect_to=capture.port_name, client_name="sjtui-default")
    try:
        assert type(backend) is c_backend and backend.describe()["callback"] == "C"
        assert backend.destinations() == [capture.port_name]
        with pytest.raises(ValueError, match="4 bytes"):
            backend.schedule(0, bytes([0xF0, 1, 2, 0xF7]))  # SysEx: not sent by sjtui
        assert backend.send_now([bytes([0xB9, 123, 0])]) is True
        assert wait_for(lambda: bytes([0xB9, 123, 0]) in [d for _, d in capture.events], 2)
    finally:
        backend.close()
    backend.close()  # idempotent
    assert backend.send_now([bytes([0xB9, 123, 0])]) is False and backend.destinations() == []
    with pytest.raises(ValueError, match="closed"):
        backend.schedule(0, bytes([0x99, 36, 100]))
    monkeypatch.setenv("SJTUI_JACK_MIDI", "python")
    python = jack_midi_backend(client_name="sjtui-asked-python")
    try:
        assert type(python) is JackMidiBackend
    finally:
        python.close()


def test_rtmidi_backend_is_within_one_period(process_capture):
    """rtmidi's JACK output writes what it was sent at offset 0 of the next cycle: every event
    arrives between 0 and 1 period after the scheduler sent it. Judged against the scheduler's own
    record of when it sent each event, so a late send (this thread waiting for the GIL, e.g. for a
    garbage collection of pytest's heap, which in CI's full run delayed one tick by ~21 ms) is not
    charged to the backend; the scheduler's send error is measured by bench/timing.py."""
    capture = process_capture
    assert wait_for(lambda: len(capture.update().anchors) > 350)
    spreads = []
    # The reference clock is a line fitted through the capture child's callback wake-ups; on a
    # loaded machine those wake up late and the line is off by more than the slack. Up to three runs;
    # every run must still deliver every event in order and leave nothing on.
    for _ in range(3):
        first = len(capture.update().events)
        backend = RtMidiBackend(capture.port_name, api="jack", client_name="sjtui-rt")
        assert backend.destinations() == [capture.port_name]
        with MidiScheduler(backend, sample_rate_hz=RATE, clock=capture.frame_clock()) as scheduler:
            # 0.5 s lead: a JACK client starting can cost the graph a cycle on a loaded machine
            tempo_map, events = play(scheduler, bars=4, lead_s=0.5)
            end = int(events["sample"].max()) + 2000
            assert wait_for(lambda: scheduler.clock() > end + 4 * PERIOD)
            want = expected_pairs(events)
            # the capture child may read its cycles late: wait until it has them all
            wait_for(
                lambda: (
                    len([e for e in capture.update().events[first:] if e[1][0] & 0xE0 == 0x80]) >= len(want)
                ),
                3,
            )
        wait_for(
            lambda: bytes([0xB9, 123, 0]) in [d for _, d in capture.update().events[first:]], 3
        )  # on closing
        received = capture.events[first:]
        notes = [(f, d) for f, d in received if d[0] & 0xF0 in (NOTE_ON, NOTE_OFF)]
        assert [d for _, d in notes] == [d for _, d in want], scheduler.stats()
        stats = scheduler.stats()
        assert stats["n_note_errors"] == np.count_nonzero(events["status"] & 0xF0 == NOTE_ON)
        balance: dict[int, int] = {}
        for _, d in notes:
            balance[d[1]] = balance.get(d[1], 0) + (1 if d[0] & 0xF0 == NOTE_ON and d[2] > 0 else -1)
        last_on = max(i for i, (_, d) in enumerate(received) if d[0] == NOTE_ON | 9)
        assert set(balance.values()) == {0}
        assert any(d == bytes([0xB9, 123, 0]) for _, d in received[last_on + 1 :])
        ticks = np.array([f for f, d in received if d == bytes([CLOCK])], dtype=np.float64)
        ticks_sent = scheduler.tick_times.values()
        xruns = capture.xruns_among_events()
        if ticks.size != ticks_sent.size:  # a cycle the capture missed loses what was in it
            assert xruns > 0, f"{ticks_sent.size} ticks sent, {ticks.size} arrived, no xrun"
            spreads.append(("lost ticks", ticks_sent.size - ticks.size, f"{xruns} xruns"))
            continue
        ons = [(f, d) for f, d in notes if d[0] & 0xF0 == NOTE_ON]
        on_want = np.array([f for f, d in want if d[0] & 0xF0 == NOTE_ON], dtype=np.float64)
        on_sent = on_want + scheduler.note_errors_ms.values() * RATE / 1e3
        # arrival minus send: one constant (the clock fit's offset) plus 0 .. 1 period
        delay = np.concatenate((np.array([f for f, _ in ons]) - on_sent, ticks - ticks_sent))
        spreads.append((int(np.ptp(delay)), stats["note_error_ms_max"], f"{xruns} xruns"))
        # 96 frames (2 ms) of slack for the fit's slope error and the capture's timestamps
        if spreads[-1][0] <= PERIOD + 96:
            return
    pytest.fail(f"arrival minus send spread (frames; send error ms) above {PERIOD + 96} in all runs: {spreads}")


def test_virtual_port_named_sjtui_and_api_choice(process_capture):
    capture = process_capture
    if not os.path.exists("/dev/snd/seq"):
        assert choose_api() == "UNIX_JACK"
    backend = RtMidiBackend(None, api="jack")
    try:
        ports = list_all_ports()["UNIX_JACK"]
        # rtmidi lists where one can send to ("outputs": JACK input ports) and receive from ("inputs")
        assert "sjtui:sjtui" in ports["inputs"]
        assert capture.port_name in ports["outputs"]
        jack_connect("sjtui:sjtui", capture.port_name)  # as a DAW would
        assert wait_for(lambda: backend.destinations() == [capture.port_name], 2)
        backend.send([NOTE_ON | 9, 36, 100])
        backend.send([NOTE_OFF | 9, 36, 0])
        assert wait_for(lambda: len(capture.update().notes()) == 2, 2)
    finally:
        backend.close()


def test_missing_port_names_the_ports_that_exist(capture, jack_backend):
    with pytest.raises(MidiError) as info:
        RtMidiBackend("Ardour MIDI in", api="jack")
    assert capture.port_name in str(info.value) and "Ardour MIDI in" in str(info.value)
    with pytest.raises(MidiError) as info:
        jack_backend(client_name="sjtui-missing", connect_to="Ardour MIDI in")
    assert capture.port_name in str(info.value)


CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from sjtui.midi.backends import jack_midi_backend
    from sjtui.midi.events import groove_events
    from sjtui.midi.scheduler import MidiScheduler, install_signal_handlers
    from sjtui.transport.timebase import TempoMap
    from tests.test_midi_events import random_groove

    mode, destination = sys.argv[1], sys.argv[2]
    install_signal_handlers()
    backend = jack_midi_backend(client_name="sjtui-child", connect_to=destination)
    print(backend.describe().get("callback", "Python"), flush=True)
    with MidiScheduler(backend) as scheduler:
        start = int(scheduler.clock() + 0.1 * 48000)
        tempo_map = TempoMap.constant(48000, 160.0, anchor_sample=start)
        groove = random_groove(5, bars=4, density=0.4)
        events = np.concatenate([groove_events(groove, tempo_map, 4 * k, note_length_ms=1500) for k in range(20)])
        scheduler.clock_start(tempo_map)
        scheduler.submit(events)
        while backend.now_sample() < start + 48000:
            time.sleep(0.01)
        print("playing", flush=True)
        if mode == "stop":
            scheduler.stop()
            print("stopped", flush=True)
        elif mode == "exception":
            raise RuntimeError("boom")
        else:  # waits as sjtui's processes wait, in short steps (sjtui/signals.py)
            for _ in range(600):
                time.sleep(0.1)
    """
)


def start_child(mode: str, capture: Capture) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=REPO)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, capture.port_name],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    callback = child.stdout.readline().strip()
    line = child.stdout.readline()
    from sjtui.midi import jack_out

    c_chosen = jack_out.available() and os.environ.get("SJTUI_JACK_MIDI") != "python"
    expected = "C" if c_chosen else "Python"
    if callback != expected or line.strip() != "playing":
        child.kill()
        raise AssertionError(f"child did not start ({callback} callback): {line!r} {child.stderr.read()}")
    return child


@pytest.mark.parametrize("mode", ["stop", "exception", "sigterm", "sigint"])
def test_no_note_left_on_when_a_child_stops(capture, mode, jack_backend):
    child = start_child(mode, capture)
    if mode == "sigterm":
        child.send_signal(signal.SIGTERM)
    elif mode == "sigint":
        child.send_signal(signal.SIGINT)
    child.wait(15)
    assert wait_for(lambda: capture.all_notes_off_after_last_note_on(), 2)
    balance = capture.balance()
    detail = (balance, capture.xruns, [(f, d.hex()) for f, d in capture.events if d[0] != CLOCK][-30:])
    # silent at any receiver (All Notes Off, above), and each note-on got its own note-off and
    # each note-off matched a note-on, unless an xrun made the capture miss a cycle's events
    # (starting and stopping the child's JACK client costs xruns on a loaded machine, so a retake
    # would not help)
    assert set(balance.values()) <= {0} or capture.xruns > 0, detail
    assert any(d == bytes([STOP]) for _, d in capture.events)
    if mode == "exception":
        assert "boom" in child.stderr.read()
    assert not state_path(child.pid).exists()  # a clean exit removes the state file


def _threads(pid: int) -> list[int]:
    return sorted(int(tid) for tid in os.listdir(f"/proc/{pid}/task"))


def _blocked(pid: int, tid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{tid}/status") as fh:
        mask = next(int(line.split()[1], 16) for line in fh if line.startswith("SigBlk:"))
    return {n for n in range(1, 65) if mask >> (n - 1) & 1}


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGWINCH}


FIRST_CLIENT = textwrap.dedent(
    """
    import os, sys, threading
    from sjtui.midi.backends import jack_midi_backend
    backend = jack_midi_backend(client_name="sjtui-first", connect_to=sys.argv[1])
    backend.close()
    with open(f"/proc/self/task/{threading.get_native_id()}/status") as fh:
        print(next(line.split()[1] for line in fh if line.startswith("SigBlk:")))
    """
)


def test_threads_started_for_midi_leave_signals_to_the_main_thread(process_capture, jack_backend):
    """libjack's threads (each output's, and rtmidi's) and the scheduler's block the asynchronous
    signals: the kernel may hand a process signal to any thread that does not, and an interrupted
    read of libjack's server socket shuts the client down (sjtui/signals.py). The main thread's own
    mask is as it was after all of them closed."""
    capture = process_capture
    pid, main = os.getpid(), threading.get_native_id()
    before, main_before = set(_threads(pid)), _blocked(pid, main)
    # python-rtmidi holds the GIL while it opens or closes its JACK client, which waits for every
    # client's cycle: no Python JACK callback may run in this process then (the capture is a child;
    # the Python output is opened after rtmidi and closed before it). CI deadlocked otherwise.
    rtmidi_backend = RtMidiBackend(None, api="jack", client_name="sjtui-masks-rt")
    try:
        backend = jack_backend(client_name="sjtui-masks", connect_to=capture.port_name)
        with MidiScheduler(backend):
            new = set(_threads(pid)) - before
            assert len(new) >= 4, new  # at least libjack's notification and process threads, the scheduler's two
            open_to = {tid: sorted(STOP_SIGNALS - _blocked(pid, tid)) for tid in new}
            assert not any(open_to.values()), open_to
    finally:
        rtmidi_backend.close()  # python-rtmidi's own libjack: its last client in this process
    assert _blocked(pid, main) == main_before
    # a process whose first and last JACK client is sjtui's: libjack's saved mask is set again on
    # closing the last one, and it was saved inside the block
    env = dict(os.environ, PYTHONPATH=REPO)
    done = subprocess.run(
        [sys.executable, "-c", FIRST_CLIENT, capture.port_name], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    mask = int(done.stdout.split()[-1], 16)
    assert not any(mask >> (s - 1) & 1 for s in STOP_SIGNALS), (done.stdout, done.stderr)


def test_a_signal_sent_to_any_thread_of_a_child_stops_it_cleanly(capture):
    """kill(2) with a thread's id hands the process signal to that thread unless it blocks it: each
    thread of the child in turn. Before sjtui/signals.py, the one reading libjack's server socket
    failed with EINTR, libjack shut the client down ("JackSocketClientChannel read fail") and All
    Notes Off was never sent; a Python thread taking it left the main thread asleep."""
    tried = []
    for k in range(1, 16):
        child = start_child("sigterm", capture)
        threads = _threads(child.pid)
        if k >= len(threads):
            child.kill()
            child.wait()
            break
        os.kill(threads[k], signal.SIGTERM)
        child.wait(15)
        errors = child.stderr.read()
        assert "read fail" not in errors and "Interrupted system call" not in errors, (k, errors)
        assert wait_for(lambda: capture.all_notes_off_after_last_note_on(), 2), (k, errors)
        tried.append(k)
    assert len(tried) >= 4, tried


@pytest.mark.parametrize("who", ["parent", "next start"])
def test_sigkill_is_cleaned_up_by_the_parent_or_the_next_start(capture, who, jack_backend):
    child = start_child("kill", capture)
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    time.sleep(0.2)
    left_on = {note for note, count in capture.balance().items() if count > 0}
    assert left_on, "notes should be left sounding by SIGKILL"
    assert state_path(child.pid).exists()
    if who == "parent":
        report = cleanup_after(child.pid)
        assert report["reached"] == [capture.port_name] and report["error"] is None
    else:
        backend = jack_backend(client_name="sjtui-next")
        scheduler = MidiScheduler(backend).start()
        try:
            assert [r["pid"] for r in scheduler.cleanup_reports] == [child.pid]
        finally:
            scheduler.close()
    # the clean-up sends a note-off for every note the child could play (it cannot know which
    # sounded), so notes that were off end at -1; none may stay on
    assert wait_for(lambda: max(capture.balance().values()) <= 0, 2), capture.balance()
    assert all(capture.balance()[note] == 0 for note in left_on)
    assert capture.all_notes_off_after_last_note_on()
    assert not state_path(child.pid).exists()


@pytest.mark.parametrize("policy", ["continue", "stop"])
def test_jack_destination_vanishing_is_reported(capture, policy, jack_backend):
    backend = jack_backend(client_name="sjtui-vanish", connect_to=capture.port_name)
    scheduler = MidiScheduler(backend, on_port_lost=policy).start()
    try:
        play(scheduler, bars=8)
        assert wait_for(lambda: len(capture.notes()) > 4, 5)
        capture.close()
        assert wait_for(lambda: any("went away" in w for w in scheduler.warnings), 3), list(
            scheduler.warnings
        )
        if policy == "stop":
            assert wait_for(lambda: not scheduler.running, 3)
        else:
            sent = scheduler.sent_events
            assert wait_for(lambda: scheduler.sent_events > sent + 10, 3) and scheduler.running
    finally:
        scheduler.close()
    assert scheduler.error is None


def test_rtmidi_destination_vanishing_is_reported(process_capture):
    capture = process_capture
    assert wait_for(lambda: len(capture.update().anchors) > 350)
    backend = RtMidiBackend(capture.port_name, api="jack", client_name="sjtui-rt-vanish")
    scheduler = MidiScheduler(backend, sample_rate_hz=RATE, clock=capture.frame_clock()).start()
    try:
        play(scheduler, bars=8)
        assert wait_for(lambda: len(capture.update().notes()) > 4, 5)
        capture.unregister()
        assert wait_for(lambda: any("disappeared" in w for w in scheduler.warnings), 3), list(
            scheduler.warnings
        )
        assert scheduler.running
    finally:
        scheduler.close()
    assert scheduler.error is None


def test_devices_command_lists_midi_ports_per_api(capture):
    result = subprocess.run(
        [sys.executable, "-m", "sjtui", "devices", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["midi_ports"]
    if not os.path.exists("/dev/snd/seq"):
        assert report["chosen_api"] == "UNIX_JACK" and report["problem"] is None
    assert capture.port_name in report["apis"]["UNIX_JACK"]["outputs"]
    text = subprocess.run(
        [sys.executable, "-m", "sjtui", "devices"], cwd=REPO, capture_output=True, text=True, timeout=60
    ).stdout
    assert "MIDI ports:" in text and capture.port_name in text and "UNIX_JACK  (used)" in text


def test_midi_process_plays_frame_exact_and_silences_on_close(capture):
    from sjtui.midi.process import MidiProcess

    def attempt():
        process = MidiProcess({"kind": "jack", "client_name": "sjtui-iso", "connect_to": capture.port_name})
        try:
            start = int(process.now_sample() + 0.2 * RATE)
            tempo_map = TempoMap.constant(RATE, 120.0, anchor_sample=start)
            events = groove_events(random_groove(41, bars=4), tempo_map, 0, note_length_ms=400)
            process.clock_start(tempo_map)
            process.submit(events)
            middle = int(tempo_map.bar_to_sample(2))
            assert wait_for(lambda: process.now_sample() > middle, 10)
        finally:
            process.close()  # mid-play: notes sounding now must be silenced
        return tempo_map, events, middle

    def judge(result):
        _, events, middle = result
        played = [(f, d) for f, d in expected_pairs(events) if f < middle]
        assert capture.notes()[: len(played)] == played  # frame exact from the child process
        assert set(capture.balance().values()) == {0}
        assert capture.all_notes_off_after_last_note_on()
        assert any(d == bytes([STOP]) for _, d in capture.events)

    judged_despite_xruns(capture, attempt, judge)
