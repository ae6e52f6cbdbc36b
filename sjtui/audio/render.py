"""Render MIDI to audio with FluidSynth and a General MIDI SoundFont.

Used for guitar parts with known note times (tests, benchmarks, training
data) and for drums when no MIDI destination is wanted. The ``fluidsynth``
program renders a few seconds of MIDI in about 0.1 s; it is a system
package (``make`` installs it with the TimGM6mb SoundFont).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from sjtui.errors import AudioError

# GM guitar programs (0-based): the timbres the tests and training use.
GUITAR_PROGRAMS = {
    "nylon": 24,
    "steel": 25,
    "jazz": 26,
    "clean": 27,
    "muted": 28,
    "overdrive": 29,
    "distortion": 30,
}

SOUNDFONT_CANDIDATES = (
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
)


def find_soundfonts() -> list[Path]:
    """All usable GM SoundFonts: ``SJTUI_SOUNDFONT`` first, then the usual system paths."""
    found = []
    env = os.environ.get("SJTUI_SOUNDFONT")
    if env:
        found.append(Path(env))
    found += [Path(p) for p in SOUNDFONT_CANDIDATES if Path(p).is_file()]
    unique = []
    for path in found:
        if path.is_file() and path.resolve() not in {u.resolve() for u in unique}:
            unique.append(path)
    return unique


def find_soundfont() -> Path:
    fonts = find_soundfonts()
    if not fonts:
        raise AudioError(
            "no General MIDI SoundFont found (looked at $SJTUI_SOUNDFONT and "
            f"{', '.join(SOUNDFONT_CANDIDATES)}); install one, e.g. `apt-get install timgm6mb-soundfont`"
        )
    return fonts[0]


def fluidsynth_available() -> bool:
    return shutil.which("fluidsynth") is not None


def render_midi(
    midi,
    sample_rate_hz: int = 48000,
    soundfont: str | Path | None = None,
    gain: float = 0.5,
    effects: bool = False,
) -> np.ndarray:
    """Render a MIDI file (path or ``mido.MidiFile``) to mono float32 at ``sample_rate_hz``.

    FluidSynth's own reverb and chorus are off unless ``effects`` is set, so
    note onsets stay where the MIDI puts them. Returns shape ``(n_samples,)``.
    """
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise AudioError("fluidsynth is not installed; install it (`apt-get install fluidsynth`) or run `make`")
    import soundfile as sf

    font = Path(soundfont) if soundfont else find_soundfont()
    with tempfile.TemporaryDirectory(prefix="sjtui-render-") as tmp:
        if isinstance(midi, (str, Path)):
            midi_path = Path(midi)
        else:
            midi_path = Path(tmp) / "in.mid"
            midi.save(midi_path)
        out_path = Path(tmp) / "out.wav"
        cmd = [exe, "-ni", "-q", "-r", str(int(sample_rate_hz)), "-g", str(gain), "-F", str(out_path)]
        if not effects:
            cmd += ["-R", "0", "-C", "0"]
        cmd += [str(font), str(midi_path)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if result.returncode != 0 or not out_path.is_file():
            raise AudioError(f"fluidsynth failed on {midi_path.name}: {result.stderr.strip() or result.stdout.strip()}")
        audio, rate = sf.read(out_path, dtype="float32", always_2d=True)
    if rate != sample_rate_hz:
        raise AudioError(f"fluidsynth wrote {rate} Hz, asked for {sample_rate_hz} Hz")
    return audio.mean(axis=1).astype(np.float32)


def render_riff(riff, program: int | str = "clean", sample_rate_hz: int = 48000, soundfont=None, gain: float = 0.5) -> np.ndarray:
    """Render a :class:`sjtui.audio.riffs.Riff` through a GM guitar program (number or name)."""
    from sjtui.audio.riffs import riff_to_midi

    if isinstance(program, str):
        if program not in GUITAR_PROGRAMS:
            raise ValueError(f"guitar program {program!r} is unknown; choose one of {', '.join(GUITAR_PROGRAMS)}")
        program = GUITAR_PROGRAMS[program]
    return render_midi(riff_to_midi(riff, program=program), sample_rate_hz, soundfont=soundfont, gain=gain)
