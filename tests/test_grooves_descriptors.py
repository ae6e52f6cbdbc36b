"""Groove descriptors on patterns whose values are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from sjtui.constants import DRUM_VOICES
from sjtui.grooves.descriptors import (
    DESCRIPTOR_NAMES,
    N_DESCRIPTORS,
    compute_descriptors,
    descriptor_dict,
    lhl_syncopation,
    metrical_weights,
    swing_ratio,
)
from sjtui.grooves.vho import N_VOICES
from sjtui.meter import Meter

HH, SD, BD = (DRUM_VOICES.index(v) for v in ("closed_hat", "snare", "kick"))


def pattern(bars: int = 1, steps_per_bar: int = 48):
    shape = (bars * steps_per_bar, N_VOICES)
    return np.zeros(shape, bool), np.zeros(shape, np.float32), np.zeros(shape, np.float32)


def test_metrical_weights_of_4_4_and_6_8():
    w = metrical_weights(Meter(4, 4))
    assert w[0] == 0 and w[24] == -1 and w[12] == w[36] == -2 and w[6] == -3 and w[3] == -4 and w[4] == -4
    w = metrical_weights(Meter(6, 8))
    assert w[0] == 0 and w[18] == -1 and w[6] == w[12] == w[24] == -2 and w[3] == -4


def test_syncopation_by_hand():
    w = metrical_weights(Meter(4, 4))
    on_beats = np.zeros(48, bool)
    on_beats[::12] = True
    assert lhl_syncopation(on_beats, w) == 0.0
    off_beats = np.zeros(48, bool)
    off_beats[6::12] = True  # 8ths between the beats: rests on beat 2 (+1), 3 (+2), 4 (+1), next 1 (+3)
    assert lhl_syncopation(off_beats, w) == 7.0
    tresillo = np.zeros(48, bool)
    tresillo[[0, 18, 36]] = True  # 3+3+2 in 16ths: 18 (-3) before 24 (-1): +2; 36 (-2) then 0 wraps: none
    assert lhl_syncopation(tresillo, w) == 2.0
    assert lhl_syncopation(np.zeros(48, bool), w) == 0.0


def test_density_loudness_and_timing():
    hits, velocities, offsets = pattern(bars=2)
    hits[::6, HH] = True  # 8 per bar
    hits[[12, 36, 60, 84], SD] = True
    velocities[hits] = 0.5
    offsets[hits] = 0.1
    d = descriptor_dict(compute_descriptors(hits, velocities, offsets, Meter(4, 4)))
    assert d["density_closed_hat"] == 8 and d["density_snare"] == 2 and d["density_kick"] == 0
    assert d["loudness"] == pytest.approx(0.5)
    assert d["timing_mean_steps"] == pytest.approx(0.1) and d["timing_spread_steps"] == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("position, ratio", [(6, 1.0), (7, 7 / 5), (8, 2.0)])
def test_swing_ratio_from_offbeat_8th_position(position, ratio):
    hits, _, offsets = pattern()
    hits[::12, HH] = True
    hits[position::12, HH] = True
    assert swing_ratio(hits, offsets) == pytest.approx(ratio)


def test_swing_ratio_uses_micro_timing_offsets():
    hits, _, offsets = pattern()
    hits[::12, HH] = True
    hits[6::12, HH] = True
    offsets[6::12, HH] = 0.5 - 1e-3  # played at ~6.5 steps: 6.5 / 5.5
    assert swing_ratio(hits, offsets) == pytest.approx(6.5 / 5.5, abs=1e-3)


def test_descriptor_vector_shape_and_empty_groove():
    hits, velocities, offsets = pattern(bars=4)
    vector = compute_descriptors(hits, velocities, offsets, Meter(4, 4))
    assert vector.shape == (N_DESCRIPTORS,) == (len(DESCRIPTOR_NAMES),) and vector.dtype == np.float32
    assert descriptor_dict(vector)["swing_ratio"] == 1.0 and not np.isnan(vector).any()


@pytest.mark.parametrize("meter, bars", [(Meter(4, 4), 4), (Meter(3, 4), 2), (Meter(6, 8), 4), (Meter(5, 8), 1), (Meter(7, 8), 4)])
def test_batch_matches_the_one_groove_reference(meter, bars):
    """The vectorised batch agrees with the plain per-groove functions on random grooves."""
    from sjtui.grooves.descriptors import compute_descriptors_batch

    rng = np.random.default_rng(bars * 10 + meter.numerator)
    n_steps = bars * meter.steps_per_bar
    hits = rng.random((64, n_steps, N_VOICES)) < rng.uniform(0.0, 0.3, (64, 1, 1))
    hits[0] = False  # an empty groove
    hits[1, :, [2, 3, 8]] = False  # no time-keeper: swing from all voices
    velocities = np.where(hits, rng.random(hits.shape), 0).astype(np.float32)
    offsets = np.where(hits, rng.uniform(-0.5, 0.5, hits.shape), 0).astype(np.float32)
    batch = compute_descriptors_batch(hits, velocities, offsets, meter)
    weights = np.tile(metrical_weights(meter), bars)
    for i in range(64):
        h = hits[i]
        assert batch[i, 9] == pytest.approx(lhl_syncopation(h.any(axis=1), weights) / bars, abs=1e-5)
        assert batch[i, 10] == pytest.approx(lhl_syncopation(h[:, BD], weights) / bars, abs=1e-5)
        assert batch[i, 11] == pytest.approx(lhl_syncopation(h[:, SD], weights) / bars, abs=1e-5)
        assert batch[i, 12] == pytest.approx(swing_ratio(h, offsets[i]), rel=1e-5)
        if h.any():
            assert batch[i, 13] == pytest.approx(velocities[i][h].mean(), rel=1e-5)
            assert batch[i, 15] == pytest.approx(offsets[i][h].std(), abs=1e-5)
