"""``sjtui match``: the whole chain offline on a real rendered recording, with the shipped model.

The recording is a generated riff rendered by the Karplus-Strong guitar and
written to a WAV file; the library is a real groove store (the built-ins
plus one GMD performance) in a temporary folder. Bad input: a missing file,
a take shorter than a window, a tampered or newer model (fallback to the
shipped one, with the reason on stderr).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from sjtui.audio.riffs import generate_riff
from sjtui.audio.synth_guitar import render_notes
from sjtui.cli import main
from sjtui.grooves.store import GrooveStore
from sjtui.meter import parse_meter
from sjtui.model import fit
from sjtui.model.manifest import MANIFEST_FILE
from sjtui.model.runtime import SHIPPED_MODEL_DIR, EncoderPair


@pytest.fixture(scope="module")
def library(tmp_path_factory, groove_midi_dir):
    from sjtui.grooves.gmd import import_gmd

    path = tmp_path_factory.mktemp("library")
    with GrooveStore(path) as store:
        import_gmd(store, groove_midi_dir, limit=40)
        rows = [r for r in store.list_rows() if r["meter"] == "4/4" and r["kind"] == "beat"]
    # the tempo most 4/4 beats of this library share, so the riff has grooves that fit
    bpms = np.array([r["bpm"] for r in rows])
    values, counts = np.unique(np.round(bpms), return_counts=True)
    return path, float(values[np.argmax(counts)])


@pytest.fixture(scope="module")
def take(tmp_path_factory, library):
    _, bpm = library
    riff = generate_riff("straight8", bpm=bpm, bars=12, seed=11)
    audio = render_notes(riff.notes, 48000, "muted", seed=11, length_s=riff.duration_s + 0.5)
    path = tmp_path_factory.mktemp("take") / "riff.wav"
    silence = np.zeros(int(0.25 * 48000), dtype=np.float32)  # the playing starts a little after 0
    sf.write(path, np.concatenate([silence, audio]), 48000, subtype="PCM_24")
    return path, bpm, riff


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main(["match", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_match_json_gives_fitting_top_grooves_per_window(capsys, library, take):
    lib, _ = library
    path, bpm, _ = take
    code, out, err = _run(capsys, path, "--bpm", bpm, "--library", lib, "--top", 4, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["tempo"]["bpm"] == pytest.approx(bpm) and result["tempo"]["source"] == "given"
    assert result["model"]["trained"] is True
    assert len(result["windows"]) == 3  # 12 bars from the first downbeat (+ ring-out): bars 1, 5 and 9
    starts = [w["start_s"] for w in result["windows"]]
    bar_s = 4 * 60.0 / bpm
    assert starts[1] - starts[0] == pytest.approx(4 * bar_s, abs=1e-3)
    assert 0.2 < starts[0] < 0.3  # the first downbeat is where the playing starts
    with GrooveStore(lib) as store:
        listed = {r["id"]: r for r in store.list_rows()}
    for window in result["windows"]:
        top = window["top"]
        assert 1 <= len(top) <= 4
        scores = [p["score"] for p in top]
        assert scores == sorted(scores, reverse=True)
        for pick in top:
            row = listed[pick["id"]]
            assert row["kind"] == "beat" and row["meter"] == "4/4"
            assert fit.tempo_fits(bpm, np.array([pick["bpm"]]))[0]
            assert pick["style"] == row["style"]


def test_match_estimates_the_tempo_and_stores_embeddings_once(capsys, library, take):
    lib, _ = library
    path, bpm, _ = take
    code, out, err = _run(capsys, path, "--library", lib, "--json")
    assert code == 0, err
    result = json.loads(out)
    estimated = result["tempo"]["bpm"]
    assert result["tempo"]["source"] == "estimated"
    assert min(abs(estimated / bpm - r) for r in (0.5, 1.0, 2.0)) < 0.03
    assert result["windows"]
    pair = EncoderPair(SHIPPED_MODEL_DIR)
    with GrooveStore(lib) as store:
        ids, vectors = store.embeddings(pair.groove_encoder_id)
        # every groove the encoder can take (at most 4 bars of at most 60 steps; the 12/8 built-in is longer)
        takes = [
            r for r in store.list_rows() if r["bars"] <= 4 and parse_meter(r["meter"]).steps_per_bar <= 60
        ]
        assert ids.size == len(takes) and len(takes) < len(store.list_rows())
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
        assert store.fill_embeddings(pair) == 0  # already there: nothing recomputed


def test_match_text_output_names_the_windows(capsys, library, take):
    lib, _ = library
    path, bpm, _ = take
    code, out, _ = _run(capsys, path, "--bpm", bpm, "--library", lib, "--top", 2)
    assert code == 0
    assert f"{bpm} BPM (given)" in out and "(bar 1)" in out and "(bar 5)" in out


def test_match_bad_input(capsys, tmp_path, library, take):
    lib, _ = library
    path, bpm, _ = take
    code, _, err = _run(capsys, tmp_path / "missing.wav", "--library", lib)
    assert code == 2 and "not found" in err
    audio, rate = sf.read(path, dtype="float32")
    short = tmp_path / "short.wav"
    sf.write(short, audio[: int(2.5 * 4 * 60 / bpm * rate)], rate)
    code, _, err = _run(capsys, short, "--bpm", bpm, "--library", lib)
    assert code == 2 and "shorter than one 4-bar window" in err
    code, _, err = _run(capsys, path, "--bpm", 1000, "--library", lib)
    assert code == 2 and "between 20 and 400" in err


@pytest.mark.parametrize("damage", ["tampered", "truncated", "newer", "missing"])
def test_a_damaged_model_falls_back_to_the_shipped_one(capsys, tmp_path, library, take, damage):
    lib, _ = library
    path, bpm, _ = take
    bad = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL_DIR, bad, ignore=shutil.ignore_patterns("*.bak-*", "*.pt"))
    manifest = json.loads((bad / MANIFEST_FILE).read_text())
    encoder = bad / manifest["encoders"]["guitar"]["file"]
    before = {p.name: p.read_bytes() for p in SHIPPED_MODEL_DIR.iterdir() if p.is_file()}
    if damage == "tampered":
        data = bytearray(encoder.read_bytes())
        data[len(data) // 2] ^= 0xFF
        encoder.write_bytes(bytes(data))
        expected = "altered"
    elif damage == "truncated":
        encoder.write_bytes(encoder.read_bytes()[:1000])
        expected = "truncated"
    elif damage == "newer":
        manifest["format_version"] = 99
        (bad / MANIFEST_FILE).write_text(json.dumps(manifest))
        expected = "newer"
    else:
        encoder.unlink()
        expected = "missing"
    code, out, err = _run(capsys, path, "--bpm", bpm, "--library", lib, "--model", bad, "--json")
    assert code == 0
    assert expected in err and "instead" in err
    assert json.loads(out)["model"]["trained"] is True
    # the shipped model itself is untouched
    assert {p.name: p.read_bytes() for p in SHIPPED_MODEL_DIR.iterdir() if p.is_file()} == before


def test_groove_import_fills_embeddings_with_the_model_in_use(capsys, tmp_path, groove_midi_dir, monkeypatch):
    monkeypatch.setenv(
        "SJTUI_DATA_DIR", str(tmp_path / "data")
    )  # no user model there: the shipped one is used
    folder = tmp_path / "midi"
    folder.mkdir()
    for path in sorted((groove_midi_dir / "drummer1" / "session1").glob("*_beat_4-4.mid"))[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    assert main(["grooves", "--data-dir", str(tmp_path / "lib"), "import", str(folder)]) == 0
    err = capsys.readouterr().err
    assert "embedded" in err
    pair = EncoderPair(SHIPPED_MODEL_DIR)
    with GrooveStore(tmp_path / "lib") as store:
        ids, vectors = store.embeddings(pair.groove_encoder_id)
        midi_ids = {r["id"] for r in store.list_rows(source="midi") if r["bars"] <= 4}
        assert midi_ids and midi_ids <= set(ids.tolist())
        # the stored vectors are the encoder's output for those grooves
        some = sorted(midi_ids)[:5]
        grooves = [store.get(i) for i in some]
        expected = pair.embed_grooves(grooves, np.stack([g.extra["descriptors"] for g in grooves]))
        rows = np.searchsorted(ids, some)
        np.testing.assert_allclose(vectors[rows], expected, atol=1e-6)
