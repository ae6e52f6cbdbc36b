"""The analysis thread: consumes the ring in batches of whole hops, publishes features.

It is the ring's single reader. Each time it wakes it reads *everything*
waiting (rounded down to whole hops, at most ``max_batch_samples``), hands it
to the analyzer in one ``process`` call and publishes the result, so a late
wake-up costs one bigger batch, not a growing backlog. It never touches the
writer: the callback does not wait for it, and if it falls more than a ring
behind it skips to the oldest intact sample, counts the overrun and the lost
samples, and resets the analyzer (features across a gap would be garbage).

The analyzer is any object with ``process(block) -> features`` and
``reset()``, e.g. :class:`sjtui.dsp.analysis.OnlineAnalyzer`. Its sample
indices count from its last reset; :class:`AnalysisUpdate` carries
``segment_start_index``, the absolute ring index of that sample 0, so
``absolute = segment_start_index + analyzer_sample``.

Waiting: when less than a hop is waiting the thread sleeps on an Event with a
short timeout (half a hop by default: 2.7 ms at 48 kHz), never spinning and
never asking the audio callback to signal it (an Event set from the callback
would take a lock there).

Results go out two ways: ``on_update(update)`` called on this thread for
every batch (keep it short; hand off to a queue if needed), and the
``latest`` slot (one attribute assignment, atomic) that a UI may poll.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

from sjtui.audio.ring import RingBuffer, RingReader
from sjtui.constants import HOP_SIZE
from sjtui.signals import start_thread


@dataclass(frozen=True)
class AnalysisUpdate:
    """One batch: ``features`` from samples ``[start_index, stop_index)`` of the ring.

    ``segment_start_index``: absolute index of the analyzer's sample 0 (its
    last reset). ``lost_samples``: samples skipped just before ``start_index``
    by an overrun (the analyzer was reset there). ``batch``: running count.
    """

    features: Any
    start_index: int
    stop_index: int
    segment_start_index: int
    lost_samples: int
    batch: int


class AnalysisThread:
    """Runs ``analyzer`` over ``ring`` on its own thread.

    Parameters
    ----------
    ring, analyzer:
        The ring to read and the ``process``/``reset`` object to feed.
    on_update:
        Called with each :class:`AnalysisUpdate` on the analysis thread.
    hop_size:
        Batches are whole multiples of this (default: ``analyzer.hop_size``
        or ``HOP_SIZE``).
    start_index:
        First absolute sample to analyse (default: the ring's write index
        when the thread is made, i.e. from now on).
    poll_s:
        Sleep when nothing is waiting (default half a hop at the analyzer's
        ``sample_rate_hz``, else 2.5 ms).
    max_batch_samples:
        Largest batch (default: what the ring can hold behind the writer).
    """

    def __init__(
        self,
        ring: RingBuffer,
        analyzer,
        on_update: Callable[[AnalysisUpdate], None] | None = None,
        hop_size: int | None = None,
        start_index: int | None = None,
        poll_s: float | None = None,
        max_batch_samples: int | None = None,
    ):
        self.ring = ring
        self.analyzer = analyzer
        self.on_update = on_update
        self.hop_size = int(hop_size or getattr(analyzer, "hop_size", HOP_SIZE))
        self.reader = RingReader(ring, start_index, max_batch_samples)
        if self.reader.max_read_samples < self.hop_size:
            raise ValueError(f"max_batch_samples ({self.reader.max_read_samples}) is below one hop ({self.hop_size})")
        rate = getattr(analyzer, "sample_rate_hz", None)
        self.poll_s = float(poll_s) if poll_s is not None else (0.5 * self.hop_size / rate if rate else 0.0025)
        self.segment_start_index = self.reader.next_index
        self.latest: AnalysisUpdate | None = None
        self.batches = 0
        self.overrun_count = 0
        self.lost_samples = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._progress = threading.Condition()
        self._thread: threading.Thread | None = None

    @property
    def next_index(self) -> int:
        """Absolute index of the next sample to analyse (a flow-control hook for fast sources)."""
        return self.reader.next_index

    def start(self) -> AnalysisThread:
        if self._thread is None:
            self._stop.clear()
            self._thread = start_thread(self._run, "sjtui-analysis")
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the thread (idempotent) and re-raise an error it hit."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def wait_for(self, index: int, timeout_s: float) -> bool:
        """Block (a caller's thread, never the audio path) until samples before ``index`` are analysed.

        False on timeout, or if the thread failed or was stopped first.
        """
        with self._progress:
            return self._progress.wait_for(
                lambda: self.reader.next_index >= index or self.error is not None or self._stop.is_set(),
                timeout_s,
            ) and self.reader.next_index >= index and self.error is None

    def __enter__(self) -> AnalysisThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def step(self) -> AnalysisUpdate | None:
        """Analyse what is waiting now (whole hops); None if less than a hop waits."""
        if self.reader.available() < self.hop_size:
            return None
        result = self.reader.read_available(multiple_of=self.hop_size)
        if result.lost_samples:
            self.overrun_count += 1
            self.lost_samples += result.lost_samples
            self.analyzer.reset()
            self.segment_start_index = result.start_index
        if result.samples.shape[0] == 0:
            return None
        features = self.analyzer.process(result.samples)
        self.batches += 1
        update = AnalysisUpdate(
            features, result.start_index, result.stop_index, self.segment_start_index,
            result.lost_samples, self.batches,
        )
        self.latest = update
        if self.on_update is not None:
            self.on_update(update)
        return update

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self.step() is None:
                    self._stop.wait(self.poll_s)
                    continue
                with self._progress:
                    self._progress.notify_all()
        except BaseException as error:  # noqa: BLE001 - re-raised by stop()
            self.error = error
        finally:
            with self._progress:
                self._progress.notify_all()
