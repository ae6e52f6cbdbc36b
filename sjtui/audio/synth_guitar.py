"""A synthesized electric guitar (extended Karplus-Strong) with known onsets.

The demo, tests and benchmarks need a guitar whose note times are exact and
that needs no file or SoundFont. Each note is one plucked string:

* **excitation**: one period of seeded white noise, made darker for soft
  notes (the *dynamics* filter, a 2nd-order low-pass whose cutoff rises
  with velocity), with the pick-position comb ``x[n] - x[n - beta * N]`` that
  removes the harmonics with a node at the pick (``beta`` = 0.13 of the
  string from the bridge by default);
* **string loop**: ``y[n] = x[n] + g * sum_j h[j] y[n - N - j]``, where the
  loop filter ``h`` is ``m`` loss filters ``[1/4, 1/2, 1/4]`` (the string's
  frequency-dependent loss; ``m`` grows until partials near 4 kHz die
  within the voice's ``hf_decay_s``, so brightness is set in seconds, not
  per round trip) times linear interpolation for the fractional part of
  the period, so pitches are in tune to within a few cents. ``g`` comes
  from the wanted decay time (T60) of the fundamental. Because every
  feedback tap is at least ``N`` samples back, the recursion runs one
  period at a time as vector operations (``N`` samples per numpy step);
  for the low strings this measured several times faster than
  ``scipy.signal.lfilter`` with the equivalent ``N + 2m + 2``-tap
  denominator;
* **release**: at the note's end the fretting hand damps the string
  (exponential fade, tau 30 ms; 12 ms for palm mutes).

Timbres (``TIMBRES``):

* ``clean``: long decay (about 3 s on the low E, shorter up the neck);
* ``muted``: palm-muted: decay 0.12 s, dark excitation and a stronger loop
  low-pass: less high-frequency energy and much shorter notes;
* ``chord``: open chords strummed: simultaneous notes are played low to
  high (down-strokes, alternating with up-strokes) 12 ms per string, and
  notes played alone are expanded to an open major voicing (root, 5th,
  octave, 10th, 12th);
* ``distorted``: the clean strings through a 500 Hz pre-emphasis high-pass,
  a gain stage and ``tanh`` waveshaper, then a simple cabinet (2nd-order
  high-pass at 90 Hz, 4th-order low-pass at 5.5 kHz).

A note whose ``articulation`` is ``"muted"`` is palm-muted in any timbre.

The onset of a note (or strummed chord) is the first sample at or after
``start_s * sample_rate_hz``: nothing sounds before it. Output is mono
float32, normalised to ``peak`` (0.5 = -6 dBFS) unless ``peak`` is None;
everything is deterministic for a given ``seed``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Callable

import numpy as np

from sjtui.audio.file_source import ArraySource
from sjtui.audio.ring import RingBuffer
from sjtui.errors import AudioError

TIMBRES = ("clean", "muted", "chord", "distorted")


@dataclass(frozen=True)
class Voice:
    """How a string behaves: decays, release, brightness, pick position, strum."""

    decay_low_e_s: float  # T60 of the fundamental on the low E (82 Hz); ~ f^-0.5 higher up
    hf_decay_s: float  # T60 (at most) of the partials around 4 kHz: the string's brightness
    release_s: float  # damping time constant after the note's end
    excitation_cutoff_hz: float  # dynamics filter cutoff at full velocity
    pick_position: float  # fraction of the string from the bridge
    strum_ms: float  # delay between strings of a chord


VOICES = {
    "clean": Voice(3.0, 0.15, 0.03, 3500.0, 0.13, 4.0),
    "muted": Voice(0.12, 0.02, 0.012, 1500.0, 0.2, 2.0),
    "chord": Voice(3.0, 0.15, 0.05, 3500.0, 0.18, 12.0),
    "distorted": Voice(4.0, 0.3, 0.03, 5000.0, 0.1, 3.0),
}
OPEN_VOICING = (0, 7, 12, 16, 19)
HF_REFERENCE_HZ = 4000.0


def midi_to_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


def _velocity01(velocity) -> float:
    """MIDI velocity 1..127 (an int, or a float above 1) or an already normalised float in (0, 1]."""
    if isinstance(velocity, (int, np.integer)) or velocity > 1.0:
        return float(np.clip(velocity / 127.0, 0.0, 1.0))
    return float(np.clip(velocity, 0.0, 1.0))


def loop_filter(pitch_hz: float, sample_rate_hz: int, voice: Voice) -> tuple[int, np.ndarray]:
    """The string loop as ``(n, taps)``: ``y[i] = x[i] + sum_j taps[j] * y[i - n - j]``.

    ``taps`` (shape ``(2m + 2,)``) is ``m`` loss filters ``[1/4, 1/2, 1/4]``
    (each delays 1 sample and damps high partials per round trip by
    ``cos^2(w/2)``; ``m`` is the fewest that decay 4 kHz within
    ``voice.hf_decay_s``) times linear interpolation for the fractional
    period, scaled by the loop gain that gives the fundamental its T60.
    """
    period = sample_rate_hz / pitch_hz
    w_ref = 2 * math.pi * min(HF_REFERENCE_HZ, 0.4 * sample_rate_hz) / sample_rate_hz
    wanted_ref = 10.0 ** (-3.0 / (pitch_hz * voice.hf_decay_s))  # per-round-trip gain at 4 kHz
    m = max(1, math.ceil(math.log(wanted_ref) / math.log(math.cos(w_ref / 2) ** 2)))
    m = min(m, max(1, int(period // 4)))
    n = int(math.floor(period - m))
    d = period - m - n  # in [0, 1)
    taps = np.array([1.0])
    for _ in range(m):
        taps = np.convolve(taps, [0.25, 0.5, 0.25])
    taps = np.convolve(taps, [1 - d, d])
    decay_s = voice.decay_low_e_s * math.sqrt(82.4 / pitch_hz)
    w0 = 2 * math.pi * pitch_hz / sample_rate_hz
    loss = math.cos(w0 / 2) ** (2 * m) * abs((1 - d) + d * np.exp(-1j * w0))
    gain = min(0.99995, 10.0 ** (-3.0 / (pitch_hz * decay_s)) / loss)
    return n, taps * gain


def excitation(pitch_hz: float, sample_rate_hz: int, velocity: float, voice: Voice, rng: np.random.Generator) -> np.ndarray:
    """The pluck: one period of noise, dynamics low-pass, pick-position comb, no DC; shape ``(period,)``."""
    from scipy.signal import butter, sosfilt

    n_burst = int(round(sample_rate_hz / pitch_hz))
    burst = rng.uniform(-1.0, 1.0, n_burst)
    cutoff_hz = voice.excitation_cutoff_hz * (0.25 + 0.75 * velocity)
    burst = sosfilt(butter(2, min(cutoff_hz, 0.45 * sample_rate_hz), fs=sample_rate_hz, output="sos"), burst)
    pick = max(1, int(round(voice.pick_position * n_burst)))
    burst[pick:] -= burst[:-pick].copy()
    burst -= burst.mean()
    burst *= velocity / max(np.abs(burst).max(), 1e-12)
    return burst


def string_loop(burst: np.ndarray, n: int, taps: np.ndarray, n_samples: int) -> np.ndarray:
    """``y[i] = x[i] + sum_j taps[j] y[i - n - j]`` with ``x`` = ``burst`` then zeros; shape ``(n_samples,)``.

    Every feedback tap is at least ``n`` samples back, so the recursion runs
    ``n`` samples at a time, each step one 'valid' convolution.
    """
    n_taps = taps.shape[0]
    pad = n + n_taps
    y = np.zeros(pad + n_samples)
    head = min(burst.shape[0], n_samples)
    y[pad : pad + head] = burst[:head]
    for start in range(pad, pad + n_samples, n):
        stop = min(start + n, pad + n_samples)
        y[start:stop] += np.convolve(y[start - n - n_taps + 1 : stop - n], taps, mode="valid")
    return y[pad:]


def pluck(
    pitch_hz: float,
    n_samples: int,
    sample_rate_hz: int,
    velocity: float,
    voice: Voice,
    rng: np.random.Generator,
) -> np.ndarray:
    """One plucked string, undamped, shape ``(n_samples,)`` float64 (peak about ``velocity``)."""
    if sample_rate_hz / pitch_hz < 8:
        raise AudioError(f"pitch {pitch_hz:.0f} Hz is too high for a string at {sample_rate_hz} Hz")
    n, taps = loop_filter(pitch_hz, sample_rate_hz, voice)
    return string_loop(excitation(pitch_hz, sample_rate_hz, velocity, voice, rng), n, taps, n_samples)


def _note_fields(note) -> tuple[float, float, float, float, str]:
    try:
        fields = (
            float(note.start_s),
            float(note.duration_s),
            float(note.pitch),
            _velocity01(note.velocity),
            str(getattr(note, "articulation", "normal")),
        )
        if not fields[0] >= 0 or not fields[1] > 0:
            raise AudioError(
                f"a note needs start_s >= 0 and duration_s > 0; got {note.start_s} and {note.duration_s}"
            )
        return fields
    except AttributeError as error:
        raise AudioError(
            f"a note needs start_s, duration_s, pitch and velocity attributes; got {note!r}"
        ) from error


def _strums(notes: list[tuple], timbre: str) -> list[tuple[float, float, float, float, str]]:
    """Group simultaneous notes into strums: delays per string, voicings for ``chord``."""
    voice = VOICES[timbre]
    groups: dict[float, list[tuple]] = {}
    for fields in notes:
        groups.setdefault(round(fields[0], 6), []).append(fields)
    out = []
    for g, start in enumerate(sorted(groups)):
        group = sorted(groups[start], key=lambda f: f[2])
        if timbre == "chord" and len(group) < 3 and group[0][4] != "muted":
            s, dur, root, vel, art = group[0]
            group = [(s, dur, root + i, vel, art) for i in OPEN_VOICING]
        if g % 2 == 1 and timbre == "chord":
            group = group[::-1]  # up-stroke
        for k, (s, dur, pitch, vel, art) in enumerate(group):
            delay_s = k * (VOICES["muted"] if art == "muted" else voice).strum_ms / 1000.0
            out.append((s + delay_s, max(dur - delay_s, 0.01), pitch, vel, art))
    return out


def distort(signal: np.ndarray, sample_rate_hz: int, drive_db: float = 24.0) -> np.ndarray:
    """Gain, ``tanh`` waveshaper and a simple cabinet filter; shape ``(n,)`` in and out."""
    from scipy.signal import butter, sosfilt

    # Pre-emphasis before the clipper (as in overdrive pedals): less bass into the
    # waveshaper, so it makes upper harmonics rather than mud.
    tight = sosfilt(butter(1, 500.0, "highpass", fs=sample_rate_hz, output="sos"), signal)
    peak = max(float(np.abs(tight).max()), 1e-12)
    shaped = np.tanh(tight / peak * 10.0 ** (drive_db / 20.0))
    cabinet = np.vstack([
        butter(2, 90.0, "highpass", fs=sample_rate_hz, output="sos"),
        butter(4, 5500.0, "lowpass", fs=sample_rate_hz, output="sos"),
    ])
    return sosfilt(cabinet, shaped)


def render_notes(
    notes: Iterable,
    sample_rate_hz: int = 48000,
    timbre: str = "clean",
    seed: int = 0,
    length_s: float | None = None,
    wrap_tail: bool = False,
    peak: float | None = 0.5,
) -> np.ndarray:
    """Render notes to mono float32, shape ``(n_samples,)``.

    ``notes``: objects with ``start_s``, ``duration_s``, ``pitch`` (MIDI
    number), ``velocity`` (MIDI 1..127 or a float in (0, 1]) and optionally
    ``articulation`` ("normal" | "muted"), e.g. ``Riff.notes``.
    ``length_s``: output length (default: the last note's end plus its
    ring-out). ``wrap_tail``: add what rings past ``length_s`` onto the
    beginning, so the audio loops seamlessly.
    """
    if timbre not in TIMBRES:
        raise AudioError(f"unknown guitar timbre {timbre!r}; choose one of {', '.join(TIMBRES)}")
    base = "clean" if timbre == "distorted" else timbre
    fields = [_note_fields(note) for note in notes]
    played = _strums(fields, base)
    if not played and length_s is None:
        raise AudioError("no notes to render; give at least one note or a length_s for silence")
    rendered = []
    end_sample = 0
    for start_s, duration_s, pitch, velocity, articulation in played:
        voice = VOICES["muted" if articulation == "muted" else timbre]
        pitch_hz = midi_to_hz(pitch)
        decay_s = voice.decay_low_e_s * math.sqrt(82.4 / pitch_hz)
        sounding_s = min(duration_s, 1.5 * decay_s)
        n_body = int(round(sounding_s * sample_rate_hz))
        n_release = int(round(6 * voice.release_s * sample_rate_hz))
        # Each string's noise depends only on (seed, time, pitch): adding or removing a
        # note changes nothing else in the render.
        rng = np.random.default_rng([seed, int(round(start_s * 1e6)), int(round(pitch * 100))])
        string = pluck(pitch_hz, n_body + n_release, sample_rate_hz, velocity, voice, rng)
        string[n_body:] *= np.exp(-np.arange(n_release) / (voice.release_s * sample_rate_hz))
        first = int(math.ceil(start_s * sample_rate_hz - 1e-9))
        rendered.append((first, string))
        end_sample = max(end_sample, first + string.shape[0])
    n_out = end_sample if length_s is None else int(round(length_s * sample_rate_hz))
    out = np.zeros(max(n_out, end_sample), dtype=np.float64)
    for first, string in rendered:
        out[first : first + string.shape[0]] += string
    if wrap_tail and out.shape[0] > n_out > 0:
        tail = out[n_out:]
        for k in range(0, tail.shape[0], n_out):
            chunk = tail[k : k + n_out]
            out[: chunk.shape[0]] += chunk
    out = out[:n_out]
    if timbre == "distorted" and out.any():
        out = distort(out, sample_rate_hz)
    if peak is not None and out.any():
        out *= peak / np.abs(out).max()
    return out.astype(np.float32)


class SynthGuitarSource(ArraySource):
    """A riff (or any notes) rendered in memory and played into a ring like a file.

    ``riff`` is a :class:`sjtui.audio.riffs.Riff` (its ``notes`` and
    ``duration_s`` are used) or any iterable of notes (see
    :func:`render_notes`). With ``loop`` (default) the riff repeats
    seamlessly: the audio is exactly ``duration_s`` long with the ring-out of
    the last notes wrapped onto the start. ``onset_indices`` are the absolute
    sample indices of the onsets in the first pass (add multiples of
    ``samples.shape[0]`` for later passes).
    """

    def __init__(
        self,
        ring: RingBuffer,
        riff,
        sample_rate_hz: int = 48000,
        timbre: str = "clean",
        seed: int = 0,
        block_size: int = 256,
        realtime: bool = True,
        loop: bool = True,
        reader_index: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
    ):
        notes = tuple(getattr(riff, "notes", riff))
        length_s = getattr(riff, "duration_s", None)
        samples = render_notes(notes, sample_rate_hz, timbre, seed, length_s=length_s, wrap_tail=loop and length_s is not None)
        starts = np.unique(np.array([float(n.start_s) for n in notes]))
        self.onset_indices = np.ceil(starts * sample_rate_hz - 1e-9).astype(np.int64)
        self.timbre = timbre
        super().__init__(ring, samples, sample_rate_hz, block_size, realtime, loop, reader_index, clock, wait)
