"""``sjtui analyze``: picture and onsets of a real recording, JSON, clear errors for bad files."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from sjtui.cli import main
from sjtui.constants import BAND_NAMES, HOP_SIZE
from sjtui.dsp.analysis import analyze

RIFF = "berklee_guitar_riff_cutup1.wav"


def test_picture_and_onset_listing(guitar_audio_dir, capsys):
    assert main(["analyze", str(guitar_audio_dir / RIFF), "--width", "90"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "44100 Hz" in lines[0]
    for name in BAND_NAMES:
        shaded = [line for line in lines if line.strip().startswith(name) and any(c in line for c in "▁▂▃▄▅▆▇█")]
        assert shaded
        assert any(line.startswith(f"{name} (") and "onsets" in line for line in lines)
    assert "╵" in out  # onset marks under the energy rows
    assert max(len(line) for line in lines[1:]) <= 90  # the first line names the file


def test_json_matches_the_analysis(guitar_audio_dir, capsys):
    path = guitar_audio_dir / RIFF
    assert main(["analyze", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    x, rate = sf.read(path, dtype="float32")
    features = analyze(x, rate)
    assert doc["sample_rate"] == rate == 44100 and doc["hop"] == HOP_SIZE
    assert len(doc["onsets"]) == features.onsets.size > 5
    times = [o["time_s"] for o in doc["onsets"]]
    assert times == sorted(times)
    assert np.allclose(times, np.maximum(features.onsets["sample"], 0) / rate, atol=1e-6)
    assert [o["band"] for o in doc["onsets"]] == [BAND_NAMES[b] for b in features.onsets["band"]]
    assert all(o["strength"] > 0 for o in doc["onsets"])
    assert doc["warnings"] == []


def test_channel_selection_and_mixdown(guitar_audio_dir, tmp_path, capsys):
    x, rate = sf.read(guitar_audio_dir / RIFF, dtype="float32")
    stereo = np.stack([np.zeros_like(x), x], axis=1)  # guitar on input 2, as on many interfaces
    path = tmp_path / "stereo.flac"
    sf.write(path, stereo, rate)
    assert main(["analyze", str(path), "--json", "--channel", "2"]) == 0
    guitar = json.loads(capsys.readouterr().out)
    assert main(["analyze", str(path), "--json", "--channel", "1"]) == 0
    silent = json.loads(capsys.readouterr().out)
    assert len(guitar["onsets"]) > 5 and silent["onsets"] == []
    assert "the recording is silent" in silent["warnings"]
    assert main(["analyze", str(path), "--channel", "3"]) == 2
    assert "has 2 channel(s)" in capsys.readouterr().err


def test_bad_files_are_clear_errors(tmp_path, capsys):
    missing = tmp_path / "nope.wav"
    assert main(["analyze", str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF not really a wave file" * 10)
    assert main(["analyze", str(garbage)]) == 2
    assert "cannot read audio file" in capsys.readouterr().err
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 48000)
    assert main(["analyze", str(empty)]) == 2
    assert "holds no samples" in capsys.readouterr().err
    low_rate = tmp_path / "phone.wav"
    sf.write(low_rate, np.zeros(8000, dtype=np.float32), 8000)
    assert main(["analyze", str(low_rate)]) == 2
    err = capsys.readouterr().err
    assert "8000 Hz" in err and "44100" in err


def test_nan_and_clipping_are_reported(tmp_path, capsys):
    rate = 48000
    t = np.arange(rate) / rate
    x = np.clip(1.5 * np.sin(2 * np.pi * 220 * t), -1, 1).astype(np.float32)
    x[100:110] = np.nan
    path = tmp_path / "bad.wav"
    sf.write(path, x, rate, subtype="FLOAT")
    assert main(["analyze", str(path), "--json"]) == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert any("10 NaN/Inf" in w for w in warnings) and any("clipped" in w for w in warnings)


def test_mp3_and_flac_read_like_the_wav(guitar_audio_dir, tmp_path, capsys):
    x, rate = sf.read(guitar_audio_dir / RIFF, dtype="float32")
    assert main(["analyze", str(guitar_audio_dir / RIFF), "--json"]) == 0
    wav = json.loads(capsys.readouterr().out)
    flac = tmp_path / "riff.flac"
    sf.write(flac, x, rate, subtype="PCM_16")
    assert main(["analyze", str(flac), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["onsets"] == wav["onsets"]  # lossless: identical
    mp3 = tmp_path / "riff.mp3"
    sf.write(mp3, x, rate, format="MP3")
    assert main(["analyze", str(mp3), "--json"]) == 0
    lossy = json.loads(capsys.readouterr().out)
    # MP3 adds an encoder delay and changes the spectrum a little: most onsets stay within 30 ms
    wav_times = np.array([o["time_s"] for o in wav["onsets"]])
    near = [np.min(np.abs(wav_times - o["time_s"])) <= 0.03 for o in lossy["onsets"]]
    assert lossy["sample_rate"] == rate and np.mean(near) >= 0.8
