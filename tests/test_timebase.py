"""Round trips and known values of the timebase (Hydrogen's frame/tick check is the model)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sjtui.constants import MIDI_CLOCK_PPQN, STEPS_PER_BEAT
from sjtui.errors import MeterError, SjtuiError
from sjtui.meter import Meter, parse_meter
from sjtui.transport.timebase import (
    MAX_BPM,
    MIN_BPM,
    SampleClock,
    TempoMap,
    TransportError,
    onsets_to_grid,
)

METERS = ["4/4", "3/4", "6/8", "5/4", "7/8", "2/2", "12/8"]
RATES = [44100, 48000]

bpms = st.floats(min_value=MIN_BPM, max_value=MAX_BPM, allow_nan=False)
rates = st.sampled_from(RATES)
meters = st.sampled_from(METERS)
changes = st.lists(
    st.tuples(st.integers(1, 2_000_000), bpms, st.one_of(st.none(), meters)), min_size=0, max_size=6
)


def _build(rate, bpm, meter, change_list):
    tempo_map = TempoMap.constant(rate, bpm, meter)
    at = 0
    for delta, new_bpm, new_meter in change_list:
        at += delta
        tempo_map = tempo_map.with_tempo(at, new_bpm)
        if new_meter is not None:
            tempo_map = tempo_map.with_meter(at, new_meter)
            at = int(np.ceil(tempo_map.segments[-1].start_sample))
    return tempo_map


@settings(max_examples=200, deadline=None)
@given(rates, bpms, meters, changes, st.lists(st.integers(-100_000, 40_000_000), min_size=1, max_size=50))
def test_sample_beat_sample_is_exact(rate, bpm, meter, change_list, samples):
    """Every integer sample index -> beat -> sample comes back to the same integer."""
    tempo_map = _build(rate, bpm, meter, change_list)
    samples = np.array(samples, dtype=np.int64)
    back = tempo_map.beat_to_sample(tempo_map.sample_to_beat(samples))
    np.testing.assert_array_equal(np.rint(back).astype(np.int64), samples)
    for unit_to, unit_from in (
        (tempo_map.sample_to_tick, tempo_map.tick_to_sample),
        (tempo_map.sample_to_step, tempo_map.step_to_sample),
        (tempo_map.sample_to_bar, tempo_map.bar_to_sample),
    ):
        np.testing.assert_array_equal(np.rint(unit_from(unit_to(samples))).astype(np.int64), samples)


@settings(max_examples=200, deadline=None)
@given(rates, bpms, meters, changes, st.lists(st.integers(-1000, 200_000), min_size=1, max_size=50))
def test_tick_sample_tick_is_exact(rate, bpm, meter, change_list, ticks):
    """Every integer MIDI tick -> sample (unrounded) -> tick comes back within float precision."""
    tempo_map = _build(rate, bpm, meter, change_list)
    ticks = np.array(ticks, dtype=np.float64)
    back = tempo_map.sample_to_tick(tempo_map.tick_to_sample(ticks))
    np.testing.assert_allclose(back, ticks, rtol=0, atol=1e-6)


@settings(max_examples=100, deadline=None)
@given(rates, bpms, meters, changes)
def test_map_is_continuous_and_monotonic(rate, bpm, meter, change_list):
    tempo_map = _build(rate, bpm, meter, change_list)
    for segment in tempo_map.segments[1:]:
        s = segment.start_sample
        before = tempo_map.sample_to_beat(np.nextafter(s, -np.inf))
        assert abs(float(before) - segment.start_beat) < 1e-6
        assert tempo_map.sample_to_beat(s) == pytest.approx(segment.start_beat)
    grid = np.linspace(-1000, 50_000_000, 10_001)
    beats = tempo_map.sample_to_beat(grid)
    assert np.all(np.diff(beats) > 0)
    assert np.all(np.diff(tempo_map.beat_to_bar(beats)) > 0)


@settings(max_examples=100, deadline=None)
@given(rates, bpms, changes)
def test_meter_changes_fall_on_bar_lines(rate, bpm, change_list):
    tempo_map = _build(rate, bpm, "4/4", change_list)
    for a, b in zip(tempo_map.segments, tempo_map.segments[1:]):
        if a.meter != b.meter:
            assert b.start_bar == pytest.approx(round(b.start_bar), abs=1e-9)


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize(
    "meter, beats_per_bar, steps_per_bar",
    [("4/4", 4, 48), ("3/4", 3, 36), ("6/8", 3, 36), ("5/4", 5, 60), ("7/8", 3.5, 42)],
)
def test_known_values(rate, meter, beats_per_bar, steps_per_bar):
    tempo_map = TempoMap.constant(rate, 120.0, meter)
    half_second = rate // 2  # one beat at 120 BPM
    assert tempo_map.sample_to_beat(half_second) == pytest.approx(1.0)
    assert tempo_map.sample_to_seconds(half_second) == pytest.approx(0.5)
    assert tempo_map.sample_to_tick(half_second) == pytest.approx(MIDI_CLOCK_PPQN)
    assert tempo_map.sample_to_step(half_second) == pytest.approx(STEPS_PER_BEAT)
    bar_samples = beats_per_bar * half_second
    assert tempo_map.sample_to_bar(bar_samples) == pytest.approx(1.0)
    bar, step = tempo_map.grid(bar_samples * 2 + half_second)
    assert (int(bar), float(step)) == (2, pytest.approx(12.0))
    assert tempo_map.steps_per_bar_at(0) == steps_per_bar == parse_meter(meter).steps_per_bar
    position = tempo_map.position(bar_samples * 3 + half_second / 4)
    assert position.bar == 3 and position.beat_in_bar == pytest.approx(0.25)
    assert position.step_in_bar == pytest.approx(3.0)


def test_tempo_change_mid_bar():
    """120 BPM for 1.5 beats, then 60 BPM: beat 2 is 0.5 s + 0.5 beat at 1 s/beat later."""
    rate = 48000
    tempo_map = TempoMap.constant(rate, 120).with_tempo(36000, 60)  # 0.75 s = 1.5 beats
    assert tempo_map.sample_to_beat(36000) == pytest.approx(1.5)
    assert tempo_map.beat_to_sample(2.0) == pytest.approx(36000 + 24000)
    assert tempo_map.bpm_at(35999) == 120 and tempo_map.bpm_at(36000) == 60
    assert tempo_map.meter == Meter(4, 4)


def test_meter_change_waits_for_the_bar_line():
    rate = 48000
    tempo_map = TempoMap.constant(rate, 120, "4/4").with_meter(rate // 2, "7/8")  # asked at beat 1
    change = tempo_map.segments[-1]
    assert change.start_bar == 1.0 and change.start_beat == 4.0 and change.meter == Meter(7, 8)
    assert tempo_map.meter_at(rate) == Meter(4, 4)
    assert tempo_map.sample_to_bar(tempo_map.beat_to_sample(4.0 + 3.5 * 2)) == pytest.approx(3.0)
    # asked exactly on a bar line: takes effect there
    again = TempoMap.constant(rate, 120, "4/4").with_meter(4 * rate // 2, "3/4")
    assert again.segments[-1].start_bar == 1.0


def test_later_change_truncates_history_after_it():
    tempo_map = TempoMap.constant(48000, 100).with_tempo(48000, 150).with_tempo(96000, 90)
    rewound = tempo_map.with_tempo(24000, 200)
    assert [s.bpm for s in rewound.segments] == [100, 200]


def test_relocated_starts_fresh_map():
    tempo_map = TempoMap.constant(48000, 100).with_tempo(48000, 150)
    moved = tempo_map.relocated(96000, beat=32.0)
    assert len(moved.segments) == 1 and moved.bpm == 150
    assert moved.sample_to_beat(96000) == 32.0 and moved.sample_to_bar(96000) == 8.0


def test_vectorised_shapes():
    tempo_map = TempoMap.constant(44100, 133, "6/8").with_tempo(100_000, 90)
    samples = np.arange(0, 7 * 140_000, 7, dtype=np.int64).reshape(-1, 7)
    beats = tempo_map.sample_to_beat(samples)
    assert beats.shape == samples.shape and beats.dtype == np.float64
    np.testing.assert_array_equal(np.rint(tempo_map.beat_to_sample(beats)).astype(np.int64), samples)


def test_onsets_to_grid_with_latency():
    rate = 48000
    tempo_map = TempoMap.constant(rate, 120, "4/4")
    step_samples = rate / 2 / STEPS_PER_BEAT  # 2000 samples
    latency_ms = 10.0  # 480 samples
    played = np.array([0, 3, 6, 47, 48 + 12, 48 * 3 + 45], dtype=np.float64) * step_samples
    captured = played + 480 + np.array([0, 100, -100, 0, 0, 300])
    grid = onsets_to_grid(captured, tempo_map, latency_ms=latency_ms)
    assert grid["bar"].tolist() == [0, 0, 0, 0, 1, 3]
    assert grid["step"].tolist() == [0, 3, 6, 47, 12, 45]
    np.testing.assert_allclose(grid["offset"], [0, 0.05, -0.05, 0, 0, 0.15], atol=1e-6)
    # just before a bar line rounds into step 0 of the next bar, offset negative
    late = onsets_to_grid([48 * step_samples - 200 + 480], tempo_map, latency_ms=latency_ms)
    assert (late["bar"][0], late["step"][0]) == (1, 0) and late["offset"][0] == pytest.approx(-0.1)
    # without the latency offset everything is late by 480 samples = 0.24 step
    raw = onsets_to_grid(captured[:1], tempo_map)
    assert raw["offset"][0] == pytest.approx(0.24)
    # an onset before the map start (latency pushes it back) lands in bar -1
    early = onsets_to_grid([-2 * step_samples + 480], tempo_map, latency_ms=latency_ms)
    assert (early["bar"][0], early["step"][0]) == (-1, 46)
    nearly = onsets_to_grid([100], tempo_map, latency_ms=latency_ms)  # 0.19 step early: bar 0, step 0
    assert (nearly["bar"][0], nearly["step"][0]) == (0, 0) and nearly["offset"][0] == pytest.approx(-0.19)
    assert onsets_to_grid(np.array([], dtype=np.int64), tempo_map).shape == (0,)


def test_bad_values_raise_clear_errors():
    with pytest.raises(TransportError, match="outside 20 to 400 BPM"):
        TempoMap.constant(48000, 1000)
    with pytest.raises(TransportError, match="not a number"):
        TempoMap.constant(48000, "fast")
    with pytest.raises(TransportError, match="sample rate"):
        TempoMap.constant(0, 120)
    with pytest.raises(MeterError, match="does not parse"):
        TempoMap.constant(48000, 120, "four/four")
    with pytest.raises(MeterError):
        TempoMap.constant(48000, 120).with_meter(0, "4/3")
    assert issubclass(TransportError, SjtuiError)


def test_sample_clock_maps_times_with_jitter():
    rng = np.random.default_rng(1)
    rate = 48000
    clock = SampleClock(rate)
    with pytest.raises(TransportError, match="no anchor"):
        clock.time_to_sample(0.0)
    true_rate = rate * (1 + 50e-6)  # a 50 ppm fast converter
    for block in range(200):
        sample = block * 256
        clock.add_anchor(sample, 1000.0 + sample / true_rate + rng.uniform(-2e-4, 2e-4))
    t = 1000.0 + 60_000 / true_rate
    assert abs(float(clock.time_to_sample(t)) - 60_000) < 3.0
    assert float(clock.sample_to_time(clock.time_to_sample(t))) == pytest.approx(t)


def test_sample_clock_relearns_a_stalled_stream_at_once_and_ignores_one_late_callback():
    # measured on the JACK dummy server: SIGSTOP jackd for 30 ms and its frames fall 23.6 ms behind
    # the wall clock for good; the first cycle after runs 28.8 ms late (it was due in the stall)
    rng = np.random.default_rng(3)
    rate = 48000
    clock = SampleClock(rate)
    step_s = 0.0236
    for block in range(100):
        clock.add_anchor(block * 256, 10.0 + block * 256 / rate + rng.uniform(-1e-4, 1e-4))
    late_one = 100 * 256
    before = float(clock.time_to_sample(12.0))
    clock.add_anchor(late_one, 10.0 + late_one / rate + 0.010)  # one callback 10 ms late
    assert abs(float(clock.time_to_sample(12.0)) - before) < 0.5  # not a sample moved
    clock.add_anchor(101 * 256, 10.0 + 101 * 256 / rate)
    clock.add_anchor(102 * 256, 10.0 + 102 * 256 / rate + step_s + 0.0052)  # the catch-up cycle
    for block in (103, 104):
        clock.add_anchor(block * 256, 10.0 + block * 256 / rate + step_s + rng.uniform(-1e-4, 1e-4))
    assert clock.steps == 1
    # two cycles after the stall, a time maps to the stream's sample within 0.5 ms (a line through
    # both sides of the step was 16.9 ms off here, and took a window of anchors to come back)
    t = 10.0 + 110 * 256 / rate + step_s
    assert abs(float(clock.time_to_sample(t)) - 110 * 256) < 0.0005 * rate
    assert clock._slope == pytest.approx(rate, rel=1e-3)  # the slope is kept through the restart


def test_max_segments_drops_the_oldest_and_stays_consistent():
    tempo_map = TempoMap.constant(48000, 120, max_segments=8)
    full = TempoMap.constant(48000, 120, max_segments=10_000)
    for k in range(1, 30):
        tempo_map = tempo_map.with_tempo(k * 10_000, 100 + k)
        full = full.with_tempo(k * 10_000, 100 + k)
    assert len(tempo_map.segments) == 8 and tempo_map.segments[0].start_sample == 22 * 10_000
    rebuilt = TempoMap(48000, tempo_map.segments, 8)
    samples = np.arange(220_000, 400_000, 777)
    np.testing.assert_array_equal(tempo_map.sample_to_beat(samples), rebuilt.sample_to_beat(samples))
    np.testing.assert_allclose(tempo_map.sample_to_beat(samples), full.sample_to_beat(samples), rtol=1e-12)
    with pytest.raises(TransportError, match="finite"):
        tempo_map.with_tempo(float("nan"), 120)


def test_sample_clock_takes_the_ring_anchors():
    from sjtui.audio.ring import RingBuffer

    ring = RingBuffer(48000, max_write_samples=256)
    clock = SampleClock(48000)
    for block in range(40):
        ring.write(np.zeros(256, np.float32))
        ring.record_anchor(block * 256, 500.0 + block * 256 / 48000, monotonic_s=500.01 + block * 256 / 48000)
    assert clock.add_anchors(ring.anchors()) == 40
    assert clock.add_anchors(ring.anchors()) == 0  # nothing new
    assert float(clock.time_to_sample(500.0 + 1.0)) == pytest.approx(48000, abs=1e-6)
    late = SampleClock(48000)
    late.add_anchors(ring.anchors(), time_field="monotonic_s")
    assert float(late.time_to_sample(500.0 + 1.0)) == pytest.approx(48000 - 480, abs=1e-6)
