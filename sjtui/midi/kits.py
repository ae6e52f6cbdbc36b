"""Kit maps: which MIDI note plays each of the 9 canonical drum voices on a given instrument.

The default is General MIDI (:data:`sjtui.grooves.drum_map.VOICE_TO_GM_NOTE`).
Drum plugins and modules mostly keep the GM notes for kick, snare, hi-hat
and the main cymbals and differ in the toms; the built-in maps below say
where each value comes from:

================  =====  =====  ======  ======  =======  =======  ========  =====  ====  ======================
kit               kick   snare  closed  open    low_tom  mid_tom  high_tom  crash  ride  source
================  =====  =====  ======  ======  =======  =======  ========  =====  ====  ======================
gm                36     38     42      46      43       47       50        49     51    GM Level 1 percussion
td17 / td27       36     38     42      46      43       45       48        49     51    Roland TD-17/TD-27
                                                                                          default note map (head
                                                                                          notes; tom 3 = 43)
alesis            36     38     42      46      43       45       48        49     51    Alesis Nitro/Nitro Mesh
                                                                                          default map; other
                                                                                          Alesis modules: best
                                                                                          guess
ezdrummer         36     38     42      46      43       45       48        49     51    best guess: Toontrack's
superior                                                                                  GM-compatible notes
                                                                                          (rack toms 48/45,
                                                                                          floor 43)
addictive         36     38     42      46      43       45       48        49     51    best guess: AD2 answers
                                                                                          the GM notes for these
                                                                                          pieces
ssd               36     38     42      46      43       45       48        49     51    best guess: Steven Slate
                                                                                          Drums 5 GM-compatible
                                                                                          map
================  =====  =====  ======  ======  =======  =======  ========  =====  ====  ======================

"Best guess" maps were not checked against the product: if a voice plays
the wrong piece, write a user map. User maps live in ``kits.json`` in the
sjtui config directory (``$SJTUI_CONFIG_DIR`` or
``platformdirs.user_config_dir("sjtui")``)::

    {"my-kit": {"kick": 36, "snare": 38, "low_tom": 41}}

Voices a user map leaves out keep their GM note. A user map with the name
of a built-in one replaces it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sjtui.constants import DRUM_VOICES
from sjtui.errors import SjtuiError
from sjtui.grooves.drum_map import VOICE_TO_GM_NOTE


class KitMapError(SjtuiError, ValueError):
    """A kit map that is unknown or malformed."""


@dataclass(frozen=True)
class KitMap:
    """``notes``: (n_voices,) uint8 MIDI note per voice index of :data:`DRUM_VOICES`."""

    name: str
    notes: np.ndarray
    source: str = ""
    best_guess: bool = False

    def note(self, voice: str) -> int:
        return int(self.notes[DRUM_VOICES.index(voice)])

    def as_dict(self) -> dict[str, int]:
        return {voice: int(self.notes[i]) for i, voice in enumerate(DRUM_VOICES)}


_RT = {"low_tom": 43, "mid_tom": 45, "high_tom": 48}  # rack toms 48/45, floor tom 43

_BUILTIN: dict[str, tuple[dict[str, int], str, bool]] = {
    "gm": ({}, "General MIDI Level 1 percussion key map", False),
    "td17": (_RT, "Roland TD-17 default note map (head notes)", False),
    "td27": (_RT, "Roland TD-27 default note map (head notes)", False),
    "alesis": (_RT, "Alesis Nitro / Nitro Mesh default map (other Alesis modules: best guess)", True),
    "ezdrummer": (_RT, "Toontrack EZdrummer GM-compatible notes (best guess)", True),
    "superior": (_RT, "Toontrack Superior Drummer GM-compatible notes (best guess)", True),
    "addictive": (_RT, "XLN Addictive Drums 2 GM-compatible notes (best guess)", True),
    "ssd": (_RT, "Steven Slate Drums 5 GM-compatible notes (best guess)", True),
}
ALIASES = {
    "general-midi": "gm",
    "td-17": "td17",
    "td-27": "td27",
    "ezd": "ezdrummer",
    "sd3": "superior",
    "superior-drummer": "superior",
    "ad2": "addictive",
    "addictive-drums": "addictive",
    "steven-slate": "ssd",
    "ssd5": "ssd",
    "nitro": "alesis",
}


def make_kit_map(name: str, overrides: dict[str, int], source: str = "", best_guess: bool = False) -> KitMap:
    """GM notes with ``overrides`` (voice -> note 0..127) applied; raises :class:`KitMapError`."""
    notes = dict(VOICE_TO_GM_NOTE)
    for voice, note in overrides.items():
        if voice not in notes:
            raise KitMapError(
                f"kit map {name!r}: voice {voice!r} is unknown; voices are {', '.join(DRUM_VOICES)}"
            )
        if isinstance(note, bool) or not isinstance(note, int) or not 0 <= note <= 127:
            raise KitMapError(f"kit map {name!r}: note {note!r} for {voice} must be a MIDI note 0..127")
        notes[voice] = note
    array = np.array([notes[v] for v in DRUM_VOICES], dtype=np.uint8)
    array.flags.writeable = False
    return KitMap(name, array, source, best_guess)


def config_dir() -> Path:
    override = os.environ.get("SJTUI_CONFIG_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_config_dir("sjtui"))


def load_user_kits(path: str | Path | None = None) -> dict[str, KitMap]:
    """Kit maps from ``kits.json`` (see the module docstring); {} when the file does not exist."""
    path = Path(path) if path is not None else config_dir() / "kits.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise KitMapError(f"kit map file {path} cannot be read ({error}); fix or remove it") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise KitMapError(f'kit map file {path}: expected {{"name": {{"kick": 36, ...}}, ...}}')
    return {str(name).lower(): make_kit_map(str(name), m, f"user map in {path}") for name, m in data.items()}


def kit_names(user_path: str | Path | None = None) -> list[str]:
    return sorted(set(_BUILTIN) | set(load_user_kits(user_path)))


def kit_map(name: str | dict | KitMap = "gm", user_path: str | Path | None = None) -> KitMap:
    """A kit map by name (built-in, alias or user map), from a dict of overrides, or passed through."""
    if isinstance(name, KitMap):
        return name
    if isinstance(name, dict):
        return make_kit_map("custom", name, "given")
    key = ALIASES.get(str(name).lower(), str(name).lower())
    user = load_user_kits(user_path)
    if key in user:
        return user[key]
    if key in _BUILTIN:
        overrides, source, guess = _BUILTIN[key]
        return make_kit_map(key, overrides, source, guess)
    raise KitMapError(
        f"kit map {name!r} is unknown; choose one of {', '.join(kit_names(user_path))} "
        f"or add it to {Path(user_path) if user_path else config_dir() / 'kits.json'}"
    )


GM_KIT = kit_map("gm")
