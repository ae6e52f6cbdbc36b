"""The live accumulator cuts its rings to the window before computing: the result must not change."""

from __future__ import annotations

import numpy as np
import pytest

from sjtui.dsp.analysis import Features
from sjtui.dsp.fingerprint import FingerprintAccumulator, compute_fingerprint
from sjtui.dsp.onsets import ONSET_DTYPE
from sjtui.transport.timebase import TempoMap

RATE, HOP = 48000, 256


def random_features(n_frames: int, seed: int, onsets_per_frame: float = 1 / 6) -> Features:
    rng = np.random.default_rng(seed)
    frame_sample = (np.arange(n_frames, dtype=np.int64) + 1) * HOP
    onsets = np.zeros(int(n_frames * onsets_per_frame), dtype=ONSET_DTYPE)
    onsets["sample"] = np.sort(rng.choice(frame_sample, onsets.size, replace=False))
    onsets["band"] = rng.integers(0, 3, onsets.size)
    onsets["strength"] = rng.random(onsets.size)
    return Features(
        first_frame=0,
        frame_sample=frame_sample,
        energy_db=rng.uniform(-80, 0, (3, n_frames)).astype(np.float32),
        flux=rng.random((3, n_frames)).astype(np.float32),
        onsets=onsets,
    )


@pytest.mark.parametrize("latency_ms", [0.0, 35.0, -12.0])
@pytest.mark.parametrize("bpm, meter", [(120.0, "4/4"), (71.0, "7/8"), (190.0, "3/4")])
def test_window_of_the_rings_gives_the_offline_fingerprint(bpm, meter, latency_ms):
    features = random_features(6000, seed=int(bpm))  # 32 s: many windows in the rings
    tempo_map = TempoMap.constant(RATE, bpm, meter=meter, anchor_sample=1000)
    acc = FingerprintAccumulator(RATE, HOP)
    for start in range(0, 6000, 700):  # pushed in batches, as the analysis thread does
        part = slice(start, start + 700)
        inside = (features.onsets["sample"] >= features.frame_sample[part][0]) & (
            features.onsets["sample"] <= features.frame_sample[part][-1]
        )
        acc.push(
            Features(
                start,
                features.frame_sample[part],
                features.energy_db[:, part],
                features.flux[:, part],
                features.onsets[inside],
            )
        )
    last_bar = int(tempo_map.sample_to_bar(features.frame_sample[-1]))
    for first_bar in (1, last_bar // 2, last_bar - 4):
        live = acc.fingerprint(tempo_map, first_bar, latency_ms=latency_ms)
        offline = compute_fingerprint(
            features.frame_sample, features.energy_db, features.flux, features.onsets, tempo_map, first_bar,
            latency_ms=latency_ms,
        )  # fmt: skip
        assert np.array_equal(live.energy, offline.energy)
        assert np.array_equal(live.novelty, offline.novelty)
        assert np.array_equal(live.onsets, offline.onsets)
        assert live.onsets.size > 0


def test_rings_that_wrapped_around_give_the_offline_fingerprint():
    """More frames and onsets than the rings hold: the newest windows still come out exactly."""
    acc = FingerprintAccumulator(RATE, HOP)
    n = acc.capacity * 2 + 1234
    features = random_features(n, seed=5, onsets_per_frame=0.5)  # onsets overflow their ring too
    assert features.onsets.size > acc._onsets.size
    tempo_map = TempoMap.constant(RATE, 97.0, meter="4/4")
    for start in range(0, n, 997):
        part = slice(start, start + 997)
        frames = features.frame_sample[part]
        inside = (features.onsets["sample"] >= frames[0]) & (features.onsets["sample"] <= frames[-1])
        acc.push(
            Features(
                start, frames, features.energy_db[:, part], features.flux[:, part], features.onsets[inside]
            )
        )
    last_bar = int(tempo_map.sample_to_bar(features.frame_sample[-1]))
    for first_bar in range(last_bar - 12, last_bar - 3):  # windows across the rings' wrap points
        live = acc.fingerprint(tempo_map, first_bar, latency_ms=20.0)
        offline = compute_fingerprint(
            features.frame_sample, features.energy_db, features.flux, features.onsets, tempo_map, first_bar,
            latency_ms=20.0,
        )  # fmt: skip
        assert np.array_equal(live.energy, offline.energy)
        assert np.array_equal(live.novelty, offline.novelty)
        assert np.array_equal(live.onsets, offline.onsets) and live.onsets.size > 0
