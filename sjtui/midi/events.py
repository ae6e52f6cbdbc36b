"""Timed MIDI events: grooves and clock placed on the tempo map, in absolute sample time.

An event array is a 1-D structured array of :data:`EVENT_DTYPE`, sorted by
``sample`` (an absolute sample index of the engine's audio clock, see
CONVENTIONS §3) and, at equal samples, by :func:`event_priority` (Song
Position Pointer, Start/Continue, clock tick, Stop, note-off, control change,
note-on: a re-struck note is released before it sounds again). Seconds follow
from the sample clock (``SampleClock.sample_to_time``).

Everything here is pure: the same groove, map and options give the same
array.
"""

from __future__ import annotations

import numpy as np

from sjtui.constants import MIDI_CLOCK_PPQN, STEPS_PER_BEAT
from sjtui.errors import SjtuiError
from sjtui.grooves.vho import Groove
from sjtui.midi.kits import GM_KIT, KitMap, kit_map
from sjtui.transport.timebase import TempoMap

EVENT_DTYPE = np.dtype(
    [("sample", np.int64), ("status", np.uint8), ("data1", np.uint8), ("data2", np.uint8), ("size", np.uint8)]
)
"""One MIDI message at an absolute sample: status byte, up to two data bytes, message length 1..3."""

NOTE_OFF = 0x80
NOTE_ON = 0x90
CONTROL_CHANGE = 0xB0
SONG_POSITION = 0xF2
CLOCK = 0xF8
START = 0xFA
CONTINUE = 0xFB
STOP = 0xFC
ALL_SOUND_OFF = 120
ALL_NOTES_OFF = 123

GM_DRUM_CHANNEL = 9  # 0-based: MIDI channel 10
DEFAULT_NOTE_LENGTH_MS = 50.0
DYNAMICS_MIN = 0.25
DYNAMICS_MAX = 1.5
TICKS_PER_SPP_UNIT = 6  # a Song Position Pointer counts 16th notes

_PRIORITY = np.full(256, 5, dtype=np.int8)  # control change and everything else
_PRIORITY[SONG_POSITION] = 0
_PRIORITY[START] = 1
_PRIORITY[CONTINUE] = 1
_PRIORITY[CLOCK] = 2
_PRIORITY[STOP] = 3
_PRIORITY[NOTE_OFF : NOTE_OFF + 16] = 4
_PRIORITY[NOTE_ON : NOTE_ON + 16] = 6


class MidiError(SjtuiError):
    """A MIDI port, backend or event problem."""


def empty_events(n: int = 0) -> np.ndarray:
    return np.zeros(n, dtype=EVENT_DTYPE)


def event_priority(events: np.ndarray) -> np.ndarray:
    """(n,) int8 order of events at the same sample (lower first); note-ons with velocity 0 count as offs."""
    priority = _PRIORITY[events["status"]]
    zero_on = ((events["status"] & 0xF0) == NOTE_ON) & (events["data2"] == 0)
    priority[zero_on] = 4
    return priority


def sort_events(events: np.ndarray) -> np.ndarray:
    """A sorted copy (by sample, then :func:`event_priority`, stable)."""
    order = np.lexsort((event_priority(events), events["sample"]))
    return events[order]


def merge_events(*arrays: np.ndarray) -> np.ndarray:
    return sort_events(np.concatenate([np.asarray(a, dtype=EVENT_DTYPE) for a in arrays]))


def message(event) -> list[int]:
    """The bytes of one event as a list (``size`` of them)."""
    size = int(event["size"])
    return [int(event["status"]), int(event["data1"]), int(event["data2"])][:size]


def check_channel(channel: int) -> int:
    if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)) or not 0 <= channel <= 15:
        raise MidiError(f"MIDI channel {channel!r} (0-based) must be 0..15; channel 10 (the drums) is 9")
    return int(channel)


def check_dynamics(scale: float) -> float:
    """The velocity scale clipped to [DYNAMICS_MIN, DYNAMICS_MAX]; NaN -> 1."""
    scale = float(scale)
    if not np.isfinite(scale):
        return 1.0
    return float(np.clip(scale, DYNAMICS_MIN, DYNAMICS_MAX))


def groove_events(
    groove: Groove,
    tempo_map: TempoMap,
    at_bar: int,
    *,
    from_bar: int = 0,
    n_bars: int | None = None,
    channel: int = GM_DRUM_CHANNEL,
    kit: KitMap | str | dict = GM_KIT,
    dynamics: float = 1.0,
    note_length_ms: float = DEFAULT_NOTE_LENGTH_MS,
) -> np.ndarray:
    """The groove's bars ``from_bar .. from_bar + n_bars`` played from bar ``at_bar`` of ``tempo_map``.

    Each hit at step ``s`` (bar ``b = s // steps_per_bar`` of the groove) with
    offset ``o`` steps sounds at beat ``bar_to_beat(at_bar + b) + (s mod
    steps_per_bar + o) / 12``, converted to a sample with the tempo map and
    rounded to the nearest integer; each groove bar starts on a bar line of
    the map, so a tempo change inside the window bends the steps with it.
    Velocity is ``round(127 * velocity * dynamics)`` within 1..127, with
    ``dynamics`` clipped to [DYNAMICS_MIN, DYNAMICS_MAX]. The note-off
    follows after ``note_length_ms`` but never later than the next hit of
    the same note (which it then precedes). Returns a sorted (2 * n_hits,)
    array of :data:`EVENT_DTYPE`.
    """
    channel = check_channel(channel)
    kit = kit_map(kit)
    if n_bars is None:
        n_bars = groove.bars - from_bar
    window = groove.bar_slice(from_bar, n_bars)
    spb = window.meter.steps_per_bar
    steps, voices = np.nonzero(window.hits)
    if steps.size == 0:
        return empty_events()
    bar_in_window = steps // spb
    bar_beats = tempo_map.bar_to_beat(np.arange(n_bars, dtype=np.float64) + float(at_bar))
    beats = (
        bar_beats[bar_in_window]
        + ((steps % spb) + window.offsets[steps, voices].astype(np.float64)) / STEPS_PER_BEAT
    )
    on_samples = np.rint(tempo_map.beat_to_sample(beats)).astype(np.int64)
    notes = kit.notes[voices]
    velocity = np.clip(
        np.rint(window.velocities[steps, voices].astype(np.float64) * 127.0 * check_dynamics(dynamics)),
        1,
        127,
    ).astype(np.uint8)

    length = max(1, int(round(float(note_length_ms) * 1e-3 * tempo_map.sample_rate_hz)))
    off_samples = on_samples + length
    by_note = np.lexsort((on_samples, notes))
    same_next = np.zeros(by_note.size, dtype=bool)
    same_next[:-1] = notes[by_note][1:] == notes[by_note][:-1]
    next_on = np.empty(by_note.size, dtype=np.int64)
    next_on[:-1] = on_samples[by_note][1:]
    next_on[-1] = 0
    off_samples[by_note] = np.where(
        same_next, np.minimum(off_samples[by_note], next_on), off_samples[by_note]
    )

    n = steps.size
    events = empty_events(2 * n)
    events["sample"][:n] = on_samples
    events["status"][:n] = NOTE_ON | channel
    events["data1"][:n] = notes
    events["data2"][:n] = velocity
    events["sample"][n:] = off_samples
    events["status"][n:] = NOTE_OFF | channel
    events["data1"][n:] = notes
    events["data2"][n:] = 0
    events["size"] = 3
    return sort_events(events)


def clock_tick_samples(tempo_map: TempoMap, first_tick: int, end_sample: float) -> np.ndarray:
    """(n,) int64 samples of MIDI clock ticks ``first_tick, first_tick + 1, ...`` before ``end_sample``."""
    end_tick = float(tempo_map.sample_to_tick(end_sample))
    n = max(0, int(np.ceil(end_tick - first_tick - 1e-9)))
    ticks = np.arange(first_tick, first_tick + n, dtype=np.float64)
    samples = np.rint(tempo_map.tick_to_sample(ticks)).astype(np.int64)
    return samples[samples < end_sample]


def realtime_event(sample: int, status: int) -> np.ndarray:
    event = empty_events(1)
    event["sample"] = sample
    event["status"] = status
    event["size"] = 1
    return event


def song_position_event(sample: int, tick: int) -> np.ndarray:
    """Song Position Pointer to the 16th note at or before ``tick`` (14-bit, 0..16383)."""
    value = int(np.clip(int(tick) // TICKS_PER_SPP_UNIT, 0, 16383))
    event = empty_events(1)
    event["sample"] = sample
    event["status"] = SONG_POSITION
    event["data1"] = value & 0x7F
    event["data2"] = value >> 7
    event["size"] = 3
    return event


def panic_messages(sounding: np.ndarray, channels, all_sound_off: bool = False) -> list[list[int]]:
    """Note-offs for every sounding (channel, note), then All Notes Off (and All Sound Off) per channel.

    ``sounding``: (16, 128) bool or counts (a count of k sends k note-offs, so
    note-ons minus note-offs comes back to zero at the receiver).
    """
    counts = np.asarray(sounding).astype(np.int64)
    out = [
        [NOTE_OFF | int(c), int(n), 0] for c, n in zip(*np.nonzero(counts)) for _ in range(int(counts[c, n]))
    ]
    for channel in sorted({int(c) for c in channels} | {int(c) for c in np.nonzero(sounding)[0]}):
        out.append([CONTROL_CHANGE | channel, ALL_NOTES_OFF, 0])
        if all_sound_off:
            out.append([CONTROL_CHANGE | channel, ALL_SOUND_OFF, 0])
    return out


__all__ = [
    "EVENT_DTYPE",
    "MIDI_CLOCK_PPQN",
    "MidiError",
    "clock_tick_samples",
    "groove_events",
    "merge_events",
    "panic_messages",
    "sort_events",
]
