"""ONNX export of the towers: single versioned files, parity with torch, manifest, guards."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

import soundfile as sf

from sjtui.constants import feature_constants
from sjtui.dsp.analysis import analyze
from sjtui.dsp.fingerprint import fingerprints_of
from sjtui.grooves.midi_import import read_grooves
from sjtui.model import inputs as layout
from sjtui.model.manifest import sha256_of
from sjtui.model.runtime import SHIPPED_MODEL_DIR, EncoderPair
from sjtui.transport.timebase import TempoMap
from training import export
from training.features import groove_batch, guitar_batch
from training.towers import build_two_tower, load_checkpoint, save_checkpoint

VERSION = "0.0.1-test"


def real_fingerprints(guitar_audio_dir):
    """Fingerprints of a real recorded riff, windowed in five meters (tempo 123 BPM, a rough estimate)."""
    audio, rate = sf.read(guitar_audio_dir / "berklee_guitar_riff_cutup5.wav", dtype="float32")
    features = analyze(audio, rate)
    out = []
    for meter in layout.KNOWN_METERS:
        out += fingerprints_of(features, TempoMap.constant(rate, 123.0, meter), hop_bars=2)
    return out


def real_grooves(groove_midi_dir, limit=24):
    grooves = []
    for path in sorted((groove_midi_dir / "drummer1" / "eval_session").glob("*.mid")):
        windows, _ = read_grooves(path, name=path.stem, source_name="gmd")
        grooves += windows
    return grooves[:limit]


@pytest.fixture(scope="module")
def real_inputs(guitar_audio_dir, groove_midi_dir):
    fingerprints = real_fingerprints(guitar_audio_dir)
    grooves = real_grooves(groove_midi_dir)
    assert len(fingerprints) >= 15 and len({str(f.meter) for f in fingerprints}) == 5
    assert len(grooves) >= 8
    return fingerprints, grooves


@pytest.fixture(scope="module")
def exported(tmp_path_factory, real_inputs):
    fingerprints, grooves = real_inputs
    model = build_two_tower(seed=3)
    out = tmp_path_factory.mktemp("model")
    manifest = export.export_model(
        model,
        out,
        version=VERSION,
        training=export.untrained_summary(3),
        real_inputs={
            "guitar": {"riff": guitar_batch(fingerprints)},
            "groove": {"gmd": groove_batch(grooves)},
        },
    )
    return model, manifest, out


def test_export_writes_two_versioned_single_files_and_a_manifest(exported):
    model, manifest, out = exported
    guitar_file, groove_file = f"guitar_encoder-{VERSION}.onnx", f"groove_encoder-{VERSION}.onnx"
    reference_file = f"reference-{VERSION}.npz"
    assert sorted(os.listdir(out)) == sorted(["manifest.json", guitar_file, groove_file, reference_file])
    assert manifest["reference"]["file"] == reference_file
    assert manifest["reference"]["sha256"] == sha256_of(out / reference_file)
    assert manifest["reference"]["atol"] == 1e-4 and len(manifest["reference"]["meters"]) >= 3
    assert json.loads((out / "manifest.json").read_text()) == manifest
    for kind, name, tower in (("guitar", guitar_file, model.guitar), ("groove", groove_file, model.groove)):
        entry = manifest["encoders"][kind]
        assert entry["file"] == name
        assert entry["sha256"] == sha256_of(out / name)
        assert entry["size_bytes"] == (out / name).stat().st_size
        assert entry["n_parameters"] == sum(p.numel() for p in tower.parameters())
        proto = onnx.load(str(out / name), load_external_data=False)
        assert {o.domain or "ai.onnx": o.version for o in proto.opset_import}["ai.onnx"] == 17
        assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
        assert [i.name for i in proto.graph.input] == list(tower.input_names)
        assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert manifest["encoders"]["guitar"]["inputs"] == [
        {"name": "grid", "shape": ["batch", 13, 4, 60], "dtype": "float32"},
        {"name": "context", "shape": ["batch", 10], "dtype": "float32"},
    ]
    assert manifest["encoders"]["groove"]["inputs"][1] == {
        "name": "descriptors",
        "shape": ["batch", 16],
        "dtype": "float32",
    }
    assert manifest["encoders"]["guitar"]["size_bytes"] < 1_000_000
    assert manifest["feature_constants"] == feature_constants()
    assert manifest["input_layout"] == layout.input_layout()
    assert manifest["training"]["status"] == "untrained"
    assert manifest["training"]["summary"].startswith("untrained: random initialisation")
    assert manifest["evaluation"]["status"] == "not evaluated"


def test_parity_with_torch_is_recorded_for_random_and_real_inputs(exported):
    _, manifest, _ = exported
    for kind, real_label in (("guitar", "real_riff"), ("groove", "real_gmd")):
        parity = manifest["encoders"][kind]["parity"]
        assert parity["tolerance"] == 1e-5
        assert real_label in parity["per_input_set"]
        assert {"random_batch1", "random_batch7", "gaussian_batch4"} <= set(parity["per_input_set"])
        assert 0.0 <= parity["max_abs_diff"] <= 1e-5
        assert parity["max_abs_diff"] == max(parity["per_input_set"].values())


def test_runtime_embeddings_equal_torch_on_real_windows(exported, real_inputs):
    """Independent of the export's own check: the app's path (EncoderPair) against the torch towers."""
    model, _, out = exported
    fingerprints, grooves = real_inputs
    pair = EncoderPair(out)
    with torch.no_grad():
        g = guitar_batch(fingerprints)
        expected_guitar = model.guitar(g["grid"], g["context"]).numpy()
        d = groove_batch(grooves)
        expected_groove = model.groove(d["grid"], d["descriptors"], d["context"]).numpy()
    got_guitar = pair.embed_guitar(fingerprints)
    got_groove = pair.embed_grooves(grooves, batch_size=5)
    assert got_guitar.shape == (len(fingerprints), 128) and got_groove.shape == (len(grooves), 128)
    assert np.max(np.abs(got_guitar - expected_guitar)) <= 1e-5
    assert np.max(np.abs(got_groove - expected_groove)) <= 1e-5
    np.testing.assert_allclose(np.linalg.norm(got_guitar, axis=1), 1.0, atol=1e-5)
    # distinct windows give distinct embeddings (the encoder does not collapse its input)
    assert np.unique(np.round(got_guitar, 5), axis=0).shape[0] == len(fingerprints)


def test_padding_columns_beyond_the_kernel_reach_do_not_matter():
    """Column 36+ of a 3/4 bar is padding: whatever is there (beyond the conv's 1-step reach) changes nothing."""
    model = build_two_tower(seed=0)
    generator = torch.Generator().manual_seed(0)
    grid = torch.rand((2, 13, 4, 60), generator=generator)
    grid[:, 12] = 0.0
    grid[:, 12, :, :36] = 1.0
    grid[:, :, :, 36:] = 0.0
    context = torch.rand((2, 10), generator=generator)
    noisy = grid.clone()
    noisy[:, :12, :, 37:] = torch.rand((2, 12, 4, 23), generator=generator)
    with torch.no_grad():
        assert torch.equal(model.guitar(grid, context), model.guitar(noisy, context))
        changed = grid.clone()
        changed[:, 6, 1, 20] = 1.0  # an onset inside the bar does matter
        assert not torch.allclose(model.guitar(grid, context), model.guitar(changed, context))


def test_same_seed_exports_the_same_bytes_and_another_seed_does_not(tmp_path):
    paths = {}
    for label, seed in (("a", 7), ("b", 7), ("c", 8)):
        manifest = export.export_model(
            build_two_tower(seed=seed),
            tmp_path / label,
            version="1.0.0",
            training=export.untrained_summary(seed),
        )
        paths[label] = manifest["encoders"]["guitar"]["sha256"], manifest["encoders"]["groove"]["sha256"]
    assert paths["a"] == paths["b"]
    assert paths["a"][0] != paths["c"][0] and paths["a"][1] != paths["c"][1]


def test_an_untrained_model_is_refused_as_the_shipped_model():
    before = sorted(os.listdir(SHIPPED_MODEL_DIR)) if SHIPPED_MODEL_DIR.exists() else None
    with pytest.raises(export.ExportError, match="refusing to install an untrained model"):
        export.export_model(
            build_two_tower(seed=0), SHIPPED_MODEL_DIR, version="0.1.0", training=export.untrained_summary(0)
        )
    after = sorted(os.listdir(SHIPPED_MODEL_DIR)) if SHIPPED_MODEL_DIR.exists() else None
    assert before == after


def test_reexport_keeps_the_replaced_files_as_backups(tmp_path):
    first = export.export_model(
        build_two_tower(seed=1), tmp_path, version="0.2.0", training=export.untrained_summary(1)
    )
    second = export.export_model(
        build_two_tower(seed=2), tmp_path, version="0.2.0", training=export.untrained_summary(2)
    )
    names = sorted(os.listdir(tmp_path))
    backups = [n for n in names if ".bak-" in n]
    assert len(backups) == 4, names  # both encoders, the reference file and the manifest
    old_manifest = json.loads((tmp_path / next(n for n in backups if n.startswith("manifest"))).read_text())
    assert old_manifest["encoders"]["guitar"]["sha256"] == first["encoders"]["guitar"]["sha256"]
    assert (
        EncoderPair(tmp_path).manifest["encoders"]["guitar"]["sha256"]
        == second["encoders"]["guitar"]["sha256"]
    )
    assert not [n for n in names if n.startswith(".export-")], "staging directory left behind"


def test_a_tower_that_differs_from_its_file_fails_the_parity_check(tmp_path):
    model = build_two_tower(seed=4)
    path = tmp_path / "guitar.onnx"
    export.export_tower(model.guitar, "guitar", path)
    ok = export.check_parity(model.guitar, "guitar", path, export.parity_inputs("guitar"))
    assert ok["max_abs_diff"] <= 1e-5
    with torch.no_grad():
        model.guitar.out.bias += 1e-3
    with pytest.raises(export.ExportError, match=r"differs from torch by .* \(> 1e-05\)"):
        export.check_parity(model.guitar, "guitar", path, export.parity_inputs("guitar"))


def test_checkpoint_round_trip_and_cli_export_of_a_trained_checkpoint(tmp_path, capsys):
    model = build_two_tower(seed=9)
    checkpoint = tmp_path / "model.pt"
    training = {"status": "trained", "summary": "test checkpoint: weights from seed 9, no data", "steps": 0}
    save_checkpoint(checkpoint, model, training, {"status": "evaluated", "recall_at_10": 0.0})
    loaded, meta = load_checkpoint(checkpoint)
    g = {"grid": torch.rand((3, 13, 4, 60)), "context": torch.rand((3, 10))}
    with torch.no_grad():
        assert torch.equal(model.guitar(g["grid"], g["context"]), loaded.guitar(g["grid"], g["context"]))
    assert meta["training"] == training and meta["feature_constants"] == feature_constants()

    assert (
        export.main(
            ["--out", str(tmp_path / "m"), "--checkpoint", str(checkpoint), "--version", "2.0.0", "--json"]
        )
        == 0
    )
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["training"] == training and manifest["evaluation"]["recall_at_10"] == 0.0
    assert (tmp_path / "m" / "guitar_encoder-2.0.0.onnx").is_file()
    assert EncoderPair(tmp_path / "m").trained


def test_cli_refuses_a_bad_version(tmp_path, capsys):
    assert export.main(["--out", str(tmp_path), "--random-init", "--version", "latest"]) == 2
    assert "is not like 1.2.3" in capsys.readouterr().err
    assert not (tmp_path / "manifest.json").exists()


def test_a_model_without_an_honest_training_summary_is_not_exported(tmp_path):
    with pytest.raises(export.ExportError, match="needs status 'trained' or 'untrained' and a summary"):
        export.export_model(
            build_two_tower(seed=0), tmp_path, version="0.1.0", training={"status": "trained"}
        )
    assert not list(tmp_path.iterdir())
