"""Tempo and downbeat from the playing.

Input is plain arrays so the estimator does not depend on how onsets were
found: onset sample indices with strengths (``Features.onsets['sample']``
and ``['strength']`` of :mod:`sjtui.dsp.analysis`), and optionally an
onset-strength envelope at a frame rate (``Features.flux`` summed over bands,
with ``Features.frame_sample``).

Method (see ``bench/tempo.py`` for the accuracy on rendered riffs):

1. An onset envelope at ``ENVELOPE_RATE_HZ`` (200 Hz): the given envelope
   interpolated, plus the onsets as short Gaussian pulses weighted by
   strength (compressed with ``log1p`` so one loud chord does not rule).
2. Its autocorrelation, unbiased for the overlap, normalised by lag 0.
3. For every candidate tempo on a fine log grid (40..240 BPM), a metrical
   comb score: the autocorrelation at 1 and 2 beats, 1 and 2 bars (of the
   given meter) and half a beat (a beat level is strong if its multiples,
   the bars, also repeat, and if it is subdivided), times a broad
   log-normal tempo prior centred at ``PRIOR_CENTRE_BPM``.
4. The best candidate is refined on the onset times themselves by a
   pulse-train fit (continuous period, no frame quantisation). The beats
   are where the onsets recur most sharply, each onset weighted by its
   strength and by the gap after it (long notes start on the beat). The
   downbeat is the bar position (a beat, or an 8th in 7/8) with the
   strongest onsets (low band weighted, as riffs put their roots on the
   one); the beat of the first onset gets a head start of half the best
   score (players usually start on the one).
5. ``alternatives`` lists the half, double, 2/3, 3/2, 3/4 and 4/3 tempi
   (those inside the search range) with their scores relative to the winner; ``confidence`` is
   the winner's periodicity strength times its margin over the best
   alternative. Ambiguity is reported, not hidden: when an alternative
   scores within ``AMBIGUOUS_RATIO`` of the winner, ``ambiguous`` is True.

Defined results for input it cannot use (never an exception):

- fewer than ``MIN_ONSETS`` onsets, or onsets spanning less than
  ``MIN_SPAN_S``: ``bpm=None``, ``confidence=0``, ``state="too short"``
  and a message saying how much more playing is needed;
- onsets with no periodicity at all (confidence below
  ``MIN_CONFIDENCE``): the best guess is returned with ``state="unsure"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sjtui.meter import FOUR_FOUR, Meter, parse_meter

ENVELOPE_RATE_HZ = 200.0
MIN_TEMPO_BPM = 40.0
MAX_TEMPO_BPM = 240.0
PRIOR_CENTRE_BPM = 125.0  # chosen by a sweep (115/125/135 x 0.7/1/1.5 octaves) on riff onsets, seeds 0-239
PRIOR_OCTAVES = 1.0  # std of the log2-normal prior
MIN_ONSETS = 6
MIN_SPAN_S = 2.5
MIN_CONFIDENCE = 0.15
AMBIGUOUS_RATIO = 0.85

_PULSE_SIGMA_S = 0.010
_SAME_EVENT_S = 0.030  # onsets (in several bands) closer than this are one event


@dataclass(frozen=True)
class TempoEstimate:
    bpm: float | None
    confidence: float  # 0..1
    downbeat_sample: float | None  # a bar line (the first at or after the first onset, minus half a beat)
    beat_phase_sample: float | None  # a beat
    # (bpm, score relative to the best)
    alternatives: tuple[tuple[float, float], ...] = field(default_factory=tuple)
    ambiguous: bool = False
    state: str = "too short"  # "locked" | "unsure" | "too short"
    message: str = ""

    def as_dict(self, sample_rate_hz: float) -> dict:
        return {
            "bpm": None if self.bpm is None else round(self.bpm, 2),
            "confidence": round(self.confidence, 3),
            "downbeat_s": (
                None if self.downbeat_sample is None else round(self.downbeat_sample / sample_rate_hz, 4)
            ),
            "alternatives": [[round(b, 2), round(s, 3)] for b, s in self.alternatives],
            "ambiguous": self.ambiguous,
            "state": self.state,
            "message": self.message,
        }


def _too_short(n_onsets: int, span_s: float, message_extra: str = "") -> TempoEstimate:
    need = []
    if n_onsets < MIN_ONSETS:
        need.append(f"{n_onsets} onsets (need {MIN_ONSETS})")
    if span_s < MIN_SPAN_S:
        need.append(f"{span_s:.1f} s of onsets (need {MIN_SPAN_S:g} s)")
    return TempoEstimate(
        None, 0.0, None, None, (), False, "too short",
        f"not enough playing to estimate the tempo: {', '.join(need) or message_extra}; keep playing "
        "or set the tempo yourself",
    )


def onset_envelope(
    onset_samples: np.ndarray,
    strengths: np.ndarray,
    sample_rate_hz: float,
    n_frames: int,
    start_sample: float,
    envelope: np.ndarray | None = None,
    envelope_sample: np.ndarray | None = None,
) -> np.ndarray:
    """Onset-strength envelope at ENVELOPE_RATE_HZ, shape (n_frames,), starting at ``start_sample``."""
    hop = sample_rate_hz / ENVELOPE_RATE_HZ
    env = np.zeros(n_frames, dtype=np.float64)
    weights = strengths
    if len(strengths):
        weights = np.log1p(np.maximum(strengths, 0.0) / (np.median(strengths[strengths > 0]) + 1e-12))
    pos = (onset_samples - start_sample) / hop
    sigma = _PULSE_SIGMA_S * ENVELOPE_RATE_HZ
    offsets = np.arange(-3, 4)
    idx = np.rint(pos)[:, None].astype(np.int64) + offsets[None, :]
    vals = weights[:, None] * np.exp(-0.5 * ((idx - pos[:, None]) / sigma) ** 2)
    ok = (idx >= 0) & (idx < n_frames)
    np.add.at(env, idx[ok], vals[ok])
    if envelope is not None and envelope_sample is not None and len(envelope):
        e = np.asarray(envelope, dtype=np.float64)
        if e.ndim == 2:
            e = e.sum(axis=0)
        e = np.maximum(e - np.median(e), 0.0)
        if e.max() > 0:
            frame_times = start_sample + np.arange(n_frames) * hop
            at = np.asarray(envelope_sample, dtype=np.float64)
            e_interp = np.interp(frame_times, at, e, left=0.0, right=0.0)
            scale = env.max() / (e_interp.max() + 1e-12) if env.max() > 0 else 1.0
            env += 0.5 * scale * e_interp
    return env


def _autocorrelation(env: np.ndarray, max_lag: int) -> np.ndarray:
    x = env - env.mean()
    n = len(x)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spec = np.fft.rfft(x, size)
    acf = np.fft.irfft(spec * np.conj(spec), size)[: max_lag + 1]
    acf /= np.maximum(n - np.arange(max_lag + 1), n // 4)  # unbiased, tempered at long lags
    return acf / (acf[0] + 1e-12)


def _acf_at(acf: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """Linear interpolation of the ACF at fractional lags (0 beyond its end)."""
    lags = np.asarray(lags, dtype=np.float64)
    out = np.interp(lags, np.arange(len(acf)), acf, right=0.0)
    # a peak within +-1.5 % of the lag: take the local max so slight tempo wobble is tolerated
    for f in (0.985, 1.015):
        out = np.maximum(out, np.interp(lags * f, np.arange(len(acf)), acf, right=0.0))
    return out


def tempo_scores(acf: np.ndarray, bpms: np.ndarray, beats_per_bar: float) -> np.ndarray:
    """Metrical comb score for each candidate tempo (before the prior), shape like ``bpms``."""
    period = 60.0 * ENVELOPE_RATE_HZ / bpms  # frames per beat
    a1 = _acf_at(acf, period)
    a2 = _acf_at(acf, 2 * period)
    a_bar = _acf_at(acf, beats_per_bar * period)
    a_2bar = _acf_at(acf, 2 * beats_per_bar * period)
    a_half = _acf_at(acf, period / 2)
    pos = lambda a: np.maximum(a, 0.0)  # noqa: E731
    return pos(a1) + 0.5 * pos(a2) + 0.5 * pos(a_bar) + 0.25 * pos(a_2bar) + 0.25 * pos(a_half)


def _prior(bpms: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * (np.log2(bpms / PRIOR_CENTRE_BPM) / PRIOR_OCTAVES) ** 2)


def _refine(onset_s: np.ndarray, weights: np.ndarray, bpm: float) -> tuple[float, float]:
    """Continuous pulse-train fit near ``bpm``: returns (bpm, phase of a beat in seconds)."""
    candidates = bpm * np.linspace(0.96, 1.04, 161)
    periods = 60.0 / candidates
    phases = 2 * np.pi * onset_s[None, :] / periods[:, None]
    score = np.zeros(len(candidates))
    for harmonic in (1, 2, 3, 4):  # beat, 8ths, triplets, 16ths: all align at the true period
        score += np.abs((weights[None, :] * np.exp(1j * harmonic * phases)).sum(axis=1))
    best = int(np.argmax(score))
    period = periods[best]
    # the beat phase: where the weighted onsets recur most sharply (a 15 ms kernel), not the
    # centroid of the first harmonic, which a gallop or a shuffle pulls off the beat. Each
    # onset also weighs by the gap after it (an agogic accent: the long note of a shuffle's
    # long-short or a gallop's long-short-short starts on the beat)
    events = np.flatnonzero(np.diff(onset_s, prepend=-np.inf) > _SAME_EVENT_S)  # first onset of each event
    event_of = np.cumsum(np.diff(onset_s, prepend=-np.inf) > _SAME_EVENT_S) - 1
    gap_after = np.diff(onset_s[events], append=np.inf)
    agogic = 0.5 + np.clip(gap_after / period, 0.0, 1.0)
    phase_weights = weights * agogic[event_of]
    phase_grid = np.arange(96) * period / 96
    d = np.mod(onset_s[None, :] - phase_grid[:, None], period)
    d = np.minimum(d, period - d)
    kernel = (phase_weights[None, :] * np.exp(-0.5 * (d / 0.015) ** 2)).sum(axis=1)
    phase_s = phase_grid[int(np.argmax(kernel))]
    return float(candidates[best]), float(phase_s % period)


def estimate_tempo(
    onset_samples: np.ndarray,
    strengths: np.ndarray,
    sample_rate_hz: float,
    *,
    meter: Meter | str | None = None,
    bands: np.ndarray | None = None,
    envelope: np.ndarray | None = None,
    envelope_sample: np.ndarray | None = None,
) -> TempoEstimate:
    """Estimate tempo and downbeat from onsets.

    ``onset_samples`` (n,) sample indices, ``strengths`` (n,) onset strengths,
    ``bands`` (n,) band index per onset (0 = low; low-band onsets weigh more
    for the downbeat), ``envelope`` (n_frames,) or (n_bands, n_frames) onset
    strength at samples ``envelope_sample`` (n_frames,). ``meter`` (default
    4/4) sets how many beats make a bar for the bar-level score and the
    downbeat. Never raises for short or empty input (see module docstring).
    """
    meter = FOUR_FOUR if meter is None else parse_meter(meter)
    onset_samples = np.asarray(onset_samples, dtype=np.float64).ravel()
    strengths = np.asarray(strengths, dtype=np.float64).ravel()
    if strengths.shape != onset_samples.shape:
        strengths = np.ones_like(onset_samples)
    good = np.isfinite(onset_samples) & np.isfinite(strengths)
    onset_samples, strengths = onset_samples[good], np.maximum(strengths[good], 0.0)
    band_index = None
    if bands is not None and np.asarray(bands).size == good.size:
        band_index = np.asarray(bands).ravel()[good]
    order = np.argsort(onset_samples, kind="stable")
    onset_samples, strengths = onset_samples[order], strengths[order]
    if band_index is not None:
        band_index = band_index[order]
    n = len(onset_samples)
    span_s = float(onset_samples[-1] - onset_samples[0]) / sample_rate_hz if n else 0.0
    if n < MIN_ONSETS or span_s < MIN_SPAN_S:
        return _too_short(n, span_s)
    if not np.any(strengths > 0):
        strengths = np.ones_like(strengths)

    start = onset_samples[0] - 0.1 * sample_rate_hz
    n_frames = int(np.ceil((onset_samples[-1] - start) / sample_rate_hz * ENVELOPE_RATE_HZ)) + 40
    env = onset_envelope(onset_samples, strengths, sample_rate_hz, n_frames, start, envelope, envelope_sample)
    max_lag = int(np.ceil(60.0 * ENVELOPE_RATE_HZ / MIN_TEMPO_BPM * 2 * float(meter.beats_per_bar) * 1.05))
    acf = _autocorrelation(env, min(max_lag, n_frames - 1))

    n_candidates = int(np.log2(MAX_TEMPO_BPM / MIN_TEMPO_BPM) * 480) + 1  # 480 per octave
    bpms = MIN_TEMPO_BPM * 2.0 ** (np.arange(n_candidates) / 480.0)
    raw = tempo_scores(acf, bpms, float(meter.beats_per_bar))
    scores = raw * _prior(bpms)
    best = int(np.argmax(scores))
    if scores[best] <= 0:
        return TempoEstimate(None, 0.0, None, None, (), False, "unsure", "the onsets show no steady pulse")
    bpm0 = float(bpms[best])

    weights = np.log1p(strengths / (np.median(strengths) + 1e-12))
    onset_s = onset_samples / sample_rate_hz
    bpm, phase_s = _refine(onset_s, weights, bpm0)

    def score_of(b: float) -> float:
        if not MIN_TEMPO_BPM * 0.9 <= b <= MAX_TEMPO_BPM * 1.1:
            return 0.0
        bb = np.array([b])
        return float(tempo_scores(acf, bb, float(meter.beats_per_bar))[0] * _prior(bb)[0])

    ratios = (0.5, 2.0, 2.0 / 3.0, 1.5, 0.75, 4.0 / 3.0)  # octaves, and the 3:2 / 4:3 levels of dotted riffs

    def alternatives_of(b: float) -> list[tuple[float, float]]:
        level = max(score_of(b), float(scores[best]))
        in_range = [r for r in ratios if MIN_TEMPO_BPM * 0.9 <= b * r <= MAX_TEMPO_BPM * 1.1]
        out = [(b * r, score_of(b * r) / level) for r in in_range]
        return sorted(out, key=lambda a: -a[1])

    alternatives = alternatives_of(bpm)
    if alternatives and alternatives[0][1] > 1.0:
        # the refinement moved off the comb's peak and a related tempo now scores higher: take it
        bpm, phase_s = _refine(onset_s, weights, alternatives[0][0])
        alternatives = alternatives_of(bpm)
    strength = float(np.clip(raw[best] / 2.5, 0.0, 1.0))  # raw is at most 1 + .5 + .5 + .25 + .25
    top_alt = alternatives[0][1] if alternatives else 0.0
    margin = float(np.clip(1.0 - top_alt, 0.0, 1.0))
    confidence = float(np.clip(strength * (0.5 + 0.5 * margin), 0.0, 1.0))
    ambiguous = top_alt >= AMBIGUOUS_RATIO

    # downbeat: the bar position (on a beat, or on an 8th when bars hold a half beat as 7/8
    # does) whose onsets are the strongest
    beat_s = 60.0 / bpm
    beats_per_bar = float(meter.beats_per_bar)
    units_per_beat = 1 if beats_per_bar == int(beats_per_bar) else 2
    unit_s = beat_s / units_per_beat
    units_per_bar = int(round(beats_per_bar * units_per_beat))
    first_s = onset_s[0]
    # the beat nearest the first onset
    first_beat = phase_s + np.ceil((first_s - phase_s) / beat_s - 0.5) * beat_s
    downbeat_weights = weights * (1.5 if band_index is None else np.where(band_index == 0, 2.0, 1.0))
    unit_index = (onset_s - first_beat) / unit_s
    rounded = np.rint(unit_index).astype(np.int64)
    near = np.abs(unit_index - rounded) < 0.15 * units_per_beat
    bar_scores = np.zeros(units_per_bar)
    np.add.at(bar_scores, np.mod(rounded[near], units_per_bar), downbeat_weights[near])
    # players usually start on the one: the beat of the first onset wins unless another
    # position carries clearly (half the best score) stronger onsets
    bar_scores[0] += 0.5 * bar_scores.max()
    k_best = int(np.argmax(bar_scores))
    downbeat_s = first_beat + k_best * unit_s
    if downbeat_s - first_s > 0.5 * beat_s + beats_per_bar * beat_s * 0.5:
        downbeat_s -= beats_per_bar * beat_s
    state = "locked" if confidence >= MIN_CONFIDENCE and not ambiguous else "unsure"
    alt_text = ", ".join(f"{b:.1f} BPM ({s:.2f})" for b, s in alternatives)
    if ambiguous:
        message = (
            f"{bpm:.1f} BPM, but {alternatives[0][0]:.1f} BPM fits almost as well ({alt_text}); "
            "tap or set the tempo to choose"
        )
    elif state == "unsure":
        message = f"{bpm:.1f} BPM with low confidence {confidence:.2f}; keep playing or set the tempo"
    else:
        message = f"{bpm:.1f} BPM (confidence {confidence:.2f}; alternatives {alt_text})"
    return TempoEstimate(
        bpm=bpm,
        confidence=confidence,
        downbeat_sample=float(downbeat_s * sample_rate_hz),
        beat_phase_sample=float(first_beat * sample_rate_hz),
        alternatives=tuple(alternatives),
        ambiguous=ambiguous,
        state=state,
        message=message,
    )


def estimate_from_features(
    features, sample_rate_hz: float, meter: Meter | str | None = None
) -> TempoEstimate:
    """:func:`estimate_tempo` on a :class:`sjtui.dsp.analysis.Features` (duck-typed).

    Uses ``onsets['sample'|'strength'|'band']`` and the flux summed over
    bands as the envelope, placed at the centre of each frame
    (``frame_sample`` is a frame's end).
    """
    from sjtui.constants import FRAME_SIZE

    onsets = features.onsets
    frame_sample = np.asarray(features.frame_sample, dtype=np.float64) - FRAME_SIZE / 2
    return estimate_tempo(
        onsets["sample"],
        onsets["strength"],
        sample_rate_hz,
        meter=meter,
        bands=onsets["band"],
        envelope=np.asarray(features.flux, dtype=np.float64),
        envelope_sample=frame_sample,
    )
