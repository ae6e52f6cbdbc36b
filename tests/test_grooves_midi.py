"""Drum map, MIDI -> VHO quantisation and windows, VHO -> MIDI, and bad MIDI files."""

from __future__ import annotations

import io

import mido
import numpy as np
import pytest

from sjtui.constants import DRUM_VOICES, STEPS_PER_BEAT
from sjtui.grooves.drum_map import GM_NOTE_OF_VOICE, NOTE_TO_VOICE, VOICE_TO_GM_NOTE, voice_of_note
from sjtui.grooves.midi_export import groove_to_midi, hit_events, write_midi
from sjtui.grooves.midi_import import (
    MidiImportError,
    quantise_hits,
    read_drum_performance,
    read_grooves,
    window_bars,
)
from sjtui.grooves.vho import N_VOICES, Groove
from sjtui.meter import Meter

TPB = 480
TICKS_PER_STEP = TPB // STEPS_PER_BEAT


def make_midi(
    notes,
    *,
    tempo_us: int | None = 500_000,
    meter: tuple[int, int] | None = (4, 4),
    channel: int = 9,
    midi_type: int = 1,
    ticks_per_beat: int = TPB,
) -> bytes:
    """A MIDI file as bytes; ``notes`` is a list of (tick, note, velocity)."""
    midi = mido.MidiFile(type=midi_type, ticks_per_beat=ticks_per_beat)
    meta = mido.MidiTrack()
    if meter is not None:
        meta.append(mido.MetaMessage("time_signature", numerator=meter[0], denominator=meter[1], time=0))
    if tempo_us is not None:
        meta.append(mido.MetaMessage("set_tempo", tempo=tempo_us, time=0))
    events = []
    for tick, note, velocity in notes:
        events.append((tick, 1, mido.Message("note_on", channel=channel, note=note, velocity=velocity)))
        events.append((tick + 30, 0, mido.Message("note_off", channel=channel, note=note, velocity=0)))
    events.sort(key=lambda e: (e[0], e[1]))
    drums = mido.MidiTrack()
    now = 0
    for tick, _, message in events:
        drums.append(message.copy(time=tick - now))
        now = tick
    if midi_type == 0:
        merged = mido.MidiTrack(list(meta) + list(drums))
        midi.tracks.append(merged)
    else:
        midi.tracks.extend([meta, drums])
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def rock_beat_notes(bars: int, ticks_per_beat: int = TPB) -> list[tuple[int, int, int]]:
    """8th hats, kick on 1 and 3, snare on 2 and 4, with a little human timing."""
    rng = np.random.default_rng(7)
    notes = []
    for bar in range(bars):
        for eighth in range(8):
            tick = bar * 4 * ticks_per_beat + eighth * ticks_per_beat // 2
            jitter = int(rng.integers(-12, 12))
            notes.append((max(tick + jitter, 0), 42, int(rng.integers(50, 110))))
            if eighth in (0, 4):
                notes.append((tick, 36, 100))
            if eighth in (2, 6):
                notes.append((tick + 5, 38, 110))
    return notes


# ------------------------------------------------------------------------------------- drum map


def test_every_gm_drum_note_maps_to_a_voice():
    for note in range(35, 82):
        assert NOTE_TO_VOICE[note] >= 0, f"GM drum note {note} is not mapped"


def test_td11_notes_follow_the_groovae_classes():
    classes = {
        "kick": [36], "snare": [38, 40, 37], "closed_hat": [42, 22, 44], "open_hat": [46, 26],
        "low_tom": [43, 58], "mid_tom": [47, 45], "high_tom": [50, 48], "crash": [49, 55, 57, 52],
        "ride": [51, 59, 53],
    }  # fmt: skip
    for voice, notes in classes.items():
        for note in notes:
            assert voice_of_note(note) == voice, (note, voice)


def test_playback_note_of_each_voice_maps_back_to_it():
    for index, voice in enumerate(DRUM_VOICES):
        assert voice_of_note(VOICE_TO_GM_NOTE[voice]) == voice
        assert NOTE_TO_VOICE[GM_NOTE_OF_VOICE[index]] == index
    assert voice_of_note(100) is None and voice_of_note(-1) is None


# ------------------------------------------------------------------------------------- quantise


def test_quantise_keeps_offset_in_half_open_range_and_louder_duplicate():
    ticks = np.array([0, 19, 20, 40, 41, 45])  # 40 ticks per step at 480 tpb
    voices = np.array([0, 0, 0, 1, 1, 1])
    velocities = np.array([100, 50, 60, 30, 90, 10])
    steps, v, vel, off, duplicates = quantise_hits(ticks, voices, velocities, TPB)
    # tick 19 -> step 0 (+0.475), tick 20 -> step 1 (-0.5): offsets stay in [-0.5, 0.5)
    # step 0 / kick: ticks 0 and 19 -> keep velocity 100; step 1 / snare: 40, 41, 45 -> keep 90
    assert steps.tolist() == [0, 1, 1]
    assert v.tolist() == [0, 0, 1]
    np.testing.assert_allclose(vel, np.array([100, 60, 90]) / 127, rtol=1e-6)
    np.testing.assert_allclose(off, [0.0, -0.5, 41 / 40 - 1], atol=1e-6)
    assert duplicates == 3
    assert np.all((off >= -0.5) & (off < 0.5))


def test_read_performance_gets_tempo_meter_and_hits():
    data = make_midi([(0, 36, 100), (480, 38, 64), (490, 42, 127)], tempo_us=600_000, meter=(3, 4))
    performance = read_drum_performance(data)
    assert performance.bpm == pytest.approx(100.0)
    assert performance.meter == Meter(3, 4)
    assert performance.steps.tolist() == [0, 12, 12]
    assert [DRUM_VOICES[v] for v in performance.voices] == ["kick", "snare", "closed_hat"]
    assert performance.offsets[2] == pytest.approx(0.25)  # 10 ticks late at 40 ticks per step
    assert performance.n_bars == 1


def test_type0_file_reads_like_type1():
    notes = rock_beat_notes(2)
    a = read_drum_performance(make_midi(notes, midi_type=0))
    b = read_drum_performance(make_midi(notes, midi_type=1))
    np.testing.assert_array_equal(a.steps, b.steps)
    np.testing.assert_array_equal(a.velocities, b.velocities)


def test_other_channel_is_read_when_chosen():
    data = make_midi(rock_beat_notes(1), channel=3)
    with pytest.raises(MidiImportError, match="channel 10.*other channels"):
        read_drum_performance(data)
    assert read_drum_performance(data, channel=3).steps.size > 0


# ------------------------------------------------------------------------------------- windows


def test_long_beat_is_cut_into_4_bar_windows_every_2_bars_and_empty_windows_dropped():
    notes = rock_beat_notes(12)
    notes = [n for n in notes if not (6 * 4 * TPB <= n[0] < 9 * 4 * TPB)]  # bars 7-9 silent
    grooves, performance = read_grooves(make_midi(notes), name="t", source_name="midi")
    assert performance.n_bars == 12
    # windows 0-3, 2-5 kept; 4-7 has bars 7,8 empty (2 active): dropped; 6-9 (1 active) dropped;
    # 8-11 has bar 9 empty (3 active): kept
    assert [(g.start_bar, g.bars) for g in grooves] == [(0, 4), (2, 4), (8, 4)]
    assert window_bars(performance) == [(0, 4), (2, 4), (8, 4)]
    for g in grooves:
        assert g.n_steps == 4 * 48
        assert g.kind == "beat"


def test_fill_kept_whole_and_padded_to_whole_bars():
    notes = [(i * 120, 38, 90) for i in range(20)]  # 20 16ths = 1.25 bars
    grooves, _ = read_grooves(make_midi(notes), name="f", source_name="midi", kind="fill")
    assert len(grooves) == 1
    assert grooves[0].kind == "fill" and grooves[0].bars == 2
    assert grooves[0].hits[:, DRUM_VOICES.index("snare")].sum() == 20


def test_short_beat_is_kept_whole():
    grooves, _ = read_grooves(make_midi(rock_beat_notes(2)), name="s", source_name="midi")
    assert [(g.start_bar, g.bars) for g in grooves] == [(0, 2)]


# ------------------------------------------------------------------------------------- round trip


def random_groove(seed: int, bars: int = 4, meter: Meter = Meter(4, 4)) -> Groove:
    rng = np.random.default_rng(seed)
    n_steps = bars * meter.steps_per_bar
    hits = rng.random((n_steps, N_VOICES)) < 0.12
    velocities = np.where(hits, rng.integers(1, 128, hits.shape) / 127.0, 0).astype(np.float32)
    offsets = np.where(hits, rng.uniform(-0.5, 0.5, hits.shape), 0).astype(np.float32)
    offsets[0] = np.where(hits[0], np.abs(offsets[0]), 0)  # nothing before the first downbeat (see export doc)
    return Groove(hits, velocities, offsets, meter=meter, bpm=97.0, name=f"r{seed}", source="midi")


@pytest.mark.parametrize("seed,meter", [(1, Meter(4, 4)), (2, Meter(3, 4)), (3, Meter(6, 8)), (4, Meter(7, 8))])
def test_round_trip_groove_midi_groove(tmp_path, seed, meter):
    groove = random_groove(seed, meter=meter)
    path = write_midi(groove, tmp_path / "g.mid")
    back = read_drum_performance(path)
    assert back.meter == meter and back.bpm == pytest.approx(97.0, abs=0.01)
    hits, velocities, offsets = back.vho()
    padded = np.zeros_like(groove.hits)
    padded[: hits.shape[0]] = hits
    np.testing.assert_array_equal(padded, groove.hits)  # hits exactly
    one_velocity_step = 1 / 127
    one_offset_step = 1 / TICKS_PER_STEP  # a tick at 480 per beat
    vel_error = np.abs(velocities[hits] - groove.velocities[: hits.shape[0]][hits])
    off_error = np.abs(offsets[hits] - groove.offsets[: hits.shape[0]][hits])
    assert vel_error.max() <= one_velocity_step / 2 + 1e-6
    # rounding to ticks costs at most half a tick; offsets in [19.5, 20) ticks are kept at 19 ticks
    # so the hit stays on its step: at most one tick, one quantisation step of the file
    assert off_error.max() <= one_offset_step + 1e-6
    assert np.median(off_error) <= one_offset_step / 2


def test_round_trip_of_imported_performance_is_exact(tmp_path):
    grooves, _ = read_grooves(make_midi(rock_beat_notes(4)), name="x", source_name="midi")
    groove = grooves[0]
    back = read_drum_performance(write_midi(groove, tmp_path / "x.mid"))
    hits, velocities, offsets = back.vho()
    np.testing.assert_array_equal(hits, groove.hits)
    np.testing.assert_allclose(velocities, groove.velocities, atol=1e-6)
    early_start = groove.hits[0] & (groove.offsets[0] < 0)  # written at tick 0 (see midi_export)
    expected = groove.offsets.copy()
    expected[0, early_start] = 0.0
    np.testing.assert_allclose(offsets, expected, atol=1e-6)


def test_export_note_offs_never_overlap_the_next_hit_of_a_note():
    groove = random_groove(5)
    groove.hits[:, 2] = True  # a closed hat on every step
    groove.velocities[:, 2] = 0.5
    events = hit_events(groove)
    for note in np.unique(events["note"]):
        mine = events["note"] == note
        on, off = events["on_tick"][mine], events["off_tick"][mine]
        assert np.all(off > on)
        assert np.all(off[:-1] <= on[1:])
    midi = groove_to_midi(groove)
    assert sum(m.type == "note_on" for m in midi.tracks[0]) == sum(m.type == "note_off" for m in midi.tracks[0])


# ------------------------------------------------------------------------------------- bad files


def bad_files() -> dict[str, tuple[bytes, str]]:
    good = make_midi(rock_beat_notes(4))
    corrupted = bytearray(good)
    track_at = corrupted.index(b"MTrk", 14)
    corrupted[track_at + 8 : track_at + 40] = b"\xf0\xff\xff\xff\xff\x8f" + bytes(range(0x80, 0x9A))
    type2 = make_midi(rock_beat_notes(1), midi_type=1)
    type2 = type2[:8] + b"\x00\x02" + type2[10:]  # header format field -> 2
    return {
        "empty": (b"", "empty file"),
        "truncated": (good[: len(good) // 2], "truncated"),
        "not midi": (b"RIFF\x00\x00\x00\x00WAVEfmt ", "not a MIDI file"),
        "corrupted": (bytes(corrupted), "corrupted MIDI file"),
        "type 2": (type2, "type 2"),
        "drumless": (make_midi([(0, 60, 100), (480, 64, 100)], channel=0), "no drum notes on MIDI channel 10"),
        "not drums": (make_midi([(0, 100, 100)]), "no kit drum notes"),
        "tempo-less": (make_midi(rock_beat_notes(4), tempo_us=None), "no tempo"),
        "absurd tempo fast": (make_midi(rock_beat_notes(4), tempo_us=1000), "absurd tempo 6e\\+04 BPM"),
        "absurd tempo slow": (make_midi(rock_beat_notes(4), tempo_us=10_000_000), "absurd tempo 6 BPM"),
    }


@pytest.mark.parametrize("case", list(bad_files()))
def test_bad_midi_is_refused_with_its_reason(case):
    data, reason = bad_files()[case]
    with pytest.raises(MidiImportError, match=reason):
        read_grooves(data, name=case, source_name="midi", path_label=f"{case}.mid")


def test_missing_or_absurd_tempo_uses_the_fallback_when_given():
    for tempo in (None, 1000):
        performance = read_drum_performance(make_midi(rock_beat_notes(4), tempo_us=tempo), fallback_bpm=123.0)
        assert performance.bpm == 123.0 and not performance.tempo_from_file
