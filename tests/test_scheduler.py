"""The MIDI scheduler's deadlines, clock out, cancel and stuck-note handling on a simulated clock.

The clock and sleep are injected (a simulated clock whose sleep oversleeps
by a random 0..300 us like an OS wake-up), so deadlines are checked exactly
and minutes of music run in a second. The backend here records what it is
given; the same scheduler with real ports is in test_midi_jack.py.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from sjtui.midi.backends import MidiBackend
from sjtui.midi.events import (
    ALL_NOTES_OFF,
    CLOCK,
    CONTINUE,
    CONTROL_CHANGE,
    NOTE_OFF,
    NOTE_ON,
    SONG_POSITION,
    START,
    STOP,
    groove_events,
    sort_events,
)
from sjtui.midi.scheduler import MidiScheduler
from sjtui.transport.timebase import TempoMap
from tests.test_midi_events import random_groove

RATE = 48000


class SimClock:
    """Samples advance only when the scheduler sleeps; each sleep oversleeps by up to ``jitter_ms``."""

    def __init__(self, jitter_ms: float = 0.3, seed: int = 0):
        self.now = 0.0
        self.rng = np.random.default_rng(seed)
        self.jitter = jitter_ms * 1e-3 * RATE

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds * RATE + self.rng.uniform(0, self.jitter)
        time.sleep(0)  # let other threads run

    def wait_until(self, sample: float, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.now < sample:
            assert time.monotonic() < deadline, "simulated clock stalled"
            time.sleep(0.002)


class Recorder(MidiBackend):
    """Records (clock sample at send, bytes); ``timed`` picks the scheduler's mode."""

    name = "recorder"
    sample_rate_hz = RATE

    def __init__(self, clock, timed=True, fail_after=None):
        self.clock = clock
        self.timed = timed
        self.sent: list[tuple[float, bytes]] = []
        self.scheduled: list[tuple[float, int, bytes]] = []  # (clock at hand-over, sample, bytes)
        self.now_sent: list[list[int]] = []
        self.fail_after = fail_after

    def send(self, data) -> None:
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise OSError("port went away")
        self.sent.append((self.clock(), bytes(data)))

    def schedule(self, sample, data) -> None:
        self.scheduled.append((self.clock(), int(sample), bytes(data)))

    def send_now(self, messages, timeout_s=0.5, silence=False) -> bool:
        self.now_sent.extend([list(m) for m in messages])
        return True


def make(timed=True, jitter_ms=0.3, **options):
    clock = SimClock(jitter_ms)
    backend = Recorder(clock, timed=timed, fail_after=options.pop("fail_after", None))
    scheduler = MidiScheduler(
        backend,
        sample_rate_hz=RATE,
        clock=clock,
        sleep=clock.sleep,
        state=False,
        realtime_priority=None,
        cleanup_at_start=False,
        **options,
    )
    return clock, backend, scheduler


def test_notes_and_ticks_leave_at_their_deadlines_without_drift():
    clock, backend, scheduler = make()
    tempo_map = TempoMap.constant(RATE, 133.0, anchor_sample=RATE)
    groove = random_groove(7, bars=4)
    events = sort_events(
        np.concatenate([groove_events(groove, tempo_map, 4 * k) for k in range(8)])
    )  # 32 bars
    scheduler.submit(events)
    scheduler.clock_start(tempo_map)
    end = int(events["sample"].max()) + RATE
    with scheduler:
        clock.wait_until(end)
    notes = [(t, d) for t, d in backend.sent if d[0] & 0xF0 in (NOTE_ON, NOTE_OFF)]
    assert [d for _, d in notes] == [bytes(e[["status", "data1", "data2"]].tolist()) for e in events]
    errors = np.array([t for t, _ in notes]) - events["sample"]
    jitter = 0.3e-3 * RATE
    assert errors.min() >= 0 and errors.max() <= jitter + 1
    ticks = np.array([t for t, d in backend.sent if d == bytes([CLOCK])])
    intended = tempo_map.tick_to_sample(np.arange(ticks.size))
    assert ticks.size >= 24 * 32 * 4
    tick_errors = ticks - np.rint(intended)
    assert tick_errors.min() >= 0 and tick_errors.max() <= jitter + 1
    # no drift: the last minute is as close to the map as the first
    assert abs(tick_errors[-200:].mean() - tick_errors[:200].mean()) < jitter / 4
    assert [d for _, d in backend.sent if d[0] >= 0xF0][0] == bytes([START])
    assert scheduler.stats()["note_error_ms_p99"] <= 0.3 + 1e3 / RATE


def test_tempo_change_moves_only_future_ticks():
    clock, backend, scheduler = make(jitter_ms=0.0)
    tempo_map = TempoMap.constant(RATE, 120.0, anchor_sample=RATE)
    scheduler.clock_start(tempo_map)
    with scheduler:
        clock.wait_until(3 * RATE)
        change_at = 4 * RATE
        scheduler.set_tempo_map(tempo_map.with_tempo(change_at, 180.0))
        clock.wait_until(6 * RATE)
    ticks = np.array([t for t, d in backend.sent if d == bytes([CLOCK])])
    before, after = ticks[ticks < change_at], ticks[ticks >= change_at]
    assert set(np.round(np.diff(before)).astype(int).tolist()) == {1000}
    assert set(np.round(np.diff(after[1:])).astype(int).tolist()) <= {666, 667}
    assert after[0] == change_at  # 4 s after sample 0 of the map is beat 6, a tick


def test_continue_from_a_position_sends_spp_then_continue_and_stop_ends_ticks():
    clock, backend, scheduler = make(jitter_ms=0.0)
    tempo_map = TempoMap.constant(RATE, 120.0, anchor_sample=0)
    scheduler.clock_start(tempo_map, tick=4 * 24 * 3 + 5)  # bar 3, 5 ticks in: next 16th is tick 294
    stop_at = 300 * 1000 + 400.5
    scheduler.clock_stop(stop_at)
    with scheduler:
        clock.wait_until(stop_at + RATE)
    data = [d for _, d in backend.sent]
    spp = 294 // 6
    assert data[0] == bytes([SONG_POSITION, spp & 0x7F, spp >> 7]) and data[1] == bytes([CONTINUE])
    assert data[2] == bytes([CLOCK]) and backend.sent[2][0] >= 294 * 1000
    assert data[-1] == bytes([STOP])
    assert all(t < stop_at for t, d in backend.sent if d == bytes([CLOCK]))
    assert scheduler.clock_tick == int(np.ceil(stop_at / 1000))


def test_stop_silences_every_sounding_note():
    clock, backend, scheduler = make(jitter_ms=0.0)
    tempo_map = TempoMap.constant(RATE, 120.0, anchor_sample=RATE)
    events = groove_events(random_groove(8, density=0.5), tempo_map, 0, note_length_ms=400)
    scheduler.submit(events)
    scheduler.start()
    clock.wait_until(2.3 * RATE)
    scheduler.stop()
    on = {}
    for _, d in backend.sent:
        if d[0] & 0xF0 == NOTE_ON:
            on[d[1]] = on.get(d[1], 0) + 1
        elif d[0] & 0xF0 == NOTE_OFF:
            on[d[1]] = on.get(d[1], 0) - 1
    assert any(v > 0 for v in on.values()), "the test should stop with notes sounding"
    offs = {m[1] for m in backend.now_sent if m[0] == NOTE_OFF | 9}
    assert {n for n, v in on.items() if v > 0} == offs
    assert [CONTROL_CHANGE | 9, ALL_NOTES_OFF, 0] in backend.now_sent
    assert not scheduler.sounding.any()


def test_exception_in_the_thread_is_recorded_and_notes_are_silenced():
    clock, backend, scheduler = make(jitter_ms=0.0, fail_after=30)
    tempo_map = TempoMap.constant(RATE, 120.0, anchor_sample=RATE)
    scheduler.submit(groove_events(random_groove(9, density=0.5), tempo_map, 0, note_length_ms=400))
    scheduler.start()
    deadline = time.monotonic() + 10
    while scheduler.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not scheduler.running
    assert isinstance(scheduler.error, OSError) and "port went away" in scheduler.warnings[-1]
    assert [CONTROL_CHANGE | 9, ALL_NOTES_OFF, 0] in backend.now_sent
    scheduler.close()


def test_cancel_keeps_the_note_off_of_a_sounding_note():
    clock, backend, scheduler = make(jitter_ms=0.0)
    tempo_map = TempoMap.constant(RATE, 120.0, anchor_sample=0)
    events = groove_events(random_groove(10, density=0.3), tempo_map, 0, note_length_ms=200)
    ons = events[(events["status"] & 0xF0) == NOTE_ON]
    cut = int(ons["sample"][len(ons) // 2]) + 10  # just after a note-on
    scheduler.submit(events)
    scheduler.cancel_from(cut)
    with scheduler:
        clock.wait_until(events["sample"].max() + RATE)
    sent = [d for _, d in backend.sent]
    assert all(t < cut for t, d in backend.sent if d[0] & 0xF0 == NOTE_ON)
    balance = {}
    for d in sent:
        step = 1 if d[0] & 0xF0 == NOTE_ON else -1
        balance[d[1]] = balance.get(d[1], 0) + step
    assert set(balance.values()) == {0}


def test_buffered_backends_get_events_a_lookahead_ahead():
    clock, backend, scheduler = make(timed=False, jitter_ms=0.2, lookahead_ms=40.0, interval_ms=5.0)
    tempo_map = TempoMap.constant(RATE, 120.0, anchor_sample=RATE)
    events = groove_events(random_groove(11), tempo_map, 0)
    scheduler.submit(events)
    with scheduler:
        clock.wait_until(events["sample"].max() + RATE)
    handed = np.array([(t, s) for t, s, _ in backend.scheduled])
    lead_ms = (handed[:, 1] - handed[:, 0]) * 1e3 / RATE
    assert lead_ms.min() > 40.0 - 5.0 - 0.2 - 0.1 and lead_ms.max() <= 40.0
    assert np.array_equal(handed[:, 1], events["sample"])


def test_submit_never_blocks_the_producer():
    clock, backend, scheduler = make()
    tempo_map = TempoMap.constant(RATE, 120.0)
    events = groove_events(random_groove(12), tempo_map, 0)
    done = threading.Event()
    with scheduler._lock:  # the scheduler is busy
        worker = threading.Thread(
            target=lambda: (scheduler.submit(events), scheduler.cancel_from(0), done.set())
        )
        worker.start()
        assert done.wait(2.0)
    worker.join()


def test_bad_arguments_are_refused():
    clock = SimClock()
    with pytest.raises(Exception, match="on_port_lost"):
        MidiScheduler(Recorder(clock), sample_rate_hz=RATE, clock=clock, state=False, on_port_lost="explode")
    with pytest.raises(Exception, match="EVENT_DTYPE"):
        MidiScheduler(Recorder(clock), sample_rate_hz=RATE, clock=clock, state=False).submit(np.zeros(3))
