"""Tap tempo: the median of the last tap intervals.

Defined results (each tested in ``tests/test_transport.py``):

- one tap (or the first tap after a pause): no tempo, ``state == "tapping"``,
  ``tap_count == 1``, message "tap again";
- a pause longer than ``reset_after_s`` (2 s: 30 BPM) before a tap starts
  a new series with that tap as its first; taps minutes apart therefore
  never give a tempo, each is a first tap;
- two taps closer than the interval of ``MAX_BPM`` (150 ms) count as one
  (a double trigger of the key): the second is ignored;
- a tap earlier than the previous one (a clock that went backwards) starts
  a new series;
- with two or more taps the tempo is 60 / median(last ``max_intervals``
  intervals), so one stray tap in a series does not move it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sjtui.transport.timebase import MAX_BPM, MIN_BPM


@dataclass(frozen=True)
class TapResult:
    bpm: float | None
    tap_count: int
    state: str  # "idle" | "tapping" | "tempo"
    message: str
    last_tap_sample: float | None


class TapTempo:
    def __init__(self, sample_rate_hz: float, reset_after_s: float = 2.0, max_intervals: int = 7):
        self.sample_rate_hz = float(sample_rate_hz)
        self.reset_after_s = float(reset_after_s)
        self.min_interval_s = 60.0 / MAX_BPM
        self._taps = np.zeros(max_intervals + 1, dtype=np.float64)
        self._count = 0  # taps in the current series (may exceed the buffer)
        self.result = TapResult(None, 0, "idle", "tap a key on the beat, at least twice", None)

    def reset(self) -> None:
        self._count = 0
        self.result = TapResult(None, 0, "idle", "tap a key on the beat, at least twice", None)

    def tap(self, sample: float) -> TapResult:
        """Register a tap at sample index ``sample``; returns the new :class:`TapResult`."""
        sample = float(sample)
        size = self._taps.shape[0]
        if self._count:
            last = self._taps[(self._count - 1) % size]
            gap_s = (sample - last) / self.sample_rate_hz
            if 0 <= gap_s < self.min_interval_s:
                return self.result  # a bounce: ignored
            if gap_s < 0 or gap_s > self.reset_after_s:
                self._count = 0
        self._taps[self._count % size] = sample
        self._count += 1
        n = min(self._count, size)
        if n < 2:
            self.result = TapResult(None, 1, "tapping", "tap again to set the tempo", sample)
            return self.result
        order = (np.arange(self._count - n, self._count)) % size
        intervals_s = np.diff(self._taps[order]) / self.sample_rate_hz
        bpm = float(np.clip(60.0 / float(np.median(intervals_s)), MIN_BPM, MAX_BPM))
        message = f"tapped {bpm:.1f} BPM from {self._count} taps"
        self.result = TapResult(bpm, self._count, "tempo", message, sample)
        return self.result
