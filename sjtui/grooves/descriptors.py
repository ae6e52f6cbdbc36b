"""Descriptors of a groove computed from its VHO, as a fixed-length float32 vector.

=====================  ========================================================
name                   meaning
=====================  ========================================================
density_<voice> (x9)   hits per bar of each voice
syncopation            Longuet-Higgins & Lee syncopation of all voices together,
                       per bar (see :func:`lhl_syncopation`)
syncopation_kick       the same for the kick alone
syncopation_snare      the same for the snare alone
swing_ratio            long/short ratio of the 8th-note pairs played by the
                       time-keeping voices (hats, ride; all voices if they are
                       silent): 1 straight, 2 triplet swing, 3 dotted; median
                       over the beats that have an off-beat 8th; 1 if none
loudness               mean velocity of the hits (0..1)
timing_mean_steps      mean micro-timing offset (steps; < 0 pushed, > 0 laid back)
timing_spread_steps    standard deviation of the offsets (steps)
=====================  ========================================================

Metrical weights (for syncopation) on the 12-steps-per-beat grid: the bar's
downbeat 0, the other main pulses of the bar -1 (the middle of a 4/4 or 2/4
bar, the second dotted quarter of 6/8...), beats -2 (quarter notes; 8th
notes of a compound meter), 8ths -3, 16ths and 8th-triplets -4, 16th
triplets -5, anything finer -6. A hit at weight ``w_n`` followed by a rest
whose strongest position before the next hit (the pattern loops) weighs
``w_r > w_n`` scores ``w_r - w_n`` (Longuet-Higgins & Lee 1984, as
formalised by Fitch & Rosenfeld 2007).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from sjtui.constants import DRUM_VOICES, STEPS_PER_BEAT
from sjtui.meter import Meter

_KICK = DRUM_VOICES.index("kick")
_SNARE = DRUM_VOICES.index("snare")
_TIMEKEEPERS = [DRUM_VOICES.index(v) for v in ("closed_hat", "open_hat", "ride")]

DESCRIPTOR_NAMES: tuple[str, ...] = (
    *(f"density_{voice}" for voice in DRUM_VOICES),
    "syncopation",
    "syncopation_kick",
    "syncopation_snare",
    "swing_ratio",
    "loudness",
    "timing_mean_steps",
    "timing_spread_steps",
)
N_DESCRIPTORS = len(DESCRIPTOR_NAMES)


@lru_cache(maxsize=32)
def metrical_weights(meter: Meter) -> np.ndarray:
    """(steps_per_bar,) float64 metrical weight of each step of one bar (0 strongest)."""
    steps_per_bar = meter.steps_per_bar
    position = np.arange(steps_per_bar)
    weights = np.full(steps_per_bar, -6.0)
    weights[position % 2 == 0] = -5.0  # 16th triplets
    weights[(position % 3 == 0) | (position % 4 == 0)] = -4.0  # 16ths, 8th triplets
    weights[position % 6 == 0] = -3.0  # 8ths
    if meter.is_compound:
        # 6/8, 9/8, 12/8: the 8th note is the beat, the dotted quarter the main pulse
        weights[position % 6 == 0] = -2.0
        weights[position % (3 * 6) == 0] = -1.0
    else:
        weights[position % STEPS_PER_BEAT == 0] = -2.0
        beats = steps_per_bar // STEPS_PER_BEAT
        if steps_per_bar % STEPS_PER_BEAT == 0 and beats % 2 == 0 and beats >= 2:
            weights[position % (steps_per_bar // 2) == 0] = -1.0
    weights[0] = 0.0
    weights.flags.writeable = False
    return weights


def lhl_syncopation(onsets: np.ndarray, weights: np.ndarray) -> float:
    """Longuet-Higgins & Lee syncopation of a looping onset pattern (one pattern; the reference
    for :func:`lhl_syncopation_batch`, which the descriptors use).

    ``onsets``: (n_steps,) bool; ``weights``: (n_steps,) metrical weight of
    each step. Returns the summed syncopation score (>= 0).
    """
    onset_steps = np.flatnonzero(onsets)
    n_steps = onsets.size
    if onset_steps.size == 0:
        return 0.0
    # the pattern loops: extend the weights once so every onset has a "next onset"
    weights2 = np.concatenate((weights, weights))
    next_onset = np.empty_like(onset_steps)
    next_onset[:-1] = onset_steps[1:]
    next_onset[-1] = onset_steps[0] + n_steps
    gap = next_onset - onset_steps - 1  # rest steps between an onset and the next one
    has_rest = gap > 0
    if not has_rest.any():
        return 0.0
    starts = onset_steps[has_rest] + 1
    ends = next_onset[has_rest]
    # max weight of each rest segment [start, end): reduceat over concatenated segments
    index = np.empty(2 * starts.size, dtype=np.int64)
    index[0::2] = starts
    index[1::2] = ends
    segment_max = np.maximum.reduceat(np.append(weights2, -np.inf), index)[0::2]
    score = segment_max - weights2[onset_steps[has_rest]]
    return float(score[score > 0].sum())


def swing_ratio(hits: np.ndarray, offsets: np.ndarray) -> float:
    """Median long/short ratio of played 8th-note pairs (one groove; the reference for
    :func:`swing_ratio_batch`, which the descriptors use).

    ``hits`` and ``offsets``: (n_steps, n_voices). An off-beat 8th is a hit
    of the time-keeping voices (all voices when they are silent) whose step
    lies 5 to 8 steps after the beat (between the straight 8th at 6 and the
    dotted 8th at 9); its position ``p`` in the beat gives ``p / (12 - p)``.
    """
    voices = _TIMEKEEPERS if hits[:, _TIMEKEEPERS].any() else list(range(hits.shape[1]))
    sub_hits = hits[:, voices]
    steps, columns = np.nonzero(sub_hits)
    in_beat = steps % STEPS_PER_BEAT
    off_beat = (in_beat >= 5) & (in_beat <= 8)
    if not off_beat.any():
        return 1.0
    position = in_beat[off_beat] + offsets[:, voices][steps[off_beat], columns[off_beat]]
    # one position per beat: the earliest off-beat hit of that beat
    beat = steps[off_beat] // STEPS_PER_BEAT
    order = np.lexsort((position, beat))
    first = np.ones(order.size, dtype=bool)
    first[1:] = beat[order][1:] != beat[order][:-1]
    position = position[order][first]
    ratio = position / (STEPS_PER_BEAT - position)
    return float(np.median(ratio))


@lru_cache(maxsize=64)
def _range_max_table(meter: Meter, bars: int) -> np.ndarray:
    """Sparse table of the looping weights: ``table[k, i] = max(w2[i : i + 2**k])``, shape (levels, 2T)."""
    weights = np.tile(metrical_weights(meter), bars)
    doubled = np.concatenate((weights, weights))
    levels = max(int(np.log2(doubled.size)) + 1, 1)
    table = np.full((levels, doubled.size), -np.inf)
    table[0] = doubled
    for k in range(1, levels):
        half = 1 << (k - 1)
        table[k, : doubled.size - half] = np.maximum(table[k - 1, : doubled.size - half], table[k - 1, half:])
    table.flags.writeable = False
    return table


def lhl_syncopation_batch(onsets: np.ndarray, meter: Meter) -> np.ndarray:
    """:func:`lhl_syncopation` of a batch: ``onsets`` (n_grooves, n_steps) bool -> (n_grooves,) scores.

    Vectorised over grooves and onsets: the next onset of every step comes
    from a reversed running minimum, the strongest rest between two onsets
    from a sparse range-maximum table of the looping metrical weights.
    """
    n_grooves, n_steps = onsets.shape
    bars = n_steps // meter.steps_per_bar
    table = _range_max_table(meter, bars)
    doubled_on = np.concatenate((onsets, onsets), axis=1)
    index = np.where(doubled_on, np.arange(2 * n_steps), 4 * n_steps)
    next_at = np.minimum.accumulate(index[:, ::-1], axis=1)[:, ::-1]  # first onset at or after each step
    groove, step = np.nonzero(onsets)
    rest_start = step + 1
    rest_end = next_at[groove, rest_start]  # next onset after ``step`` (exists: the loop repeats it)
    has_rest = rest_end > rest_start
    groove, step, rest_start, rest_end = groove[has_rest], step[has_rest], rest_start[has_rest], rest_end[has_rest]
    level = np.floor(np.log2(rest_end - rest_start)).astype(np.int64)
    strongest_rest = np.maximum(table[level, rest_start], table[level, rest_end - (1 << level)])
    score = np.maximum(strongest_rest - table[0, step], 0.0)
    return np.bincount(groove, weights=score, minlength=n_grooves)


def swing_ratio_batch(hits: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """:func:`swing_ratio` of a batch: (n_grooves, n_steps, n_voices) -> (n_grooves,)."""
    n_grooves, n_steps, n_voices = hits.shape
    timekeeper = np.zeros(n_voices, dtype=bool)
    timekeeper[_TIMEKEEPERS] = True
    use_timekeepers = hits[:, :, timekeeper].any(axis=(1, 2))
    voice_mask = np.where(use_timekeepers[:, None], timekeeper[None, :], True)  # (n_grooves, n_voices)
    selected = hits & voice_mask[:, None, :]
    n_beats = -(-n_steps // STEPS_PER_BEAT)
    pad = n_beats * STEPS_PER_BEAT - n_steps
    if pad:
        selected = np.pad(selected, ((0, 0), (0, pad), (0, 0)))
        offsets = np.pad(offsets, ((0, 0), (0, pad), (0, 0)))
    shape = (n_grooves, n_beats, STEPS_PER_BEAT, n_voices)
    window = slice(5, 9)
    position = np.arange(5, 9, dtype=np.float64)[None, None, :, None] + offsets.reshape(shape)[:, :, window, :]
    position = np.where(selected.reshape(shape)[:, :, window, :], position, np.inf)
    earliest = position.min(axis=(2, 3))  # (n_grooves, n_beats)
    played = np.isfinite(earliest)
    ratio = np.where(played, earliest / (STEPS_PER_BEAT - np.where(played, earliest, 0.0)), np.nan)
    out = np.ones(n_grooves)
    rows = played.any(axis=1)
    if rows.any():
        out[rows] = np.nanmedian(ratio[rows], axis=1)
    return out


def compute_descriptors_batch(
    hits: np.ndarray, velocities: np.ndarray, offsets: np.ndarray, meter: Meter
) -> np.ndarray:
    """(n_grooves, N_DESCRIPTORS) float32 descriptors of grooves sharing a meter and length.

    ``hits``, ``velocities``, ``offsets``: (n_grooves, n_steps, n_voices),
    n_steps a whole number of bars of ``meter``. Names: :data:`DESCRIPTOR_NAMES`.
    """
    n_grooves, n_steps, n_voices = hits.shape
    bars = max(n_steps // meter.steps_per_bar, 1)
    out = np.zeros((n_grooves, N_DESCRIPTORS), dtype=np.float32)
    out[:, :n_voices] = hits.sum(axis=1) / bars
    if n_grooves == 0:
        return out
    out[:, n_voices] = lhl_syncopation_batch(hits.any(axis=2), meter) / bars
    out[:, n_voices + 1] = lhl_syncopation_batch(hits[:, :, _KICK], meter) / bars
    out[:, n_voices + 2] = lhl_syncopation_batch(hits[:, :, _SNARE], meter) / bars
    out[:, n_voices + 3] = swing_ratio_batch(hits, offsets)
    n_hits = hits.sum(axis=(1, 2))
    count = np.maximum(n_hits, 1)
    out[:, n_voices + 4] = np.where(hits, velocities, 0).sum(axis=(1, 2)) / count
    played_offsets = np.where(hits, offsets, 0).astype(np.float64)
    mean = played_offsets.sum(axis=(1, 2)) / count
    out[:, n_voices + 5] = mean
    deviation = np.where(hits, offsets - mean[:, None, None], 0)
    out[:, n_voices + 6] = np.sqrt((deviation**2).sum(axis=(1, 2)) / count)
    return out


def compute_descriptors(hits: np.ndarray, velocities: np.ndarray, offsets: np.ndarray, meter: Meter) -> np.ndarray:
    """(N_DESCRIPTORS,) float32 descriptor vector of one groove (names in :data:`DESCRIPTOR_NAMES`).

    ``hits``, ``velocities``, ``offsets``: (n_steps, n_voices), n_steps a
    whole number of bars of ``meter``.
    """
    return compute_descriptors_batch(hits[None], velocities[None], offsets[None], meter)[0]


def grooves_descriptors(grooves) -> np.ndarray:
    """(len(grooves), N_DESCRIPTORS) descriptors, batched over grooves of equal meter and length."""
    out = np.zeros((len(grooves), N_DESCRIPTORS), dtype=np.float32)
    groups: dict = {}
    for index, groove in enumerate(grooves):
        groups.setdefault((groove.meter, groove.n_steps), []).append(index)
    for (meter, _), members in groups.items():
        out[members] = compute_descriptors_batch(
            np.stack([grooves[i].hits for i in members]),
            np.stack([grooves[i].velocities for i in members]),
            np.stack([grooves[i].offsets for i in members]),
            meter,
        )
    return out


def groove_descriptors(groove) -> np.ndarray:
    """:func:`compute_descriptors` of a :class:`~sjtui.grooves.vho.Groove`."""
    return compute_descriptors(groove.hits, groove.velocities, groove.offsets, groove.meter)


def descriptor_dict(vector: np.ndarray) -> dict[str, float]:
    """A descriptor vector as ``{name: value}``."""
    return {name: float(value) for name, value in zip(DESCRIPTOR_NAMES, vector)}
