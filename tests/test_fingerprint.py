"""The 4-bar fingerprint: grid placement, feel, invariances, one implementation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sjtui.audio.render import render_riff
from sjtui.audio.riffs import Riff, generate_riff
from sjtui.constants import STEPS_PER_BEAT
from sjtui.dsp.analysis import OnlineAnalyzer, analyze
from sjtui.dsp.fingerprint import FingerprintAccumulator, fingerprints_of
from sjtui.transport.timebase import TempoMap

SR = 48000

# (style, bpm) across 70..180 BPM and the feels the issue names.
CASES = [
    ("straight8", 70), ("straight8", 150), ("funk16", 95), ("funk16", 112), ("shuffle", 80),
    ("shuffle", 132), ("six8", 70), ("six8", 96), ("waltz", 100), ("waltz", 180),
    ("gallop", 140), ("gallop", 176), ("skank", 75), ("punk", 180), ("arpeggio", 110), ("odd78", 140),
]


def _fingerprints(riff: Riff, audio: np.ndarray, sample_rate_hz: int = SR):
    tempo_map = TempoMap.constant(sample_rate_hz, riff.bpm, riff.meter)
    return fingerprints_of(analyze(audio, sample_rate_hz), tempo_map)


def _detected_steps(fingerprints, steps_per_bar: int) -> np.ndarray:
    cells = [(fp.first_bar + o["bar"]) * steps_per_bar + o["step"] for fp in fingerprints for o in fp.onsets]
    return np.unique(np.array(cells, dtype=np.int64))


@pytest.mark.parametrize("program", ["clean", "muted", "distortion"])
def test_note_onsets_land_on_their_grid_step(program):
    hits = total = 0
    for i, (style, bpm) in enumerate(CASES):
        riff = generate_riff(style, bpm=bpm, bars=8, seed=10 + i)
        fps = _fingerprints(riff, render_riff(riff, program, SR))
        assert len(fps) == 2, f"{style}: 8 bars must give two 4-bar windows"
        detected = _detected_steps(fps, riff.meter.steps_per_bar)
        expected = riff.onset_steps()
        distance = np.abs(expected[:, None] - detected[None, :]).min(axis=1)
        hits += int((distance <= 1).sum())
        total += len(expected)
    assert hits / total >= 0.95, f"{program}: {hits}/{total} note onsets on their step (±1)"


def _swung_twin(riff: Riff) -> Riff:
    """The same riff with every off-beat 8th moved to the triplet position (6 -> 8 of 12)."""
    step_s = riff.step_s
    notes = []
    for n in riff.notes:
        step = n.step + 2 if n.step % STEPS_PER_BEAT == 6 else n.step
        notes.append(dataclasses.replace(n, step=step, start_s=step * step_s))
    return dataclasses.replace(riff, notes=tuple(notes), feel="swing", style="shuffle-twin")


def test_shuffle_and_its_straight_twin_differ_in_the_triplet_steps():
    straight = generate_riff("punk", bpm=120, bars=4, seed=3)
    swung = _swung_twin(straight)
    (fp_straight,) = _fingerprints(straight, render_riff(straight, "clean"))
    (fp_swung,) = _fingerprints(swung, render_riff(swung, "clean"))
    phase = np.arange(fp_straight.steps_per_bar) % STEPS_PER_BEAT
    g_straight, g_swung = fp_straight.onset_grid(), fp_swung.onset_grid()
    straight_8th = g_straight[..., phase == 6].sum()
    swung_8th = g_swung[..., phase == 6].sum()
    straight_triplet = g_straight[..., phase == 8].sum()
    swung_triplet = g_swung[..., phase == 8].sum()
    assert swung_triplet > 5 * max(straight_triplet, 0.1)
    assert straight_8th > 5 * max(swung_8th, 0.1)


def test_streaming_accumulation_equals_offline():
    riff = generate_riff("funk16", bpm=104, bars=9, seed=5)
    audio = render_riff(riff, "clean")
    for start_offset in (0, 77, 1000):
        signal = audio[start_offset:]
        tempo_map = TempoMap.constant(SR, riff.bpm, riff.meter, anchor_sample=-start_offset)
        offline = fingerprints_of(analyze(signal, SR), tempo_map)
        assert len(offline) == 2
        for block_size in (1, 64, 255, 256, 1000, 4096):
            analyzer = OnlineAnalyzer(SR)
            acc = FingerprintAccumulator(SR, analyzer.config.hop_size)
            online = []
            next_window = 0
            for i in range(0, len(signal), block_size):
                acc.push(analyzer.process(signal[i : i + block_size]))
                end_bar = next_window + 4
                # a window is ready once frames past its last bar have arrived
                if acc.last_sample >= 0 and tempo_map.sample_to_bar(acc.last_sample) >= end_bar and next_window <= 4:
                    online.append(acc.fingerprint(tempo_map, next_window))
                    next_window += 4
            assert len(online) == len(offline), (start_offset, block_size)
            for a, b in zip(online, offline):
                np.testing.assert_array_equal(a.energy, b.energy)
                np.testing.assert_array_equal(a.novelty, b.novelty)
                np.testing.assert_array_equal(a.onsets, b.onsets)


def test_gain_does_not_change_the_fingerprint():
    riff = generate_riff("straight8", bpm=120, bars=4, seed=8)
    audio = render_riff(riff, "clean")
    (ref,) = _fingerprints(riff, audio)
    for gain in (0.1, 3.0):
        (fp,) = _fingerprints(riff, audio * gain)
        np.testing.assert_allclose(fp.energy, ref.energy, atol=1e-3)
        assert np.abs(fp.novelty - ref.novelty).mean() < 0.02
        np.testing.assert_array_equal(fp.onsets[["band", "bar", "step"]], ref.onsets[["band", "bar", "step"]])


def test_sample_rate_does_not_change_the_fingerprint():
    riff = generate_riff("gallop", bpm=140, bars=4, seed=9)
    (fp48,) = _fingerprints(riff, render_riff(riff, "muted", 48000), 48000)
    (fp44,) = _fingerprints(riff, render_riff(riff, "muted", 44100), 44100)
    assert np.abs(fp48.energy - fp44.energy).mean() < 0.03
    assert np.abs(fp48.novelty - fp44.novelty).mean() < 0.03
    cells48 = set(map(tuple, fp48.onsets[["bar", "step"]].tolist()))
    cells44 = set(map(tuple, fp44.onsets[["bar", "step"]].tolist()))
    assert len(cells48 & cells44) >= 0.9 * max(len(cells48), len(cells44))


def test_latency_offset_puts_onsets_where_they_were_played():
    riff = generate_riff("skank", bpm=90, bars=4, seed=1)
    audio = render_riff(riff, "clean")
    delay = int(0.030 * SR)  # 30 ms between playing and capture
    late = np.concatenate([np.zeros(delay, np.float32), audio])
    tempo_map = TempoMap.constant(SR, riff.bpm, riff.meter)
    (ref,) = fingerprints_of(analyze(audio, SR), tempo_map)
    (compensated,) = fingerprints_of(analyze(late, SR), tempo_map, latency_ms=30.0)
    np.testing.assert_array_equal(compensated.onsets[["band", "bar", "step"]], ref.onsets[["band", "bar", "step"]])
    # Frames fall on the hop grid: 30 ms is not a whole number of hops, so
    # offsets may move by up to one hop (in steps).
    hop_in_steps = 256 / (riff.step_s * SR)
    np.testing.assert_allclose(compensated.onsets["offset"], ref.onsets["offset"], atol=hop_in_steps + 1e-3)
    # Without compensation every onset sits about 30 ms late.
    (uncompensated,) = fingerprints_of(analyze(late, SR), tempo_map)
    late_steps = 0.030 / riff.step_s
    def position(fp):
        o = fp.onsets
        return o["bar"] * fp.steps_per_bar + o["step"] + o["offset"].astype(np.float64)

    shift = position(uncompensated)[:8] - position(ref)[:8]
    np.testing.assert_allclose(shift, late_steps, atol=hop_in_steps + 1e-3)


def test_recording_shorter_than_four_bars_gives_no_window():
    riff = generate_riff("straight8", bpm=120, bars=3, seed=1)
    audio = render_riff(riff, "clean")[: int(riff.duration_s * SR)]  # without the release tail
    assert _fingerprints(riff, audio) == []
    assert _fingerprints(riff, np.zeros(0, np.float32)) == []


def test_silence_gives_a_defined_empty_fingerprint():
    tempo_map = TempoMap.constant(SR, 120, "4/4")
    (fp,) = fingerprints_of(analyze(np.zeros(SR * 9, np.float32), SR), tempo_map)[:1]
    assert fp.onsets.size == 0
    assert not fp.energy.any() and not fp.novelty.any()
