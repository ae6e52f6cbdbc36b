"""Weak compatibility targets 0..5 for (guitar window, groove) pairs.

These are **weak targets** computed from what is known about each pair,
not human ratings. They are grounded in MODEL-NOTES (measured on real
multitrack arrangements): kick/onset interlock carries the signal (AUC 0.73
for peak-picked audio onsets against the kick line, 0.69 with kick + snare
+ hats), near misses count (±1 step), density complement is a weaker cue
(0.63), and tempo (with half/double time) and meter are hard filters.

For guitar window ``g`` and groove ``d`` (both on the 4 x 60 step layout of
:mod:`sjtui.model.inputs`):

``o_g``
    peak-picked onsets of the fingerprint: per step, the strongest onset
    strength over the 3 bands (the encoder's ``onset_strength_*``
    channels), smoothed ±1 step with the kernel ``[0.5, 1, 0.5]`` along the
    steps of each bar.
``kick_d``
    the groove's kick velocity per step (0 where no hit; shorter grooves
    looped to 4 bars).
``kit_d``
    ``1.0 kick + 0.8 snare + 0.5 (closed hat + open hat + ride)`` velocities.
``interlock_kick = cos(o_g, kick_d)``, ``interlock_kit = cos(o_g, kit_d)``
    (cosines of non-negative vectors, 0..1; 0 when either is empty).
``feel``
    ``1 - |t_g - t_d|``, where ``t`` is the triplet share of off-beat
    events: weight at beat positions {4, 8} (of 12 steps per beat) over the
    weight at {3, 4, 6, 8, 9}; guitar weights = onset strengths, groove
    weights = velocities of all voices. 0.5 when either side has no
    off-beat events.
``density``
    ``1 - |a_g + b_d - 1|`` with ``a_g`` = guitar onset cells (strength
    > 0.15) per beat / 2 and ``b_d`` = groove hits per beat / 6, both
    clipped to 0..1: busy guitar wants sparse drums and vice versa.
``style``
    1 when the groove's style is in :data:`STYLE_AFFINITY` of the riff's
    style, else 0 (a small prior; unknown riff style: 0.5).

``s = 0.50 interlock_kick + 0.15 interlock_kit + 0.15 feel + 0.10 density + 0.10 style``

``rating = 5 * clip((s - 0.23) / (0.55 - 0.23), 0, 1)`` when the groove's
tempo is within 8 % of the guitar's (or of double/half of it) and its meter
is the guitar's (:mod:`sjtui.model.fit`); otherwise ``rating = 0``.
A pair is *compatible* (a positive) when ``rating >= 4`` and incompatible
when ``rating <= 1``.
"""

from __future__ import annotations

import numpy as np

from sjtui.constants import DRUM_VOICES, STEPS_PER_BEAT
from sjtui.model import fit
from sjtui.model import inputs as layout

WEIGHTS = {"interlock_kick": 0.50, "interlock_kit": 0.15, "feel": 0.15, "density": 0.10, "style": 0.10}
SCORE_LOW, SCORE_HIGH = 0.23, 0.55
POSITIVE_RATING = 4.0
NEGATIVE_RATING = 1.0
KIT_WEIGHTS = {"kick": 1.0, "snare": 0.8, "closed_hat": 0.5, "open_hat": 0.5, "ride": 0.5}
ONSET_COUNT_THRESHOLD = 0.15
GUITAR_DENSITY_SCALE = 2.0  # onsets per beat that count as "busy" (8ths)
GROOVE_DENSITY_SCALE = 6.0  # hits per beat that count as "busy"

STYLE_AFFINITY = {
    "straight8": {"rock", "pop", "punk", "country"},
    "punk": {"punk", "rock"},
    "funk16": {"funk", "soul", "hiphop", "hip-hop", "neworleans", "afrobeat", "dance"},
    "shuffle": {"blues", "jazz", "neworleans", "country"},
    "six8": {"six-eight", "blues", "soul", "gospel", "afrocuban"},
    "waltz": {"waltz", "jazz", "country", "pop"},
    "gallop": {"metal", "rock", "punk"},
    "skank": {"reggae", "afrobeat", "highlife"},
    "sparse": {"pop", "soul", "rock", "gospel", "hiphop", "hip-hop"},
    "arpeggio": {"pop", "rock", "jazz", "latin"},
    "odd54": {"odd-meter", "jazz", "rock", "middleeastern"},
    "odd78": {"odd-meter", "middleeastern", "rock", "jazz"},
}

_STRENGTH = slice(2 * layout.N_BANDS, 3 * layout.N_BANDS)
_VELOCITY = layout.N_VOICES  # first velocity channel of the groove grid
_N_CELLS = layout.MODEL_BARS * layout.MODEL_STEPS_PER_BAR
_POSITION = np.arange(layout.MODEL_STEPS_PER_BAR) % STEPS_PER_BEAT
_TRIPLET = np.isin(_POSITION, (4, 8))
_OFFBEAT = np.isin(_POSITION, (3, 4, 6, 8, 9))


def describe() -> str:
    """One paragraph saying exactly how the weak targets are made (for the manifest)."""
    terms = " + ".join(f"{w:.2f} {name}" for name, w in WEIGHTS.items())
    return (
        "weak targets (not human ratings): rating = 5 * clip((s - "
        f"{SCORE_LOW}) / ({SCORE_HIGH} - {SCORE_LOW}), 0, 1) with s = {terms}, and rating = 0 unless the groove's "
        "tempo fits within 8% (or at double/half) and its meter equals the guitar's; interlock_kick = cosine of "
        "the fingerprint's peak-picked onsets (strongest over bands, smoothed [0.5, 1, 0.5] over steps) with the "
        "groove's kick velocities; interlock_kit = the same with 1.0 kick + 0.8 snare + 0.5 hats/ride; feel = "
        "1 - |triplet share of off-beat guitar onsets - that of the groove|; density = 1 - |guitar onsets per "
        "beat / 2 + groove hits per beat / 6 - 1| (each clipped 0..1); style = 1 when the GMD/built-in style is "
        "in the riff style's affinity list. Positive: rating >= 4; negative: rating <= 1."
    )


def guitar_onsets(grid: np.ndarray, smooth: bool = True) -> np.ndarray:
    """``(n, 240)`` float32 onset vector of guitar inputs ``grid`` (n, 13, 4, 60), smoothed ±1 step."""
    strength = grid[:, _STRENGTH].max(axis=1)  # (n, 4, 60)
    if smooth:
        out = strength.copy()
        out[:, :, 1:] += 0.5 * strength[:, :, :-1]
        out[:, :, :-1] += 0.5 * strength[:, :, 1:]
        strength = out * grid[:, layout.GUITAR_MASK_CHANNEL]
    return strength.reshape(strength.shape[0], _N_CELLS).astype(np.float32)


def groove_lines(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(kick (n, 240), kit (n, 240))`` velocity lines of groove inputs ``grid`` (n, 28, 4, 60)."""
    velocity = grid[:, _VELOCITY : _VELOCITY + layout.N_VOICES]  # (n, 9, 4, 60)
    kick = velocity[:, DRUM_VOICES.index("kick")]
    kit = np.zeros_like(kick)
    for voice, weight in KIT_WEIGHTS.items():
        kit += weight * velocity[:, DRUM_VOICES.index(voice)]
    n = grid.shape[0]
    return kick.reshape(n, _N_CELLS).astype(np.float32), kit.reshape(n, _N_CELLS).astype(np.float32)


def _unit(rows: np.ndarray) -> np.ndarray:
    norm = np.sqrt((rows.astype(np.float64) ** 2).sum(axis=1, keepdims=True))
    return (rows / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def triplet_share(weights: np.ndarray) -> np.ndarray:
    """``(n,)`` triplet share of off-beat weight of ``weights`` (n, 4, 60); NaN when there is none."""
    offbeat = weights[:, :, _OFFBEAT].sum(axis=(1, 2))
    triplet = weights[:, :, _TRIPLET].sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(offbeat > 1e-6, triplet / np.maximum(offbeat, 1e-12), np.nan)


def beats_in_window(context: np.ndarray) -> np.ndarray:
    """``(n,)`` beats in the 4 bars, from the context's steps-per-bar fraction."""
    steps_per_bar = np.rint(context[:, 3] * layout.MODEL_STEPS_PER_BAR)
    return layout.MODEL_BARS * steps_per_bar / STEPS_PER_BEAT


class GuitarSide:
    """What the targets need of guitar windows (computed once per set)."""

    def __init__(self, grid: np.ndarray, context: np.ndarray, bpm, meter, style) -> None:
        self.onsets = guitar_onsets(grid)
        self.unit = _unit(self.onsets)
        raw = grid[:, _STRENGTH].max(axis=1)
        self.raw_unit = _unit(raw.reshape(raw.shape[0], _N_CELLS))
        self.triplet = triplet_share(raw)
        count = (raw > ONSET_COUNT_THRESHOLD).sum(axis=(1, 2))
        self.density = np.clip(count / beats_in_window(context) / GUITAR_DENSITY_SCALE, 0.0, 1.0)
        self.bpm = np.asarray(bpm, dtype=np.float64)
        self.meter = np.asarray(meter).astype(str)
        self.style = np.asarray(style).astype(str)


class GrooveSide:
    """What the targets need of grooves (computed once per set)."""

    def __init__(self, grid: np.ndarray, context: np.ndarray, bpm, meter, style) -> None:
        kick, kit = groove_lines(grid)
        self.kick_unit, self.kit_unit = _unit(kick), _unit(kit)
        hits = grid[:, : layout.N_VOICES].sum(axis=1)  # (n, 4, 60) hits per cell
        self.hits_unit = _unit(hits.reshape(hits.shape[0], _N_CELLS))
        velocity = grid[:, _VELOCITY : _VELOCITY + layout.N_VOICES].sum(axis=1)
        self.triplet = triplet_share(velocity)
        self.density = np.clip(
            hits.sum(axis=(1, 2)) / beats_in_window(context) / GROOVE_DENSITY_SCALE, 0.0, 1.0
        )
        self.bpm = np.asarray(bpm, dtype=np.float64)
        self.meter = np.asarray(meter).astype(str)
        self.style = np.asarray(style).astype(str)


def allowed_matrix(
    guitar: GuitarSide, groove: GrooveSide, rows: slice | np.ndarray = slice(None)
) -> np.ndarray:
    """``(n_guitar, n_groove)`` bool: tempo fit (8 %, half/double) and same meter (sjtui.model.fit)."""
    g_bpm, g_meter = guitar.bpm[rows], guitar.meter[rows]
    ratio = groove.bpm[np.newaxis, :] / g_bpm[:, np.newaxis]
    tol = fit.TEMPO_TOLERANCE
    tempo = (
        (np.abs(ratio - 1.0) <= tol) | (np.abs(ratio / 2.0 - 1.0) <= tol) | (np.abs(ratio * 2.0 - 1.0) <= tol)
    )
    return tempo & (g_meter[:, np.newaxis] == groove.meter[np.newaxis, :])


def style_matrix(guitar_styles: np.ndarray, groove_styles: np.ndarray) -> np.ndarray:
    """``(n_guitar, n_groove)`` float32 style affinity 0/1 (0.5 for an unknown riff style)."""
    out = np.zeros((guitar_styles.size, groove_styles.size), dtype=np.float32)
    lowered = np.char.lower(groove_styles.astype(str))
    for style in np.unique(guitar_styles):
        rows = guitar_styles == style
        if style in STYLE_AFFINITY:
            out[rows] = np.isin(lowered, list(STYLE_AFFINITY[style]))[np.newaxis, :]
        else:
            out[rows] = 0.5
    return out


def components(guitar: GuitarSide, groove: GrooveSide, rows=slice(None)) -> dict[str, np.ndarray]:
    """Each term of the weak target for guitar ``rows`` x all grooves, ``(n_rows, n_groove)`` float32."""
    g_trip = guitar.triplet[rows]
    feel = 1.0 - np.abs(g_trip[:, np.newaxis] - groove.triplet[np.newaxis, :])
    feel = np.where(np.isnan(feel), 0.5, feel).astype(np.float32)
    density = 1.0 - np.abs(guitar.density[rows][:, np.newaxis] + groove.density[np.newaxis, :] - 1.0)
    return {
        "interlock_kick": guitar.unit[rows] @ groove.kick_unit.T,
        "interlock_kit": guitar.unit[rows] @ groove.kit_unit.T,
        "feel": feel,
        "density": density.astype(np.float32),
        "style": style_matrix(guitar.style[rows], groove.style),
    }


def ratings(guitar: GuitarSide, groove: GrooveSide, chunk: int = 512) -> np.ndarray:
    """``(n_guitar, n_groove)`` float32 weak ratings 0..5 (formula in the module docstring)."""
    out = np.zeros((guitar.bpm.size, groove.bpm.size), dtype=np.float32)
    for start in range(0, guitar.bpm.size, chunk):
        rows = slice(start, min(start + chunk, guitar.bpm.size))
        parts = components(guitar, groove, rows)
        score = sum(WEIGHTS[name] * parts[name] for name in WEIGHTS)
        rating = 5.0 * np.clip((score - SCORE_LOW) / (SCORE_HIGH - SCORE_LOW), 0.0, 1.0)
        out[rows] = np.where(allowed_matrix(guitar, groove, rows), rating, 0.0)
    return out
