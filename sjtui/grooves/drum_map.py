"""Drum notes -> the 9 canonical voices of :data:`sjtui.constants.DRUM_VOICES`, and back.

The map follows the 9-voice reduction of GrooVAE (Gillick et al. 2019,
Magenta's ``ROLAND_DRUM_PITCH_CLASSES``) for every note the Roland TD-11 of
the Groove MIDI Dataset sends, and Magenta's ``DEFAULT_DRUM_TYPE_PITCHES``
for the remaining General MIDI percussion notes (35-81) and the extended
notes 27-34 and 82-87. Where the two disagree the TD-11 meaning wins: on the
TD-11, 45 is the mid tom's rim and 58 the floor tom's rim, not GM's "low tom"
and "vibraslap".

========  ==========================  ================================================
voice     playback note (GM)          notes mapped onto it
========  ==========================  ================================================
kick      36 bass drum 1              35 acoustic bass drum, 36 bass drum 1
snare     38 acoustic snare           38 snare head, 40 snare rim (TD-11) / electric
                                      snare, 37 cross-stick / side stick, 39 hand clap,
                                      27 high Q, 28 slap, 31 sticks, 32 square click,
                                      33 metronome click, 34 metronome bell,
                                      56 cowbell, 65 high timbale, 66 low timbale,
                                      75 claves, 85 castanets
closed    42 closed hi-hat            42 closed hat bow, 22 closed hat edge (TD-11),
_hat                                  44 pedal hi-hat, 54 tambourine, 68 low agogo,
                                      69 cabasa, 70 maracas, 71 short whistle,
                                      73 short guiro, 78 mute cuica, 80 mute triangle
open_hat  46 open hi-hat              46 open hat bow, 26 open hat edge (TD-11),
                                      67 high agogo, 72 long whistle, 74 long guiro,
                                      79 open cuica, 81 open triangle
low_tom   43 high floor tom           43 floor tom head, 58 floor tom rim (TD-11),
                                      41 low floor tom, 29 scratch push, 61 low bongo,
                                      64 low conga, 84 belltree
mid_tom   47 low-mid tom              47 tom 2 head, 45 tom 2 rim (TD-11),
                                      60 high bongo, 63 open high conga,
                                      77 low wood block, 86 mute surdo, 87 open surdo
high_tom  50 high tom                 50 tom 1 head, 48 tom 1 rim (TD-11; GM hi-mid
                                      tom), 30 scratch pull, 62 mute high conga,
                                      76 high wood block, 83 jingle bell
crash     49 crash cymbal 1           49 crash 1 bow, 55 crash 1 edge / splash,
                                      57 crash 2 bow, 52 crash 2 edge / chinese
ride      51 ride cymbal 1            51 ride bow, 59 ride edge, 53 ride bell,
                                      82 shaker
========  ==========================  ================================================

Notes outside this table (0-21, 23-25, 88-127) are not drums of the kit and
are ignored by the importers (counted and reported as unmapped).
"""

from __future__ import annotations

import numpy as np

from sjtui.constants import DRUM_VOICES

VOICE_INDEX = {name: index for index, name in enumerate(DRUM_VOICES)}

VOICE_NOTES: dict[str, tuple[int, ...]] = {
    # first note of each tuple: the GrooVAE/TD-11 class, then GM extras
    "kick": (36, 35),
    "snare": (38, 40, 37, 39, 27, 28, 31, 32, 33, 34, 56, 65, 66, 75, 85),
    "closed_hat": (42, 22, 44, 54, 68, 69, 70, 71, 73, 78, 80),
    "open_hat": (46, 26, 67, 72, 74, 79, 81),
    "low_tom": (43, 58, 41, 29, 61, 64, 84),
    "mid_tom": (47, 45, 60, 63, 77, 86, 87),
    "high_tom": (50, 48, 30, 62, 76, 83),
    "crash": (49, 55, 57, 52),
    "ride": (51, 59, 53, 82),
}

VOICE_TO_GM_NOTE: dict[str, int] = {
    "kick": 36,
    "snare": 38,
    "closed_hat": 42,
    "open_hat": 46,
    "low_tom": 43,
    "mid_tom": 47,
    "high_tom": 50,
    "crash": 49,
    "ride": 51,
}
"""Default General MIDI note to play each voice with."""

GM_NOTE_OF_VOICE = np.array([VOICE_TO_GM_NOTE[name] for name in DRUM_VOICES], dtype=np.uint8)
"""(n_voices,) playback note per voice index."""

NOTE_TO_VOICE = np.full(128, -1, dtype=np.int8)
"""(128,) voice index of each MIDI note number, -1 for notes that are not kit drums."""
for _name, _notes in VOICE_NOTES.items():
    for _note in _notes:
        if NOTE_TO_VOICE[_note] != -1:  # pragma: no cover - guards the table above
            raise RuntimeError(f"drum note {_note} is mapped twice")
        NOTE_TO_VOICE[_note] = VOICE_INDEX[_name]
NOTE_TO_VOICE.flags.writeable = False
GM_NOTE_OF_VOICE.flags.writeable = False


def voice_of_note(note: int) -> str | None:
    """The canonical voice a MIDI note number plays, or None when it is not a kit drum."""
    index = int(NOTE_TO_VOICE[note]) if 0 <= note < 128 else -1
    return DRUM_VOICES[index] if index >= 0 else None
