"""A tiny training run end to end (never the full model: a few steps on little real data).

Real generated takes (Karplus-Strong, rendered and analysed for real, into a
temporary cache) and the built-in grooves; weak targets; the training loop
(seeded: two runs give the same weights); fine-tuning on rated pairs; export
to a temporary folder that the runtime loads; and ``sjtui train`` on a real
labels database, including the bad cases (empty database, ratings of
grooves no longer in the library, a second run keeping backups).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sjtui.grooves.textgrid import load_builtin
from sjtui.model import inputs as layout
from training import data as D
from training import evaluate as E
from training import targets as T
from training import train as TR
from training.towers import build_two_tower, save_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    specs = [
        dataclasses.replace(s, renderer=r, augment_strength=0.5)
        for s, r in zip(D.make_specs("train", 4), ["ks:muted", "ks:clean", "ks:distorted", "ks:muted"])
    ]
    specs = [
        dataclasses.replace(s, style=st, meter="4/4")
        for s, st in zip(specs, ["straight8", "funk16", "punk", "sparse"])
    ]
    guitars = D.guitar_set(specs, cache, workers=1)
    grooves = [g for g in load_builtin() if g.bars <= 4 and g.meter.steps_per_bar <= 60]
    g_in = {"grid": guitars.grid, "context": guitars.context}
    d = layout.groove_inputs(grooves)
    # spread the grooves' tempi over the guitar tempi so that the hard filter leaves candidates
    bpm = np.resize(np.sort(guitars.bpm), len(grooves))
    d["context"] = np.stack([layout.context_vector(b, gr.meter) for b, gr in zip(bpm, grooves)])
    g_side = T.GuitarSide(guitars.grid, guitars.context, guitars.bpm, guitars.meter, guitars.style)
    d_side = T.GrooveSide(
        d["grid"], d["context"], bpm, [str(g.meter) for g in grooves], [g.style for g in grooves]
    )
    tempo, meter = E.fit_matrices(g_side, d_side)
    part = {
        "guitar_inputs": g_in,
        "groove_inputs": d,
        "ratings": T.ratings(g_side, d_side),
        "allowed": tempo & meter,
        "tempo": tempo,
        "meter": meter,
    }
    return part, grooves, guitars


def _train(part, steps=30, seed=0):
    model = build_two_tower(seed)
    history = TR.train_loop(
        model, part, part, "rated", steps=steps, seed=seed, batch_guitars=8, random_grooves=16, eval_every=10
    )
    return model, history


def test_tiny_training_learns_and_is_reproducible(tiny):
    part, _, _ = tiny
    assert (part["ratings"] >= 4).any() and part["allowed"].any()
    model, history = _train(part)
    loss = np.array(history["loss"])
    assert loss[-10:].mean() < loss[:10].mean()
    assert history["best_step"] in history["val_step"]
    again, _ = _train(part)
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    untrained = build_two_tower(0)
    before = TR.validation_figures(untrained, part)
    after = TR.validation_figures(model, part)
    assert TR.val_score(after) > TR.val_score(before)


def test_finetune_moves_scores_towards_the_ratings(tiny):
    part, _, _ = tiny
    model, _ = _train(part, steps=10)
    rng = np.random.default_rng(0)
    n_g, n_d = part["ratings"].shape
    # a rater who loves the first half of the grooves and hates the rest
    pairs = [
        (int(i), int(j), 5.0 if j < n_d // 2 else 0.0)
        for i in range(n_g)
        for j in rng.choice(n_d, 6, replace=False)
    ]
    g0, d0 = TR.embed_numpy(model, part["guitar_inputs"], part["groove_inputs"])
    info = TR.finetune(model, part["guitar_inputs"], part["groove_inputs"], pairs, steps=40)
    g1, d1 = TR.embed_numpy(model, part["guitar_inputs"], part["groove_inputs"])

    def separation(g, d):
        s = g @ d.T
        return s[:, : n_d // 2].mean() - s[:, n_d // 2 :].mean()

    assert separation(g1, d1) > separation(g0, d0) + 0.05
    assert info["n_pairs"] == len(pairs) and info["steps"] == 40


def _base_model_dir(tmp_path, part):
    """A model folder with a trained-status manifest and its torch checkpoint (as training/train.py installs)."""
    from sjtui.model.manifest import sha256_of
    from training.export import export_model

    model, _ = _train(part, steps=10)
    base = tmp_path / "base"
    base.mkdir()
    ckpt = base / "checkpoint-0.1.0.pt"
    training = {"status": "trained", "summary": "tiny smoke-test model (a few steps on built-in grooves)"}
    save_checkpoint(ckpt, model, training)
    training["checkpoint"] = {"file": ckpt.name, "sha256": sha256_of(ckpt), "size_bytes": ckpt.stat().st_size}
    export_model(model, base, version="0.1.0", training=training)
    return base, model


def test_export_of_a_trained_model_loads_in_the_runtime(tmp_path, tiny):
    from sjtui.model.runtime import EncoderPair

    part, _, _ = tiny
    base, model = _base_model_dir(tmp_path, part)
    pair = EncoderPair(base)
    assert pair.trained
    pair.check_reference()
    g_torch, d_torch = TR.embed_numpy(model, part["guitar_inputs"], part["groove_inputs"])
    g_onnx = pair.embed_guitar_inputs(part["guitar_inputs"]["grid"], part["guitar_inputs"]["context"])
    np.testing.assert_allclose(g_onnx, g_torch, atol=1e-5)
    d = part["groove_inputs"]
    d_onnx = pair.embed_groove_inputs(d["grid"], d["descriptors"], d["context"])
    np.testing.assert_allclose(d_onnx, d_torch, atol=1e-5)


def _labels_db(tmp_path, guitars, grooves_store):
    """A real labels database: clips with fingerprints, ratings of library grooves and of one that is gone."""
    from sjtui.audio.riffs import generate_riff
    from sjtui.audio.synth_guitar import render_notes
    from sjtui.dsp.analysis import analyze
    from sjtui.dsp.fingerprint import fingerprints_of
    from sjtui.labels.store import GrooveKey, LabelStore
    from sjtui.transport.timebase import TempoMap

    rows = grooves_store.list_rows(source="builtin")
    rows = [r for r in rows if r["meter"] == "4/4" and r["bars"] <= 4][:12]
    labels = tmp_path / "labels"
    with LabelStore.open(labels) as store:
        n = 0
        for k, style in enumerate(("straight8", "funk16", "sparse")):
            riff = generate_riff(style, bpm=110, bars=5, seed=k)
            audio = render_notes(riff.notes, 48000, "muted", seed=k, length_s=riff.duration_s + 0.3)
            fp = fingerprints_of(analyze(audio, 48000), TempoMap.constant(48000, 110, "4/4"))[0]
            clip = store.add_clip(audio, 48000, fingerprint=fp, meta={"source": "generated"})
            for j, row in enumerate(rows):
                store.add_rating(clip, GrooveKey.from_row(row), (j + k) % 6)
                n += 1
        store.add_rating(clip, GrooveKey("midi", "gone/away.mid", 0, 4), 5)
    return labels, n


def test_sjtui_train_finetunes_from_a_labels_database_with_backups(tmp_path, tiny, capsys):
    from sjtui.cli import main
    from sjtui.grooves.store import GrooveStore
    from sjtui.model.manifest import read_manifest
    from sjtui.model.runtime import EncoderPair

    part, _, guitars = tiny
    base, _ = _base_model_dir(tmp_path, part)
    library = tmp_path / "library"
    with GrooveStore(library) as store:
        labels, n = _labels_db(tmp_path, guitars, store)
    out = tmp_path / "user-model"
    args = [
        "train",
        "--labels",
        str(labels),
        "--library",
        str(library),
        "--base",
        str(base),
        "--out",
        str(out),
        "--steps",
        "20",
        "--json",
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "skipped 1 rating(s) of grooves no longer in the library" in captured.err
    manifest = read_manifest(out)
    assert manifest["training"]["human_ratings"] == n
    assert manifest["training"]["skipped_ratings"]["groove_not_in_library"] == 1
    assert "+user." in manifest["version"]
    EncoderPair(out).check_reference()
    first = {p.name for p in out.iterdir()}
    assert main(args) == 0  # a second run replaces the manifest: the old one is kept as a backup
    backups = [p.name for p in out.iterdir() if ".bak-" in p.name]
    assert any(name.startswith("manifest.json.bak-") for name in backups)
    assert first <= {p.name for p in out.iterdir()}  # nothing of the first run was deleted


def test_sjtui_train_with_an_empty_or_missing_database_writes_nothing(tmp_path, tiny, capsys):
    from sjtui.cli import main
    from sjtui.grooves.store import GrooveStore
    from sjtui.labels.store import LabelStore

    part, _, _ = tiny
    base, _ = _base_model_dir(tmp_path, part)
    library = tmp_path / "library"
    GrooveStore(library).close()
    out = tmp_path / "user-model"
    assert (
        main(
            [
                "train",
                "--labels",
                str(tmp_path / "nothing-here"),
                "--library",
                str(library),
                "--base",
                str(base),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "no labels database" in capsys.readouterr().err
    empty = tmp_path / "empty"
    LabelStore.open(empty).close()
    assert (
        main(
            [
                "train",
                "--labels",
                str(empty),
                "--library",
                str(library),
                "--base",
                str(base),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "holds no ratings" in capsys.readouterr().err
    assert not out.exists()
