"""The shipped model in ``sjtui/data/models/``: trained, honest about its data, evaluated, and unchanged.

``check_reference`` recomputes the stored reference windows (fingerprints
and grooves saved with the export) with the running input code and
onnxruntime and compares them with the embeddings torch gave at export
(atol 1e-4): a silent change of the layout, descriptors, analysis constants
or runtime fails here instead of quietly degrading the choices.
"""

from __future__ import annotations

import numpy as np
import pytest

from sjtui.model.manifest import read_manifest, verify_file
from sjtui.model.reference import REFERENCE_ATOL, load_reference
from sjtui.model.runtime import SHIPPED_MODEL_DIR, EncoderPair, load_model


@pytest.fixture(scope="module")
def manifest():
    return read_manifest(SHIPPED_MODEL_DIR)


def test_the_shipped_model_is_trained_and_says_on_what(manifest):
    training = manifest["training"]
    assert training["status"] == "trained"
    assert training["human_ratings"] == 0
    summary = training["summary"]
    assert "weak targets only (no human ratings)" in summary
    assert "Groove MIDI Dataset train split" in summary
    assert "weak targets (not human ratings)" in training["weak_targets"]
    assert set(training["held_out_renderers"])
    assert training["n_grooves"]["test"] > 0 and training["n_guitar_windows"]["test"] > 0


def test_the_shipped_encoders_reproduce_their_stored_reference_outputs():
    pair = EncoderPair(SHIPPED_MODEL_DIR)
    result = pair.check_reference()
    assert result["atol"] == REFERENCE_ATOL == 1e-4
    assert result["guitar_max_abs_diff"] <= 1e-4 and result["groove_max_abs_diff"] <= 1e-4
    assert pair.trained and pair.embedding_dim == 128
    assert pair.manifest["encoders"]["guitar"]["size_bytes"] < 1_000_000


def test_the_shipped_figures_meet_the_targets(manifest):
    evaluation = manifest["evaluation"]
    assert evaluation["status"] == "evaluated"
    model = evaluation["model"]
    for metric in ("recall_at_10", "roc_auc"):
        for name, baseline in evaluation["baselines"].items():
            assert model[metric] > baseline[metric], (metric, name)
    assert model["tempo_ok"] >= 0.95 and model["meter_ok"] >= 0.95
    assert all(evaluation["targets_met"].values())
    assert evaluation["personalisation"]["personalisation_gain"] > 0
    assert evaluation["personalisation"]["n_ratings"] == 200


def test_the_shipped_checkpoint_matches_the_onnx_encoders(manifest):
    torch = pytest.importorskip("torch")
    from training.towers import load_checkpoint

    path = verify_file(SHIPPED_MODEL_DIR, manifest["training"]["checkpoint"], "model checkpoint")
    model, meta = load_checkpoint(path)
    assert meta["training"]["status"] == "trained"
    pair = EncoderPair(SHIPPED_MODEL_DIR)
    fingerprints, grooves, guitar_expected, groove_expected = load_reference(
        SHIPPED_MODEL_DIR / manifest["reference"]["file"]
    )
    from training.features import groove_batch, guitar_batch

    with torch.no_grad():
        g = guitar_batch(fingerprints)
        d = groove_batch(grooves)
        np.testing.assert_allclose(model.guitar(g["grid"], g["context"]).numpy(), guitar_expected, atol=1e-5)
        np.testing.assert_allclose(
            model.groove(d["grid"], d["descriptors"], d["context"]).numpy(), groove_expected, atol=1e-5
        )
    np.testing.assert_allclose(pair.embed_guitar(fingerprints), guitar_expected, atol=1e-4)


def test_load_model_uses_the_shipped_model_when_the_user_has_none(tmp_path):
    loaded = load_model(user_dir=tmp_path / "no-model-here")
    assert loaded.directory == SHIPPED_MODEL_DIR and loaded.fallback_reason is None
    assert loaded.model.trained


def test_the_analysis_is_the_one_the_shipped_model_was_trained_on(manifest):
    """Fixed synthetic takes analysed now give the onsets and encoder inputs stored at training time.

    The encoders only mean something on the features they were trained on;
    the onset detector and fingerprint are tuned as the project grows. When
    this fails, the analysis changed after the model was trained: retrain
    (`python -m training.train`, about 10 minutes), do not loosen the test.
    """
    from training.data import compare_analysis_reference

    path = verify_file(SHIPPED_MODEL_DIR, manifest["training"]["analysis_reference"], "analysis reference")
    with np.load(path, allow_pickle=False) as stored:
        problems = compare_analysis_reference(dict(stored))
    assert not problems, (
        "the analysis changed since the shipped model was trained; retrain it with `python -m training.train`: "
        + "; ".join(problems)
    )
