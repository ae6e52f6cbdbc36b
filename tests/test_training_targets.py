"""Weak targets: interlock with the kick, near misses, tempo/meter gates, feel, and the documented formula.

Guitar windows are real :class:`Fingerprint` objects turned into encoder
inputs by the app's own layout code; grooves are the project's built-in
library (real grooves) or grooves built on the grid for a controlled check.
"""

from __future__ import annotations

import numpy as np
import pytest

from sjtui.dsp.fingerprint import ONSET_DTYPE, Fingerprint
from sjtui.grooves.textgrid import load_builtin
from sjtui.grooves.vho import N_VOICES, Groove
from sjtui.meter import Meter, parse_meter
from sjtui.model import inputs as layout
from training import targets as T

FOUR = Meter(4, 4)


def _fingerprint(cells: np.ndarray, meter: Meter = FOUR, bpm: float = 120.0) -> Fingerprint:
    """A window with one low-band onset at each absolute step of ``cells`` (within 4 bars)."""
    spb = meter.steps_per_bar
    cells = np.unique(np.asarray(cells) % (4 * spb))
    onsets = np.zeros(cells.size, dtype=ONSET_DTYPE)
    onsets["band"] = 0
    onsets["bar"] = cells // spb
    onsets["step"] = cells % spb
    onsets["strength"] = 1.0
    shape = (3, 4, spb)
    return Fingerprint(
        np.full(shape, 0.5, np.float32), np.zeros(shape, np.float32), onsets, meter, bpm, 0, 0.0
    )


def _groove(
    kick_cells, hat_unit: int = 6, hat_phase: int = 0, meter: Meter = FOUR, bpm: float = 120.0
) -> Groove:
    steps = 4 * meter.steps_per_bar
    hits = np.zeros((steps, N_VOICES), dtype=bool)
    hits[hat_phase::hat_unit, 2] = True
    hits[np.asarray(kick_cells) % steps, 0] = True
    return Groove(
        hits, hits * np.float32(0.8), np.zeros(hits.shape, np.float32), meter, bpm, "test", "builtin"
    )


def _sides(fingerprints, grooves, styles=("straight8",), groove_styles=None):
    g = layout.guitar_inputs(fingerprints)
    d = layout.groove_inputs(grooves)
    guitar = T.GuitarSide(
        g["grid"],
        g["context"],
        [fp.bpm for fp in fingerprints],
        [str(fp.meter) for fp in fingerprints],
        list(styles) * len(fingerprints),
    )
    groove = T.GrooveSide(
        d["grid"],
        d["context"],
        [gr.bpm for gr in grooves],
        [str(gr.meter) for gr in grooves],
        groove_styles or ["rock"] * len(grooves),
    )
    return guitar, groove


def test_interlock_rewards_kicks_on_the_guitar_onsets_and_counts_near_misses():
    kicks = np.array([0, 18, 24, 66, 96, 114, 120, 162])  # a syncopated kick line over 4 bars
    guitar, groove = _sides(
        [_fingerprint(kicks), _fingerprint(kicks + 1), _fingerprint(kicks + 3)], [_groove(kicks)]
    )
    parts = T.components(guitar, groove)
    on, near, off = parts["interlock_kick"][:, 0]
    # the same steps: an isolated onset smoothed [0.5, 1, 0.5] against one kick gives 1 / sqrt(1.5) = 0.816
    assert on > 0.8
    assert 0.3 < near < on  # one step away: a near miss, partial credit
    assert off < 0.05  # a 16th note away: no credit
    ratings = T.ratings(guitar, groove)[:, 0]
    assert ratings[0] > ratings[1] > ratings[2]


def test_tempo_and_meter_are_hard_gates_with_half_and_double_time():
    kicks = np.arange(0, 192, 24)
    fp = _fingerprint(kicks, bpm=100.0)
    grooves = [
        _groove(kicks, bpm=100.0),
        _groove(kicks, bpm=200.0),  # double time fits
        _groove(kicks, bpm=50.0),  # half time fits
        _groove(kicks, bpm=107.0),  # 7 % fits
        _groove(kicks, bpm=110.0),  # 10 % does not
        _groove(np.arange(0, 144, 24), meter=Meter(3, 4), bpm=100.0),  # other meter
    ]
    guitar, groove = _sides([fp], grooves)
    ratings = T.ratings(guitar, groove)[0]
    assert ratings[0] > 3.0
    assert ratings[1] == pytest.approx(ratings[0]) and ratings[2] == pytest.approx(ratings[0])
    assert ratings[3] > 0
    assert ratings[4] == 0.0 and ratings[5] == 0.0


def test_feel_prefers_swung_drums_under_swung_guitar():
    beats = np.arange(0, 192, 12)
    swung_guitar = _fingerprint(np.concatenate([beats, beats + 8]))  # off-beats on the triplet position
    straight_guitar = _fingerprint(np.concatenate([beats, beats + 6]))
    swung_hats = _groove(beats[::2], hat_unit=12, hat_phase=0)
    swung_hats.hits[8::12, 2] = True
    swung_hats.velocities[8::12, 2] = 0.8
    straight_hats = _groove(beats[::2], hat_unit=6)
    guitar, groove = _sides([swung_guitar, straight_guitar], [swung_hats, straight_hats])
    feel = T.components(guitar, groove)["feel"]
    assert feel[0, 0] > 0.9 and feel[0, 1] < 0.1
    assert feel[1, 1] > 0.9 and feel[1, 0] < 0.1


def test_ratings_follow_the_documented_formula_on_the_builtin_library():
    grooves = [g for g in load_builtin() if g.bars <= 4 and g.meter.steps_per_bar <= 60]
    rng = np.random.default_rng(3)
    fingerprints = []
    for meter in ("4/4", "3/4", "6/8"):
        m = parse_meter(meter)
        for bpm in (90.0, 120.0):
            cells = rng.choice(4 * m.steps_per_bar // 6, size=10, replace=False) * 6
            fingerprints.append(_fingerprint(cells, m, bpm))
    styles = ["straight8", "funk16", "shuffle", "six8", "waltz", "punk"]
    g = layout.guitar_inputs(fingerprints)
    d = layout.groove_inputs(grooves)
    guitar = T.GuitarSide(
        g["grid"], g["context"], [f.bpm for f in fingerprints], [str(f.meter) for f in fingerprints], styles
    )
    groove = T.GrooveSide(
        d["grid"],
        d["context"],
        [x.bpm for x in grooves],
        [str(x.meter) for x in grooves],
        [x.style for x in grooves],
    )
    ratings = T.ratings(guitar, groove)
    parts = T.components(guitar, groove)
    score = sum(T.WEIGHTS[name] * parts[name] for name in T.WEIGHTS)
    expected = 5 * np.clip((score - T.SCORE_LOW) / (T.SCORE_HIGH - T.SCORE_LOW), 0, 1)
    allowed = T.allowed_matrix(guitar, groove)
    assert allowed.any() and (~allowed).any()
    np.testing.assert_allclose(ratings[allowed], expected[allowed], atol=1e-5)
    assert (ratings[~allowed] == 0).all()
    assert ratings.min() >= 0 and ratings.max() <= 5
    assert sum(T.WEIGHTS.values()) == pytest.approx(1.0)
    text = T.describe()
    assert "weak targets (not human ratings)" in text and str(T.SCORE_LOW) in text


def test_style_affinity_is_a_small_prior():
    guitar_styles = np.array(["punk", "skank", "no-such-style"])
    m = T.style_matrix(guitar_styles, np.array(["punk", "reggae", "jazz"]))
    np.testing.assert_array_equal(m, [[1, 0, 0], [0, 1, 0], [0.5, 0.5, 0.5]])
    # even a perfect style match moves the rating by at most WEIGHTS["style"] of the score range
    assert T.WEIGHTS["style"] / (T.SCORE_HIGH - T.SCORE_LOW) * 5 < 2.0
    assert T.WEIGHTS["interlock_kick"] == max(T.WEIGHTS.values())


def test_density_complement_prefers_sparse_drums_under_busy_guitar():
    busy = _fingerprint(np.arange(0, 192, 3))  # 16ths
    sparse = _fingerprint(np.arange(0, 192, 48))  # one per bar
    busy_drums = _groove(np.arange(0, 192, 12), hat_unit=3)
    sparse_drums = _groove(np.arange(0, 192, 48), hat_unit=24)
    guitar, groove = _sides([busy, sparse], [busy_drums, sparse_drums])
    density = T.components(guitar, groove)["density"]
    assert density[0, 1] > density[0, 0]
    assert density[1, 0] > density[1, 1]
