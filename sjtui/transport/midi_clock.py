"""Following an incoming MIDI clock (24 PPQN, Start/Stop/Continue/Song Position Pointer).

The core, :class:`MidiClockFollower`, is pure: it is fed raw MIDI messages
with the sample index at which each arrived (the receive time mapped to the
audio sample clock by :class:`~sjtui.transport.timebase.SampleClock`) and
polled with the current sample index. :class:`RtMidiClockInput` is the thin
wrapper that receives from a real port (python-rtmidi, JACK API on this
machine) and queues ``(message, time_s)`` for the engine thread to drain.

Tempo is a least-squares line through the last ``window_ticks`` tick
arrival samples against their tick numbers (a first-order fit, not a mean
of intervals: a jittered tick moves the slope by ``O(1/N^1.5)`` instead of
``O(1/N)``). The follower keeps a continuous :class:`TempoMap`; every 6th
tick (a 16th note) it appends a segment whose tempo is the fitted tempo
corrected so the map reaches the fitted beat position one beat later (a
phase-locked loop with a one-beat time constant), so the map never jumps.

Defined results for bad clocks:

========================  ====================================================
Start, then no tick       state stays ``waiting`` (position held); after
                          ``lost_after_s`` the message says no ticks came
clock before any Start    ticks are counted from position 0 as if Start came
                          first (many devices send clock all the time);
                          state ``running``
Stop (mid-bar or not)     state ``stopped``; the position holds at the tick
                          after the last one received; Continue resumes
                          there; the tempo is held
Song Position Pointer     the next tick is at ``value * 6`` ticks; while
                          running it is a locate: the map restarts there and
                          ``epoch`` grows
no tick for ``lost_after_s``  state ``clock lost``, message says since when; the
  (and 3 tick intervals)  map freewheels at the held tempo; when ticks return
                          the count advances by the ticks that fit in the gap
tempo jump                three ticks in a row off the fitted line on the
                          same side by more than a quarter tick interval
                          (and 8 ms) drop the fit history but those 3
                          ticks: the new tempo is followed within a few
                          ticks, without a locate (a burst of late ticks,
                          which comes back, does not reset the fit)
absurd tempo              a fitted tempo outside 20..400 BPM sets state
                          ``out of range`` with the measured value; the map
                          freewheels at the last good tempo until the clock
                          is back in range
ticks out of order        a tick stamped earlier than the previous one is
                          counted (position) but left out of the fit
other messages            ignored (notes, active sensing, SysEx)
========================  ====================================================
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from sjtui.constants import MIDI_CLOCK_PPQN
from sjtui.meter import FOUR_FOUR, Meter, parse_meter
from sjtui.transport.timebase import MAX_BPM, MIN_BPM, SampleClock, TempoMap, TransportError

CLOCK = 0xF8
START = 0xFA
CONTINUE = 0xFB
STOP = 0xFC
SONG_POSITION = 0xF2
TICKS_PER_SPP_UNIT = 6  # a Song Position Pointer counts 16th notes

STOPPED = "stopped"
WAITING = "waiting"  # Start/Continue received, no tick yet
RUNNING = "running"
LOST = "clock lost"
OUT_OF_RANGE = "out of range"
NO_CLOCK = "no clock"

_MIN_FIT_TICKS = 6
_UPDATE_EVERY_TICKS = 6


@dataclass(frozen=True)
class ClockStatus:
    state: str
    bpm: float | None  # fitted tempo (None before 6 ticks ever arrived)
    held_bpm: float  # the tempo the map runs at
    position_ticks: int  # song position of the next tick
    epoch: int
    message: str


class MidiClockFollower:
    """Pure MIDI clock follower (see the module docstring for the defined results)."""

    def __init__(
        self,
        sample_rate_hz: float,
        meter: Meter | str = FOUR_FOUR,
        default_bpm: float = 120.0,
        window_ticks: int = 96,
        lost_after_s: float = 0.5,
    ):
        self.sample_rate_hz = float(sample_rate_hz)
        self.meter = parse_meter(meter)
        self.default_bpm = float(default_bpm)
        self.window_ticks = int(window_ticks)
        self.lost_after_s = float(lost_after_s)
        self._tick_pos = np.zeros(window_ticks, dtype=np.float64)
        self._tick_sample = np.zeros(window_ticks, dtype=np.float64)
        self.reset()

    def reset(self) -> None:
        self.state = NO_CLOCK
        self.message = "no MIDI clock received yet"
        self.epoch = 0
        self.next_tick = 0  # song position (ticks) of the next tick
        self.fitted_bpm: float | None = None
        self.held_bpm = self.default_bpm
        self.tempo_map: TempoMap | None = None
        self.last_tick_sample: float | None = None
        self._n = 0  # ticks in the fit buffer (ring)
        self._outliers = 0
        self._outlier_sign = 0.0
        self._relocate_pending = True
        self._waiting_since = 0.0
        self._fit_slope = 0.0  # samples per tick
        self._fit_intercept = 0.0

    # -- public ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.state in (RUNNING, LOST, OUT_OF_RANGE)

    @property
    def stopped_beat(self) -> float:
        """Position (beats) held while stopped or waiting: where the next tick will be."""
        return self.next_tick / MIDI_CLOCK_PPQN

    def status(self) -> ClockStatus:
        return ClockStatus(self.state, self.fitted_bpm, self.held_bpm, self.next_tick, self.epoch, self.message)

    def set_meter(self, meter: Meter | str) -> None:
        self.meter = parse_meter(meter)
        if self.tempo_map is not None:
            self.tempo_map = self.tempo_map.with_meter(self.tempo_map.segments[-1].start_sample, self.meter)

    def feed(self, message: Sequence[int] | bytes, sample: float) -> None:
        """Apply one MIDI message that arrived at sample index ``sample``."""
        if not message:
            return
        status = message[0]
        if status == CLOCK:
            self._on_tick(float(sample))
        elif status == START:
            self.next_tick = 0
            self._begin(WAITING, "MIDI clock: Start, waiting for the first tick", sample)
        elif status == CONTINUE:
            self._begin(
                WAITING, f"MIDI clock: Continue from beat {self.stopped_beat:g}, waiting for the first tick", sample
            )
        elif status == STOP:
            self.state = STOPPED
            self.message = f"MIDI clock: stopped at beat {self.stopped_beat:g}; holding {self.held_bpm:.1f} BPM"
        elif status == SONG_POSITION and len(message) >= 3:
            value = (message[1] & 0x7F) | ((message[2] & 0x7F) << 7)
            self.next_tick = value * TICKS_PER_SPP_UNIT
            self._relocate_pending = True
            self._n = 0
            self.message = f"MIDI clock: song position set to beat {self.stopped_beat:g}"

    def poll(self, now_sample: float) -> None:
        """Detect a clock that stopped arriving (call every block)."""
        if self.state == WAITING:
            waited_s = (float(now_sample) - self._waiting_since) / self.sample_rate_hz
            if waited_s > self.lost_after_s:
                self.message = (
                    f"MIDI clock: Start/Continue came {waited_s:.1f} s ago but no clock ticks; "
                    f"holding beat {self.stopped_beat:g} at {self.held_bpm:.1f} BPM (is the sender sending clock?)"
                )
            return
        if self.state not in (RUNNING, OUT_OF_RANGE) or self.last_tick_sample is None:
            return
        gap_s = (float(now_sample) - self.last_tick_sample) / self.sample_rate_hz
        tick_s = 60.0 / (self.held_bpm * MIDI_CLOCK_PPQN)
        if gap_s > max(self.lost_after_s, 3 * tick_s):
            self.state = LOST
            self.message = (
                f"MIDI clock lost: no tick for {gap_s:.2f} s; holding {self.held_bpm:.1f} BPM "
                "(check the sender, or switch to the internal clock)"
            )

    def position_beat(self, sample: float) -> float:
        """Beat at ``sample``: the map while running, the held position otherwise."""
        if self.tempo_map is None or not self.running:
            return self.stopped_beat
        return float(self.tempo_map.sample_to_beat(sample))

    # -- internals ------------------------------------------------------------

    def _begin(self, state: str, message: str, sample: float) -> None:
        self._waiting_since = float(sample)
        self.state = state
        self.message = message
        self._n = 0
        self._outliers = 0
        self._relocate_pending = True

    def _on_tick(self, sample: float) -> None:
        tick_s = 60.0 / (self.held_bpm * MIDI_CLOCK_PPQN)
        if self.state == LOST and self.last_tick_sample is not None:
            # ticks return after a gap: count the ticks that fit in it
            gap_ticks = (sample - self.last_tick_sample) / (tick_s * self.sample_rate_hz)
            self.next_tick += max(int(round(gap_ticks)) - 1, 0)
            self._n = 0
            self.state = RUNNING
            self.message = f"MIDI clock back; following from beat {self.stopped_beat:g}"
        elif self.state == STOPPED:
            # ticks while stopped: many senders keep the clock running; they do not move the song
            self.last_tick_sample = sample
            return
        elif self.state in (WAITING, NO_CLOCK):
            self.state = RUNNING
            self.message = f"MIDI clock running from beat {self.stopped_beat:g}"
        position = self.next_tick
        self.next_tick += 1
        in_order = self.last_tick_sample is None or sample >= self.last_tick_sample
        self.last_tick_sample = sample if in_order else self.last_tick_sample

        if self._relocate_pending or self.tempo_map is None:
            self._relocate_pending = False
            self.epoch += 1
            base = self.tempo_map if self.tempo_map is not None else TempoMap.constant(
                self.sample_rate_hz, self.held_bpm, self.meter, max_segments=2048
            )
            beat = position / MIDI_CLOCK_PPQN
            self.tempo_map = base.relocated(sample, beat, bar=beat / float(self.meter.beats_per_bar), bpm=self.held_bpm, meter=self.meter)
            self._n = 0
        if not in_order:
            return
        self._add_to_fit(position, sample)
        if self._n < _MIN_FIT_TICKS:
            return
        bpm = 60.0 * self.sample_rate_hz / (self._fit_slope * MIDI_CLOCK_PPQN) if self._fit_slope > 0 else np.inf
        self.fitted_bpm = float(bpm)
        if not MIN_BPM <= bpm <= MAX_BPM:
            self.state = OUT_OF_RANGE
            self.message = (
                f"MIDI clock at {bpm:.0f} BPM is outside {MIN_BPM:g}..{MAX_BPM:g} BPM; "
                f"holding {self.held_bpm:.1f} BPM"
            )
            return
        if self.state == OUT_OF_RANGE:
            self.state = RUNNING
            self.message = f"MIDI clock back in range at {bpm:.1f} BPM"
        if position % _UPDATE_EVERY_TICKS == 0 or self._n == _MIN_FIT_TICKS:
            self._update_map(position, sample, bpm)

    def _add_to_fit(self, position: int, sample: float) -> None:
        size = self._tick_pos.shape[0]
        if self._n >= _MIN_FIT_TICKS:
            predicted = self._fit_intercept + self._fit_slope * position
            tolerance = max(0.25 * self._fit_slope, 0.008 * self.sample_rate_hz)
            residual = sample - predicted
            if abs(residual) > tolerance:
                same_side = self._outliers == 0 or np.sign(residual) == self._outlier_sign
                self._outliers = self._outliers + 1 if same_side else 1
                self._outlier_sign = np.sign(residual)
                if self._outliers >= 3:  # a tempo jump: keep only the recent ticks
                    keep = 3
                    order = np.arange(self._n - keep, self._n) % size
                    pos, smp = self._tick_pos[order].copy(), self._tick_sample[order].copy()
                    self._tick_pos[:keep], self._tick_sample[:keep] = pos, smp
                    self._n = keep
                    self._outliers = 0
            else:
                self._outliers = 0
        slot = self._n % size
        self._tick_pos[slot] = position
        self._tick_sample[slot] = sample
        self._n += 1
        n = min(self._n, size)
        if n >= 2:
            x = self._tick_pos[:n] if self._n <= size else self._tick_pos
            y = self._tick_sample[:n] if self._n <= size else self._tick_sample
            x_mean = x.mean()
            y_mean = y.mean()
            dx = x - x_mean
            slope = float(dx @ (y - y_mean)) / float(dx @ dx)
            self._fit_slope = slope
            self._fit_intercept = float(y_mean - slope * x_mean)

    def _update_map(self, position: int, sample: float, bpm: float) -> None:
        """Append a segment at ``sample`` that steers the map onto the fitted line within one beat."""
        fitted_tick = (sample - self._fit_intercept) / self._fit_slope
        map_tick = float(self.tempo_map.sample_to_tick(sample))
        error_ticks = fitted_tick - map_tick
        if abs(error_ticks) > TICKS_PER_SPP_UNIT:  # more than a 16th off: locate instead of steering
            self.epoch += 1
            beat = fitted_tick / MIDI_CLOCK_PPQN
            self.tempo_map = self.tempo_map.relocated(
                sample, beat, bar=beat / float(self.meter.beats_per_bar), bpm=bpm, meter=self.meter
            )
        else:
            steer = 1.0 + error_ticks / MIDI_CLOCK_PPQN
            map_bpm = float(np.clip(bpm * steer, MIN_BPM, MAX_BPM))
            self.tempo_map = self.tempo_map.with_tempo(sample, map_bpm)
        self.held_bpm = bpm


class RtMidiClockInput:
    """Receives MIDI clock from a real port with python-rtmidi and queues it for the engine.

    The rtmidi callback thread only timestamps and queues (``queue.SimpleQueue``
    never blocks); the engine thread calls :meth:`drain` at block boundaries,
    which maps each receive time to a sample index with the given
    :class:`SampleClock` and feeds the :class:`MidiClockFollower`.

    Receive times: rtmidi reports the time since the previous message
    (from the backend's own clock); the first message is stamped with
    ``time_fn()`` and later ones accumulate the deltas, re-anchored to
    ``time_fn()`` when the two disagree by more than 50 ms (the backend
    reported nonsense or the callback stalled). ``time_fn`` defaults to
    ``time.monotonic``, the clock JACK and PortAudio stream times use on Linux.
    """

    def __init__(
        self,
        port: str | None = None,
        *,
        client_name: str = "sjtui-clock-in",
        api: str = "UNIX_JACK",
        time_fn: Callable[[], float] = time.monotonic,
        virtual: bool = False,
    ):
        import rtmidi

        api_id = getattr(rtmidi, f"API_{api}", None)
        if api_id is None:
            raise TransportError(f"MIDI API {api!r} is unknown; use UNIX_JACK or LINUX_ALSA")
        self._time_fn = time_fn
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._t: float | None = None
        self.midi_in = rtmidi.MidiIn(api_id, name=client_name)
        self.midi_in.ignore_types(sysex=True, timing=False, active_sense=True)
        if virtual:
            self.midi_in.open_virtual_port("clock_in")
            self.port_name = "clock_in"
        else:
            names = self.midi_in.get_ports()
            matches = [i for i, n in enumerate(names) if port is None or port.lower() in n.lower()]
            if not matches:
                self.midi_in.delete()
                raise TransportError(
                    f"no MIDI input port matches {port!r}; ports are: {', '.join(names) or 'none'}. "
                    "Give part of a port name, or start the clock sender first"
                )
            self.midi_in.open_port(matches[0])
            self.port_name = names[matches[0]]
        self.midi_in.set_callback(self._callback)

    def _callback(self, event, data=None) -> None:  # rtmidi thread: stamp and queue only
        message, delta_s = event
        now = self._time_fn()
        if self._t is None:
            self._t = now
        else:
            self._t += delta_s
            if abs(self._t - now) > 0.05:
                self._t = now
        self._queue.put((message, self._t))

    def drain(self, follower: MidiClockFollower, sample_clock: SampleClock) -> int:
        """Feed every queued message to ``follower``; returns how many were fed."""
        count = 0
        while True:
            try:
                message, time_s = self._queue.get_nowait()
            except queue.Empty:
                return count
            follower.feed(message, float(sample_clock.time_to_sample(time_s)))
            count += 1

    def close(self) -> None:
        self.midi_in.cancel_callback()
        self.midi_in.close_port()
        self.midi_in.delete()
