"""Pure conversions between sample index, seconds, beats, bars, grid steps and MIDI ticks.

Time in sjtui is an absolute sample index of the audio stream (see
CONVENTIONS.md, "Time is an absolute sample index"). Everything musical is
derived here, in one place:

- seconds   = sample / sample_rate_hz
- beats     = quarter notes (``sjtui.meter``: 6/8 has 3 beats, 7/8 has 3.5)
- steps     = beats * STEPS_PER_BEAT (12 per quarter note)
- ticks     = beats * MIDI_CLOCK_PPQN (24 per quarter note)
- bars      = beats / beats_per_bar of the meter in force

A :class:`TempoMap` is a list of segments, each anchored at
``(start_sample, start_beat, start_bar)`` with a tempo and a meter. Inside a
segment beats grow linearly with samples; the map is continuous (the beat at
the start of a segment is the beat the previous segment reaches there), so
``sample -> beat`` and ``beat -> sample`` are exact inverses: an integer
sample index converted to beats and back rounds to the same integer (the
Hydrogen frame/tick round-trip check; see ``tests/test_timebase.py``).

Defined behaviour at the edges:

- samples (or beats) before the first anchor are extrapolated with the
  first segment's tempo (negative beats are legal: a latency-compensated
  onset just before the start lands in bar -1);
- tempo changes take effect at the exact sample given;
- meter changes take effect at the next bar line at or after the sample
  given (a bar never changes meter halfway);
- a change appended at a sample earlier than the last anchor discards the
  later segments (the map is a history plus the tempo now);
- a discontinuous jump in musical position (a MIDI Song Position Pointer,
  a Continue from elsewhere) is not a segment: it starts a new map with
  :meth:`TempoMap.relocated` and the owner bumps its ``epoch``.

All conversion methods accept scalars or numpy arrays of any shape and
return float64 of the same shape (numpy scalars for scalar input).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

from sjtui.constants import MIDI_CLOCK_PPQN, STEPS_PER_BEAT
from sjtui.errors import SjtuiError
from sjtui.meter import FOUR_FOUR, Meter, parse_meter

MIN_BPM = 20.0
MAX_BPM = 400.0

ArrayLike = Union[float, int, np.ndarray]

_BAR_EPS = 1e-9


class TransportError(SjtuiError, ValueError):
    """A tempo, meter, clock or timebase value that cannot be used."""


def check_bpm(bpm: float, what: str = "tempo") -> float:
    """Return ``bpm`` as float if ``MIN_BPM <= bpm <= MAX_BPM``, else raise :class:`TransportError`."""
    try:
        value = float(bpm)
    except (TypeError, ValueError):
        raise TransportError(f"{what} {bpm!r} is not a number: give beats per minute, e.g. 120") from None
    if not np.isfinite(value) or not MIN_BPM <= value <= MAX_BPM:
        raise TransportError(
            f"{what} {bpm!r} BPM is outside {MIN_BPM:g} to {MAX_BPM:g} BPM: give a tempo in that range"
        )
    return value


def check_sample_rate(sample_rate_hz: float) -> float:
    value = float(sample_rate_hz)
    if not np.isfinite(value) or value <= 0:
        raise TransportError(f"sample rate {sample_rate_hz!r} Hz must be a positive number, e.g. 48000")
    return value


# --- stateless conversions ---------------------------------------------------


def samples_to_seconds(samples: ArrayLike, sample_rate_hz: float) -> np.ndarray:
    return np.asarray(samples, dtype=np.float64) / float(sample_rate_hz)


def seconds_to_samples(seconds: ArrayLike, sample_rate_hz: float) -> np.ndarray:
    return np.asarray(seconds, dtype=np.float64) * float(sample_rate_hz)


def beats_to_steps(beats: ArrayLike) -> np.ndarray:
    return np.asarray(beats, dtype=np.float64) * STEPS_PER_BEAT


def steps_to_beats(steps: ArrayLike) -> np.ndarray:
    return np.asarray(steps, dtype=np.float64) / STEPS_PER_BEAT


def beats_to_ticks(beats: ArrayLike) -> np.ndarray:
    return np.asarray(beats, dtype=np.float64) * MIDI_CLOCK_PPQN


def ticks_to_beats(ticks: ArrayLike) -> np.ndarray:
    return np.asarray(ticks, dtype=np.float64) / MIDI_CLOCK_PPQN


def samples_per_beat(bpm: float, sample_rate_hz: float) -> float:
    return 60.0 * float(sample_rate_hz) / float(bpm)


# --- the tempo map -------------------------------------------------------------


@dataclass(frozen=True)
class TempoSegment:
    """One stretch of constant tempo and meter, anchored at a sample."""

    start_sample: float
    start_beat: float
    start_bar: float
    bpm: float
    meter: Meter


@dataclass(frozen=True)
class Position:
    """A musical position (scalar form of :meth:`TempoMap.position`).

    ``bar`` is the bar index (0 = the first bar of the map, negative before
    it); ``beat_in_bar`` in quarter notes from the bar line; ``step_in_bar``
    in grid steps (0 .. steps_per_bar); ``tick`` the absolute MIDI clock tick.
    """

    sample: float
    beat: float
    bar: int
    beat_in_bar: float
    step_in_bar: float
    tick: float
    bpm: float
    meter: Meter


class TempoMap:
    """Continuous piecewise-linear map between samples and beats (immutable).

    Build with :meth:`constant`, extend with :meth:`with_tempo` /
    :meth:`with_meter`, restart with :meth:`relocated`. ``max_segments``
    bounds memory for long runs with a tempo that changes often (a followed
    MIDI clock): the oldest segments are dropped and samples before the
    first kept anchor are extrapolated with it.
    """

    __slots__ = (
        "sample_rate_hz",
        "segments",
        "max_segments",
        "_start_sample",
        "_start_beat",
        "_start_bar",
        "_samples_per_beat",
        "_beats_per_bar",
    )

    def __init__(self, sample_rate_hz: float, segments: tuple[TempoSegment, ...], max_segments: int = 512):
        self.sample_rate_hz = check_sample_rate(sample_rate_hz)
        if not segments:
            raise TransportError("a tempo map needs at least one segment")
        segments = tuple(segments)[-max_segments:]
        for segment in segments:
            check_bpm(segment.bpm)
        starts = [s.start_sample for s in segments]
        if any(b <= a for a, b in zip(starts, starts[1:])):
            raise TransportError(f"tempo map anchors must be in increasing sample order, got {starts}")
        self.segments = segments
        self.max_segments = int(max_segments)
        self._start_sample = np.array(starts, dtype=np.float64)
        self._start_beat = np.array([s.start_beat for s in segments], dtype=np.float64)
        self._start_bar = np.array([s.start_bar for s in segments], dtype=np.float64)
        self._samples_per_beat = np.array(
            [samples_per_beat(s.bpm, self.sample_rate_hz) for s in segments], dtype=np.float64
        )
        self._beats_per_bar = np.array([float(s.meter.beats_per_bar) for s in segments], dtype=np.float64)

    def _appended(self, n_kept: int, segment: TempoSegment) -> "TempoMap":
        """This map's first ``n_kept`` segments plus ``segment`` (already checked), in O(n) numpy copies."""
        out = object.__new__(TempoMap)
        out.sample_rate_hz = self.sample_rate_hz
        out.max_segments = self.max_segments
        drop = max(n_kept + 1 - self.max_segments, 0)
        out.segments = self.segments[drop:n_kept] + (segment,)

        def extend(array: np.ndarray, value: float) -> np.ndarray:
            return np.concatenate([array[drop:n_kept], [value]])

        out._start_sample = extend(self._start_sample, segment.start_sample)
        out._start_beat = extend(self._start_beat, segment.start_beat)
        out._start_bar = extend(self._start_bar, segment.start_bar)
        out._samples_per_beat = extend(
            self._samples_per_beat, samples_per_beat(segment.bpm, self.sample_rate_hz)
        )
        out._beats_per_bar = extend(self._beats_per_bar, float(segment.meter.beats_per_bar))
        return out

    # -- construction ----------------------------------------------------------

    @classmethod
    def constant(
        cls,
        sample_rate_hz: float,
        bpm: float = 120.0,
        meter: Meter | str = FOUR_FOUR,
        *,
        anchor_sample: float = 0.0,
        anchor_beat: float = 0.0,
        anchor_bar: float | None = None,
        max_segments: int = 512,
    ) -> "TempoMap":
        """One tempo and meter; ``anchor_sample`` is at ``anchor_beat`` (bar = beat / beats_per_bar)."""
        meter = parse_meter(meter)
        if anchor_bar is None:
            anchor_bar = float(anchor_beat) / float(meter.beats_per_bar)
        segment = TempoSegment(
            float(anchor_sample), float(anchor_beat), float(anchor_bar), check_bpm(bpm), meter
        )
        return cls(sample_rate_hz, (segment,), max_segments)

    def relocated(
        self,
        at_sample: float,
        beat: float,
        *,
        bar: float | None = None,
        bpm: float | None = None,
        meter: Meter | str | None = None,
    ) -> "TempoMap":
        """A fresh one-segment map where ``at_sample`` is at ``beat`` (a locate; history is dropped)."""
        last = self.segments[-1]
        return TempoMap.constant(
            self.sample_rate_hz,
            last.bpm if bpm is None else bpm,
            last.meter if meter is None else meter,
            anchor_sample=at_sample,
            anchor_beat=beat,
            anchor_bar=bar,
            max_segments=self.max_segments,
        )

    def _n_before(self, at_sample: float) -> int:
        return int(np.searchsorted(self._start_sample, at_sample, side="left"))

    def with_tempo(self, at_sample: float, bpm: float) -> "TempoMap":
        """The tempo becomes ``bpm`` at ``at_sample``; the musical position stays continuous."""
        bpm = check_bpm(bpm)
        at_sample = float(at_sample)
        if not np.isfinite(at_sample):
            raise TransportError(f"tempo change at sample {at_sample!r}: give a finite sample index")
        beat = float(self.sample_to_beat(at_sample))
        bar = float(self.beat_to_bar(beat))
        meter = self.meter_at(at_sample)
        n_kept = self._n_before(at_sample)
        if n_kept and self.segments[n_kept - 1].bpm == bpm and self.segments[n_kept - 1].meter == meter:
            if n_kept == len(self.segments):
                return self
            return TempoMap(self.sample_rate_hz, self.segments[:n_kept], self.max_segments)
        return self._appended(n_kept, TempoSegment(at_sample, beat, bar, bpm, meter))

    def with_meter(self, at_sample: float, meter: Meter | str) -> "TempoMap":
        """The meter becomes ``meter`` from the first bar line at or after ``at_sample``."""
        meter = parse_meter(meter)
        bar_now = float(self.sample_to_bar(at_sample))
        nearest = round(bar_now)
        bar_line = float(nearest) if abs(bar_now - nearest) < _BAR_EPS else float(np.ceil(bar_now))
        beat = float(self.bar_to_beat(bar_line))
        sample = float(self.beat_to_sample(beat))
        bpm = self.bpm_at(sample)
        return self._appended(self._n_before(sample), TempoSegment(sample, beat, bar_line, bpm, meter))

    # -- lookups -----------------------------------------------------------------

    # searchsorted(side="right") - 1 lies in -1 .. n-1: only a time before the first segment needs
    # clamping (np.maximum: a ufunc call; np.clip's wrapper cost more than the search at a decision)
    def _index_by_sample(self, samples: np.ndarray) -> np.ndarray:
        return np.maximum(np.searchsorted(self._start_sample, samples, side="right") - 1, 0)

    def _index_by_beat(self, beats: np.ndarray) -> np.ndarray:
        return np.maximum(np.searchsorted(self._start_beat, beats, side="right") - 1, 0)

    def _index_by_bar(self, bars: np.ndarray) -> np.ndarray:
        return np.maximum(np.searchsorted(self._start_bar, bars, side="right") - 1, 0)

    def segment_at(self, sample: float) -> TempoSegment:
        return self.segments[int(self._index_by_sample(np.float64(sample)))]

    def bpm_at(self, sample: float) -> float:
        return self.segment_at(sample).bpm

    def meter_at(self, sample: float) -> Meter:
        return self.segment_at(sample).meter

    @property
    def bpm(self) -> float:
        """The tempo of the last (current) segment."""
        return self.segments[-1].bpm

    @property
    def meter(self) -> Meter:
        return self.segments[-1].meter

    # -- conversions (vectorised) ----------------------------------------------

    def sample_to_beat(self, samples: ArrayLike) -> np.ndarray:
        """Beats (quarter notes, float64) at sample indices of any shape."""
        samples = np.asarray(samples, dtype=np.float64)
        i = self._index_by_sample(samples)
        return self._start_beat[i] + (samples - self._start_sample[i]) / self._samples_per_beat[i]

    def beat_to_sample(self, beats: ArrayLike) -> np.ndarray:
        """Sample indices (float64, not rounded) of beats of any shape."""
        beats = np.asarray(beats, dtype=np.float64)
        i = self._index_by_beat(beats)
        return self._start_sample[i] + (beats - self._start_beat[i]) * self._samples_per_beat[i]

    def beat_to_bar(self, beats: ArrayLike) -> np.ndarray:
        """Bars (float: integer part = bar index, fraction = phase in the bar)."""
        beats = np.asarray(beats, dtype=np.float64)
        i = self._index_by_beat(beats)
        return self._start_bar[i] + (beats - self._start_beat[i]) / self._beats_per_bar[i]

    def bar_to_beat(self, bars: ArrayLike) -> np.ndarray:
        bars = np.asarray(bars, dtype=np.float64)
        i = self._index_by_bar(bars)
        return self._start_beat[i] + (bars - self._start_bar[i]) * self._beats_per_bar[i]

    def sample_to_bar(self, samples: ArrayLike) -> np.ndarray:
        return self.beat_to_bar(self.sample_to_beat(samples))

    def bar_to_sample(self, bars: ArrayLike) -> np.ndarray:
        return self.beat_to_sample(self.bar_to_beat(bars))

    def sample_to_seconds(self, samples: ArrayLike) -> np.ndarray:
        return samples_to_seconds(samples, self.sample_rate_hz)

    def seconds_to_sample(self, seconds: ArrayLike) -> np.ndarray:
        return seconds_to_samples(seconds, self.sample_rate_hz)

    def sample_to_step(self, samples: ArrayLike) -> np.ndarray:
        """Absolute grid step (float; 12 per beat) at sample indices."""
        return beats_to_steps(self.sample_to_beat(samples))

    def step_to_sample(self, steps: ArrayLike) -> np.ndarray:
        return self.beat_to_sample(steps_to_beats(steps))

    def sample_to_tick(self, samples: ArrayLike) -> np.ndarray:
        """Absolute MIDI clock tick (float; 24 per beat) at sample indices."""
        return beats_to_ticks(self.sample_to_beat(samples))

    def tick_to_sample(self, ticks: ArrayLike) -> np.ndarray:
        return self.beat_to_sample(ticks_to_beats(ticks))

    def steps_per_bar_at(self, samples: ArrayLike) -> np.ndarray:
        """Grid steps per bar of the meter in force at each sample (float64)."""
        samples = np.asarray(samples, dtype=np.float64)
        return self._beats_per_bar[self._index_by_sample(samples)] * STEPS_PER_BEAT

    def grid(self, samples: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """(bar index int64, step in bar float64 in [0, steps_per_bar)) at sample indices."""
        bars = self.sample_to_bar(samples)
        bar_index = np.floor(bars + _BAR_EPS)
        step_in_bar = np.maximum(bars - bar_index, 0.0) * self.steps_per_bar_at(samples)
        return bar_index.astype(np.int64), step_in_bar

    def position(self, sample: float) -> Position:
        """The musical position at one sample (see :class:`Position`)."""
        beat = float(self.sample_to_beat(sample))
        bar_index, step_in_bar = self.grid(sample)
        segment = self.segment_at(sample)
        return Position(
            sample=float(sample),
            beat=beat,
            bar=int(bar_index),
            beat_in_bar=float(step_in_bar) / STEPS_PER_BEAT,
            step_in_bar=float(step_in_bar),
            tick=beat * MIDI_CLOCK_PPQN,
            bpm=segment.bpm,
            meter=segment.meter,
        )

    def __repr__(self) -> str:
        parts = ", ".join(
            f"@{s.start_sample:g}: beat {s.start_beat:g} bar {s.start_bar:g} {s.bpm:g} BPM {s.meter}"
            for s in self.segments
        )
        return f"TempoMap({self.sample_rate_hz:g} Hz; {parts})"


# --- onsets on the grid ----------------------------------------------------------

ONSET_GRID_DTYPE = np.dtype(
    [("bar", np.int64), ("step", np.int64), ("offset", np.float32), ("beat", np.float64)]
)
"""Where onsets fall: bar index, nearest step in that bar (0 .. steps_per_bar - 1),
micro-offset from that step in fractions of a step (-0.5 .. 0.5, positive =
late), and the absolute beat."""


def latency_samples(latency_ms: float, sample_rate_hz: float) -> float:
    return float(latency_ms) * 1e-3 * float(sample_rate_hz)


def played_sample(onset_samples: ArrayLike, latency_ms: float, sample_rate_hz: float) -> np.ndarray:
    """Sample index at which an onset was played: capture index minus the input latency.

    ``onset_samples`` are indices of the captured stream (the ring counts
    samples as the ADC delivers them, so an index *is* capture time);
    ``latency_ms`` is the configurable offset between playing and capture that
    the ADC time does not cover (amp modeller, wireless, interface latency
    not reported by the driver). Float64, same shape.
    """
    return np.asarray(onset_samples, dtype=np.float64) - latency_samples(latency_ms, sample_rate_hz)


def onsets_to_grid(onset_samples: ArrayLike, tempo_map: TempoMap, latency_ms: float = 0.0) -> np.ndarray:
    """Place onsets on the grid at the time they were played.

    ``onset_samples``: (n,) capture sample indices. Returns an (n,) array of
    :data:`ONSET_GRID_DTYPE`. Rounding to the nearest step carries into the
    next bar when an onset is just before a bar line (step 0 of the next bar,
    negative offset).
    """
    samples = played_sample(np.ravel(onset_samples), latency_ms, tempo_map.sample_rate_hz)
    out = np.empty(samples.shape[0], dtype=ONSET_GRID_DTYPE)
    if samples.shape[0] == 0:
        return out
    beats = tempo_map.sample_to_beat(samples)
    bars = tempo_map.beat_to_bar(beats)
    steps_per_bar = tempo_map.steps_per_bar_at(samples)
    bar_index = np.floor(bars)
    step_float = (bars - bar_index) * steps_per_bar
    step = np.rint(step_float)
    offset = step_float - step
    wrap = step >= steps_per_bar
    bar_index[wrap] += 1
    step[wrap] = 0
    out["bar"] = bar_index.astype(np.int64)
    out["step"] = step.astype(np.int64)
    out["offset"] = offset
    out["beat"] = beats
    return out


# --- the audio clock ---------------------------------------------------------------

_SLOPE_MIN_ANCHORS = 8  # fewer, close together, and callback jitter tilts the line by percent


class SampleClock:
    """Maps a wall/stream clock (seconds) to the audio sample index and back.

    The audio callback records anchors ``(sample_index, adc_time_s)`` (the
    first sample of a block and ``time.inputBufferAdcTime``, or a JACK frame
    and its ``frames_to_time``); events timed on the same clock (MIDI clock
    ticks, key taps) are mapped to samples with a least-squares line through
    the last ``max_anchors`` anchors, which averages away callback jitter.
    With one anchor the nominal sample rate is used, and the slope is fitted
    once ``_SLOPE_MIN_ANCHORS`` anchors are in. Pure: no clock is read here;
    anchors and times are given by the caller (injectable in tests).

    An anchor more than ``step_s`` off the line is held out of the fit: one
    alone is a late callback and is dropped. Two in a row that agree within a
    quarter of it (measured after a stall: 0.07 ms) mean the stream's clock
    stepped against the time clock (the stream stalled, as a
    starved JACK dummy server does, or lost blocks it did not count): the fit
    starts again from them at once, and ``steps`` counts it. A least-squares
    line through both sides of a step would be off by part of it for a whole
    window of anchors.
    """

    def __init__(self, sample_rate_hz: float, max_anchors: int = 64, step_s: float = 0.004):
        self.sample_rate_hz = check_sample_rate(sample_rate_hz)
        self._samples = np.zeros(max_anchors, dtype=np.float64)
        self._times = np.zeros(max_anchors, dtype=np.float64)
        self._step_samples = float(step_s) * self.sample_rate_hz
        self.steps = 0
        self.reset()

    def reset(self) -> None:
        self._count = 0
        self._last_anchor_sample = None
        self._slope = self.sample_rate_hz  # samples per second
        self._offset_sample = 0.0
        self._offset_time = 0.0
        self._off_line: list[tuple[float, float, float]] = []  # (sample, time, residual) held out

    @property
    def n_anchors(self) -> int:
        return min(self._count, self._samples.shape[0])

    def add_anchor(self, sample_index: float, time_s: float) -> None:
        """Record that ``sample_index`` was captured at ``time_s``; refits the line."""
        if self._count >= 2:
            residual = float(sample_index) - float(self.time_to_sample(time_s))
            if abs(residual) > self._step_samples:
                held = self._off_line
                if held and abs(residual - held[-1][2]) > 0.25 * self._step_samples:
                    held.clear()  # off the line differently: only the newest can start a step
                held.append((float(sample_index), float(time_s), residual))
                if len(held) < 2:
                    return
                self.steps += 1
                self._count = 0
                for sample, time_held, _ in held:
                    self._store(sample, time_held)
                held.clear()
                self._refit()
                return
            self._off_line.clear()
        self._store(sample_index, time_s)
        self._refit()

    def _store(self, sample_index: float, time_s: float) -> None:
        slot = self._count % self._samples.shape[0]
        self._samples[slot] = sample_index
        self._times[slot] = time_s
        self._count += 1

    def _refit(self) -> None:
        n = self.n_anchors
        s = self._samples[:n]
        t = self._times[:n]
        t_mean = float(t.mean())
        s_mean = float(s.mean())
        self._offset_time, self._offset_sample = t_mean, s_mean
        if n >= _SLOPE_MIN_ANCHORS:
            dt = t - t_mean
            denom = float(dt @ dt)
            if denom > 0:
                slope = float(dt @ (s - s_mean)) / denom
                # a fit far from the nominal rate means bad anchors: keep the nominal rate
                if 0.9 * self.sample_rate_hz < slope < 1.1 * self.sample_rate_hz:
                    self._slope = slope

    def add_anchors(self, anchors, time_field: str = "adc_time_s") -> int:
        """Add the ring's anchors (``sjtui.audio.ring.Anchor``) newer than the last one added.

        ``time_field`` ``"adc_time_s"`` (default) is the capture time of the
        anchor's sample in the stream clock, which PortAudio on ALSA and JACK
        takes from the monotonic clock, the clock MIDI receive times use;
        ``"monotonic_s"`` (block arrival) is later by a block and the driver
        latency. Returns how many were added.
        """
        added = 0
        last = self._last_anchor_sample
        for anchor in anchors:
            if last is not None and anchor.sample_index <= last:
                continue
            self.add_anchor(anchor.sample_index, getattr(anchor, time_field))
            last = anchor.sample_index
            added += 1
        self._last_anchor_sample = last
        return added

    def time_to_sample(self, time_s: ArrayLike) -> np.ndarray:
        """Sample index (float64) for clock times in seconds; needs one anchor."""
        if self._count == 0:
            raise TransportError("the sample clock has no anchor yet: start the audio input first")
        return self._offset_sample + (np.asarray(time_s, dtype=np.float64) - self._offset_time) * self._slope

    def sample_to_time(self, samples: ArrayLike) -> np.ndarray:
        if self._count == 0:
            raise TransportError("the sample clock has no anchor yet: start the audio input first")
        return self._offset_time + (np.asarray(samples, dtype=np.float64) - self._offset_sample) / self._slope
