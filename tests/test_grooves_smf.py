"""The lean MIDI scanner reads exactly what mido reads."""

from __future__ import annotations

import csv

import mido
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sjtui.grooves.smf import SmfError, scan_smf


def mido_view(data: bytes, channel: int):
    """(note-ons of channel as (tick, note, velocity), tempi, meters, other-channel note-ons) read by mido."""
    import io

    midi = mido.MidiFile(file=io.BytesIO(data))
    notes, tempi, meters, other = [], [], [], 0
    for track in midi.tracks:
        tick = 0
        for message in track:
            tick += message.time
            if message.type == "note_on" and message.velocity > 0:
                if message.channel == channel:
                    notes.append((tick, message.note, message.velocity))
                else:
                    other += 1
            elif message.type == "set_tempo":
                tempi.append((tick, message.tempo))
            elif message.type == "time_signature":
                meters.append((tick, message.numerator, message.denominator))
    return notes, tempi, meters, other, midi.ticks_per_beat, midi.type


def scan_view(data: bytes, channel: int):
    scan = scan_smf(data, channel)
    notes = list(zip(scan.note_ticks.tolist(), scan.note_numbers.tolist(), scan.note_velocities.tolist()))
    return notes, scan.tempo_events, scan.meter_events, scan.other_channel_notes, scan.ticks_per_beat, scan.midi_format


def test_scan_matches_mido_on_groove_midi_files(groove_midi_dir):
    with open(groove_midi_dir / "info.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))[::10]  # 115 files; bench/grooves.py runs all 1,150
    for row in rows:
        data = (groove_midi_dir / row["midi_filename"]).read_bytes()
        assert scan_view(data, 9) == mido_view(data, 9), row["midi_filename"]


message_strategy = st.one_of(
    st.tuples(st.just("note_on"), st.integers(0, 15), st.integers(0, 127), st.integers(0, 127)),
    st.tuples(st.just("note_off"), st.integers(0, 15), st.integers(0, 127), st.integers(0, 127)),
    st.tuples(st.just("control_change"), st.integers(0, 15), st.integers(0, 127), st.integers(0, 127)),
    st.tuples(st.just("program_change"), st.integers(0, 15), st.integers(0, 127), st.just(0)),
    st.tuples(st.just("pitchwheel"), st.integers(0, 15), st.integers(-8192, 8191), st.just(0)),
    st.tuples(st.just("sysex"), st.just(0), st.integers(0, 40), st.just(0)),
    st.tuples(st.just("set_tempo"), st.just(0), st.integers(1, 2_000_000), st.just(0)),
    st.tuples(st.just("time_signature"), st.just(0), st.integers(1, 16), st.sampled_from([1, 2, 4, 8, 16])),
)


def build(tracks, ticks_per_beat: int, midi_type: int) -> bytes:
    import io

    midi = mido.MidiFile(type=midi_type, ticks_per_beat=ticks_per_beat)
    for events in tracks:
        track = mido.MidiTrack()
        for delta, (kind, channel, a, b) in events:
            if kind in ("note_on", "note_off"):
                message = mido.Message(kind, channel=channel, note=a, velocity=b, time=delta)
            elif kind == "control_change":
                message = mido.Message(kind, channel=channel, control=a, value=b, time=delta)
            elif kind == "program_change":
                message = mido.Message(kind, channel=channel, program=a, time=delta)
            elif kind == "pitchwheel":
                message = mido.Message(kind, channel=channel, pitch=a, time=delta)
            elif kind == "sysex":
                message = mido.Message(kind, data=[i % 128 for i in range(a)], time=delta)
            elif kind == "set_tempo":
                message = mido.MetaMessage(kind, tempo=a, time=delta)
            else:
                message = mido.MetaMessage(kind, numerator=a, denominator=b, time=delta)
            track.append(message)
        midi.tracks.append(track)
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


@settings(max_examples=150, deadline=None)
@given(
    tracks=st.lists(
        st.lists(st.tuples(st.integers(0, 100_000), message_strategy), max_size=40), min_size=1, max_size=3
    ),
    ticks_per_beat=st.integers(1, 0x7FFF),
    channel=st.integers(0, 15),
)
def test_scan_matches_mido_on_random_files(tracks, ticks_per_beat, channel):
    data = build(tracks, ticks_per_beat, 1)
    assert scan_view(data, channel) == mido_view(data, channel)


def test_running_status_is_followed():
    # one track: note-on ch10 (status 0x99) then two more note-ons in running status, then end of track
    events = bytes([0x00, 0x99, 36, 100, 0x60, 38, 90, 0x60, 42, 0]) + bytes([0x00, 0xFF, 0x2F, 0x00])
    data = b"MThd" + (6).to_bytes(4, "big") + bytes([0, 0, 0, 1, 0x01, 0xE0])
    data += b"MTrk" + len(events).to_bytes(4, "big") + events
    scan = scan_smf(data, 9)
    assert scan.note_ticks.tolist() == [0, 0x60] and scan.note_numbers.tolist() == [36, 38]
    assert scan_view(data, 9) == mido_view(data, 9)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x00\x10\x00\x99", "truncated"),
        (b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0MTrk\x00\x00\x00\x03\x00\x24\x40", "running status without"),
        (b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0MTrk\x00\x00\x00\x04\x00\x99\x24\xc0", "above 127"),
        (b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0MTrk\x00\x00\x00\x02\x00\xf8", "system message"),
        (b"MThd\x00\x00\x00\x02\x00\x00", "truncated"),
        (b"MThd\x00\x00\x00\x02\x00\x00\x00\x01\x01\xe0\x00\x00", "header length 2"),
        (b"MTrk", "not a MIDI file"),
    ],
)
def test_bad_bytes_raise_a_reason(data, reason):
    with pytest.raises(SmfError, match=reason):
        scan_smf(data, 9)


def test_unknown_chunks_are_skipped():
    events = bytes([0x00, 0x99, 36, 100, 0x00, 0xFF, 0x2F, 0x00])
    data = b"MThd" + (6).to_bytes(4, "big") + bytes([0, 0, 0, 1, 0x01, 0xE0])
    data += b"XFIH" + (3).to_bytes(4, "big") + b"abc"
    data += b"MTrk" + len(events).to_bytes(4, "big") + events
    assert scan_smf(data, 9).note_numbers.tolist() == [36]
    assert np.array_equal(scan_smf(data, 9).note_velocities, [100])
