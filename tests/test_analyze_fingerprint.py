"""`sjtui analyze FILE [--bpm N] [--meter M]`: fingerprint windows in the terminal and as JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from sjtui.audio.render import render_riff
from sjtui.audio.riffs import generate_riff
from sjtui.cli import main


@pytest.fixture(scope="module")
def waltz_file(tmp_path_factory):
    riff = generate_riff("waltz", bpm=132, bars=8, seed=4)
    path = tmp_path_factory.mktemp("analyze") / "waltz.wav"
    sf.write(path, render_riff(riff, "clean"), 48000)
    return path, riff


def _json(capsys, *argv):
    assert main(["analyze", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_windows_with_a_given_tempo_and_meter(waltz_file, capsys):
    path, riff = waltz_file
    report = _json(capsys, path, "--bpm", 132, "--meter", "3/4", "--downbeat", 0)
    assert report["tempo"]["bpm"] == 132 and report["tempo"]["source"] == "given"
    assert len(report["windows"]) == 2
    window = report["windows"][0]
    assert window["start_s"] == 0 and window["bpm"] == 132
    assert np.array(window["energy"]).shape == (3, 4, 36)  # 3/4: 36 steps per bar
    assert np.array(window["novelty"]).shape == (3, 4, 36)
    steps = {(bar, step) for band, bar, step, strength in window["onset_steps"]}
    expected = {(int(s) // 36, int(s) % 36) for s in riff.onset_steps() if s < 4 * 36}
    assert len(expected & steps) >= 0.95 * len(expected)
    assert all(0 < strength <= 1 for *_, strength in window["onset_steps"])


def test_json_reports_the_estimated_tempo_without_bpm(waltz_file, capsys):
    path, riff = waltz_file
    report = _json(capsys, path, "--meter", "3/4")
    tempo = report["tempo"]
    assert tempo["source"] == "estimated"
    assert set(tempo) >= {"bpm", "confidence", "downbeat_s"}
    ratio = tempo["bpm"] / riff.bpm
    assert min(abs(ratio - r) for r in (0.5, 1.0, 2.0)) < 0.04
    assert report["windows"], "an 8-bar take at a found tempo gives whole windows"


def test_terminal_picture_has_a_row_per_band_and_bar(waltz_file, capsys):
    path, _ = waltz_file
    assert main(["analyze", str(path), "--bpm", "132", "--meter", "3/4", "--downbeat", "0", "--width", "80"]) == 0
    out = capsys.readouterr().out
    assert "window 0 at 0.00 s (3/4, 132.0 BPM" in out
    rows = [line for line in out.splitlines() if line.rstrip().endswith("|") and "|" in line[:10]]
    assert len(rows) == 2 * 4 * 3  # two windows, 4 bars, 3 bands
    assert all(len(row) <= 80 for row in rows)
    assert all(row.count("|") == 4 for row in rows)  # 3 beats a bar


def test_recording_shorter_than_four_bars_gives_no_window(guitar_audio_dir, capsys):
    report = _json(capsys, guitar_audio_dir / "berklee_guitar_chord1.wav", "--bpm", 120)
    assert report["windows"] == []
    assert report["tempo"]["bpm"] == 120


def test_too_sparse_to_estimate_says_why(guitar_audio_dir, capsys):
    report = _json(capsys, guitar_audio_dir / "sonicpi_guit_harmonics.wav")
    assert report["windows"] == [] and report["tempo"]["bpm"] is None
    assert "--bpm" in report["tempo"]["message"]


@pytest.mark.parametrize(("option", "value", "words"), [("--meter", "four/4", "does not parse"), ("--bpm", "0", "outside")])
def test_bad_tempo_or_meter_is_a_clear_error(waltz_file, capsys, option, value, words):
    path, _ = waltz_file
    assert main(["analyze", str(path), option, value]) == 2
    assert words in capsys.readouterr().err
