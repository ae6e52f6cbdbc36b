"""The riff generator and the FluidSynth renderer that tests and training rely on."""

from __future__ import annotations

import numpy as np
import pytest

from sjtui.audio.render import GUITAR_PROGRAMS, render_riff
from sjtui.audio.riffs import STYLES, generate_riff, riff_to_midi
from sjtui.constants import STEPS_PER_BEAT


@pytest.mark.parametrize("style", list(STYLES))
def test_riff_notes_sit_on_their_grid_steps(style):
    riff = generate_riff(style, seed=3, bars=8)
    assert riff.meter.steps_per_bar * riff.bars * riff.step_s == pytest.approx(riff.duration_s)
    starts = np.array([n.start_s for n in riff.notes])
    steps = np.array([n.step for n in riff.notes])
    np.testing.assert_allclose(starts, steps * riff.step_s, atol=1e-9)
    assert steps.max() < riff.bars * riff.meter.steps_per_bar
    assert len(riff.onset_times_s()) == len(riff.onset_steps())


def test_same_seed_same_riff_other_seed_other_riff():
    assert generate_riff("funk16", seed=7) == generate_riff("funk16", seed=7)
    assert generate_riff("funk16", seed=7).notes != generate_riff("funk16", seed=8).notes


def test_feels_are_what_their_names_say():
    beat = STEPS_PER_BEAT
    shuffle = generate_riff("shuffle", bpm=100, seed=1).onset_steps() % beat
    straight = generate_riff("straight8", bpm=100, seed=1).onset_steps() % beat
    assert set(shuffle) == {0, 8}  # swung off-beat two thirds into the beat
    assert set(straight) <= {0, 6}
    assert set(generate_riff("skank", bpm=80, seed=1).onset_steps() % beat) == {6}
    assert str(generate_riff("six8", seed=1).meter) == "6/8"
    assert str(generate_riff("waltz", seed=1).meter) == "3/4"


def test_humanized_onsets_stay_known():
    riff = generate_riff("straight8", bpm=120, seed=2, humanize_ms=10)
    grid = riff.onset_steps() * riff.step_s
    deviation_ms = np.abs(riff.onset_times_s() - grid[: len(riff.onset_times_s())]) * 1000
    assert deviation_ms.max() <= 10.0001 and deviation_ms.max() > 1


def test_midi_file_keeps_the_note_times():
    riff = generate_riff("funk16", bpm=97, seed=4)
    mid = riff_to_midi(riff, program=GUITAR_PROGRAMS["clean"])
    t, starts = 0.0, []
    for msg in mid:  # iterating a MidiFile yields messages with time in seconds
        t += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            starts.append(t)
    np.testing.assert_allclose(np.unique(np.round(starts, 6)), riff.onset_times_s(), atol=1e-3)


def test_fluidsynth_renders_the_riff_in_time():
    riff = generate_riff("sparse", bpm=100, seed=5, bars=4)
    audio = render_riff(riff, "clean", sample_rate_hz=48000)
    assert audio.dtype == np.float32 and np.isfinite(audio).all()
    assert len(audio) >= riff.duration_s * 48000 * 0.95
    envelope = np.abs(audio)
    first_sound_s = np.argmax(envelope > 0.05 * envelope.max()) / 48000
    assert abs(first_sound_s - riff.onset_times_s()[0]) < 0.02
    # every onset brings a rise of energy in the 30 ms after it
    for onset in riff.onset_times_s():
        i = int(onset * 48000)
        before = np.sqrt(np.mean(audio[max(0, i - 1440) : i] ** 2)) if i else 0.0
        after = np.sqrt(np.mean(audio[i : i + 1440] ** 2))
        assert after > 1.5 * before
