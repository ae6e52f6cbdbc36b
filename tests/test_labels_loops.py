"""Guitar loops for labelling: recordings cut into 4-bar windows at their tempo, and rendered riffs."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from sjtui.audio.render import render_riff
from sjtui.audio.riffs import generate_riff
from sjtui.errors import AudioError
from sjtui.grooves.store import GrooveStore
from sjtui.labels import GrooveKey, LabelError, LabelStore
from sjtui.labels.clips import audio_hash
from sjtui.labels.loops import generated_loops, loops_from_folder, loops_from_recording
from sjtui.meter import Meter

SR = 44100
LEAD_IN_S = 0.37


@pytest.fixture(scope="module")
def riff_file(tmp_path_factory):
    """12 bars of a straight-8th riff at 120 BPM after 0.37 s of silence, as a 16-bit WAV."""
    riff = generate_riff("straight8", bpm=120, bars=12, seed=4)
    audio = np.concatenate([np.zeros(int(LEAD_IN_S * SR), np.float32), render_riff(riff, "clean", SR)])
    path = tmp_path_factory.mktemp("rec") / "take1.wav"
    sf.write(str(path), audio, SR, subtype="PCM_16")
    return path, riff


def test_given_tempo_cuts_exact_bars_from_the_downbeat(riff_file):
    path, riff = riff_file
    file_audio, _ = sf.read(str(path), dtype="float32")
    loops = loops_from_recording(path, bpm=120.0, downbeat_s=LEAD_IN_S)
    bar_samples = 2.0 * SR  # 4/4 at 120 BPM
    assert len(loops) == 3  # 12 bars: three whole 4-bar windows
    for k, loop in enumerate(loops):
        start = int(round(LEAD_IN_S * SR + 4 * k * bar_samples))
        assert loop.audio.shape == (int(4 * bar_samples),)
        assert np.array_equal(loop.audio, file_audio[start : start + loop.audio.shape[0]])
        assert (loop.bpm, loop.meter, loop.bars, loop.source) == (120.0, Meter(4, 4), 4, "user-file")
        assert loop.origin["tempo"] == "given" and loop.origin["first_bar"] == 4 * k
        assert loop.fingerprint.energy.shape == (3, 4, 48) and loop.fingerprint.bpm == 120.0
        # the riff's notes (12 bars repeating a 4-bar phrase) land on their steps in every window
        steps = {(int(o["bar"]) * 48 + int(o["step"])) for o in loop.fingerprint.onsets}
        expected = set((riff.onset_steps() % (4 * 48)).tolist())
        assert len(expected & steps) >= 0.9 * len(expected)


def test_estimated_tempo_and_downbeat(riff_file):
    path, _ = riff_file
    loops = loops_from_recording(path)
    assert loops and loops[0].origin["tempo"] == "estimated"
    assert loops[0].bpm == pytest.approx(120.0, rel=0.01)
    bar_s = 240.0 / loops[0].bpm
    offset = (loops[0].origin["start_s"] - LEAD_IN_S) % bar_s  # on a bar line (estimator's downbeat)
    assert min(offset, bar_s - offset) < 0.03


def test_folder_of_real_recordings_reports_the_files_it_cannot_use(guitar_audio_dir, tmp_path):
    loops, problems = loops_from_folder(guitar_audio_dir, bpm=123.0)
    files = sorted(p.name for p in guitar_audio_dir.glob("*.wav"))
    used = {loop.origin["file"].rsplit("/", 1)[-1] for loop in loops}
    assert "berklee_guitar_riff_cutup5.wav" in used  # 20.3 s: two 4-bar windows at 123 BPM
    assert sum(loop.origin["file"].endswith("cutup5.wav") for loop in loops) == 2
    assert len(used) + len(problems) == len(files)  # every file either gave loops or is reported
    assert all("shorter than 4 bars" in p.reason for p in problems)
    assert all(
        loop.sample_rate_hz == 44100 and loop.duration_s == pytest.approx(4 * 4 * 60 / 123, abs=1e-4)
        for loop in loops
    )
    # a broken file and a non-audio file: reported, the rest still loads
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "broken.wav").write_bytes(b"RIFF not really")
    (mixed / "notes.txt").write_text("ignored: not audio")
    sf.write(
        str(mixed / "take.flac"), sf.read(str(guitar_audio_dir / "berklee_guitar_riff_cutup5.wav"))[0], 44100
    )
    loops, problems = loops_from_folder(mixed, bpm=123.0, source="jam-recording")
    assert len(loops) == 2 and all(loop.source == "jam-recording" for loop in loops)
    assert [p.path.rsplit("/", 1)[-1] for p in problems] == ["broken.wav"] and "cannot read" in problems[
        0
    ].reason
    with pytest.raises(LabelError, match="not a folder"):
        loops_from_folder(tmp_path / "missing")
    with pytest.raises(AudioError):
        loops_from_recording(mixed / "broken.wav", bpm=100.0)


def test_too_little_playing_for_a_tempo_is_a_clear_error(tmp_path):
    path = tmp_path / "click.wav"
    audio = np.zeros(SR * 3, np.float32)
    audio[1000:1100] = 0.5
    sf.write(str(path), audio, SR)
    with pytest.raises(LabelError, match="no tempo found.*give the tempo"):
        loops_from_recording(path)


def test_generated_loops_are_deterministic_and_go_into_the_store(tmp_path):
    loops = generated_loops(
        6, seed=2, styles=("straight8", "six8", "odd78"), programs=("clean", "distortion")
    )
    again = generated_loops(
        6, seed=2, styles=("straight8", "six8", "odd78"), programs=("clean", "distortion")
    )
    assert [audio_hash(a.audio, a.sample_rate_hz) for a in loops] == [
        audio_hash(b.audio, b.sample_rate_hz) for b in again
    ]
    assert [loop.origin["program"] for loop in loops] == ["clean"] * 3 + ["distortion"] * 3
    for loop in loops:
        spb = loop.meter.steps_per_bar
        assert loop.fingerprint.energy.shape == (3, 4, spb) and len(loop.fingerprint.onsets) > 8
        assert loop.audio.shape[0] == round(
            4 * float(loop.meter.beats_per_bar) * 60 / loop.bpm * loop.sample_rate_hz
        )
        assert loop.source == "generated" and loop.origin["riff_style"] in ("straight8", "six8", "odd78")
    assert {str(loop.meter) for loop in loops} == {"4/4", "6/8", "7/8"}
    with pytest.raises(LabelError, match="unknown"):
        generated_loops(1, styles=("polka",))
    with GrooveStore(tmp_path / "grooves.sqlite") as grooves:
        key = GrooveKey.from_row(grooves.list_rows()[0])
    with LabelStore.open(tmp_path) as store:
        for i, loop in enumerate(loops):
            clip = store.add_clip(loop.audio, loop.sample_rate_hz, loop.fingerprint, loop.clip_meta())
            store.add_rating(clip, key, i % 6, strategy="explore")
        pairs = list(store.ratings())
        assert store.check() == []
    assert [p.meter for p in pairs] == [str(loop.meter) for loop in loops]
    assert [p.origin["riff_style"] for p in pairs] == [loop.origin["riff_style"] for loop in loops]
    assert all(np.array_equal(p.fingerprint.energy, loop.fingerprint.energy) for p, loop in zip(pairs, loops))


def test_jam_session_recordings_are_found_in_the_data_dir(riff_file, tmp_path, monkeypatch):
    from sjtui.labels.loops import jam_recording_loops

    monkeypatch.setenv("SJTUI_DATA_DIR", str(tmp_path / "data"))
    loops, problems = jam_recording_loops()
    assert loops == [] and "no session recordings yet" in problems[0].reason
    path, _ = riff_file
    recordings = tmp_path / "data" / "recordings"
    recordings.mkdir(parents=True)
    audio, rate = sf.read(str(path), dtype="float32")
    sf.write(str(recordings / "sjtui-20261126-130000-guitar.flac"), audio, rate, subtype="PCM_24")
    (recordings / "sjtui-20261126-130000-drums.mid").write_bytes(
        b"MThd"
    )  # the drums beside it are not guitar
    loops, problems = jam_recording_loops(bpm=120.0)
    assert problems == [] and len(loops) == 3
    assert all(
        loop.source == "jam-recording" and loop.clip_meta()["source"] == "jam-recording" for loop in loops
    )
