"""The model's fixed input layout: padded bars, aligned steps, context, descriptors (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from sjtui.dsp.fingerprint import ONSET_DTYPE, Fingerprint, compute_fingerprint
from sjtui.grooves.descriptors import DESCRIPTOR_NAMES, groove_descriptors
from sjtui.grooves.midi_import import read_grooves
from sjtui.grooves.vho import N_VOICES, Groove
from sjtui.meter import Meter, parse_meter
from sjtui.model import inputs as layout
from sjtui.model.errors import ModelInputError
from sjtui.transport.timebase import TempoMap

RATE = 48000
KICK, SNARE, CLOSED_HAT = 0, 1, 2


def _fingerprint(meter: Meter, onsets=(), bpm: float = 100.0, rng=None) -> Fingerprint:
    """onsets: iterable of (band, bar, step, strength, offset)."""
    rng = rng or np.random.default_rng(0)
    shape = (3, 4, meter.steps_per_bar)
    events = np.array(list(onsets), dtype=ONSET_DTYPE)
    return Fingerprint(
        rng.random(shape).astype(np.float32), rng.random(shape).astype(np.float32), events, meter, bpm, 0, 0.0
    )


def _groove(meter: Meter, bars: int = 4, hits=(), bpm: float = 100.0, name: str = "g") -> Groove:
    """hits: iterable of (voice, absolute step, velocity, offset)."""
    n = bars * meter.steps_per_bar
    h = np.zeros((n, N_VOICES), dtype=bool)
    v = np.zeros((n, N_VOICES), dtype=np.float32)
    o = np.zeros((n, N_VOICES), dtype=np.float32)
    for voice, step, velocity, offset in hits:
        h[step, voice], v[step, voice], o[step, voice] = True, velocity, offset
    return Groove(h, v, o, meter, bpm, name=name, source="builtin")


@pytest.mark.parametrize(
    "meter_text,steps", [("4/4", 48), ("3/4", 36), ("6/8", 36), ("5/4", 60), ("7/8", 42)]
)
def test_every_meter_is_padded_to_the_model_bar_with_a_mask(meter_text, steps):
    meter = parse_meter(meter_text)
    rng = np.random.default_rng(1)
    onsets = [
        (b, bar, s, 1.0, 0.1)
        for b, bar, s in zip(rng.integers(0, 3, 20), rng.integers(0, 4, 20), rng.integers(0, steps, 20))
    ]
    hits = [
        (voice, step, 0.7, -0.1)
        for voice, step in zip(rng.integers(0, 9, 30), rng.integers(0, 4 * steps, 30))
    ]
    guitar = layout.guitar_inputs(_fingerprint(meter, onsets, rng=rng))
    groove = layout.groove_inputs(_groove(meter, hits=hits))

    for grid, mask_channel in (
        (guitar["grid"][0], layout.GUITAR_MASK_CHANNEL),
        (groove["grid"][0], layout.GROOVE_MASK_CHANNEL),
    ):
        assert grid.shape[1:] == (4, 60)
        mask = grid[mask_channel]
        assert np.all(mask[:, :steps] == 1.0) and np.all(mask[:, steps:] == 0.0)
        assert not grid[:, :, steps:].any(), "padding columns must be all zero"
    assert guitar["grid"].shape == (1, 13, 4, 60) and groove["grid"].shape == (1, 28, 4, 60)
    for context in (guitar["context"][0], groove["context"][0]):
        one_hot = context[4:]
        assert one_hot.sum() == 1.0 and one_hot[layout.KNOWN_METERS.index(meter_text)] == 1.0
        assert context[3] == pytest.approx(steps / 60)


def test_an_onset_and_a_kick_on_the_same_grid_step_share_a_column():
    """From samples to columns: an onset played at bar 2, step 18 of 7/8 and a kick written there meet."""
    meter = Meter(7, 8)
    tempo_map = TempoMap.constant(RATE, 110.0, meter)
    spb = meter.steps_per_bar
    n_frames = int(np.ceil(float(tempo_map.bar_to_sample(4)) / 256)) + 8
    frame_sample = (np.arange(n_frames) + 1) * 256
    energy_db = np.full((3, n_frames), -30.0)
    flux = np.zeros((3, n_frames))
    onsets = np.zeros(1, dtype=[("sample", np.int64), ("band", np.int8), ("strength", np.float32)])
    onsets["sample"] = round(float(tempo_map.step_to_sample(2 * spb + 18 + 0.2)))  # 0.2 step late
    onsets["band"] = 0
    onsets["strength"] = 3.0
    fingerprint = compute_fingerprint(frame_sample, energy_db, flux, onsets, tempo_map, first_bar=0)
    guitar = layout.guitar_inputs(fingerprint)["grid"][0]
    drums = layout.groove_inputs(_groove(meter, hits=[(KICK, 2 * spb + 18, 0.9, 0.0)], bpm=110.0))["grid"][0]

    strength = guitar[6:9]  # onset strength, bands low/mid/high
    assert list(zip(*np.nonzero(strength))) == [(0, 2, 18)]
    assert strength[0, 2, 18] == pytest.approx(1.0)  # relative to the window's strongest onset
    assert guitar[9, 2, 18] == pytest.approx(0.2, abs=0.01)  # its micro-offset, in steps
    assert list(zip(*np.nonzero(drums[:9]))) == [(KICK, 2, 18)]
    assert drums[9 + KICK, 2, 18] == pytest.approx(0.9)


def test_the_strongest_onset_of_a_cell_wins_with_its_offset():
    meter = Meter(4, 4)
    fingerprint = _fingerprint(
        meter,
        [
            (1, 0, 6, 0.4, -0.3),
            (1, 0, 6, 0.9, 0.25),
            (1, 0, 6, 0.6, 0.1),
            (2, 3, 47, 1.0, -0.5),
            (0, 0, 6, 0.5, 0.0),
        ],
    )
    grid = layout.guitar_inputs(fingerprint)["grid"][0]
    assert grid[6 + 1, 0, 6] == pytest.approx(0.9) and grid[9 + 1, 0, 6] == pytest.approx(0.25)
    assert grid[6 + 2, 3, 47] == pytest.approx(1.0) and grid[9 + 2, 3, 47] == pytest.approx(-0.5)
    assert grid[6 + 0, 0, 6] == pytest.approx(0.5)
    assert np.count_nonzero(grid[6:9]) == 3
    np.testing.assert_array_equal(grid[0:3, :, :48], fingerprint.energy)
    np.testing.assert_array_equal(grid[3:6, :, :48], fingerprint.novelty)


@pytest.mark.parametrize("meter_text", ["6/4", "12/8"])
def test_bars_longer_than_the_model_bar_are_refused(meter_text):
    meter = parse_meter(meter_text)
    with pytest.raises(ModelInputError, match=rf"meter {meter_text}: 72 steps per bar .* 60-step bar"):
        layout.guitar_inputs(_fingerprint(meter))
    with pytest.raises(ModelInputError, match="groove 'g': meter .* 72 steps per bar"):
        layout.groove_inputs(_groove(meter))


def test_malformed_fingerprints_are_refused():
    good = _fingerprint(Meter(4, 4))
    three_bars = Fingerprint(good.energy[:, :3], good.novelty[:, :3], good.onsets, good.meter, 100.0, 0, 0.0)
    with pytest.raises(ModelInputError, match=r"energy has shape \(3, 3, 48\); the model takes \(3, 4, 48\)"):
        layout.guitar_inputs(three_bars)
    outside = _fingerprint(Meter(3, 4), [(0, 1, 40, 1.0, 0.0)])
    with pytest.raises(ModelInputError, match="bar 1, step 40.*outside"):
        layout.guitar_inputs(outside)
    with pytest.raises(ModelInputError, match="no fingerprint given"):
        layout.guitar_inputs([])


def test_short_grooves_loop_and_long_ones_are_refused():
    meter = Meter(4, 4)
    one_bar = _groove(meter, bars=1, hits=[(KICK, 0, 1.0, 0.0), (SNARE, 24, 0.8, 0.05)])
    grid = layout.groove_inputs(one_bar)["grid"][0]
    for bar in range(4):
        assert grid[KICK, bar, 0] == 1.0 and grid[SNARE, bar, 24] == 1.0
        assert grid[18 + SNARE, bar, 24] == pytest.approx(0.05)
    assert np.count_nonzero(grid[:9]) == 8
    with pytest.raises(ModelInputError, match=r"8 bars.*bar_slice"):
        layout.groove_inputs(_groove(meter, bars=8))


def test_context_puts_half_and_double_time_on_the_same_tempo_circle():
    meter = Meter(4, 4)
    c60, c120, c240, c90 = (layout.context_vector(bpm, meter) for bpm in (60.0, 120.0, 240.0, 90.0))
    for c in (c60, c240):
        np.testing.assert_allclose(c[1:3], c120[1:3], atol=1e-6)
    assert (c60[0], c120[0], c240[0]) == (-1.0, 0.0, 1.0)
    assert np.dot(c90[1:3], c120[1:3]) < 0.0  # 90 vs 120 BPM: 0.415 octave apart, far on the circle
    for bad in (0.0, -10.0, float("nan")):
        with pytest.raises(ModelInputError, match="not a positive number"):
            layout.context_vector(bad, meter)
    assert layout.context_vector(100.0, Meter(2, 4))[-1] == 1.0  # meter "other"


def test_descriptors_come_from_the_groove_library_code_scaled():
    meter = Meter(4, 4)
    # triplet swing: hats on the beat and 8 steps after it (2/3 of the beat)
    swung = _groove(meter, hits=[(CLOSED_HAT, s, 0.6, 0.0) for s in range(4 * 48) if s % 12 in (0, 8)])
    straight = _groove(meter, hits=[(CLOSED_HAT, s, 0.6, 0.0) for s in range(4 * 48) if s % 6 == 0])
    out = layout.groove_inputs([swung, straight])["descriptors"]
    swing = DESCRIPTOR_NAMES.index("swing_ratio")
    density = DESCRIPTOR_NAMES.index("density_closed_hat")
    loudness = DESCRIPTOR_NAMES.index("loudness")
    assert out[0, swing] == pytest.approx(1.0)  # log2(2)
    assert out[1, swing] == pytest.approx(0.0)  # log2(1)
    assert out[1, density] == pytest.approx(8 / 16)  # 8 hats per bar
    assert out[0, loudness] == pytest.approx(0.6)
    raw = np.stack([groove_descriptors(swung), groove_descriptors(straight)])
    np.testing.assert_array_equal(
        layout.groove_inputs([swung, straight], descriptors=raw)["descriptors"], out
    )
    with pytest.raises(ModelInputError, match=r"descriptors have shape \(2, 5\)"):
        layout.groove_inputs([swung, straight], descriptors=np.zeros((2, 5)))


def test_real_drum_midi_windows_keep_every_hit(groove_midi_dir):
    files = sorted((groove_midi_dir / "drummer1" / "eval_session").glob("*.mid"))[:3]
    assert files
    grooves = []
    for path in files:
        windows, _ = read_grooves(path, name=path.stem, source_name="gmd")
        grooves += [g for g in windows if g.bars == 4]
    assert grooves
    x = layout.groove_inputs(grooves)
    for i, groove in enumerate(grooves):
        spb = groove.meter.steps_per_bar
        np.testing.assert_array_equal(x["grid"][i, :9, :, :spb].sum(axis=(1, 2)), groove.hits.sum(axis=0))
        np.testing.assert_allclose(
            x["grid"][i, 9:18, :, :spb].sum(axis=(1, 2)), groove.velocities.sum(axis=0), rtol=1e-5
        )
        np.testing.assert_allclose(
            x["grid"][i, 18:27, :, :spb].sum(axis=(1, 2)), groove.offsets.sum(axis=0), atol=1e-4
        )
        assert x["context"][i, 0] == pytest.approx(np.log2(groove.bpm / 120.0))


def test_layout_description_matches_the_arrays():
    info = layout.input_layout()
    assert len(info["guitar_channels"]) == layout.GUITAR_GRID_SHAPE[0] == 13
    assert len(info["groove_channels"]) == layout.GROOVE_GRID_SHAPE[0] == 28
    assert len(info["context_names"]) == layout.CONTEXT_DIM
    assert (
        info["descriptor_names"] == list(DESCRIPTOR_NAMES)
        and len(info["descriptor_scale"]) == layout.DESCRIPTOR_DIM
    )
    assert info["guitar_channels"][layout.GUITAR_MASK_CHANNEL] == "mask"
    assert info["groove_channels"][layout.GROOVE_MASK_CHANNEL] == "mask"
