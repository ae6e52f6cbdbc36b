"""Grooves (VHO) -> MIDI files for playback and exchange.

Each hit becomes a note on the General MIDI drum channel at ``step +
offset``, with velocity ``round(127 * velocity)`` (at least 1) and the
default note of its voice (:data:`sjtui.grooves.drum_map.VOICE_TO_GM_NOTE`),
followed by its note-off.

With the default 480 ticks per quarter note a step is 40 ticks, so offsets
are written to 1/40 step. The written offset is kept inside ``[-20, 19]``
ticks of its step so that reading the file back puts every hit on the step it
came from. A hit before the very first downbeat (step 0 with a negative
offset) cannot be written in a file that starts at the downbeat: it is
written at tick 0, on its step, losing that early offset (at most half a
step).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sjtui.constants import STEPS_PER_BEAT
from sjtui.grooves.drum_map import GM_NOTE_OF_VOICE
from sjtui.grooves.midi_import import DRUM_CHANNEL
from sjtui.grooves.vho import Groove

DEFAULT_TICKS_PER_BEAT = 480
NOTE_LENGTH_STEPS = 1.5  # an 1/8-of-a-beat drum note; cut short by the next hit of the same note


def hit_events(groove: Groove, ticks_per_beat: int = DEFAULT_TICKS_PER_BEAT) -> dict[str, np.ndarray]:
    """The groove's hits as note events in ticks, sorted by time.

    Returns arrays of shape ``(n_hits,)``: ``on_tick``, ``off_tick`` (int64),
    ``note`` and ``velocity`` (uint8, MIDI values).
    """
    if ticks_per_beat % STEPS_PER_BEAT:
        raise ValueError(f"ticks_per_beat must be a multiple of {STEPS_PER_BEAT}, got {ticks_per_beat}")
    ticks_per_step = ticks_per_beat // STEPS_PER_BEAT
    steps, voices = np.nonzero(groove.hits)
    offset_ticks = np.rint(groove.offsets[steps, voices] * ticks_per_step).astype(np.int64)
    half = ticks_per_step // 2
    np.clip(offset_ticks, -half, ticks_per_step - half - 1, out=offset_ticks)
    on_tick = np.maximum(steps.astype(np.int64) * ticks_per_step + offset_ticks, 0)
    notes = GM_NOTE_OF_VOICE[voices]
    velocity = np.clip(np.rint(groove.velocities[steps, voices] * 127.0), 1, 127).astype(np.uint8)

    order = np.lexsort((notes, on_tick))
    on_tick, notes, velocity = on_tick[order], notes[order], velocity[order]
    # note-off: a fixed length, but never after the next hit of the same note
    length = int(round(NOTE_LENGTH_STEPS * ticks_per_step))
    off_tick = on_tick + length
    by_note = np.lexsort((on_tick, notes))
    same_note_next = np.zeros(by_note.size, dtype=bool)
    same_note_next[:-1] = notes[by_note][1:] == notes[by_note][:-1]
    next_on = np.empty(by_note.size, dtype=np.int64)
    next_on[:-1] = on_tick[by_note][1:]
    capped = np.where(same_note_next, np.minimum(off_tick[by_note], next_on), off_tick[by_note])
    off_tick[by_note] = capped
    return {"on_tick": on_tick, "off_tick": off_tick, "note": notes, "velocity": velocity}


def groove_to_midi(groove: Groove, *, channel: int = DRUM_CHANNEL, ticks_per_beat: int = DEFAULT_TICKS_PER_BEAT):
    """A type-0 ``mido.MidiFile`` playing the groove once: tempo, time signature, notes with note-offs."""
    import mido

    events = hit_events(groove, ticks_per_beat)
    n = events["on_tick"].size
    # (tick, order, message): at equal ticks, note-offs go before note-ons so a re-struck note sounds
    ticks = np.concatenate((events["off_tick"], events["on_tick"]))
    is_on = np.concatenate((np.zeros(n, dtype=bool), np.ones(n, dtype=bool)))
    notes = np.concatenate((events["note"], events["note"]))
    velocities = np.concatenate((np.zeros(n, dtype=np.uint8), events["velocity"]))
    order = np.lexsort((is_on, ticks))

    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name=groove.name[:120], time=0))
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(groove.bpm), time=0))
    track.append(
        mido.MetaMessage(
            "time_signature", numerator=groove.meter.numerator, denominator=groove.meter.denominator, time=0
        )
    )
    now = 0
    for index in order.tolist():
        tick = int(ticks[index])
        if is_on[index]:
            message = mido.Message(
                "note_on", channel=channel, note=int(notes[index]), velocity=int(velocities[index]), time=tick - now
            )
        else:
            message = mido.Message("note_off", channel=channel, note=int(notes[index]), velocity=0, time=tick - now)
        track.append(message)
        now = tick
    end_tick = groove.n_steps * (ticks_per_beat // STEPS_PER_BEAT)
    track.append(mido.MetaMessage("end_of_track", time=max(end_tick - now, 0)))
    midi = mido.MidiFile(type=0, ticks_per_beat=ticks_per_beat)
    midi.tracks.append(track)
    return midi


def write_midi(groove: Groove, path: str | Path, **options) -> Path:
    """Write the groove as a Standard MIDI File; returns the path."""
    path = Path(path)
    groove_to_midi(groove, **options).save(str(path))
    return path
