"""A small drum synth in numpy that always works: pre-rendered one-shots mixed sample-accurately.

The nine voices (kick, snare, closed/open hat, three toms, crash, ride) are
rendered once per sample rate in :func:`render_one_shots` (sine sweeps,
filtered noise, inharmonic partials; fixed seeds, so the same every time).
:class:`DrumSynth` plays them: a note-on at offset ``k`` of a block starts
its one-shot at exactly that sample; :meth:`DrumSynth.render` mixes every
playing voice into the block with ``out=`` operations on preallocated
scratch (no array allocation on the audio thread). A closed or pedal hi-hat
chokes a ringing open hi-hat; a voice pool of :data:`MAX_VOICES` steals the
oldest voice.

Which one-shot a MIDI note plays comes from
:data:`sjtui.grooves.drum_map.NOTE_TO_VOICE` (so GM and the kit maps of
:mod:`sjtui.midi.kits` all sound); notes that are not drums are ignored.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from sjtui.constants import DRUM_VOICES
from sjtui.grooves.drum_map import NOTE_TO_VOICE

MAX_VOICES = 32
_CHOKERS = {DRUM_VOICES.index("closed_hat")}
_CHOKED = DRUM_VOICES.index("open_hat")


def _noise(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, n)


def _highpass(x: np.ndarray, cutoff_hz: float, sample_rate_hz: float, order: int = 2) -> np.ndarray:
    sos = signal.butter(order, cutoff_hz, "highpass", fs=sample_rate_hz, output="sos")
    return signal.sosfilt(sos, x)


def _bandpass(x: np.ndarray, low_hz: float, high_hz: float, sample_rate_hz: float) -> np.ndarray:
    sos = signal.butter(2, (low_hz, high_hz), "bandpass", fs=sample_rate_hz, output="sos")
    return signal.sosfilt(sos, x)


def _sweep(
    t: np.ndarray, f_end_hz: float, f_start_hz: float, sweep_s: float, sample_rate_hz: float
) -> np.ndarray:
    freq = f_end_hz + (f_start_hz - f_end_hz) * np.exp(-t / sweep_s)
    return np.sin(2 * np.pi * np.cumsum(freq) / sample_rate_hz)


def _metal(t: np.ndarray, base_hz: float, seed: int) -> np.ndarray:
    ratios = np.array([1.0, 1.342, 1.523, 1.87, 2.21, 2.73, 3.31, 4.07])
    phases = np.random.default_rng(seed).uniform(0, 2 * np.pi, ratios.size)
    return (
        np.sin(2 * np.pi * base_hz * ratios[:, None] * t[None, :] + phases[:, None]).sum(axis=0) / ratios.size
    )


def render_one_shots(sample_rate_hz: float) -> list[np.ndarray]:
    """One float32 one-shot per voice of :data:`DRUM_VOICES` (lengths 0.15 .. 2 s), peak about 0.8."""
    sr = float(sample_rate_hz)

    def t_of(seconds: float) -> np.ndarray:
        return np.arange(int(seconds * sr)) / sr

    shots = {}
    t = t_of(0.5)
    click = _highpass(_noise(t.size, 1), 1500, sr) * np.exp(-t / 0.002)
    shots["kick"] = _sweep(t, 48, 160, 0.035, sr) * np.exp(-t / 0.22) + 0.4 * click
    t = t_of(0.4)
    shots["snare"] = 0.55 * np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.06) + 0.8 * _bandpass(
        _noise(t.size, 2), 1500, 9000, sr
    ) * np.exp(-t / 0.11)
    t = t_of(0.15)
    shots["closed_hat"] = _highpass(_noise(t.size, 3), 7000, sr, 4) * np.exp(-t / 0.018)
    t = t_of(0.8)
    shots["open_hat"] = (_highpass(_noise(t.size, 4), 6500, sr, 4) + 0.3 * _metal(t, 3100, 4)) * np.exp(
        -t / 0.22
    )
    for name, f0, seed in (("low_tom", 82, 5), ("mid_tom", 118, 6), ("high_tom", 165, 7)):
        t = t_of(0.6)
        shots[name] = _sweep(t, f0, f0 * 1.8, 0.04, sr) * np.exp(-t / 0.28) + 0.15 * _highpass(
            _noise(t.size, seed), 1000, sr
        ) * np.exp(-t / 0.01)
    t = t_of(2.0)
    shots["crash"] = (0.8 * _highpass(_noise(t.size, 8), 4000, sr) + 0.4 * _metal(t, 2700, 8)) * np.exp(
        -t / 0.7
    )
    t = t_of(1.5)
    shots["ride"] = (0.7 * _metal(t, 2100, 9) + 0.25 * _highpass(_noise(t.size, 9), 6000, sr)) * np.exp(
        -t / 0.5
    )
    out = []
    for name in DRUM_VOICES:
        shot = shots[name]
        shot = 0.8 * shot / np.max(np.abs(shot))
        out.append(shot.astype(np.float32))
    return out


class DrumSynth:
    """Plays MIDI drum notes from pre-rendered one-shots (mono float32).

    Real-time use: :meth:`render` with the events of one block, from the
    audio callback; offline use: :meth:`render_events`.
    """

    name = "numpy drums"

    def __init__(self, sample_rate_hz: float, max_block: int = 8192, gain: float = 0.7):
        self.sample_rate_hz = float(sample_rate_hz)
        self.shots = render_one_shots(sample_rate_hz)
        self.gain = float(gain)
        self._scratch = np.zeros(max_block, dtype=np.float32)
        self.max_block = int(max_block)
        # the voice pool: parallel lists of ints/floats, fixed length (no growth on the audio thread)
        self._voice = [-1] * MAX_VOICES  # one-shot index, -1 = free
        self._pos = [0] * MAX_VOICES  # next sample of the one-shot
        self._start = [0] * MAX_VOICES  # offset in the current block where it starts
        self._amp = [0.0] * MAX_VOICES
        self._age = [0] * MAX_VOICES
        self._stop = [-1] * MAX_VOICES  # offset in the current block where it is cut (choke, All Sound Off)
        self._counter = 0
        self._out = None

    def reset(self) -> None:
        for i in range(MAX_VOICES):
            self._voice[i] = -1

    def handle(self, data, offset: int) -> None:
        """Apply one MIDI message at ``offset`` of the block about to be rendered."""
        status = data[0] & 0xF0
        if status == 0xB0 and data[1] in (120, 123):
            if data[1] == 120:  # All Sound Off: silence from this sample; All Notes Off lets one-shots ring
                for i in range(MAX_VOICES):
                    if self._voice[i] >= 0:
                        self._stop[i] = int(offset)
            return
        if status != 0x90 or data[2] == 0:
            return
        voice = int(NOTE_TO_VOICE[data[1]])
        if voice < 0:
            return
        if voice in _CHOKERS:  # the open hat stops at this very sample
            for i in range(MAX_VOICES):
                if self._voice[i] == _CHOKED:
                    self._stop[i] = int(offset)
        slot = self._free_slot()
        self._counter += 1
        if self._voice[slot] >= 0:  # stealing a voice: it sounds up to this sample
            self._pending_steal(slot, offset)
        self._voice[slot] = voice
        self._stop[slot] = -1
        self._pos[slot] = 0
        self._start[slot] = int(offset)
        vel = data[2] / 127.0
        self._amp[slot] = self.gain * vel * vel**0.5
        self._age[slot] = self._counter

    def _free_slot(self) -> int:
        for i in range(MAX_VOICES):
            if self._voice[i] < 0:
                return i
        return min(range(MAX_VOICES), key=self._age.__getitem__)

    def _pending_steal(self, slot: int, offset: int) -> None:
        """Render the stolen voice into the block up to ``offset`` before the slot is reused."""
        out = self._out
        if out is None or offset <= self._start[slot]:
            return
        self._mix_voice(out, slot, min(int(offset), out.shape[0]))

    def _mix_voice(self, out: np.ndarray, i: int, until: int) -> None:
        shot = self.shots[self._voice[i]]
        start = self._start[i]
        pos = self._pos[i]
        count = min(until - start, shot.shape[0] - pos)
        if count > 0:
            tmp = self._scratch[:count]
            np.multiply(shot[pos : pos + count], self._amp[i], out=tmp)
            dest = out[start : start + count]
            np.add(dest, tmp, out=dest)
            self._pos[i] = pos + count

    def render(self, out: np.ndarray, events=()) -> None:
        """Mix into ``out`` ((n,) float32, n <= max_block; added to, not cleared).

        ``events``: ``(offset, message)`` pairs in this block, sorted by offset.
        """
        self._out = out
        for offset, data in events:
            self.handle(data, offset)
        self._out = None
        n = out.shape[0]
        for i in range(MAX_VOICES):
            if self._voice[i] < 0:
                continue
            stop = self._stop[i]
            self._mix_voice(out, i, n if stop < 0 else min(stop, n))
            self._start[i] = 0
            if stop >= 0 or self._pos[i] >= self.shots[self._voice[i]].shape[0]:
                self._voice[i] = -1
                self._stop[i] = -1

    def render_events(
        self, events: np.ndarray, n_samples: int, block: int = 256, start_sample: int = 0
    ) -> np.ndarray:
        """Offline: render an :data:`~sjtui.midi.events.EVENT_DTYPE` array to (n_samples,) float32.

        Same code path as real time (block by block, events at their offsets).
        """
        return render_blocks(self, events, n_samples, block, start_sample)


def render_blocks(
    engine, events: np.ndarray, n_samples: int, block: int = 256, start_sample: int = 0
) -> np.ndarray:
    """Drive any synth engine (``render(out, events)``) block by block over timed events."""
    out = np.zeros(n_samples, dtype=np.float32)
    samples = events["sample"] - start_sample
    order = np.argsort(samples, kind="stable")
    messages = [
        (
            int(samples[i]),
            bytes(
                (int(events["status"][i]), int(events["data1"][i]), int(events["data2"][i]))[
                    : int(events["size"][i])
                ]
            ),
        )
        for i in order
    ]
    k = 0
    for begin in range(0, n_samples, block):
        end = min(begin + block, n_samples)
        due = []
        while k < len(messages) and messages[k][0] < end:
            due.append((max(messages[k][0] - begin, 0), messages[k][1]))
            k += 1
        engine.render(out[begin:end], due)
    return out
