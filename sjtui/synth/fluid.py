"""FluidSynth as a synth engine in our own audio callback, through ctypes on libfluidsynth (no extra package).

Why ctypes and not pyfluidsynth or a ``fluidsynth`` subprocess: the handful
of calls needed (settings, synth, sfload, noteon/noteoff/cc,
``fluid_synth_write_float``) bind in a few lines to Debian's
``libfluidsynth3``; rendering inside our callback keeps one audio stream,
one clock and one sample timeline with the scheduler (a subprocess JACK
client would add a second timeline and needs JACK). ctypes releases the GIL
during each call.

Timing: the block is rendered in segments split at each event's offset, but
FluidSynth renders internally in 64-sample chunks, so a note starts on the
next 64-sample boundary of its stream (at most 1.3 ms at 48 kHz); the numpy
synth (:mod:`sjtui.synth.drums`) is sample-exact.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

import numpy as np

from sjtui.errors import AudioError

_LIB = None
FLUID_CHUNK = 64


def load_library():
    """The libfluidsynth handle with argument types set; raises :class:`AudioError` when missing."""
    global _LIB
    if _LIB is not None:
        return _LIB
    name = ctypes.util.find_library("fluidsynth") or "libfluidsynth.so.3"
    try:
        lib = ctypes.CDLL(name)
    except OSError as error:
        raise AudioError(
            f"libfluidsynth not found ({error}); install it (`apt-get install libfluidsynth3`) "
            "or use the built-in numpy drums"
        ) from None
    vp, ci, cd, cc = ctypes.c_void_p, ctypes.c_int, ctypes.c_double, ctypes.c_char_p
    lib.new_fluid_settings.restype = vp
    lib.new_fluid_settings.argtypes = []
    lib.fluid_settings_setnum.argtypes = [vp, cc, cd]
    lib.fluid_settings_setint.argtypes = [vp, cc, ci]
    lib.new_fluid_synth.restype = vp
    lib.new_fluid_synth.argtypes = [vp]
    lib.fluid_synth_sfload.argtypes = [vp, cc, ci]
    lib.fluid_synth_noteon.argtypes = [vp, ci, ci, ci]
    lib.fluid_synth_noteoff.argtypes = [vp, ci, ci]
    lib.fluid_synth_cc.argtypes = [vp, ci, ci, ci]
    lib.fluid_synth_all_sounds_off.argtypes = [vp, ci]
    lib.fluid_synth_write_float.argtypes = [vp, ci, vp, ci, ci, vp, ci, ci]
    lib.delete_fluid_synth.argtypes = [vp]
    lib.delete_fluid_settings.argtypes = [vp]
    _LIB = lib
    return lib


class FluidSynthEngine:
    """A GM SoundFont played by libfluidsynth; ``render(out, events)`` like :class:`~sjtui.synth.drums.DrumSynth`."""

    name = "fluidsynth"

    def __init__(
        self,
        sample_rate_hz: float,
        soundfont: str | Path | None = None,
        gain: float = 0.6,
        max_block: int = 8192,
    ):
        from sjtui.audio.render import find_soundfont

        lib = load_library()
        self.sample_rate_hz = float(sample_rate_hz)
        self.soundfont = Path(soundfont) if soundfont else find_soundfont()
        self._lib = lib
        self._settings = lib.new_fluid_settings()
        lib.fluid_settings_setnum(self._settings, b"synth.sample-rate", self.sample_rate_hz)
        lib.fluid_settings_setnum(self._settings, b"synth.gain", float(gain))
        lib.fluid_settings_setint(self._settings, b"synth.reverb.active", 0)
        lib.fluid_settings_setint(self._settings, b"synth.chorus.active", 0)
        lib.fluid_settings_setint(self._settings, b"synth.cpu-cores", 1)
        self._synth = lib.new_fluid_synth(self._settings)
        if not self._synth:
            raise AudioError("FluidSynth could not create a synthesizer")
        if lib.fluid_synth_sfload(self._synth, str(self.soundfont).encode(), 1) < 0:
            self.close()
            raise AudioError(
                f"FluidSynth cannot load the SoundFont {self.soundfont}; give another with SJTUI_SOUNDFONT"
            )
        self.max_block = int(max_block)
        self._left = np.zeros(max_block, dtype=np.float32)
        self._right = np.zeros(max_block, dtype=np.float32)
        self._left_ptr = self._left.ctypes.data
        self._right_ptr = self._right.ctypes.data

    def handle(self, data) -> None:
        status, channel = data[0] & 0xF0, data[0] & 0x0F
        if status == 0x90 and data[2] > 0:
            self._lib.fluid_synth_noteon(self._synth, channel, data[1], data[2])
        elif status == 0x80 or status == 0x90:
            self._lib.fluid_synth_noteoff(self._synth, channel, data[1])
        elif status == 0xB0:
            if data[1] == 120:
                self._lib.fluid_synth_all_sounds_off(self._synth, channel)
            else:
                self._lib.fluid_synth_cc(self._synth, channel, data[1], data[2])

    def _write(self, out: np.ndarray, begin: int, end: int) -> None:
        count = end - begin
        if count <= 0:
            return
        self._lib.fluid_synth_write_float(
            self._synth, count, self._left_ptr, begin, 1, self._right_ptr, begin, 1
        )

    def render(self, out: np.ndarray, events=()) -> None:
        """Add the (mono: left + right halves) render of one block to ``out`` ((n,) float32)."""
        n = out.shape[0]
        position = 0
        for offset, data in events:
            offset = min(max(int(offset), position), n)
            self._write(out, position, offset)
            position = offset
            self.handle(data)
        self._write(out, position, n)
        left = self._left[:n]
        np.add(left, self._right[:n], out=left)
        np.multiply(left, 0.5, out=left)
        np.add(out, left, out=out)

    def render_events(
        self, events: np.ndarray, n_samples: int, block: int = 256, start_sample: int = 0
    ) -> np.ndarray:
        from sjtui.synth.drums import render_blocks

        return render_blocks(self, events, n_samples, block, start_sample)

    def close(self) -> None:
        synth, self._synth = getattr(self, "_synth", None), None
        if synth:
            self._lib.delete_fluid_synth(synth)
        settings, self._settings = getattr(self, "_settings", None), None
        if settings:
            self._lib.delete_fluid_settings(settings)

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass
