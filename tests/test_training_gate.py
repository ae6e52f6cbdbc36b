"""`sjtui train` installs a fine-tuned model only when held-out ratings say it is not worse."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from training import train as TR
from tests.test_training_smoke import _base_model_dir, _labels_db, tiny  # noqa: F401  (fixture)


def test_held_out_clips_are_a_stable_share_chosen_by_hash():
    clips = [f"{i:064x}" for i in range(50)]
    train, held = TR.split_rated_clips(clips)
    assert len(held) == 10 and not set(train) & set(held) and len(train) + len(held) == 50
    # a clip keeps its side when more clips are rated
    _, held_more = TR.split_rated_clips(clips + [f"{i:064x}" for i in range(50, 60)])
    assert len(set(held) - set(held_more)) <= 2
    assert len(TR.split_rated_clips(clips[:3])[1]) == TR.MIN_HELDOUT_CLIPS


def test_rating_agreement_counts_ordered_pairs_per_window():
    import numpy as np

    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.8]])
    pairs = [(0, 0, 5), (0, 1, 1), (0, 2, 3), (1, 0, 0), (1, 1, 4), (1, 2, 2)]
    # window 0: all three pairs in order; window 1: (0<1) ok, (0<2) ok, (1>2) tied scores -> half
    result = TR.rating_agreement(scores, pairs)
    assert result["n_comparisons"] == 6
    assert result["pair_accuracy"] == pytest.approx(5.5 / 6)
    assert TR.rating_agreement(scores, [(0, 0, 3), (0, 1, 3)])["pair_accuracy"] is None


def _args(labels, library, base, out):
    return ["train", "--labels", str(labels), "--library", str(library), "--base", str(base),
            "--out", str(out), "--steps", "20", "--json"]  # fmt: skip


def test_a_worse_fine_tune_is_not_installed(tmp_path, tiny, capsys, monkeypatch):  # noqa: F811
    import json

    from sjtui.cli import main
    from sjtui.grooves.store import GrooveStore

    part, _, guitars = tiny
    base, _ = _base_model_dir(tmp_path, part)
    library = tmp_path / "library"
    with GrooveStore(library) as store:
        labels, _ = _labels_db(tmp_path, guitars, store)
    real_finetune = TR.finetune

    def finetune_that_reverses_the_order(model, *args, **kwargs):
        info = real_finetune(model, *args, **kwargs)
        with torch.no_grad():  # what a bad fine-tune can do: every groove embedding, so every score, negated
            model.groove.out.weight.neg_()
            model.groove.out.bias.neg_()
        return info

    monkeypatch.setattr(TR, "finetune", finetune_that_reverses_the_order)
    out = tmp_path / "user-model"
    assert main(_args(labels, library, base, out)) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["installed"] is False and "kept the current model" in result["reason"]
    assert result["heldout"]["after"]["pair_accuracy"] < result["heldout"]["before"]["pair_accuracy"]
    assert not (out / "manifest.json").exists()


def test_too_few_rated_clips_to_judge_writes_nothing(tmp_path, tiny, capsys):  # noqa: F811
    from sjtui.audio.riffs import generate_riff
    from sjtui.audio.synth_guitar import render_notes
    from sjtui.cli import main
    from sjtui.dsp.analysis import analyze
    from sjtui.dsp.fingerprint import fingerprints_of
    from sjtui.grooves.store import GrooveStore
    from sjtui.labels.store import GrooveKey, LabelStore
    from sjtui.transport.timebase import TempoMap

    part, _, _ = tiny
    base, _ = _base_model_dir(tmp_path, part)
    library = tmp_path / "library"
    labels = tmp_path / "labels"
    with GrooveStore(library) as grooves, LabelStore.open(labels) as store:
        rows = [r for r in grooves.list_rows(source="builtin") if r["meter"] == "4/4" and r["bars"] <= 4][:3]
        riff = generate_riff("straight8", bpm=110, bars=5, seed=1)
        audio = render_notes(riff.notes, 48000, "muted", seed=1, length_s=riff.duration_s + 0.3)
        fp = fingerprints_of(analyze(audio, 48000), TempoMap.constant(48000, 110, "4/4"))[0]
        clip = store.add_clip(audio, 48000, fingerprint=fp, meta={"source": "generated"})
        for j, row in enumerate(rows):
            store.add_rating(clip, GrooveKey.from_row(row), j + 1)
    out = tmp_path / "user-model"
    assert main(_args(labels, library, base, out)) == 2
    assert "too few ratings" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
