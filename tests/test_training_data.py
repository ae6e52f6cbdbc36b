"""Bootstrap data: disjoint splits, held-out renderers, the cache, real renders through the real analysis, augmentation."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from sjtui.constants import STEPS_PER_BEAT
from training import augment, data


def test_splits_have_disjoint_seeds_and_held_out_renderers_only_in_test():
    specs = {split: data.make_specs(split, 60) for split in ("train", "val", "test")}
    seeds = {split: {s.seed for s in items} for split, items in specs.items()}
    assert (
        not seeds["train"] & seeds["val"]
        and not seeds["train"] & seeds["test"]
        and not seeds["val"] & seeds["test"]
    )
    for split in ("train", "val"):
        assert not {s.renderer for s in specs[split]} & data.HELD_OUT_RENDERERS
    test_renderers = {s.renderer for s in specs["test"]}
    assert data.HELD_OUT_RENDERERS <= test_renderers  # every held-out combination is tested
    assert test_renderers - data.HELD_OUT_RENDERERS  # and seen ones too
    # every style, several SoundFonts and the synth are used for training
    train = specs["train"]
    assert {s.style for s in train} == set(__import__("sjtui.audio.riffs", fromlist=["STYLES"]).STYLES)
    assert {s.renderer.split(":")[0] for s in train} >= {"ks", "timgm"}
    assert data.make_specs("train", 60) == train  # deterministic


def test_cache_key_depends_on_every_generation_parameter():
    spec = data.make_specs("train", 1)[0]
    keys = {spec.key()}
    for change in (
        {"bpm": spec.bpm + 1},
        {"renderer": "ks:muted" if spec.renderer != "ks:muted" else "ks:clean"},
        {"thin": spec.thin + 0.1},
        {"swing": not spec.swing},
        {"seed": spec.seed + 1},
        {"augment_strength": 0.5},
    ):
        keys.add(dataclasses.replace(spec, **change).key())
    assert len(keys) == 7
    assert data.make_specs("train", 1)[0].key() == spec.key()


def test_swing_moves_offbeat_eighths_to_the_triplet_position():
    spec = dataclasses.replace(
        data.make_specs("train", 1)[0],
        style="straight8",
        meter="4/4",
        swing=True,
        thin=0.0,
        renderer="ks:clean",
    )
    _, riff = data.render_take(spec)
    positions = riff.onset_steps() % STEPS_PER_BEAT
    assert (positions == 8).any() and not (positions == 6).any()
    assert riff.feel == "swing"


def test_guitar_set_renders_real_takes_into_model_inputs_and_caches_them(tmp_path):
    fonts = data.soundfonts()
    base = data.make_specs("val", 2)
    renderers = ["ks:muted"] + ([f"{next(iter(fonts))}:clean"] if fonts else ["ks:distorted"])
    specs = [dataclasses.replace(s, renderer=r) for s, r in zip(base, renderers)]
    first = data.guitar_set(specs, tmp_path, workers=1)
    files = sorted((tmp_path / "guitar").glob("*.npz"))
    assert len(files) == 2
    mtimes = [f.stat().st_mtime_ns for f in files]
    assert first.grid.shape[1:] == (13, 4, 60) and first.context.shape[1:] == (10,)
    assert len(first) >= 4  # 12+ bars, hop 4 for val: at least 2 windows per take
    onset_cells = (first.grid[:, 6:9].max(axis=1) > 0).sum(axis=(1, 2))
    assert (onset_cells > 0).all()
    np.testing.assert_allclose(first.context[:, 0], np.log2(first.bpm / 120.0), atol=1e-6)
    second = data.guitar_set(specs, tmp_path, workers=1)
    assert [f.stat().st_mtime_ns for f in files] == mtimes  # read from the cache, not regenerated
    np.testing.assert_array_equal(first.grid, second.grid)
    with np.load(files[0]) as saved:
        chain = json.loads(str(saved["chain"]))
    assert isinstance(chain, list)


def test_augmentation_chain_is_seeded_and_keeps_the_take_usable():
    pytest.importorskip("pedalboard")
    from sjtui.audio.riffs import generate_riff
    from sjtui.audio.synth_guitar import render_notes
    from sjtui.dsp.analysis import analyze

    riff = generate_riff("straight8", bpm=120, bars=4, seed=5)
    audio = render_notes(riff.notes, 48000, "clean", seed=5, length_s=riff.duration_s)
    chains = [augment.random_chain(np.random.default_rng(s)) for s in range(40)]
    assert augment.random_chain(np.random.default_rng(7)) == chains[7]
    used = {name for chain in chains for name, _ in chain}
    assert used == set(augment.PROBABILITIES)  # every effect occurs
    assert augment.random_chain(np.random.default_rng(1), strength=0.0) == []
    heavy = [
        ("eq", {"low_db": 6, "peak_hz": 800, "peak_db": -6, "high_db": 6}),
        ("compressor", {"threshold_db": -20, "ratio": 4, "attack_ms": 5}),
        ("distortion", {"drive_db": 15}),
        ("chorus", {"rate_hz": 1, "depth": 0.3, "mix": 0.4}),
        ("reverb", {"room_size": 0.5, "wet": 0.3}),
        ("gain", {"gain_db": -6}),
        ("noise", {"snr_db": 30, "seed": 1}),
    ]
    wet = augment.apply_chain(audio, 48000, heavy)
    assert wet.shape == audio.shape and wet.dtype == np.float32
    assert np.abs(wet - audio).max() > 0.01 and np.abs(wet).max() <= 1.0
    np.testing.assert_array_equal(wet, augment.apply_chain(audio, 48000, heavy))
    # the onsets survive: most notes of the riff are still detected within 30 ms
    onsets = analyze(wet, 48000).onsets["sample"] / 48000.0
    truth = riff.onset_times_s()
    found = np.min(np.abs(truth[:, None] - onsets[None, :]), axis=1) < 0.03
    assert found.mean() > 0.8
    start, error_ms = augment.shifted_start(np.random.default_rng(0), 2.0, 2, 48000)
    assert start in (0, 96000, 192000) and abs(error_ms) <= 8.0
