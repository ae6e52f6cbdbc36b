"""Audio files (and any in-memory signal) as an input source feeding a ring.

:class:`ArraySource` plays a mono float32 signal into a
:class:`~sjtui.audio.ring.RingBuffer` from its own thread, block by block,
exactly as a sound card's callback would: paced in real time or as fast as
possible, once or looping. :class:`FileSource` is an ArraySource over a file
read with soundfile (WAV, FLAC, OGG, MP3 with libsndfile >= 1.1).

Defined results for awkward input (decided here, tested in
``tests/test_audio_file_source.py``):

* missing, unreadable or empty file: :class:`~sjtui.errors.AudioError`
  saying which file and what to do;
* a truncated file: the frames that can be decoded are played;
* a sample rate other than the stream's: resampled with a polyphase filter
  (``scipy.signal.resample_poly``), noted in ``notes``; with
  ``resample=False`` it is an AudioError instead;
* NaN or +-Inf samples: replaced by 0.0, counted in ``nonfinite_count`` and
  noted (the analysis never sees a non-finite value);
* several channels: mixed down to their mean unless ``channel`` picks one
  (1-based); clipping, silence and DC offset pass through unchanged.

Pacing uses absolute deadlines: block ``k`` is written when
``start + (k + 1) * block_size / sample_rate_hz`` is reached, so the source
never drifts however long it plays. Its anchors use the source's own clock
(``sample_index / sample_rate_hz``) as ``adc_time_s``.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from sjtui.audio.ring import RingBuffer
from sjtui.constants import SUPPORTED_SAMPLE_RATES_HZ
from sjtui.errors import AudioError
from sjtui.signals import start_thread


@dataclass
class LoadedAudio:
    """A decoded, mono float32 signal ``samples`` (shape ``(n,)``) at ``sample_rate_hz``."""

    samples: np.ndarray
    sample_rate_hz: int
    file_sample_rate_hz: int
    nonfinite_count: int = 0
    notes: list[str] = field(default_factory=list)


def _check_stream_rate(sample_rate_hz: int) -> None:
    if sample_rate_hz not in SUPPORTED_SAMPLE_RATES_HZ:
        raise AudioError(
            f"unsupported stream sample rate {sample_rate_hz!r} Hz; use "
            + " or ".join(str(r) for r in SUPPORTED_SAMPLE_RATES_HZ)
        )


def resample(samples: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Polyphase resampling of a mono signal (shape ``(n,)``) to float32."""
    if from_hz == to_hz:
        return samples.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = math.gcd(int(from_hz), int(to_hz))
    return resample_poly(samples, to_hz // g, from_hz // g).astype(np.float32)


def load_audio(
    path: str | Path,
    sample_rate_hz: int | None = None,
    channel: int | None = None,
    resample_to_stream: bool = True,
) -> LoadedAudio:
    """Read an audio file as mono float32 at ``sample_rate_hz`` (default: the file's, if supported).

    ``channel`` is 1-based; ``None`` mixes all channels down to their mean.
    See the module docstring for what happens with awkward files.
    """
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioError(f"audio file not found: {path}; check the path")
    if path.is_dir():
        raise AudioError(f"{path} is a folder, not an audio file; give the path of a WAV, FLAC, OGG or MP3 file")
    try:
        data, file_rate_hz = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as error:
        raise AudioError(
            f"cannot read audio file {path}: {error}. sjtui reads WAV, FLAC, OGG and MP3 through "
            f"libsndfile {sf.__libsndfile_version__}; convert the file to WAV if it is another format"
        ) from error
    except OSError as error:
        raise AudioError(f"cannot open audio file {path}: {error}") from error
    n_frames, n_channels = data.shape
    if n_frames == 0:
        raise AudioError(f"audio file {path} has no samples (0 frames); record or choose another file")
    notes: list[str] = []
    if channel is None:
        mono = data[:, 0] if n_channels == 1 else data.mean(axis=1, dtype=np.float32)
        if n_channels > 1:
            notes.append(f"mixed {n_channels} channels down to mono")
    else:
        if not isinstance(channel, (int, np.integer)) or not 1 <= channel <= n_channels:
            raise AudioError(
                f"channel {channel!r} does not exist in {path}, which has {n_channels} channel(s); "
                "channels count from 1"
            )
        mono = data[:, channel - 1]
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    finite = np.isfinite(mono)
    nonfinite_count = int(mono.shape[0] - np.count_nonzero(finite))
    if nonfinite_count:
        mono = np.where(finite, mono, np.float32(0.0))
        notes.append(f"replaced {nonfinite_count} NaN/Inf sample(s) by 0.0")
    if sample_rate_hz is None:
        if file_rate_hz not in SUPPORTED_SAMPLE_RATES_HZ:
            raise AudioError(
                f"audio file {path} is at {file_rate_hz} Hz; sjtui analyses at "
                + " or ".join(str(r) for r in SUPPORTED_SAMPLE_RATES_HZ)
                + " Hz: choose a stream sample rate (--sample-rate) and the file will be resampled"
            )
        sample_rate_hz = int(file_rate_hz)
    _check_stream_rate(sample_rate_hz)
    if file_rate_hz != sample_rate_hz:
        if not resample_to_stream:
            raise AudioError(
                f"audio file {path} is at {file_rate_hz} Hz but the stream runs at {sample_rate_hz} Hz; "
                "allow resampling or convert the file"
            )
        mono = resample(mono, int(file_rate_hz), int(sample_rate_hz))
        notes.append(f"resampled from {file_rate_hz} Hz to {sample_rate_hz} Hz")
    return LoadedAudio(mono, int(sample_rate_hz), int(file_rate_hz), nonfinite_count, notes)


class ArraySource:
    """Plays ``samples`` (shape ``(n,)``) into ``ring`` from a thread, like an input callback.

    Parameters
    ----------
    realtime:
        True: one block every ``block_size / sample_rate_hz`` seconds at
        absolute deadlines. False: as fast as possible.
    loop:
        Start again from the beginning at the end (the absolute sample index
        keeps counting); otherwise the thread ends and ``finished`` is set
        (also set if the thread fails; :meth:`stop` re-raises the error).
    reader_index:
        For ``realtime=False``: a function returning the consumer's next
        absolute index (e.g. ``AnalysisThread.next_index``); the source
        waits for room instead of lapping the reader. Without it a fast
        source can overrun a slow reader (which the reader then reports).
    clock, wait:
        Injectable clock (default ``time.monotonic``) and wait function
        ``wait(timeout_s) -> stopped`` (default: wait on the stop event), so
        pacing can be tested in virtual time.
    """

    def __init__(
        self,
        ring: RingBuffer,
        samples: np.ndarray,
        sample_rate_hz: int,
        block_size: int = 256,
        realtime: bool = True,
        loop: bool = False,
        reader_index: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
    ):
        _check_stream_rate(sample_rate_hz)
        if samples.ndim != 1 or samples.shape[0] == 0:
            raise AudioError(f"a source needs a non-empty mono signal, got shape {samples.shape}")
        if not 1 <= block_size <= ring.max_write_samples:
            raise AudioError(f"block size {block_size} must be 1..{ring.max_write_samples} for this ring")
        self.ring = ring
        self.samples = np.ascontiguousarray(samples, dtype=np.float32)
        self.sample_rate_hz = int(sample_rate_hz)
        self.block_size = int(block_size)
        self.realtime = realtime
        self.loop = loop
        self.reader_index = reader_index
        self.clock = clock
        self._wait = wait
        self.finished = threading.Event()
        self.blocks_written = 0
        self.late_blocks = 0  # realtime: blocks written more than one block period after their deadline
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._block = np.zeros(self.block_size, dtype=np.float32)
        self._position = 0  # next sample of ``samples`` to play

    @property
    def duration_s(self) -> float:
        return self.samples.shape[0] / self.sample_rate_hz

    def start(self) -> ArraySource:
        if self._thread is not None:
            return self
        self._stop.clear()
        self.finished.clear()
        self._thread = start_thread(self._run, f"sjtui-{type(self).__name__}")
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the thread (idempotent); re-raises an error the thread hit."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait until a non-looping source has played everything; True if it has."""
        return self.finished.wait(timeout_s)

    def __enter__(self) -> ArraySource:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ thread
    def _next_block(self) -> np.ndarray | None:
        """Fill the preallocated block from the signal (two-part copy at the loop point)."""
        n_total = self.samples.shape[0]
        if self._position >= n_total:
            if not self.loop:
                return None
            self._position = 0
        n = self.block_size
        first = min(n, n_total - self._position)
        self._block[:first] = self.samples[self._position : self._position + first]
        self._position += first
        if first == n:
            return self._block
        if not self.loop:
            return self._block[:first]
        filled = first
        while filled < n:  # a signal shorter than a block loops several times in one block
            take = min(n - filled, n_total)
            self._block[filled : filled + take] = self.samples[:take]
            filled += take
            self._position = take
        return self._block

    def _wait_for_room(self, n: int) -> bool:
        room = self.ring.capacity_samples - self.ring.max_write_samples
        while self.ring.write_index + n - self.reader_index() > room:
            if self._stop.wait(0.0005):
                return False
        return True

    def _run(self) -> None:
        try:
            period_s = self.block_size / self.sample_rate_hz
            start_s = self.clock()
            k = 0
            while not self._stop.is_set():
                block = self._next_block()
                if block is None:
                    self.finished.set()  # played everything
                    break
                if self.realtime:
                    deadline_s = start_s + (k + 1) * period_s
                    now_s = self.clock()
                    if now_s < deadline_s:
                        if (self._wait or self._stop.wait)(deadline_s - now_s):
                            break
                    elif now_s - deadline_s > period_s:
                        self.late_blocks += 1
                elif self.reader_index is not None and not self._wait_for_room(block.shape[0]):
                    break
                index = self.ring.write_index
                self.ring.write(block)
                self.ring.record_anchor(index, index / self.sample_rate_hz, self.clock())
                self.blocks_written += 1
                k += 1
        except BaseException as error:  # noqa: BLE001 - surfaced by stop()
            self.error = error
            self.finished.set()  # nothing more will come: do not leave a waiter hanging


class FileSource(ArraySource):
    """An audio file played into a ring (see :func:`load_audio` and :class:`ArraySource`).

    ``sample_rate_hz`` is the stream's rate (default: the file's);
    ``channel`` is 1-based or None for a mixdown. ``notes`` lists what was
    done to the file (resampling, mixdown, NaN replacement).
    """

    def __init__(
        self,
        ring: RingBuffer,
        path: str | Path,
        sample_rate_hz: int | None = None,
        block_size: int = 256,
        realtime: bool = True,
        loop: bool = False,
        channel: int | None = None,
        resample_to_stream: bool = True,
        reader_index: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
    ):
        audio = load_audio(path, sample_rate_hz, channel, resample_to_stream)
        self.path = Path(path)
        self.file_sample_rate_hz = audio.file_sample_rate_hz
        self.nonfinite_count = audio.nonfinite_count
        self.notes = audio.notes
        super().__init__(
            ring, audio.samples, audio.sample_rate_hz, block_size, realtime, loop, reader_index, clock, wait
        )
