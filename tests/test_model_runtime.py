"""The onnxruntime side: checks that refuse bad models, shapes, fallback, top-k selection, threads, imports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sjtui.meter import Meter
from sjtui.model import inputs as layout
from sjtui.model.errors import ModelError, ModelInputError
from sjtui.model.manifest import MANIFEST_FORMAT_VERSION
from sjtui.model.runtime import EncoderPair, best_grooves, load_model
from training.export import export_model, untrained_summary
from training.features import groove_batch, guitar_batch, synthetic_fingerprints, synthetic_grooves
from training.towers import build_two_tower

VERSION = "0.0.2"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("good-model")
    model = build_two_tower(seed=5)
    export_model(model, out, version=VERSION, training=untrained_summary(5))
    return model, out


@pytest.fixture
def copy_of(model_dir, tmp_path):
    def make(name="copy"):
        target = tmp_path / name
        shutil.copytree(model_dir[1], target)
        return target

    return make


def _edit_manifest(directory, change):
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_embeddings_match_torch_and_have_unit_length(model_dir):
    model, out = model_dir
    pair = EncoderPair(out)
    rng = np.random.default_rng(11)
    fingerprints, grooves = synthetic_fingerprints(9, rng), synthetic_grooves(11, rng)
    with torch.no_grad():
        g, d = guitar_batch(fingerprints), groove_batch(grooves)
        want_guitar = model.guitar(g["grid"], g["context"]).numpy()
        want_groove = model.groove(d["grid"], d["descriptors"], d["context"]).numpy()
    got_guitar, got_groove = pair.embed_guitar(fingerprints), pair.embed_grooves(grooves)
    assert got_guitar.dtype == np.float32 and got_guitar.shape == (9, 128) and got_groove.shape == (11, 128)
    assert np.max(np.abs(got_guitar - want_guitar)) <= 1e-5
    assert np.max(np.abs(got_groove - want_groove)) <= 1e-5
    np.testing.assert_allclose(np.linalg.norm(got_groove, axis=1), 1.0, atol=1e-5)
    # one fingerprint (not in a list) gives one row equal to its row in the batch
    np.testing.assert_allclose(pair.embed_guitar(fingerprints[4]), got_guitar[4:5], atol=1e-6)
    # batching does not change results
    np.testing.assert_allclose(pair.embed_grooves(grooves, batch_size=3), got_groove, atol=1e-6)
    assert pair.groove_encoder_id == pair.manifest["encoders"]["groove"]["sha256"]
    assert not pair.trained and "UNTRAINED" in pair.describe()


def test_sessions_run_on_one_thread_sequentially(model_dir):
    import onnxruntime

    pair = EncoderPair(model_dir[1])
    for encoder in (pair.guitar, pair.groove):
        options = encoder.session.get_session_options()
        assert options.intra_op_num_threads == 1
        assert options.inter_op_num_threads == 1
        assert options.execution_mode == onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        assert encoder.session.get_providers() == ["CPUExecutionProvider"]


def test_wrong_input_shapes_are_refused_with_the_expected_shape(model_dir):
    pair = EncoderPair(model_dir[1])
    context = np.zeros((1, 10), np.float32)
    with pytest.raises(
        ModelInputError,
        match=r"guitar encoder input 'grid' has shape \(1, 13, 4, 48\); it takes \(n, 13, 4, 60\)",
    ):
        pair.embed_guitar_inputs(np.zeros((1, 13, 4, 48), np.float32), context)
    with pytest.raises(ModelInputError, match=r"input 'grid' has shape \(13, 4, 60\)"):
        pair.embed_guitar_inputs(np.zeros((13, 4, 60), np.float32), context)
    with pytest.raises(ModelInputError, match=r"disagree on the batch size \(2 and 1"):
        pair.embed_guitar_inputs(np.zeros((2, 13, 4, 60), np.float32), context)
    with pytest.raises(ModelInputError, match=r"takes inputs \['context', 'descriptors', 'grid'\]"):
        pair.groove.run({"grid": np.zeros((1, 28, 4, 60), np.float32), "context": context})
    with pytest.raises(ModelInputError, match=r"descriptors have shape \(2, 16\) for 1 grooves"):
        pair.embed_grooves(synthetic_grooves(1, np.random.default_rng(0)), descriptors=np.zeros((2, 16)))
    with pytest.raises(ModelInputError, match="72 steps per bar"):
        fp = synthetic_fingerprints(1, np.random.default_rng(0))[0]
        fp.meter = Meter(6, 4)
        pair.embed_guitar(fp)
    # an empty batch of prepared inputs is an empty result, not an onnxruntime error
    assert pair.embed_guitar_inputs(
        np.zeros((0, 13, 4, 60), np.float32), np.zeros((0, 10), np.float32)
    ).shape == (0, 128)


def test_tampered_truncated_and_missing_files_are_refused(copy_of):
    tampered = copy_of("tampered")
    path = tampered / f"guitar_encoder-{VERSION}.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit in the weights
    path.write_bytes(bytes(data))
    with pytest.raises(
        ModelError, match=r"guitar encoder .*guitar_encoder-0\.0\.2\.onnx has sha256 .* the file was altered"
    ):
        EncoderPair(tampered)

    truncated = copy_of("truncated")
    path = truncated / f"groove_encoder-{VERSION}.onnx"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(
        ModelError, match=r"groove encoder .* has 1000 bytes, the manifest says \d+: the file is truncated"
    ):
        EncoderPair(truncated)

    missing = copy_of("missing")
    (missing / f"guitar_encoder-{VERSION}.onnx").unlink()
    with pytest.raises(ModelError, match=r"guitar encoder .* is missing"):
        EncoderPair(missing)

    no_manifest = copy_of("no-manifest")
    (no_manifest / "manifest.json").unlink()
    with pytest.raises(ModelError, match="no model manifest at"):
        EncoderPair(no_manifest)

    garbled = copy_of("garbled")
    (garbled / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot be read"):
        EncoderPair(garbled)


def test_a_model_built_for_other_feature_constants_is_refused_naming_them(copy_of):
    other = copy_of("other-constants")

    def change(manifest):
        manifest["feature_constants"]["hop_size"] = 512
        manifest["input_layout"]["model_steps_per_bar"] = 48

    _edit_manifest(other, change)
    with pytest.raises(ModelError) as error:
        EncoderPair(other)
    message = str(error.value)
    assert "feature constant hop_size: 512 in the model, 256 here" in message
    assert "input layout model_steps_per_bar: 48 in the model, 60 here" in message
    assert "frame_size" not in message  # only what differs


def test_a_manifest_from_a_newer_format_is_refused(copy_of):
    newer = copy_of("newer")
    _edit_manifest(newer, lambda m: m.update(format_version=MANIFEST_FORMAT_VERSION + 1))
    with pytest.raises(
        ModelError,
        match=rf"format version {MANIFEST_FORMAT_VERSION + 1}, newer than the {MANIFEST_FORMAT_VERSION}",
    ):
        EncoderPair(newer)


def test_a_manifest_that_does_not_describe_its_file_is_refused(copy_of):
    swapped = copy_of("swapped")

    def swap(manifest):
        encoders = manifest["encoders"]
        for key in ("file", "sha256", "size_bytes"):
            encoders["guitar"][key], encoders["groove"][key] = (
                encoders["groove"][key],
                encoders["guitar"][key],
            )

    _edit_manifest(swapped, swap)
    with pytest.raises(ModelError, match="do not belong together"):
        EncoderPair(swapped)
    escaping = copy_of("escaping")
    _edit_manifest(escaping, lambda m: m["encoders"]["guitar"].update(file="../elsewhere.onnx"))
    with pytest.raises(ModelError, match="bare file name"):
        EncoderPair(escaping)


def test_load_model_prefers_the_user_model_and_falls_back_to_the_shipped_one(copy_of, tmp_path):
    shipped, user = copy_of("shipped"), copy_of("user")
    loaded = load_model(user_dir=user, shipped_dir=shipped)
    assert loaded.directory == user and loaded.fallback_reason is None

    loaded = load_model(user_dir=tmp_path / "no-user-model", shipped_dir=shipped)
    assert loaded.directory == shipped and loaded.fallback_reason is None

    path = user / f"groove_encoder-{VERSION}.onnx"
    path.write_bytes(path.read_bytes()[:-10])
    loaded = load_model(user_dir=user, shipped_dir=shipped)
    assert loaded.directory == shipped
    assert "truncated" in loaded.fallback_reason and str(user) in loaded.fallback_reason
    assert f"using sjtui-two-tower {VERSION}" in loaded.fallback_reason
    assert loaded.model.embed_guitar(synthetic_fingerprints(1, np.random.default_rng(0))).shape == (1, 128)

    loaded = load_model(path=user, shipped_dir=shipped)  # an explicit path falls back the same way
    assert loaded.directory == shipped and loaded.fallback_reason

    with pytest.raises(ModelError, match=r"no usable model:\n- .*truncated.*\n- no model manifest"):
        load_model(user_dir=user, shipped_dir=tmp_path / "nothing-shipped")


def test_best_grooves_equals_a_full_sort():
    rng = np.random.default_rng(3)
    library = rng.normal(size=(5000, 128)).astype(np.float32)
    library /= np.linalg.norm(library, axis=1, keepdims=True)
    query = library[1234] + 0.1 * rng.normal(size=128).astype(np.float32)
    scores = library @ query
    order = np.argsort(-scores, kind="stable")

    indices, top = best_grooves(query, library, top_k=10)
    np.testing.assert_array_equal(indices, order[:10])
    np.testing.assert_allclose(top, scores[order[:10]], rtol=1e-6)
    assert indices[0] == 1234

    allowed = rng.random(5000) < 0.3
    indices, top = best_grooves(query[None, :], library, top_k=7, allowed=allowed)
    allowed_order = order[allowed[order]]
    np.testing.assert_array_equal(indices, allowed_order[:7])

    indices, _ = best_grooves(query, library[:4], top_k=10)
    assert sorted(indices.tolist()) == [0, 1, 2, 3] and len(indices) == 4
    assert best_grooves(query, library, 5, allowed=np.zeros(5000, bool))[0].size == 0
    with pytest.raises(ModelInputError, match="top_k is 0"):
        best_grooves(query, library, 0)
    with pytest.raises(ModelInputError, match=r"\(64,\) and \(5000, 128\)"):
        best_grooves(query[:64], library, 3)


def test_the_runtime_imports_onnxruntime_only_when_loading_and_never_torch(model_dir):
    code = (
        "import sys, json\n"
        "import sjtui.model.runtime as runtime\n"
        "before = 'onnxruntime' in sys.modules\n"
        f"pair = runtime.EncoderPair({str(model_dir[1])!r})\n"
        "print(json.dumps([before, 'onnxruntime' in sys.modules, 'torch' in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, True, False]


def test_layout_constants_the_model_was_exported_with(model_dir):
    pair = EncoderPair(model_dir[1])
    assert pair.guitar.input_shapes == {"grid": layout.GUITAR_GRID_SHAPE, "context": (layout.CONTEXT_DIM,)}
    assert pair.groove.input_shapes == {
        "grid": layout.GROOVE_GRID_SHAPE,
        "descriptors": (layout.DESCRIPTOR_DIM,),
        "context": (layout.CONTEXT_DIM,),
    }


def test_reference_windows_are_reproduced_and_a_silent_input_change_is_caught(copy_of, monkeypatch):
    good = copy_of("reference")
    pair = EncoderPair(good)
    result = pair.check_reference()
    assert (
        result["guitar_max_abs_diff"] <= 1e-5
        and result["groove_max_abs_diff"] <= 1e-5
        and result["atol"] == 1e-4
    )

    # someone rescales a descriptor without a new model or layout version: the grooves drift
    monkeypatch.setattr(layout, "DESCRIPTOR_SCALE", layout.DESCRIPTOR_SCALE * 2.0)
    with pytest.raises(
        ModelError, match=r"groove embeddings of the reference windows .* differ by .* \(> 0.0001\)"
    ):
        pair.check_reference()
    monkeypatch.undo()
    # ... or the tempo reference of the context: the guitar side drifts first
    monkeypatch.setattr(layout, "REFERENCE_BPM", 100.0)
    with pytest.raises(ModelError, match="guitar embeddings of the reference windows"):
        pair.check_reference()
    monkeypatch.undo()

    reference = good / f"reference-{VERSION}.npz"
    data = bytearray(reference.read_bytes())
    data[-30] ^= 0xFF
    reference.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="reference file .* the file was altered"):
        pair.check_reference()
    _edit_manifest(good, lambda m: m.pop("reference"))
    with pytest.raises(ModelError, match="stores no reference outputs"):
        EncoderPair(good).check_reference()


def test_tempo_and_meter_filters_feed_best_grooves():
    from sjtui.model.fit import allowed_grooves, meter_fits, tempo_fits

    bpm = np.array([100.0, 107.9, 108.1, 200.0, 215.0, 50.0, 46.5, 150.0, 92.6])
    np.testing.assert_array_equal(
        tempo_fits(100.0, bpm), [True, True, False, True, True, True, True, False, True]
    )
    meters = ["4/4", "3/4", "6/8", "4/4", Meter(4, 4), "7/8", "4/4", "4/4", "4/4"]
    np.testing.assert_array_equal(
        meter_fits("4/4", meters), [True, False, False, True, True, False, True, True, True]
    )
    allowed = allowed_grooves(100.0, "4/4", bpm, meters)
    library = np.eye(9, 128, dtype=np.float32)
    query = np.linspace(1.0, 0.1, 128).astype(np.float32)  # prefers low indices
    indices, _ = best_grooves(query, library, top_k=3, allowed=allowed)
    assert indices.tolist() == [0, 3, 4]


def test_a_hand_broken_manifest_is_a_model_error_not_a_crash(copy_of):
    broken = copy_of("broken")
    _edit_manifest(
        broken, lambda m: m["encoders"]["guitar"].update(inputs=[{"name": "grid", "dtype": "float32"}])
    )
    with pytest.raises(ModelError, match=r"malformed \(KeyError"):
        EncoderPair(broken)


def test_the_user_model_lives_in_the_data_folder(monkeypatch, tmp_path, copy_of):
    from sjtui.model.runtime import user_model_dir

    monkeypatch.setenv("SJTUI_DATA_DIR", str(tmp_path / "data"))
    assert user_model_dir() == tmp_path / "data" / "model"
    shutil.copytree(copy_of("mine"), tmp_path / "data" / "model")
    loaded = load_model(shipped_dir=tmp_path / "nothing-shipped")
    assert loaded.directory == tmp_path / "data" / "model" and loaded.fallback_reason is None
