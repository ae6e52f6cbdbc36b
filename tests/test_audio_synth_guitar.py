"""The Karplus-Strong guitar: notes sound where they are, in tune, and the timbres differ as claimed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from scipy.signal import butter, sosfilt

from sjtui.audio.riffs import generate_riff
from sjtui.audio.ring import RingBuffer, RingReader
from sjtui.audio.synth_guitar import TIMBRES, SynthGuitarSource, midi_to_hz, render_notes
from sjtui.errors import AudioError

SR = 48000


@dataclass(frozen=True)
class N:
    """A plain note (duck-typed like riffs.Note)."""

    start_s: float
    duration_s: float
    pitch: float
    velocity: float
    articulation: str = "normal"


def _hf_share(y: np.ndarray) -> float:
    energy = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    return float(energy[np.fft.rfftfreq(y.shape[0], 1 / SR) > 2000].sum() / energy.sum())


@pytest.mark.parametrize("timbre", TIMBRES)
def test_a_note_adds_nothing_before_its_start_and_sounds_at_it(timbre):
    """Render with and without one note: the difference starts exactly at that note's first sample."""
    riff = generate_riff("straight8", bpm=128, bars=2, seed=4)
    notes = list(riff.notes)
    full = render_notes(notes, SR, timbre, peak=None, length_s=riff.duration_s)
    rng = np.random.default_rng(0)
    for k in rng.choice(len(notes), size=4, replace=False):
        # Remove every note of that strum, so the strum's onset is the note's start.
        start_s = notes[k].start_s
        without = render_notes([n for n in notes if n.start_s != start_s], SR, timbre, peak=None, length_s=riff.duration_s)
        diff = np.abs(full.astype(np.float64) - without)
        onset = int(np.ceil(start_s * SR - 1e-9))
        assert not diff[:onset].any()
        assert diff[onset : onset + 48].max() > 1e-4  # audible within 1 ms


@pytest.mark.parametrize("style", ["straight8", "gallop", "funk16", "six8", "shuffle"])
@pytest.mark.parametrize("timbre", TIMBRES)
def test_high_band_energy_rises_at_every_onset(style, timbre):
    riff = generate_riff(style, bpm=120, bars=4, seed=2)
    y = render_notes(riff.notes, SR, timbre, length_s=riff.duration_s, wrap_tail=True).astype(np.float64)
    high = sosfilt(butter(4, 2000, "highpass", fs=SR, output="sos"), y)
    window = int(0.010 * SR)
    for onset in np.ceil(riff.onset_times_s() * SR - 1e-9).astype(int):
        after = np.sqrt(np.mean(high[onset : onset + window] ** 2))
        before = np.sqrt(np.mean(high[max(0, onset - window) : onset] ** 2)) if onset else 0.0
        assert after > 1.4 * before, f"no attack at sample {onset}"


@pytest.mark.parametrize("pitch", [40, 45, 52, 59, 64, 76, 88])
def test_strings_are_in_tune(pitch):
    y = render_notes([N(0.0, 1.0, pitch, 100)], SR, "clean", peak=None)[2400 : 2400 + 16384]
    n_fft = 16384 * 16
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.shape[0]), n_fft))
    freqs = np.fft.rfftfreq(n_fft, 1 / SR)
    f0 = midi_to_hz(pitch)
    near = (freqs > 0.9 * f0) & (freqs < 1.1 * f0)
    measured = freqs[near][np.argmax(spectrum[near])]
    assert abs(1200 * np.log2(measured / f0)) < 5  # cents


def _decay_s(y: np.ndarray, drop_db: float = 30.0) -> float:
    """Seconds until the 10 ms RMS envelope falls ``drop_db`` below its peak."""
    frames = y[: y.shape[0] // 480 * 480].astype(np.float64).reshape(-1, 480)
    env_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)
    peak = int(np.argmax(env_db))
    below = np.flatnonzero(env_db[peak:] < env_db[peak] - drop_db)
    return (below[0] if below.size else env_db.shape[0] - peak) * 0.010


def test_palm_muted_is_darker_and_shorter_distorted_is_brighter():
    long_note = [N(0.0, 2.0, 45, 100)]
    clean = render_notes(long_note, SR, "clean")
    muted = render_notes(long_note, SR, "muted")
    assert _decay_s(muted) < 0.25 * _decay_s(clean)
    assert _hf_share(muted) < 0.7 * _hf_share(clean)
    # On whole riffs: the distorted guitar has the most energy above 2 kHz, the muted one the least.
    for style in ("straight8", "funk16", "six8"):
        riff = generate_riff(style, bpm=120, bars=4, seed=1)
        share = {t: _hf_share(render_notes(riff.notes, SR, t, length_s=riff.duration_s)) for t in TIMBRES}
        assert share["muted"] < share["clean"] < share["distorted"], share


def test_muted_articulation_mutes_single_notes_in_any_timbre():
    ringing = render_notes([N(0.0, 1.0, 40, 100)], SR, "distorted")
    chugged = render_notes([N(0.0, 1.0, 40, 100, "muted")], SR, "distorted")
    assert _decay_s(chugged, 20) < 0.5 * _decay_s(ringing, 20)


def test_open_chord_strums_a_voicing_low_to_high():
    single = render_notes([N(0.0, 1.5, 40, 110)], SR, "chord", peak=None)
    # The open voicing adds the fifth (B2, 123.5 Hz) and the major third (G#3, 207.7 Hz),
    # which are not harmonics of the E2 string alone.
    alone = render_notes([N(0.0, 1.5, 40, 110)], SR, "clean", peak=None)

    def level(y, hz):
        spec = np.abs(np.fft.rfft(y[:SR] * np.hanning(SR)))
        return spec[int(round(hz)) - 1 : int(round(hz)) + 2].max() / spec.max()

    for hz in (123.5, 207.7):
        assert level(single, hz) > 0.1 and level(alone, hz) < 0.02
    # Strings enter one after another (12 ms apart): energy of the first 5 ms is only the low string.
    onsets_ms = [0, 12, 24, 36, 48]
    lows = [np.abs(single[int(ms * SR / 1000) : int((ms + 5) * SR / 1000)]).max() for ms in onsets_ms]
    assert lows[-1] > lows[0]


def test_deterministic_for_a_seed_and_different_across_seeds():
    riff = generate_riff("funk16", bpm=100, bars=2, seed=3)
    for timbre in TIMBRES:
        a = render_notes(riff.notes, SR, timbre, seed=7)
        b = render_notes(riff.notes, SR, timbre, seed=7)
        c = render_notes(riff.notes, SR, timbre, seed=8)
        assert a.dtype == np.float32 and np.array_equal(a, b)
        assert not np.array_equal(a, c)
        assert np.isfinite(a).all() and np.abs(a).max() == pytest.approx(0.5)


def test_44k1_rendering_keeps_onsets():
    notes = [N(0.1, 0.2, 52, 100), N(0.35, 0.2, 55, 100)]
    y = render_notes(notes, 44100, "clean", peak=None)
    first = int(np.flatnonzero(y)[0])
    assert first == int(np.ceil(0.1 * 44100))


def test_wrap_tail_makes_a_seamless_loop():
    notes = [N(0.0, 0.4, 40, 100), N(0.5, 0.45, 43, 100)]  # the second rings past the 1 s loop
    straight = render_notes(notes, SR, "clean", peak=None)
    looped = render_notes(notes, SR, "clean", peak=None, length_s=1.0, wrap_tail=True)
    assert looped.shape == (SR,)
    tail = straight[SR:]
    np.testing.assert_allclose(looped[: tail.shape[0]], straight[: tail.shape[0]] + tail, atol=1e-6)
    np.testing.assert_allclose(looped[tail.shape[0] :], straight[tail.shape[0] : SR], atol=1e-6)


def test_synth_source_plays_the_riff_into_the_ring_looping():
    riff = generate_riff("gallop", bpm=150, bars=2, seed=5)
    ring = RingBuffer(1 << 16, max_write_samples=256)
    reader = RingReader(ring, start_index=0)
    source = SynthGuitarSource(ring, riff, SR, timbre="muted", realtime=False,
                               reader_index=lambda: reader.next_index)
    loop_len = source.samples.shape[0]
    assert loop_len == round(riff.duration_s * SR)
    np.testing.assert_array_equal(source.onset_indices, np.ceil(riff.onset_times_s() * SR - 1e-9).astype(np.int64))
    got = []
    with source:
        while sum(g.shape[0] for g in got) < 2 * loop_len + 1000:
            got.append(reader.read_available().samples.copy())
    played = np.concatenate(got)
    np.testing.assert_array_equal(played[:loop_len], source.samples)
    np.testing.assert_array_equal(played[loop_len : 2 * loop_len], source.samples)
    assert reader.lost_samples == 0


def test_bad_notes_and_timbres_are_refused():
    with pytest.raises(AudioError, match="unknown guitar timbre 'banjo'"):
        render_notes([N(0, 1, 40, 100)], SR, "banjo")
    with pytest.raises(AudioError, match="needs start_s, duration_s, pitch and velocity"):
        render_notes([(0.0, 1.0, 40, 100)], SR)
    with pytest.raises(AudioError, match="no notes to render"):
        render_notes([], SR)
    assert not render_notes([], SR, length_s=0.5).any()
    with pytest.raises(AudioError, match="duration_s > 0"):
        render_notes([N(0, 0.0, 40, 100)], SR)
    with pytest.raises(AudioError, match="too high"):
        render_notes([N(0, 0.5, 140, 100)], SR)


@pytest.mark.parametrize("pitch", [40, 57, 84])
@pytest.mark.parametrize("voice", ["clean", "muted"])
def test_period_at_a_time_recursion_equals_lfilter(pitch, voice):
    from scipy.signal import lfilter

    from sjtui.audio.synth_guitar import VOICES, excitation, loop_filter, string_loop

    hz = midi_to_hz(pitch)
    n, taps = loop_filter(hz, SR, VOICES[voice])
    burst = excitation(hz, SR, 0.8, VOICES[voice], np.random.default_rng(1))
    a = np.zeros(n + taps.shape[0])
    a[0] = 1.0
    a[n:] -= taps
    x = np.zeros(20000)
    x[: burst.shape[0]] = burst
    np.testing.assert_allclose(string_loop(burst, n, taps, 20000), lfilter([1.0], a, x), atol=1e-12)
