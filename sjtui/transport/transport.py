"""The transport: where the beat and the bar are, from one of three sources.

Sources, switchable while running:

- ``internal``: BPM and meter set by the user, tap tempo, nudge;
- ``midi_clock``: an incoming MIDI clock (:class:`MidiClockFollower`);
- ``auto``: estimated from the playing (:func:`estimate_tempo`), then locked.

Threads: any thread may :meth:`Transport.submit` a command (a small frozen
dataclass) into a ``queue.SimpleQueue``; the engine thread calls
:meth:`Transport.apply_pending` at block boundaries, which applies them in
order and publishes a new :class:`TransportSnapshot` (an immutable value the
UI reads as the latest state). Commands never raise into the engine: bad
values (a tempo of 1000 BPM, a meter of "four") leave the transport as it
was and add a warning with the error's message.

Every tempo change is a new segment of the :class:`TempoMap` at the sample
where it was applied, so onsets already played keep their positions.
Switching source keeps the current position and tempo until the new
source provides its own (a MIDI clock that has not ticked yet, a playing
estimate that is not locked yet): the grid never jumps on a switch alone.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass, field
from typing import Union

import numpy as np

from sjtui.constants import FRAME_SIZE
from sjtui.errors import SjtuiError
from sjtui.meter import FOUR_FOUR, Meter, parse_meter
from sjtui.transport.midi_clock import MidiClockFollower
from sjtui.transport.tap import TapTempo
from sjtui.transport.tempo_estimate import TempoEstimate, estimate_tempo
from sjtui.transport.timebase import (
    MAX_BPM,
    MIN_BPM,
    Position,
    TempoMap,
    TransportError,
    check_bpm,
    onsets_to_grid,
)

SOURCES = ("internal", "midi_clock", "auto")
MAX_WARNINGS = 8


# --- commands -----------------------------------------------------------------


@dataclass(frozen=True)
class SetTempo:
    bpm: float


@dataclass(frozen=True)
class SetMeter:
    meter: Union[str, Meter]


@dataclass(frozen=True)
class Tap:
    sample: float


@dataclass(frozen=True)
class Nudge:
    steps: int = 1  # +1 up, -1 down; each step is Transport.nudge_bpm


@dataclass(frozen=True)
class SetSource:
    source: str


@dataclass(frozen=True)
class SetLatency:
    latency_ms: float


@dataclass(frozen=True)
class Relisten:
    """Forget the locked estimate and listen again (source ``auto``)."""


@dataclass(frozen=True)
class MidiMessage:
    message: tuple
    sample: float


Command = Union[SetTempo, SetMeter, Tap, Nudge, SetSource, SetLatency, Relisten, MidiMessage]


@dataclass(frozen=True)
class TransportSnapshot:
    sample: float
    source: str
    state: str
    bpm: float
    meter: Meter
    running: bool
    confidence: float
    epoch: int
    position: Position | None
    tempo_map: TempoMap
    latency_ms: float
    message: str
    warnings: tuple[str, ...] = ()
    alternatives: tuple[tuple[float, float], ...] = field(default_factory=tuple)


class Transport:
    """Holds the tempo map, the source and its state (see the module docstring)."""

    def __init__(
        self,
        sample_rate_hz: float,
        bpm: float = 120.0,
        meter: Meter | str = FOUR_FOUR,
        source: str = "internal",
        latency_ms: float = 0.0,
        nudge_bpm: float = 1.0,
        listen_s: float = 8.0,
    ):
        self.sample_rate_hz = float(sample_rate_hz)
        meter = parse_meter(meter)
        self.tempo_map = TempoMap.constant(sample_rate_hz, check_bpm(bpm), meter, max_segments=2048)
        self.latency_ms = float(latency_ms)
        self.nudge_bpm = float(nudge_bpm)
        self.listen_s = float(listen_s)
        self.tap_tempo = TapTempo(sample_rate_hz)
        self.midi_clock = MidiClockFollower(sample_rate_hz, meter, default_bpm=bpm)
        self.estimate: TempoEstimate | None = None
        self.confidence = 1.0
        self.epoch = 0
        self.state = "running"
        self.message = f"internal clock {bpm:g} BPM {meter}"
        self.warnings: list[str] = []
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._onset_samples: list[np.ndarray] = []
        self._onset_strengths: list[np.ndarray] = []
        self._onset_bands: list[np.ndarray] = []
        self._flux: list[np.ndarray] = []
        self._flux_sample: list[np.ndarray] = []
        self._listen_start: float | None = None
        self._now = 0.0
        self.source = "internal"
        if source != "internal":
            self._apply(SetSource(source))
        self.snapshot = self._make_snapshot()

    # -- threads ------------------------------------------------------------------

    def submit(self, command: Command) -> None:
        """Queue a command (any thread, never blocks)."""
        self._queue.put(command)

    def apply_pending(self, now_sample: float) -> TransportSnapshot:
        """Apply queued commands at ``now_sample`` (engine thread, block boundary)."""
        self._now = float(now_sample)
        while True:
            try:
                command = self._queue.get_nowait()
            except queue.Empty:
                break
            self._apply(command)
        if self.source == "midi_clock":
            self.midi_clock.poll(now_sample)
            self._follow_clock()
        self.snapshot = self._make_snapshot()
        return self.snapshot

    # -- reading --------------------------------------------------------------------

    @property
    def bpm(self) -> float:
        if self.source == "midi_clock" and self.midi_clock.tempo_map is not None:
            # the sender's tempo as fitted, not the map's momentary steer onto the fitted line
            return self.midi_clock.held_bpm
        return self.tempo_map.bpm_at(self._now)

    @property
    def meter(self) -> Meter:
        return self.tempo_map.meter_at(self._now)

    @property
    def running(self) -> bool:
        return self.midi_clock.running if self.source == "midi_clock" else True

    def position(self, sample: float) -> Position:
        """Musical position at ``sample`` (held at the stop point while a MIDI clock is stopped)."""
        if self.source == "midi_clock" and not self.midi_clock.running:
            beat = self.midi_clock.stopped_beat
            return self.tempo_map.position(float(self.tempo_map.beat_to_sample(beat)))
        return self.tempo_map.position(sample)

    def onsets_to_grid(self, onset_samples: np.ndarray) -> np.ndarray:
        """Onsets on the grid at the time they were played (see :func:`timebase.onsets_to_grid`)."""
        return onsets_to_grid(onset_samples, self.tempo_map, self.latency_ms)

    # -- the playing (source auto) ----------------------------------------------------

    def feed_onsets(
        self, onset_samples: np.ndarray, strengths: np.ndarray, bands: np.ndarray | None = None
    ) -> None:
        """Give the transport new onsets (engine thread). Used while listening in ``auto``.

        After ``listen_s`` seconds of onsets the tempo is estimated and locked
        (``locked``, or ``locked (unsure)`` with a warning when half/double
        fit almost as well); later onsets are ignored until :class:`Relisten`.
        With too little playing the transport keeps listening at the held tempo.
        """
        if self.source != "auto" or self.state.startswith("locked"):
            return
        onset_samples = np.asarray(onset_samples, dtype=np.float64).ravel()
        if onset_samples.size == 0:
            return
        strengths = np.asarray(strengths, dtype=np.float64).ravel()
        self._onset_samples.append(onset_samples)
        self._onset_strengths.append(strengths)
        self._onset_bands.append(
            np.zeros(onset_samples.shape, np.int8) if bands is None else np.asarray(bands, np.int8).ravel()
        )
        if self._listen_start is None:
            self._listen_start = float(onset_samples[0])
        last = float(onset_samples[-1])
        if (last - self._listen_start) / self.sample_rate_hz > 2 * self.listen_s:
            # sparse playing that never gave an estimate: keep listening to the last listen_s only
            samples = np.concatenate(self._onset_samples)
            keep = samples >= last - self.listen_s * self.sample_rate_hz
            self._onset_samples = [samples[keep]]
            self._onset_strengths = [np.concatenate(self._onset_strengths)[keep]]
            self._onset_bands = [np.concatenate(self._onset_bands)[keep]]
            self._listen_start = float(samples[keep][0])
        if (last - self._listen_start) / self.sample_rate_hz >= self.listen_s:
            self._estimate_now()

    def feed_features(self, features) -> None:
        """Give the transport a batch of :class:`sjtui.dsp.analysis.Features` (engine thread).

        Like :meth:`feed_onsets`, and the band flux (summed over bands, at each
        frame's centre) joins the estimate as an onset-strength envelope, as in
        :func:`~sjtui.transport.tempo_estimate.estimate_from_features`.
        """
        if self.source != "auto" or self.state.startswith("locked"):
            return
        if features.n_frames:
            self._flux.append(np.asarray(features.flux, dtype=np.float64).sum(axis=0))
            self._flux_sample.append(np.asarray(features.frame_sample, dtype=np.float64) - FRAME_SIZE / 2)
            if len(self._flux) > 256:  # keep about the last 2 * listen_s of envelope (silence, no lock)
                flux, at = np.concatenate(self._flux), np.concatenate(self._flux_sample)
                keep = at >= at[-1] - 2 * self.listen_s * self.sample_rate_hz
                self._flux, self._flux_sample = [flux[keep]], [at[keep]]
        onsets = features.onsets
        if onsets.size:
            self.feed_onsets(onsets["sample"], onsets["strength"], onsets["band"])

    def _estimate_now(self) -> None:
        samples = np.concatenate(self._onset_samples)
        envelope = np.concatenate(self._flux) if self._flux else None
        envelope_sample = np.concatenate(self._flux_sample) if self._flux_sample else None
        estimate = estimate_tempo(
            samples,
            np.concatenate(self._onset_strengths),
            self.sample_rate_hz,
            meter=self.tempo_map.meter,
            bands=np.concatenate(self._onset_bands),
            envelope=envelope,
            envelope_sample=envelope_sample,
        )
        self.estimate = estimate
        self.confidence = estimate.confidence
        self.message = estimate.message
        if estimate.bpm is None:
            self.state = "listening"
            return
        # lock: a fresh map whose bar 0 starts at the estimated downbeat
        self.epoch += 1
        self.tempo_map = self.tempo_map.relocated(
            estimate.downbeat_sample, 0.0, bar=0.0, bpm=float(np.clip(estimate.bpm, MIN_BPM, MAX_BPM))
        )
        self.state = "locked" if estimate.state == "locked" else "locked (unsure)"
        if estimate.ambiguous:
            self._warn(estimate.message)

    # -- commands -------------------------------------------------------------------------

    def _warn(self, text: str) -> None:
        self.warnings.append(text)
        del self.warnings[:-MAX_WARNINGS]

    def _apply(self, command: Command) -> None:
        try:
            self._dispatch(command)
        except SjtuiError as error:
            self._warn(str(error))

    def _dispatch(self, command: Command) -> None:
        now = self._now
        if isinstance(command, MidiMessage):
            self.midi_clock.feed(command.message, command.sample)
            if self.source == "midi_clock":
                self._follow_clock()
        elif isinstance(command, SetTempo):
            self._require_not_clock("set the tempo")
            bpm = check_bpm(command.bpm)
            self.tempo_map = self.tempo_map.with_tempo(now, bpm)
            self.midi_clock.held_bpm = bpm
            self.message = f"tempo {bpm:g} BPM"
            if self.source == "auto":
                self.state = "locked"
                self.confidence = 1.0
        elif isinstance(command, Nudge):
            self._require_not_clock("nudge the tempo")
            bpm = float(np.clip(self.bpm + command.steps * self.nudge_bpm, MIN_BPM, MAX_BPM))
            self.tempo_map = self.tempo_map.with_tempo(now, bpm)
            self.message = f"nudged to {bpm:g} BPM"
        elif isinstance(command, Tap):
            self._require_not_clock("tap the tempo")
            result = self.tap_tempo.tap(command.sample)
            self.message = result.message
            if result.bpm is not None:
                # the tempo from here on, and the last tap on the nearest beat
                tempo_map = self.tempo_map.with_tempo(min(now, command.sample), result.bpm)
                beat = float(tempo_map.sample_to_beat(command.sample))
                target = float(np.rint(beat))
                bar = float(tempo_map.beat_to_bar(target))
                if abs(target - beat) > 1e-9:  # move the grid so the tap is on a beat: a locate
                    self.tempo_map = tempo_map.relocated(command.sample, target, bar=bar, bpm=result.bpm)
                    self.epoch += 1
                else:
                    self.tempo_map = tempo_map
                if self.source == "auto":
                    self.state = "locked"
                    self.confidence = 1.0
        elif isinstance(command, SetMeter):
            meter = parse_meter(command.meter)
            self.tempo_map = self.tempo_map.with_meter(now, meter)
            self.midi_clock.set_meter(meter)
            self.message = f"meter {meter} from the next bar line"
        elif isinstance(command, SetLatency):
            latency = float(command.latency_ms)
            if not np.isfinite(latency) or not -500.0 <= latency <= 500.0:
                raise TransportError(f"input latency {command.latency_ms!r} ms is outside -500..500 ms")
            self.latency_ms = latency
        elif isinstance(command, SetSource):
            self._set_source(command.source)
        elif isinstance(command, Relisten):
            if self.source != "auto":
                raise TransportError("relisten works with the tempo source 'auto'; switch to it first")
            self._start_listening()
        else:
            raise TransportError(f"unknown transport command {command!r}")

    def _require_not_clock(self, what: str) -> None:
        if self.source == "midi_clock":
            raise TransportError(
                f"cannot {what}: the tempo comes from the MIDI clock; switch the source to internal first"
            )

    def _start_listening(self) -> None:
        self._onset_samples.clear()
        self._onset_strengths.clear()
        self._onset_bands.clear()
        self._flux.clear()
        self._flux_sample.clear()
        self._listen_start = None
        self.estimate = None
        self.state = "listening"
        self.confidence = 0.0
        self.message = f"listening for {self.listen_s:g} s of playing; holding {self.bpm:g} BPM until then"

    def _set_source(self, source: str) -> None:
        if source not in SOURCES:
            raise TransportError(f"tempo source {source!r} is unknown; choose one of {', '.join(SOURCES)}")
        self.source = source
        if source == "internal":
            self.state = "running"
            self.confidence = 1.0
            self.message = f"internal clock {self.bpm:g} BPM {self.meter}"
        elif source == "auto":
            self._start_listening()
        else:
            self.state = self.midi_clock.state
            self.message = self.midi_clock.message
            self._follow_clock()

    def _follow_clock(self) -> None:
        clock = self.midi_clock
        self.state = clock.state
        self.message = clock.message
        self.confidence = 1.0 if clock.state == "running" else 0.5 if clock.running else 0.0
        if clock.tempo_map is not None:
            if clock.epoch != getattr(self, "_clock_epoch", None):
                self._clock_epoch = clock.epoch
                self.epoch += 1
            self.tempo_map = clock.tempo_map

    def _make_snapshot(self) -> TransportSnapshot:
        now = self._now
        return TransportSnapshot(
            sample=now,
            source=self.source,
            state=self.state,
            bpm=self.bpm,
            meter=self.meter,
            running=self.running,
            confidence=self.confidence,
            epoch=self.epoch,
            position=self.position(now),
            tempo_map=self.tempo_map,
            latency_ms=self.latency_ms,
            message=self.message,
            warnings=tuple(self.warnings),
            alternatives=() if self.estimate is None else self.estimate.alternatives,
        )
