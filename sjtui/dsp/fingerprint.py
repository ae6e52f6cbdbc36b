"""The guitar fingerprint: the last 4 bars of playing on the beat grid.

For a window of ``BARS_PER_WINDOW`` bars the fingerprint holds, on a grid of
bands (3) x bars (4) x steps per bar (beats per bar x 12):

- ``energy``: band energy, relative to the loudest step of the window,
  mapped from -``ENERGY_RANGE_DB``..0 dB to 0..1 (gain cancels out);
- ``novelty``: the strongest spectral flux within each step, divided by the
  window's strongest flux over all bands (gain and frame rate cancel out);
- ``onsets``: the onset events (band, bar, step, strength, offset), with the
  strength relative to the window's strongest onset and the offset of the
  onset from its step in fractions of a step (-0.5 .. 0.5).

Onsets carry the alignment with a groove's kick and snare (see
MODEL-NOTES: sparse onset events, not dense envelopes, are what separates
matching drums), so they are kept as events with their exact step.

There is one implementation: :func:`compute_fingerprint` is a pure function
of analysis frames and a grid. The offline path (:func:`fingerprints_of`)
and the live path (:class:`FingerprintAccumulator`, which keeps the last
frames in preallocated rings) both call it, so they agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sjtui.constants import BAND_NAMES, BARS_PER_WINDOW
from sjtui.meter import Meter
from sjtui.transport.timebase import TempoMap, latency_samples, onsets_to_grid, played_sample

N_BANDS = len(BAND_NAMES)
ENERGY_RANGE_DB = 60.0
ENERGY_FLOOR_DB = -120.0

ONSET_DTYPE = np.dtype(
    [
        ("band", np.int8),
        ("bar", np.int16),
        ("step", np.int16),
        ("strength", np.float32),
        ("offset", np.float32),
    ]
)


@dataclass
class Fingerprint:
    """``energy`` and ``novelty``: (n_bands, n_bars, steps_per_bar) float32 in 0..1;
    ``onsets``: structured array of :data:`ONSET_DTYPE`, sorted by bar, step, band."""

    energy: np.ndarray
    novelty: np.ndarray
    onsets: np.ndarray
    meter: Meter
    bpm: float
    first_bar: int
    start_sample: float

    @property
    def steps_per_bar(self) -> int:
        return self.energy.shape[2]

    def onset_grid(self) -> np.ndarray:
        """Onset strength per cell, (n_bands, n_bars, steps_per_bar) float32 (strongest onset wins)."""
        grid = np.zeros(self.energy.shape, dtype=np.float32)
        o = self.onsets
        np.maximum.at(
            grid,
            (o["band"].astype(np.intp), o["bar"].astype(np.intp), o["step"].astype(np.intp)),
            o["strength"],
        )
        return grid

    def to_json(self) -> dict:
        return {
            "start_s": None,  # filled by callers that know the sample rate
            "bpm": self.bpm,
            "meter": str(self.meter),
            "onset_steps": [
                [int(o["band"]), int(o["bar"]), int(o["step"]), round(float(o["strength"]), 4)]
                for o in self.onsets
            ],
            "energy": np.round(self.energy, 4).tolist(),
            "novelty": np.round(self.novelty, 4).tolist(),
        }


def compute_fingerprint(
    frame_sample: np.ndarray,
    energy_db: np.ndarray,
    flux: np.ndarray,
    onsets: np.ndarray,
    tempo_map: TempoMap,
    first_bar: int,
    n_bars: int = BARS_PER_WINDOW,
    latency_ms: float = 0.0,
) -> Fingerprint:
    """The fingerprint of bars ``first_bar .. first_bar + n_bars`` of ``tempo_map``.

    ``frame_sample``: (n_frames,) absolute sample index of each analysis
    frame; ``energy_db`` and ``flux``: (n_bands, n_frames); ``onsets``: a
    structured array with fields ``sample`` (absolute index), ``band`` and
    ``strength``. Frames and onsets outside the window are ignored, so
    callers may pass more than the window. ``latency_ms`` moves everything
    back to the time it was played (see :func:`sjtui.transport.timebase.played_sample`).
    The window takes the meter in force at its first bar.
    """
    start_sample = float(tempo_map.bar_to_sample(first_bar))
    meter = tempo_map.meter_at(start_sample)
    spb = meter.steps_per_bar
    n_steps = n_bars * spb

    bars = tempo_map.sample_to_bar(played_sample(frame_sample, latency_ms, tempo_map.sample_rate_hz))
    whole_bars = np.floor(bars)
    cell = ((whole_bars - first_bar) * spb + np.floor((bars - whole_bars) * spb)).astype(np.int64)
    inside = (cell >= 0) & (cell < n_steps)
    cell = cell[inside]
    counts = np.bincount(cell, minlength=n_steps)

    # Mean power per step (in the power domain, so a step's value does not
    # depend on how many frames fall in it: that is what makes 44.1 and
    # 48 kHz agree), then relative dB.
    power = np.power(10.0, np.asarray(energy_db, dtype=np.float64)[:, inside] / 10.0)
    step_power = np.zeros((N_BANDS, n_steps))
    for band in range(N_BANDS):
        step_power[band] = np.bincount(cell, weights=power[band], minlength=n_steps)
    filled = counts > 0
    step_power[:, filled] /= counts[filled]
    if not filled.all() and filled.any():  # a step without a frame takes its left neighbour's value
        idx = np.where(filled, np.arange(n_steps), 0)
        np.maximum.accumulate(idx, out=idx)
        step_power = step_power[:, idx]
    step_db = 10.0 * np.log10(np.maximum(step_power, 10.0 ** (ENERGY_FLOOR_DB / 10.0)))
    reference_db = step_db.max() if filled.any() else ENERGY_FLOOR_DB
    energy = np.clip((step_db - reference_db + ENERGY_RANGE_DB) / ENERGY_RANGE_DB, 0.0, 1.0)
    if reference_db <= ENERGY_FLOOR_DB + 1e-9:  # silence: nothing to be relative to
        energy[:] = 0.0

    step_flux = np.zeros((N_BANDS, n_steps))
    flux_in = np.asarray(flux, dtype=np.float64)[:, inside]
    for band in range(N_BANDS):
        np.maximum.at(step_flux[band], cell, flux_in[band])
    peak_flux = step_flux.max()
    novelty = step_flux / peak_flux if peak_flux > 0 else step_flux

    placed = onsets_to_grid(onsets["sample"], tempo_map, latency_ms)
    bar_in_window = placed["bar"] - first_bar
    keep = (bar_in_window >= 0) & (bar_in_window < n_bars)
    events = np.zeros(int(keep.sum()), dtype=ONSET_DTYPE)
    strength = onsets["strength"][keep].astype(np.float64)
    events["band"] = onsets["band"][keep]
    events["bar"] = bar_in_window[keep]
    events["step"] = placed["step"][keep]
    events["offset"] = placed["offset"][keep]
    peak_strength = strength.max() if strength.size else 0.0
    events["strength"] = strength / peak_strength if peak_strength > 0 else strength
    events = np.sort(events, order=["bar", "step", "band"], kind="stable")

    shape = (N_BANDS, n_bars, spb)
    return Fingerprint(
        energy=energy.reshape(shape).astype(np.float32),
        novelty=novelty.reshape(shape).astype(np.float32),
        onsets=events,
        meter=meter,
        bpm=float(tempo_map.bpm_at(start_sample)),
        first_bar=first_bar,
        start_sample=start_sample,
    )


def fingerprints_of(
    features,
    tempo_map: TempoMap,
    n_bars: int = BARS_PER_WINDOW,
    hop_bars: int | None = None,
    latency_ms: float = 0.0,
) -> list[Fingerprint]:
    """Offline: the fingerprint of every whole ``n_bars`` window of a recording's features.

    ``features`` is a :class:`sjtui.dsp.analysis.Features` of the whole
    recording. Windows start at bar 0 and advance by ``hop_bars`` (default
    ``n_bars``); a window must end before the last frame, so a recording
    shorter than one window gives an empty list.
    """
    if features.frame_sample.size == 0:
        return []
    last_bar = float(
        tempo_map.sample_to_bar(
            played_sample(features.frame_sample[-1], latency_ms, tempo_map.sample_rate_hz)
        )
    )
    hop = hop_bars or n_bars
    return [
        compute_fingerprint(
            features.frame_sample,
            features.energy_db,
            features.flux,
            features.onsets,
            tempo_map,
            first,
            n_bars,
            latency_ms,
        )
        for first in range(0, int(np.floor(last_bar)) - n_bars + 1, hop)
    ]


class FingerprintAccumulator:
    """Live: keeps the most recent frames and onsets in preallocated rings.

    ``push(features)`` takes each batch from the online analyzer;
    ``fingerprint(tempo_map, first_bar)`` computes the window with the same
    function as the offline path. Capacity is sized for the longest window
    the accumulator must hold (bars at the slowest tempo).
    """

    def __init__(
        self,
        sample_rate_hz: int,
        hop_size: int,
        max_window_s: float = 4 * 7 * 60 / 30,
        max_onsets: int = 8192,
    ):
        self.capacity = int(np.ceil(max_window_s * sample_rate_hz / hop_size)) + 64
        self.hop_size = int(hop_size)
        self._frame_sample = np.zeros(self.capacity, dtype=np.int64)
        self._energy = np.zeros((N_BANDS, self.capacity), dtype=np.float32)
        self._flux = np.zeros((N_BANDS, self.capacity), dtype=np.float32)
        self._onsets = np.zeros(
            max_onsets, dtype=[("sample", np.int64), ("band", np.int8), ("strength", np.float32)]
        )
        self.reset()

    def reset(self) -> None:
        self._n_frames = 0  # frames pushed in total
        self._n_onsets = 0

    def push(self, features) -> None:
        n = features.frame_sample.size
        if n:
            if n > self.capacity:  # only the newest frames matter
                features_slice = slice(n - self.capacity, n)
            else:
                features_slice = slice(0, n)
            fs = features.frame_sample[features_slice]
            k = fs.size
            idx = (self._n_frames + np.arange(k)) % self.capacity
            self._frame_sample[idx] = fs
            self._energy[:, idx] = features.energy_db[:, features_slice]
            self._flux[:, idx] = features.flux[:, features_slice]
            self._n_frames += k
        m = features.onsets.size
        if m:
            idx = (self._n_onsets + np.arange(m)) % self._onsets.size
            self._onsets["sample"][idx] = features.onsets["sample"]
            self._onsets["band"][idx] = features.onsets["band"]
            self._onsets["strength"][idx] = features.onsets["strength"]
            self._n_onsets += m

    def _ordered(self):
        n = min(self._n_frames, self.capacity)
        order = (self._n_frames - n + np.arange(n)) % self.capacity
        m = min(self._n_onsets, self._onsets.size)
        onset_order = (self._n_onsets - m + np.arange(m)) % self._onsets.size
        return (
            self._frame_sample[order],
            self._energy[:, order],
            self._flux[:, order],
            self._onsets[onset_order],
        )

    @property
    def last_sample(self) -> int:
        """Sample index of the newest frame, or -1 before the first."""
        if self._n_frames == 0:
            return -1
        return int(self._frame_sample[(self._n_frames - 1) % self.capacity])

    def fingerprint(
        self, tempo_map: TempoMap, first_bar: int, n_bars: int = BARS_PER_WINDOW, latency_ms: float = 0.0
    ) -> Fingerprint:
        frame_sample, energy, flux, onsets = self._window(tempo_map, first_bar, n_bars, latency_ms)
        return compute_fingerprint(
            frame_sample, energy, flux, onsets, tempo_map, first_bar, n_bars, latency_ms
        )

    def _window(self, tempo_map: TempoMap, first_bar: int, n_bars: int, latency_ms: float):
        """Only the frames and onsets near the window, in time order.

        The rings hold up to a minute; a window at a usual tempo is a few seconds, and
        :func:`compute_fingerprint` ignores what lies outside it, so cutting the rest first gives
        the same fingerprint for a fraction of the work (it runs at every decision).
        The margin covers the latency shift and an onset rounded to the window's first step.
        """
        start = float(tempo_map.bar_to_sample(first_bar))
        end = float(tempo_map.bar_to_sample(first_bar + n_bars))
        step = (end - start) / max(n_bars * tempo_map.meter_at(start).steps_per_bar, 1)
        lag = latency_samples(latency_ms, tempo_map.sample_rate_hz)
        margin = abs(lag) + 2 * step + 4 * self.hop_size
        lo, hi = start + lag - margin, end + lag + margin
        # the frame ring holds two runs in time order: [head, capacity) then [0, head); search each
        n = min(self._n_frames, self.capacity)
        head = (self._n_frames - n) % self.capacity
        first_run = self._frame_sample[head : min(head + n, self.capacity)]
        second_run = self._frame_sample[: max(head + n - self.capacity, 0)]
        a1, b1 = np.searchsorted(first_run, [lo, hi])
        a2, b2 = np.searchsorted(second_run, [lo, hi])
        order = np.concatenate([np.arange(head + a1, head + b1), np.arange(a2, b2)])
        m = min(self._n_onsets, self._onsets.size)
        onset_head = (self._n_onsets - m) % self._onsets.size
        samples = self._onsets["sample"][:m] if m < self._onsets.size else self._onsets["sample"]
        near = np.flatnonzero((samples >= lo) & (samples <= hi))
        near = near[np.argsort((near - onset_head) % self._onsets.size, kind="stable")]  # oldest first
        return self._frame_sample[order], self._energy[:, order], self._flux[:, order], self._onsets[near]
