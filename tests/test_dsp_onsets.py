"""Onset accuracy on guitar rendered with FluidSynth from MIDI with known note times.

Clean, muted and distortion GM guitars, and the clean guitar through
distortion, reverb and compression (numpy effects in tests/effects.py).
Seeds differ from those the detector was tuned on (0, 1) and from those the
benchmark reports (10, 11). Floors sit below the measured figures
(bench/analysis.py prints them) with a margin for other seeds.
"""

from __future__ import annotations

import warnings

import mir_eval
import numpy as np
import pytest

from tests.effects import compressor, distortion, reverb
from sjtui.audio.render import render_riff
from sjtui.audio.riffs import generate_riff
from sjtui.constants import HOP_SIZE
from sjtui.dsp.analysis import OnlineAnalyzer, analyze, merge_band_onsets

RATE = 48000
STYLES = ("straight8", "funk16", "gallop")
SEEDS = (20,)

CASES = {
    # timbre: (GM program, effect, minimum mean F-measure, maximum median decision delay in hops)
    # The delay is measured from the MIDI note-on, so it includes the time the
    # SoundFont sample takes to rise: the distortion sample and the reverb's
    # smeared attack take ~0.2 hop longer than the plucked ones.
    "clean": (27, None, 0.95, 2.0),
    "muted": (28, None, 0.95, 2.0),
    "distortion": (30, None, 0.70, 2.5),
    "clean+distortion": (27, distortion, 0.85, 2.0),
    "clean+reverb": (27, reverb, 0.80, 2.5),
    "clean+compressor": (27, compressor, 0.90, 2.0),
}


def _f(reference_s, estimated_s):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mir_eval.onset.f_measure(reference_s, estimated_s, window=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("timbre", list(CASES))
def test_onset_f_measure(timbre):
    program, effect, floor, max_delay_hops = CASES[timbre]
    scores, delays = [], []
    for style in STYLES:
        for seed in SEEDS:
            riff = generate_riff(style, bars=4, seed=seed)
            x = render_riff(riff, program, RATE)
            if effect is not None:
                x = effect(x, RATE)
            reference = riff.onset_times_s()
            onsets = merge_band_onsets(analyze(x, RATE).onsets, int(0.05 * RATE))
            f, precision, recall = _f(reference, onsets["sample"] / RATE)
            scores.append(f)
            decided = onsets["decided_at"] / RATE
            idx = np.searchsorted(reference, decided) - 1
            delay = decided[idx >= 0] - reference[idx[idx >= 0]]
            delays += delay[delay < 0.05].tolist()
    assert np.mean(scores) >= floor, f"{timbre}: F {np.round(scores, 3)}"
    assert np.median(delays) <= max_delay_hops * HOP_SIZE / RATE


def test_streaming_finds_the_same_onsets_on_a_rendered_riff():
    riff = generate_riff("funk16", bars=2, seed=21)
    x = render_riff(riff, 28, RATE)
    offline = analyze(x, RATE).onsets
    analyzer = OnlineAnalyzer(RATE)
    online = np.concatenate([analyzer.process(x[i : i + 128]).onsets for i in range(0, x.size, 128)])
    assert np.array_equal(online, offline)
    f, _, _ = _f(riff.onset_times_s(), merge_band_onsets(online, int(0.05 * RATE))["sample"] / RATE)
    assert f >= 0.9


@pytest.mark.parametrize("gain", [0.1, 3.0])
def test_input_gain_barely_changes_the_onsets(gain):
    """A guitar 20 dB quieter or 10 dB louder: per band about the same onsets (the low band loses
    a few quiet ones at -20 dB), and the merged onsets still match the notes."""
    riff = generate_riff("funk16", bars=4, seed=22)
    x = render_riff(riff, "clean", RATE)
    reference = analyze(x, RATE).onsets
    scaled = analyze(x * np.float32(gain), RATE).onsets
    for band in range(3):
        n_ref = int(np.sum(reference["band"] == band))
        n_scaled = int(np.sum(scaled["band"] == band))
        assert abs(n_scaled - n_ref) <= max(2, 0.2 * n_ref), (band, n_ref, n_scaled)
    f, _, _ = _f(riff.onset_times_s(), merge_band_onsets(scaled, int(0.05 * RATE))["sample"] / RATE)
    assert f >= 0.95
