"""Timed MIDI events from grooves, kit maps, clock ticks, API choice and port matching (no server needed)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from sjtui.constants import DRUM_VOICES, MIDI_CLOCK_PPQN, STEPS_PER_BEAT
from sjtui.grooves.textgrid import parse_text
from sjtui.grooves.vho import Groove
from sjtui.meter import parse_meter
from sjtui.midi import kits
from sjtui.midi.events import (
    ALL_NOTES_OFF,
    CONTROL_CHANGE,
    EVENT_DTYPE,
    NOTE_OFF,
    NOTE_ON,
    MidiError,
    clock_tick_samples,
    groove_events,
    panic_messages,
    song_position_event,
    sort_events,
)
from sjtui.midi.ports import choose_api, match_port, normalize_api
from sjtui.transport.timebase import TempoMap

RATE = 48000


def random_groove(seed: int = 0, bars: int = 4, meter: str = "4/4", density: float = 0.2) -> Groove:
    rng = np.random.default_rng(seed)
    meter = parse_meter(meter)
    shape = (bars * meter.steps_per_bar, len(DRUM_VOICES))
    hits = rng.random(shape) < density
    velocities = np.where(hits, rng.uniform(0.05, 1.0, shape), 0).astype(np.float32)
    offsets = np.where(hits, rng.uniform(-0.5, 0.49, shape), 0).astype(np.float32)
    return Groove(hits, velocities, offsets, meter, 120.0, f"random-{seed}", "builtin")


def note_ons(events):
    return events[(events["status"] & 0xF0) == NOTE_ON]


def test_note_ons_sit_at_step_plus_offset_on_the_tempo_map():
    groove = random_groove(1)
    tempo_map = TempoMap.constant(RATE, 97.0, "4/4", anchor_sample=12345, anchor_beat=0.0)
    events = groove_events(groove, tempo_map, 3)
    steps, voices = np.nonzero(groove.hits)
    beats = 3 * 4 + (steps + groove.offsets[steps, voices].astype(np.float64)) / STEPS_PER_BEAT
    expected = np.rint(12345 + beats * 60.0 * RATE / 97.0).astype(np.int64)
    ons = note_ons(events)
    got = sorted(zip(ons["sample"].tolist(), ons["data1"].tolist(), ons["data2"].tolist()))
    want_notes = kits.GM_KIT.notes[voices]
    want_vel = np.clip(np.rint(groove.velocities[steps, voices] * 127), 1, 127)
    want = sorted(zip(expected.tolist(), want_notes.tolist(), want_vel.astype(int).tolist()))
    assert got == want
    assert (ons["status"] == NOTE_ON | 9).all()
    assert events.dtype == EVENT_DTYPE and (events["size"] == 3).all()


def test_bar_range_and_odd_meter_and_tempo_change_inside_the_window():
    groove = random_groove(2, bars=4, meter="7/8")
    tempo_map = TempoMap.constant(RATE, 120.0, "7/8").with_tempo(RATE * 4, 150.0)
    events = groove_events(groove, tempo_map, 5, from_bar=1, n_bars=2)
    window = groove.bar_slice(1, 2)
    steps, voices = np.nonzero(window.hits)
    spb = 42
    beats = tempo_map.bar_to_beat(5 + steps // spb) + (steps % spb + window.offsets[steps, voices]) / 12.0
    expected = np.sort(np.rint(tempo_map.beat_to_sample(beats)).astype(np.int64))
    assert np.array_equal(np.sort(note_ons(events)["sample"]), expected)
    # the window crosses the tempo change: step spacing differs on both sides
    assert tempo_map.bar_to_sample(5) > RATE * 4


def test_note_offs_balance_and_never_outlive_the_next_hit():
    groove = random_groove(3, density=0.6)
    tempo_map = TempoMap.constant(RATE, 200.0)
    events = groove_events(groove, tempo_map, 0, note_length_ms=300.0)
    assert np.array_equal(sort_events(events), events)
    sounding = {}
    for event in events:
        key = int(event["data1"])
        if event["status"] & 0xF0 == NOTE_ON:
            assert not sounding.get(key), f"note {key} struck again before its note-off"
            sounding[key] = True
        else:
            assert sounding.get(key), f"note-off of note {key} that is not on"
            sounding[key] = False
    assert not any(sounding.values())
    offs = events[(events["status"] & 0xF0) == NOTE_OFF]
    assert offs.size == note_ons(events).size


def test_dynamics_scale_velocities_within_limits():
    groove = random_groove(4)
    tempo_map = TempoMap.constant(RATE, 120.0)
    base = note_ons(groove_events(groove, tempo_map, 0))["data2"].astype(int)
    soft = note_ons(groove_events(groove, tempo_map, 0, dynamics=0.5))["data2"].astype(int)
    loud = note_ons(groove_events(groove, tempo_map, 0, dynamics=10.0))["data2"].astype(int)
    tiny = note_ons(groove_events(groove, tempo_map, 0, dynamics=0.0))["data2"].astype(int)
    assert soft.sum() < base.sum() < loud.sum()
    assert loud.max() <= 127 and tiny.min() >= 1
    # 10 is clipped to DYNAMICS_MAX = 1.5, 0 to DYNAMICS_MIN = 0.25
    assert np.array_equal(
        loud, note_ons(groove_events(groove, tempo_map, 0, dynamics=1.5))["data2"].astype(int)
    )
    assert np.array_equal(
        tiny, note_ons(groove_events(groove, tempo_map, 0, dynamics=0.25))["data2"].astype(int)
    )


def test_library_groove_lands_on_the_grid():
    from sjtui.grooves.textgrid import BUILTIN_GROOVES_DIR

    groove = parse_text((BUILTIN_GROOVES_DIR / "rock.groove").read_text())[0]
    tempo_map = TempoMap.constant(RATE, 120.0)
    ons = note_ons(groove_events(groove, tempo_map, 0))
    # straight 16ths at 120 BPM: every onset is a multiple of 6000 samples
    assert (ons["sample"] % 6000 == 0).all()
    assert set(ons["data1"].tolist()) <= {36, 38, 42, 46}


def test_kit_maps_builtin_user_and_errors(tmp_path):
    for name in kits.kit_names(tmp_path / "none.json"):
        kit = kits.kit_map(name, tmp_path / "none.json")
        assert kit.notes.shape == (len(DRUM_VOICES),) and (kit.notes <= 127).all()
    assert kits.kit_map("TD-17").note("high_tom") == 48
    assert kits.kit_map("ad2").best_guess
    groove = random_groove(5)
    events = groove_events(groove, TempoMap.constant(RATE, 120.0), 0, kit="td27")
    assert set(note_ons(events)["data1"].tolist()) <= set(kits.kit_map("td27").notes.tolist())
    path = tmp_path / "kits.json"
    path.write_text(json.dumps({"Studio": {"kick": 35, "low_tom": 41}}))
    studio = kits.kit_map("studio", path)
    assert studio.note("kick") == 35 and studio.note("snare") == 38
    with pytest.raises(kits.KitMapError, match="studio"):
        kits.kit_map("nope", path)
    path.write_text(json.dumps({"bad": {"cowbell": 56}}))
    with pytest.raises(kits.KitMapError, match="cowbell"):
        kits.kit_map("bad", path)
    path.write_text(json.dumps({"bad": {"kick": 200}}))
    with pytest.raises(kits.KitMapError, match="200"):
        kits.kit_map("bad", path)
    path.write_text("{not json")
    with pytest.raises(kits.KitMapError, match="cannot be read"):
        kits.kit_map("gm", path)


def test_clock_ticks_are_24_per_beat_on_the_tempo_map():
    tempo_map = TempoMap.constant(RATE, 120.0, anchor_sample=500).with_tempo(500 + 4 * 24000, 90.0)
    ticks = clock_tick_samples(tempo_map, 0, 500 + 8 * 24000)
    assert ticks[0] == 500
    assert np.array_equal(np.diff(ticks[: 4 * MIDI_CLOCK_PPQN + 1]), np.full(4 * MIDI_CLOCK_PPQN, 1000))
    after = np.diff(ticks[4 * MIDI_CLOCK_PPQN :])
    assert set(after.tolist()) <= {1333, 1334}
    assert ticks.size == 7 * MIDI_CLOCK_PPQN  # 4 beats at 120 then 3 at 90 before the end
    assert ticks[6 * MIDI_CLOCK_PPQN] == 500 + 4 * 24000 + 2 * 32000


def test_song_position_and_panic_bytes():
    spp = song_position_event(10, 6 * 200)  # 200 sixteenths = 0x48 + 0x01 << 7
    assert (int(spp["status"][0]), int(spp["data1"][0]), int(spp["data2"][0])) == (0xF2, 200 & 0x7F, 200 >> 7)
    sounding = np.zeros((16, 128), dtype=bool)
    sounding[9, 36] = sounding[9, 42] = True
    messages = panic_messages(sounding, [9, 0], all_sound_off=True)
    assert [NOTE_OFF | 9, 36, 0] in messages and [NOTE_OFF | 9, 42, 0] in messages
    assert [CONTROL_CHANGE | 9, ALL_NOTES_OFF, 0] in messages
    assert [CONTROL_CHANGE | 0, ALL_NOTES_OFF, 0] in messages
    assert [CONTROL_CHANGE | 9, 120, 0] in messages
    assert messages.index([CONTROL_CHANGE | 9, ALL_NOTES_OFF, 0]) > messages.index([NOTE_OFF | 9, 42, 0])


def test_bad_channel_is_refused():
    with pytest.raises(MidiError, match="16"):
        groove_events(random_groove(), TempoMap.constant(RATE, 120.0), 0, channel=16)


def test_api_choice_honours_argument_and_mido_backend(monkeypatch):
    assert normalize_api("jack") == "UNIX_JACK" and normalize_api("API_LINUX_ALSA") == "LINUX_ALSA"
    with pytest.raises(MidiError, match="unknown"):
        normalize_api("sndio")
    monkeypatch.setenv("MIDO_BACKEND", "mido.backends.rtmidi/UNIX_JACK")
    assert choose_api() == "UNIX_JACK"
    with pytest.raises(MidiError, match="not available"):
        choose_api("MACOSX_CORE")
    monkeypatch.delenv("MIDO_BACKEND")
    monkeypatch.setenv("JACK_DEFAULT_SERVER", f"sjtui-nonexistent-{os.getpid()}")
    if not os.path.exists("/dev/snd/seq"):
        with pytest.raises(MidiError, match="no MIDI system"):
            choose_api()


def test_port_matching_names_the_ports_that_exist():
    names = ["Fluid Synth:midi_00", "a2j:Digital Piano [20] (capture)", "DrumBrain:in"]
    assert match_port("drumbrain", names) == 2
    assert match_port("DrumBrain:in", names) == 2
    with pytest.raises(MidiError) as info:
        match_port("Ardour", names)
    assert "'Fluid Synth:midi_00'" in str(info.value) and "Ardour" in str(info.value)
    with pytest.raises(MidiError, match="several"):
        match_port(":", names)
