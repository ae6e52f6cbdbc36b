"""MIDI clock in through a real MIDI port (JACK): tempo within 0.5 BPM, bar phase kept.

A JACK-Client MIDI output writes Start, clock ticks at 137 BPM with +-1 ms
random jitter at exact frames, Stop mid-bar, Continue, Song Position
Pointer, Continue. sjtui receives them through a real port, with
python-rtmidi (JACK API, polled) or with a JACK-Client input port (frame
exact), and follows them with the Transport.

The transport works in JACK frames (the audio stream's sample index on
JACK): the JACK-Client receiver gives frames directly; rtmidi gives times,
mapped to frames with a SampleClock whose anchors are (frame, time) pairs
the sender records at the start of each of its process cycles. So the
truth is the sender's own frames even when the dummy backend, starved of
CPU on a busy machine, lets its frame clock fall behind the wall clock.
"""

from __future__ import annotations

import collections
import time

import numpy as np
import pytest

from sjtui.transport.midi_clock import (
    CLOCK,
    CONTINUE,
    SONG_POSITION,
    START,
    STOP,
    JackMidiClockInput,
    RtMidiClockInput,
)
from sjtui.transport.timebase import SampleClock
from sjtui.transport.transport import Transport

pytestmark = [pytest.mark.jack, pytest.mark.slow]

BPM = 137.0
RATE = 48000
TICK = 60.0 * RATE / (BPM * 24)


def build_schedule(start_frame: int, rng) -> tuple[list[tuple[int, tuple]], dict]:
    """Events (frame, bytes) and, per run, (nominal tick frame, song position in ticks)."""
    events: list[tuple[int, tuple]] = []
    truth: dict[str, list[tuple[float, int]]] = {"run1": [], "run2": [], "run3": []}
    frame = float(start_frame)

    def ticks(n, position, run):
        nonlocal frame
        for k in range(n):
            jitter = rng.uniform(-1e-3, 1e-3) * RATE
            events.append((int(round(frame + jitter)), (CLOCK,)))
            truth[run].append((frame, position + k))
            frame += TICK
        return position + n

    events.append((int(frame) - 100, (START,)))
    position = ticks(24 * 4 + 30, 0, "run1")  # a bar and 1.25 beats: stops mid-bar
    events.append((int(frame - TICK / 2), (STOP,)))
    frame += 0.3 * RATE  # a pause
    events.append((int(frame) - 100, (CONTINUE,)))
    position = ticks(24 * 5, position, "run2")
    events.append((int(frame - TICK / 2), (STOP,)))
    events.append((int(frame - TICK / 2) + 480, (SONG_POSITION, 16, 0)))  # 16 sixteenths = bar 1 in 4/4
    frame += 0.3 * RATE
    events.append((int(frame) - 100, (CONTINUE,)))
    ticks(24 * 5, 16 * 6, "run3")
    events.sort(key=lambda e: e[0])
    return events, truth


class _CountingFollower:
    """Passes messages on to the follower and counts the clock ticks that arrived."""

    def __init__(self, follower):
        self.follower = follower
        self.ticks = 0

    def feed(self, message, sample):
        self.ticks += message[0] == CLOCK
        self.follower.feed(message, sample)


def _follow_once(receiver, rng):
    """One take: a Python JACK client sends the schedule, the receiver feeds a transport.
    Returns (snapshots, truth, transport, what disturbed the take: events the sender wrote after
    their frame and ticks the JACK graph lost on the way)."""
    import jack

    sender = jack.Client("clock-sender", no_start_server=True)
    out = sender.midi_outports.register("clock")
    state = {"events": [], "next": 0, "late": 0}
    cycles: collections.deque = collections.deque(maxlen=4096)  # (frame, monotonic) per cycle

    @sender.set_process_callback
    def process(frames):
        first = sender.last_frame_time
        cycles.append((first, time.monotonic()))
        out.clear_buffer()
        events = state["events"]
        i = state["next"]
        while i < len(events) and events[i][0] < first + frames:
            frame, data = events[i]
            state["late"] += frame < first  # this callback ran late (pytest's process: the GIL)
            out.write_midi_event(max(frame - first, 0), bytes(data))
            i += 1
        state["next"] = i

    transport = Transport(RATE, bpm=100, meter="4/4", source="midi_clock")
    counting = _CountingFollower(transport.midi_clock)
    sample_clock = SampleClock(RATE, max_anchors=32)
    # rtmidi holds the GIL while it opens or closes its JACK client, and JACK waits then for every
    # client's callback, this sender's Python one included: open and close it while the sender is inactive
    if receiver == "rtmidi":
        clock_in = RtMidiClockInput(virtual=True, client_name="sjtui-clock-test")
    else:
        clock_in = JackMidiClockInput(client_name="sjtui-clock-test")
    try:
        with sender:
            inputs = sender.get_ports(is_midi=True, is_input=True)
            targets = [p.name for p in inputs if "sjtui-clock-test" in p.name]
            assert targets, [p.name for p in sender.get_ports(is_midi=True)]
            sender.connect(out, targets[0])
            start_frame = sender.frame_time + RATE // 2
            events, truth = build_schedule(start_frame, rng)
            state["events"] = events
            end_frame = events[-1][0] + RATE // 4
            snapshots = {}
            while True:
                while cycles:
                    frame, t = cycles.popleft()
                    sample_clock.add_anchor(frame, t)
                if receiver == "rtmidi":
                    if sample_clock.n_anchors:
                        clock_in.drain(counting, sample_clock)
                else:
                    clock_in.drain(counting)  # frames are samples
                now_frame = sender.frame_time
                snap = transport.apply_pending(now_frame)
                for run, rows in truth.items():
                    if run not in snapshots and now_frame > rows[-1][0] + TICK / 4:
                        snapshots[run] = (snap, transport.tempo_map, transport.midi_clock.fitted_bpm)
                if now_frame > end_frame:
                    break
                time.sleep(0.005)
    finally:
        clock_in.close()
    lost = sum(len(rows) for rows in truth.values()) - counting.ticks
    return snapshots, truth, transport, {"late events": state["late"], "lost ticks": lost}


@pytest.mark.parametrize(
    "receiver, max_phase_error_ticks",
    [
        # rtmidi's JACK backend stamps each event with the time its process callback ran:
        # up to a period (5.3 ms = 0.29 tick) early; measured 0.1 to 0.2 tick
        ("rtmidi", 1 / 3),
        # a JACK-Client port gives the exact frame: only the sender's jitter remains
        # (measured under 0.04 tick = 0.7 ms)
        ("jack", 0.1),
    ],
)
def test_transport_follows_real_midi_clock(jack_server, receiver, max_phase_error_ticks):
    rng = np.random.default_rng(7)
    # A take is taken again (up to 3) when something outside the follower broke it:
    # - the sender is a Python callback in this process and ran late (a collection of pytest's
    #   heap holds the GIL): it sent ticks off their schedule;
    # - the machine stalled the dummy server and JACK dropped a late client's MIDI in the xrun:
    #   a tick lost on the way puts any follower a tick behind (measured: a 30 ms SIGSTOP of
    #   jackd lost 1 of 366 ticks in 1 of 4 takes, and that run's phase error was -0.88 tick;
    #   a clean-clone CI run at f501505 failed with -0.86)
    failures = []
    for _ in range(3):
        snapshots, truth, transport, disturbed = _follow_once(receiver, rng)
        try:
            _judge_follow(snapshots, truth, transport, receiver, max_phase_error_ticks)
            return
        except AssertionError as error:
            if not any(disturbed.values()):
                raise
            failures.append((disturbed, str(error).splitlines()[0][:200]))
    pytest.fail(f"every take was disturbed: {failures}")


def _judge_follow(snapshots, truth, transport, receiver, max_phase_error_ticks):
    for run, rows in truth.items():
        snap, tempo_map, fitted = snapshots[run]
        assert fitted == pytest.approx(BPM, abs=0.5), (run, snap.state, snap.message)
        assert snap.bpm == pytest.approx(BPM, abs=0.5), (run, snap.state, snap.message)
        frames = np.array([f for f, _ in rows[-48:]])
        positions = np.array([p for _, p in rows[-48:]], dtype=np.float64)
        # bar phase: at the nominal frame of each of the last two beats of ticks the map is
        # within max_phase_error_ticks (a tick is 18 ms at 137 BPM) of the sender's song position
        error_ticks = tempo_map.sample_to_tick(frames) - positions
        low, high = error_ticks.min(), error_ticks.max()
        print(f"{receiver} {run}: fitted {fitted:.3f} BPM, phase error {low:+.3f}..{high:+.3f} tick")
        assert max(abs(low), abs(high)) < max_phase_error_ticks, (run, low, high)
    # run 2 continued from the mid-bar stop (positions 126.. checked above); after the Song
    # Position Pointer run 3 starts on the downbeat of bar 1
    assert transport.tempo_map.sample_to_bar(truth["run3"][0][0]) == pytest.approx(1.0, abs=0.01)
    assert transport.snapshot.state in ("running", "clock lost")
