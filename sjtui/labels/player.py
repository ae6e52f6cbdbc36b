"""Hearing a (guitar loop, groove) pair for labelling: guitar through the audio output, drums alongside.

Two players, one interface (:class:`PairPlayer`: ``play(loop, groove)``,
``stop()``, ``position_s()``, ``describe()``, ``close()``):

- :class:`MixPlayer` (the default, ``drums = built-in synth``): the drums of
  the pair are rendered offline with the built-in synth engine
  (:func:`sjtui.synth.backend.make_engine`: FluidSynth with the GM SoundFont
  where usable, else the numpy drum synth) through the same
  :func:`~sjtui.midi.events.groove_events` the jam sends, and mixed with the
  guitar into one buffer. One sounddevice ``OutputStream`` plays it on a
  loop; its callback only copies from that buffer. This is the simplest way
  to hear both sample-locked: the guitar *is* mixed into the synth's output
  stream, rendered before playing instead of block by block (a labelling
  pair is a fixed 4-bar loop, nothing changes while it plays).
- :class:`MidiPlayer` (``--midi-out PORT``): the guitar plays through an
  ``OutputStream``; a :class:`~sjtui.midi.scheduler.MidiScheduler` sends the
  groove's events to the MIDI port (JACK or rtmidi backend, as the jam) on
  the backend's own timeline. Each play starts both 50 ms ahead on their
  clocks (guitar at output frame ``now + lead``, drums at MIDI sample
  ``now + lead``), so they agree to within one audio block plus the port's
  latency; on one JACK server both clocks are JACK's frames. Stop and close
  cancel pending events and send All Notes Off.

:func:`open_player` picks one and falls back with a reason: a MIDI port
that cannot be opened falls back to the built-in synth; no audio output at
all raises :class:`~sjtui.errors.AudioError` listing what exists.
"""

from __future__ import annotations

import threading

import numpy as np

from sjtui.errors import AudioError, SjtuiError

LOOP_PASSES = 8
"""A pair plays this many times (4 bars each) before it stops by itself; replay starts it again."""

DRUM_GAIN = 0.8
GUITAR_GAIN = 0.8


def _tempo_map(loop):
    from sjtui.transport.timebase import TempoMap

    return TempoMap.constant(loop.sample_rate_hz, loop.bpm, loop.meter)


def _pass_events(loop, groove, first_pass: int, n_passes: int, offset_samples: int = 0) -> np.ndarray:
    """The groove's events for ``n_passes`` repeats of the loop, from pass ``first_pass``, samples + offset."""
    from sjtui.midi.events import groove_events, merge_events

    tempo_map = _tempo_map(loop)
    parts = []
    for k in range(first_pass, first_pass + n_passes):
        for start in range(0, loop.bars, groove.bars):
            n = min(groove.bars, loop.bars - start)
            parts.append(groove_events(groove, tempo_map, k * loop.bars + start, from_bar=0, n_bars=n))
    events = merge_events(*parts)
    events["sample"] += offset_samples
    return events


def render_pair(loop, groove, engine=None) -> np.ndarray:
    """``(n_samples,)`` float32: the loop's guitar plus the groove rendered by a synth engine, one pass.

    ``engine``: a synth engine (``render(out, events)``) at the loop's rate;
    default :func:`sjtui.synth.backend.make_engine` ("auto"). Drum tails
    past the loop's end wrap onto its start, so the loop repeats seamlessly.
    """
    from sjtui.synth.backend import make_engine
    from sjtui.synth.drums import render_blocks

    n = loop.audio.shape[0]
    if engine is None:
        engine = make_engine("auto", loop.sample_rate_hz)
    tail = int(loop.sample_rate_hz)  # 1 s of decay
    drums = render_blocks(engine, _pass_events(loop, groove, 0, 1), n + tail)
    mix = np.empty(n, dtype=np.float32)
    np.multiply(loop.audio, GUITAR_GAIN, out=mix)
    mix += DRUM_GAIN * drums[:n]
    mix[: min(tail, n)] += DRUM_GAIN * drums[n : n + min(tail, n)]
    np.clip(mix, -1.0, 1.0, out=mix)
    return mix


class PairPlayer:
    """Plays one pair at a time on a loop. Subclasses open their devices in ``__init__``."""

    name = "none"

    def play(self, loop, groove) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def position_s(self) -> float | None:
        """Seconds into the current pass of the loop, or None when nothing plays."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def poll(self) -> str | None:
        """A problem to show (device lost, ...), once; None when all is well."""
        return None

    def close(self) -> None:
        raise NotImplementedError


class _LoopStream:
    """One sounddevice OutputStream playing a mono buffer ``(n,)`` on a loop, ``passes`` times.

    The callback copies from the buffer into ``outdata`` (every channel) and
    advances a frame counter; it never raises and never waits. Other threads
    do not touch its state: :meth:`load` and :meth:`silence` publish a
    request (one attribute assignment, a tuple with a sequence number) that
    the callback takes over at the start of its next block. ``frames_played``
    (the stream's clock) places the start of a buffer (``load(start_frame=)``).
    """

    def __init__(self, sample_rate_hz: int, device=None, block: int = 256):
        from sjtui.audio.portaudio import Hold

        self._hold = Hold()  # PortAudio for the life of the stream; released in close()
        sd = self._hold.sd

        self.sample_rate_hz = int(sample_rate_hz)
        # owned by the callback
        self._buffer = np.zeros(1, dtype=np.float32)
        self._pos = 0
        self._remaining = 0  # frames still to play (0: silent)
        self._start_frame = 0
        self._applied = 0
        # written by other threads
        self._request: tuple = (0, None, 0, 0)  # (sequence, buffer or None = silence, frames, start frame)
        self._sequence = 0
        self._lock = threading.Lock()  # between callers of load/silence only, never in the callback
        self.frames_played = 0
        self.error: str | None = None
        try:
            self.stream = sd.OutputStream(
                samplerate=self.sample_rate_hz,
                blocksize=block,
                device=device,
                channels=None,
                dtype="float32",
                callback=self._callback,
            )
            self.stream.start()
        except Exception as error:  # noqa: BLE001 - PortAudioError, ValueError for a bad device: one clear message
            message = _no_output_message(device, error)
            self._hold.release()
            raise AudioError(message) from None

    def _callback(self, outdata, frames, time_info, status) -> None:
        try:
            request = self._request
            if request[0] != self._applied:
                self._applied, buffer, total, start = request
                if buffer is None:
                    self._remaining = 0
                else:
                    self._buffer, self._remaining, self._start_frame, self._pos = buffer, total, start, 0
            outdata.fill(0.0)
            remaining = self._remaining
            buffer = self._buffer
            n = buffer.shape[0]
            # frames before the start frame stay silent
            written = min(frames, max(0, self._start_frame - self.frames_played))
            pos = self._pos
            while remaining > 0 and written < frames:
                take = min(frames - written, n - pos, remaining)
                outdata[written : written + take, :] = buffer[pos : pos + take, None]
                written += take
                remaining -= take
                pos = (pos + take) % n
            self._pos = pos
            self._remaining = remaining
            self.frames_played += frames
        except Exception as error:  # noqa: BLE001 - the callback must not raise; reported by poll()
            self.error = str(error)

    def now_sample(self) -> float:
        return float(self.frames_played)

    def _publish(self, buffer, total: int, start: int) -> None:
        with self._lock:
            self._sequence += 1
            self._request = (self._sequence, buffer, total, start)

    def load(self, buffer: np.ndarray, passes: int, start_frame: int | None = None) -> None:
        """Play ``buffer`` ``(n,)`` float32 ``passes`` times, from stream frame ``start_frame`` (default: now)."""
        buffer = np.ascontiguousarray(buffer, dtype=np.float32)
        start = self.frames_played if start_frame is None else int(start_frame)
        self._publish(buffer, int(passes) * buffer.shape[0], start)

    def silence(self) -> None:
        self._publish(None, 0, 0)

    @property
    def playing(self) -> bool:
        """A buffer is (or is about to be) playing."""
        request = self._request
        if request[0] != self._applied:
            return request[1] is not None and request[2] > 0
        return self._remaining > 0

    def position_frames(self) -> int:
        return self._pos if self._request[0] == self._applied else 0

    def close(self) -> None:
        self.silence()
        try:
            self.stream.stop()
            self.stream.close()
        except Exception:  # noqa: BLE001, S110 - closing a stream whose device is already gone
            pass
        self._hold.release()


def _no_output_message(device, error) -> str:
    from sjtui.audio.portaudio import held

    try:
        with held() as sd:
            outputs = [
                f"{i}: {d['name']}" for i, d in enumerate(sd.query_devices()) if d["max_output_channels"] > 0
            ]
    except Exception:  # noqa: BLE001 - listing devices is only advice in an error message
        outputs = []
    where = "the default audio output" if device is None else f"audio output {device!r}"
    found = "; ".join(outputs) if outputs else "none (is a sound server such as JACK or PipeWire running?)"
    return (
        f"cannot open {where} ({error}). Audio outputs here: {found}. "
        "Choose one with --device, or see `sjtui devices`"
    )


class MixPlayer(PairPlayer):
    """Guitar and built-in-synth drums mixed into one output stream (see the module docstring)."""

    name = "built-in synth"

    def __init__(self, sample_rate_hz: int = 48000, device=None, synth: str = "auto"):
        from sjtui.synth.backend import make_engine

        self.stream = _LoopStream(sample_rate_hz, device)
        self.synth_kind = synth
        self._engines: dict[int, object] = {}
        self._make_engine = make_engine
        self._loop = None

    def _engine(self, rate: int):
        if rate not in self._engines:
            self._engines[rate] = self._make_engine(self.synth_kind, rate)
        return self._engines[rate]

    def play(self, loop, groove) -> None:
        if loop.sample_rate_hz != self.stream.sample_rate_hz:
            raise AudioError(
                f"loop at {loop.sample_rate_hz} Hz, the output stream runs at {self.stream.sample_rate_hz} Hz; "
                "load the loops at the output's rate"
            )
        engine = self._engine(loop.sample_rate_hz)
        self.stream.load(render_pair(loop, groove, engine), LOOP_PASSES)
        self._loop = loop

    def stop(self) -> None:
        self.stream.silence()

    def position_s(self) -> float | None:
        if not self.stream.playing:
            return None
        return self.stream.position_frames() / self.stream.sample_rate_hz

    def poll(self) -> str | None:
        error, self.stream.error = self.stream.error, None
        return error

    def close(self) -> None:
        self.stream.close()
        for engine in self._engines.values():
            close = getattr(engine, "close", None)
            if close:
                close()
        self._engines.clear()


class MidiPlayer(PairPlayer):
    """Guitar through the audio output, drums to a MIDI port, both on the output stream's clock."""

    def __init__(self, port: str, sample_rate_hz: int = 48000, device=None, backend: str = "auto"):
        from sjtui.midi.backends import open_backend
        from sjtui.midi.scheduler import MidiScheduler

        self.stream = _LoopStream(sample_rate_hz, device)
        try:
            self.backend = open_backend(backend, port=port)
        except BaseException:
            self.stream.close()
            raise
        try:
            # the scheduler keeps the backend's own timeline (JACK frames, or a monotonic sample line
            # for rtmidi); play() maps the guitar's start on the output stream onto it
            self.scheduler = MidiScheduler(
                self.backend, sample_rate_hz=sample_rate_hz, state=False, realtime_priority=None
            ).start()
        except BaseException:
            self.backend.close()
            self.stream.close()
            raise
        self.name = f"MIDI {port}"
        self._start_frame = 0
        self._loop = None

    def play(self, loop, groove) -> None:
        if loop.sample_rate_hz != self.stream.sample_rate_hz:
            raise AudioError(
                f"loop at {loop.sample_rate_hz} Hz, the output stream runs at {self.stream.sample_rate_hz} Hz; "
                "load the loops at the output's rate"
            )
        self.stop()
        lead = int(0.05 * loop.sample_rate_hz)  # both start this far ahead, on their own clocks
        midi_now = self.scheduler.clock()
        start = int(self.stream.now_sample()) + lead
        guitar = np.empty(loop.audio.shape[0], dtype=np.float32)
        np.multiply(loop.audio, GUITAR_GAIN, out=guitar)
        self.stream.load(guitar, LOOP_PASSES, start_frame=start)
        self.scheduler.submit(_pass_events(loop, groove, 0, LOOP_PASSES, offset_samples=int(midi_now) + lead))
        self._start_frame = start
        self._loop = loop

    def poll(self) -> str | None:
        problem = self.backend.poll()
        error, self.stream.error = self.stream.error, None
        return problem or error

    def stop(self) -> None:
        self.stream.silence()
        self.scheduler.cancel_from(0)
        self.scheduler.panic()

    def position_s(self) -> float | None:
        if self._loop is None:
            return None
        elapsed = self.stream.now_sample() - self._start_frame
        if elapsed < 0 or not self.stream.playing:
            return None
        return (elapsed % self._loop.audio.shape[0]) / self.stream.sample_rate_hz

    def describe(self) -> str:
        return self.name

    def close(self) -> None:
        try:
            self.stop()
            self.scheduler.close()
        finally:
            try:
                self.backend.close()
            finally:
                self.stream.close()


def open_player(
    midi_out: str | None = None, *, device=None, sample_rate_hz: int = 48000, synth: str = "auto"
) -> tuple[PairPlayer, str | None]:
    """The player to use and, if it is not the one asked for, why (to show the user).

    ``midi_out``: a MIDI port name (drums go there) or None (built-in synth).
    A port that cannot be opened falls back to the built-in synth; no audio
    output raises :class:`AudioError` saying what exists.
    """
    if midi_out:
        try:
            return MidiPlayer(midi_out, sample_rate_hz, device), None
        except AudioError:
            raise
        except SjtuiError as error:
            reason = f"MIDI output {midi_out!r} unusable ({error}); drums play on the built-in synth"
            return MixPlayer(sample_rate_hz, device, synth), reason
    return MixPlayer(sample_rate_hz, device, synth), None
