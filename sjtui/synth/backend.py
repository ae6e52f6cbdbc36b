"""The built-in synth as a buffered MIDI backend: drums rendered into a sounddevice output stream.

:class:`SynthBackend` is driven by the same :class:`~sjtui.midi.scheduler.MidiScheduler`
as the MIDI backends. Its timeline is the output stream's frame counter
(sample 0 = the first frame the stream asked for): the scheduler's clock is
:meth:`SynthBackend.now_sample` (frames rendered so far plus the time since
that callback), and each event is rendered at ``sample - block_start`` of
the block that contains it. The engine maps its audio-input samples to this
timeline with ``frame_offset`` (event sample ``s`` plays at output frame
``s + frame_offset``), as with the JACK backend.

When the callback misses cycles (the machine stalled it: an xrun on JACK),
the stream's clock has moved on while the frame counter has not, and every
later drum would sound that much late against the guitar. A
:class:`~sjtui.audio.device.StreamGapDetector` on the blocks' DAC times
finds the missed frames (within about 3 s) and the counter steps over them
(``frames_skipped``, ``gap_count``); events that fell in them go out late.

The callback only takes due events from a deque and calls the engine's
``render`` into the preallocated mono buffer, then copies it to every
output channel; it cannot raise (a failing engine is replaced by silence
and reported by :meth:`poll`).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Sequence

import numpy as np

from sjtui.errors import AudioError
from sjtui.midi.backends import MidiBackend

DEFAULT_BLOCK = 256


def make_engine(kind: str = "auto", sample_rate_hz: float = 48000, soundfont=None, max_block: int = 8192):
    """``"fluidsynth"`` (GM SoundFont), ``"numpy"`` (always works) or ``"auto"`` (FluidSynth where usable)."""
    from sjtui.synth.drums import DrumSynth

    if kind in ("auto", "fluidsynth"):
        try:
            from sjtui.synth.fluid import FluidSynthEngine

            return FluidSynthEngine(sample_rate_hz, soundfont, max_block=max_block)
        except AudioError:
            if kind == "fluidsynth":
                raise
    if kind in ("auto", "numpy"):
        return DrumSynth(sample_rate_hz, max_block=max_block)
    raise AudioError(f"synth {kind!r} is unknown; use auto, fluidsynth or numpy")


class SynthBackend(MidiBackend):
    """Renders scheduled MIDI with a synth engine to an audio output device.

    ``device``: a sounddevice output device (index or name; None = default);
    ``engine``: an engine instance or a kind for :func:`make_engine`.
    """

    name = "synth"
    timed = False

    def __init__(
        self,
        *,
        engine="auto",
        device=None,
        sample_rate_hz: float = 48000,
        blocksize: int = DEFAULT_BLOCK,
        channels: int = 2,
        frame_offset: int = 0,
        latency="low",
    ):
        from sjtui.audio.device import StreamGapDetector
        from sjtui.audio.portaudio import Hold

        self._hold = Hold()  # PortAudio for the life of the stream; released in close()
        sd = self._hold.sd
        self.sample_rate_hz = float(sample_rate_hz)
        self.engine = make_engine(engine, sample_rate_hz) if isinstance(engine, str) else engine
        self.frame_offset = int(frame_offset)
        self._queue: collections.deque = collections.deque()
        self._mono = np.zeros(8192, dtype=np.float32)
        self._frames = 0
        self._callback_time = None
        self._panic: list[bytes] | None = None
        self._panic_done = threading.Event()
        self._problem: str | None = None
        self._reported = False
        self.late_events = 0
        self.underflows = 0
        self.frames_skipped = 0
        self.gap_count = 0
        self._gaps = StreamGapDetector(self.sample_rate_hz, blocksize or DEFAULT_BLOCK)
        try:
            self.stream = sd.OutputStream(
                samplerate=self.sample_rate_hz,
                blocksize=blocksize,
                device=device,
                channels=channels,
                dtype="float32",
                latency=latency,
                callback=self._callback,
            )
            self.stream.start()
        except Exception as error:  # PortAudioError, ValueError
            self._hold.release()
            raise AudioError(
                f"cannot open audio output {device!r} at {sample_rate_hz:g} Hz for the synth: {error}; "
                "see `sjtui devices` for outputs"
            ) from None

    def _callback(self, outdata, frames, time_info, status) -> None:
        try:
            if status.output_underflow:
                self.underflows += 1
            mono = self._mono[:frames]
            mono.fill(0.0)
            skipped = self._gaps.update(self._frames, time_info.outputBufferDacTime)
            if skipped > 0:  # cycles this callback missed: their time has passed, so does the counter
                self._frames += skipped
                self.frames_skipped += skipped
                self.gap_count += 1
            start = self._frames
            end = start + frames
            queue = self._queue
            due = []
            panic = self._panic
            if panic is not None:
                queued = list(queue)
                queue.clear()
                due = [(0, d) for _, d in queued if d[0] & 0xF0 == 0x80] + [(0, d) for d in panic]
                self._panic = None
                self._panic_done.set()
            else:
                while queue and queue[0][0] < end:
                    frame, data = queue.popleft()
                    offset = frame - start
                    if offset < 0:
                        offset = 0
                        self.late_events += 1
                    due.append((offset, data))
                if len(due) > 1:
                    due.sort(key=lambda e: e[0])
            self.engine.render(mono, due)
            outdata[:] = mono[:, None]
            self._frames = end
            self._callback_time = time.monotonic()
        except Exception as error:  # the callback must not raise
            outdata.fill(0)
            self._problem = f"the synth failed: {error!r}"

    # -- interface ----------------------------------------------------------------

    def schedule(self, sample: int, data: bytes) -> None:
        self._queue.append((int(sample) + self.frame_offset, data))

    def now_sample(self) -> float:
        t = self._callback_time
        frames = self._frames
        if t is None:
            return float(-self.frame_offset)
        return frames + (time.monotonic() - t) * self.sample_rate_hz - self.frame_offset

    def send_now(
        self, messages: Sequence[Sequence[int]], timeout_s: float = 0.5, silence: bool = False
    ) -> bool:
        if getattr(self, "stream", None) is None:
            for data in messages:  # no stream: apply directly (offline state)
                self.engine.handle(bytes(data), 0) if hasattr(self.engine, "_voice") else self.engine.handle(
                    bytes(data)
                )
            return True
        self._panic_done.clear()
        self._panic = [bytes(m) for m in messages]
        return self._panic_done.wait(timeout_s)

    def describe(self) -> dict:
        return {"backend": self.name, "api": None, "engine": self.engine.name}

    def poll(self) -> str | None:
        if self._problem and not self._reported:
            self._reported = True
            return self._problem
        return None

    def close(self) -> None:
        stream, self.stream = getattr(self, "stream", None), None
        if stream is not None:
            try:
                stream.stop()
                stream.close()
            finally:
                self._hold.release()
        close = getattr(self.engine, "close", None)
        if close:
            close()
