"""Following an incoming MIDI clock (24 PPQN, Start/Stop/Continue/Song Position Pointer).

The core, :class:`MidiClockFollower`, is pure: it is fed raw MIDI messages
with the sample index at which each arrived (the receive time mapped to the
audio sample clock by :class:`~sjtui.transport.timebase.SampleClock`) and
polled with the current sample index. :class:`RtMidiClockInput`
(python-rtmidi, JACK API on this machine) and :class:`JackMidiClockInput` (a
JACK-Client port, frame exact) are the thin wrappers that receive from a real
port; the engine thread drains them at block boundaries.

Tempo is a least-squares line through the last ``window_ticks`` tick
arrival samples against their tick numbers (a first-order fit, not a mean
of intervals: a jittered tick moves the slope by ``O(1/N^1.5)`` instead of
``O(1/N)``). The follower keeps a continuous :class:`TempoMap`; every 6th
tick (a 16th note) it appends a segment whose tempo is the fitted tempo
corrected so the map would reach the fitted beat position half a beat later
(a phase-locked loop; each update halves the phase error), so the map never
jumps. After a Start, Continue or locate the map runs at the held tempo
until 6 ticks have come; at the 6th it is put on the fitted line once (a
start-up correction of under a 16th, same ``epoch``).

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
                          (and 8 ms), by growing amounts, drop the fit
                          history but those 3 ticks: the new tempo is
                          followed within a few ticks, without a locate (a
                          burst of late ticks, which comes back, does not
                          reset the fit)
absurd tempo              a fitted tempo outside 20..400 BPM sets state
                          ``out of range`` with the measured value; the map
                          freewheels at the last good tempo until the clock
                          is back in range (within 10 % of the limits a fit
                          of under a beat of ticks is clipped to the limit
                          instead: jitter, not an absurd clock)
a gap in the ticks        the song position is the count of ticks received
  (sender stalled, or     (as the MIDI spec has it); three ticks in a row off
  ticks lost in transit)  the fitted line by the same amount are a shift of
                          the timeline: the older ticks move with it, the
                          fitted tempo stays, the map is steered onto the
                          new phase (``shifts`` counts them)
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
from sjtui.signals import blocked, kept
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
_STEER_TICKS = 12  # the map closes its phase error to the fitted line over half a beat


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
        self._held: list[tuple[int, float, float]] = []  # ticks off the line, not yet in the fit
        self.shifts = 0  # timeline shifts absorbed by the fit (see the module docstring)
        self._relocate_pending = True
        self._fresh_epoch = False
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
        return ClockStatus(
            self.state, self.fitted_bpm, self.held_bpm, self.next_tick, self.epoch, self.message
        )

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
                WAITING,
                f"MIDI clock: Continue from beat {self.stopped_beat:g}, waiting for the first tick",
                sample,
            )
        elif status == STOP:
            self.state = STOPPED
            self.message = (
                f"MIDI clock: stopped at beat {self.stopped_beat:g}; holding {self.held_bpm:.1f} BPM"
            )
        elif status == SONG_POSITION and len(message) >= 3:
            value = (message[1] & 0x7F) | ((message[2] & 0x7F) << 7)
            self.next_tick = value * TICKS_PER_SPP_UNIT
            self._relocate_pending = True
            self._n = 0
            self._held = []
            self.message = f"MIDI clock: song position set to beat {self.stopped_beat:g}"

    def poll(self, now_sample: float) -> None:
        """Detect a clock that stopped arriving (call every block)."""
        if self.state == WAITING:
            waited_s = (float(now_sample) - self._waiting_since) / self.sample_rate_hz
            if waited_s > self.lost_after_s:
                self.message = (
                    f"MIDI clock: Start/Continue came {waited_s:.1f} s ago but no clock ticks; "
                    f"holding beat {self.stopped_beat:g} at {self.held_bpm:.1f} BPM "
                    "(is the sender sending clock?)"
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
        self._held = []
        self._relocate_pending = True

    def _on_tick(self, sample: float) -> None:
        tick_s = 60.0 / (self.held_bpm * MIDI_CLOCK_PPQN)
        if self.state == LOST and self.last_tick_sample is not None:
            # ticks return after a gap: count the ticks that fit in it
            gap_ticks = (sample - self.last_tick_sample) / (tick_s * self.sample_rate_hz)
            self.next_tick += max(int(round(gap_ticks)) - 1, 0)
            self._n = 0
            self._held = []
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
        previous_sample = self.last_tick_sample
        in_order = previous_sample is None or sample >= previous_sample
        self.last_tick_sample = sample if in_order else previous_sample

        if self._relocate_pending or self.tempo_map is None:
            self._relocate_pending = False
            self.epoch += 1
            base = self.tempo_map if self.tempo_map is not None else TempoMap.constant(
                self.sample_rate_hz, self.held_bpm, self.meter, max_segments=2048
            )
            beat = position / MIDI_CLOCK_PPQN
            self.tempo_map = base.relocated(
                sample, beat, bar=beat / float(self.meter.beats_per_bar), bpm=self.held_bpm, meter=self.meter
            )
            self._n = 0
            self._held = []
            self._fresh_epoch = True
        if not in_order:
            return
        if not self._add_to_fit(position, sample) or self._n < _MIN_FIT_TICKS:
            return
        slope = self._fit_slope
        bpm = 60.0 * self.sample_rate_hz / (slope * MIDI_CLOCK_PPQN) if slope > 0 else np.inf
        self.fitted_bpm = float(bpm)
        if not MIN_BPM <= bpm <= MAX_BPM:
            young = self._n < MIDI_CLOCK_PPQN and MIN_BPM / 1.1 <= bpm <= MAX_BPM * 1.1
            if young:  # a fit of a few jittered ticks near the limit: follow at the limit for now
                bpm = float(np.clip(bpm, MIN_BPM, MAX_BPM))
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
        if self._n == _MIN_FIT_TICKS and self._fresh_epoch:
            # the first fit since the start/locate: the map ran at the held tempo for these few
            # ticks; put it on the fitted line now (same epoch, a start-up correction)
            self._fresh_epoch = False
            fitted_beat = (sample - self._fit_intercept) / self._fit_slope / MIDI_CLOCK_PPQN
            self.tempo_map = self.tempo_map.relocated(
                sample,
                fitted_beat,
                bar=fitted_beat / float(self.meter.beats_per_bar),
                bpm=bpm,
                meter=self.meter,
            )
            self.held_bpm = bpm
        elif position % _UPDATE_EVERY_TICKS == 0 or self._n == _MIN_FIT_TICKS:
            self._update_map(position, sample, bpm)

    def _add_to_fit(self, position: int, sample: float) -> bool:
        """Add a tick to the line fit, holding back ticks that leave the line (see the docstring).

        Returns False while the tick is held back (the map is then not steered by it)."""
        if self._n >= _MIN_FIT_TICKS:
            predicted = self._fit_intercept + self._fit_slope * position
            tolerance = max(0.25 * self._fit_slope, 0.008 * self.sample_rate_hz)
            residual = sample - predicted
            if abs(residual) > tolerance:
                if self._held and np.sign(residual) != np.sign(self._held[-1][2]):
                    self._held = []
                self._held.append((position, sample, residual))
                if len(self._held) < 3:
                    return False  # held out of the fit until it is clear what happened
                residuals = np.array([r for _, _, r in self._held])
                if np.ptp(residuals) < 0.5 * tolerance:
                    # the timeline moved, the tempo did not (the sender stalled): move the
                    # older ticks by the shift and keep the whole history in the fit
                    n_buffer = min(self._n, self._tick_sample.shape[0])
                    self._tick_sample[:n_buffer] += float(residuals.mean())
                    self.shifts += 1
                else:  # a tempo jump: start the fit again from these ticks
                    self._n = 0
                held, self._held = self._held, []
                for held_position, held_sample, _ in held:
                    self._append(held_position, held_sample)
                self._refit()
                return True
            self._held = []  # a burst of late ticks that came back: they stay out of the fit
        self._append(position, sample)
        self._refit()
        return True

    def _append(self, position: int, sample: float) -> None:
        slot = self._n % self._tick_pos.shape[0]
        self._tick_pos[slot] = position
        self._tick_sample[slot] = sample
        self._n += 1

    def _refit(self) -> None:
        size = self._tick_pos.shape[0]
        n = min(self._n, size)
        if n >= 2:
            x = self._tick_pos[:n]
            y = self._tick_sample[:n]
            x_mean = x.mean()
            y_mean = y.mean()
            dx = x - x_mean
            slope = float(dx @ (y - y_mean)) / float(dx @ dx)
            self._fit_slope = slope
            self._fit_intercept = float(y_mean - slope * x_mean)

    def _update_map(self, position: int, sample: float, bpm: float) -> None:
        """Append a segment at ``sample`` that steers the map onto the fitted line within half a beat."""
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
            steer = 1.0 + error_ticks / _STEER_TICKS
            map_bpm = float(np.clip(bpm * steer, MIN_BPM, MAX_BPM))
            # the steer lasts the _STEER_TICKS that close the error, then the map runs at the fitted
            # tempo: a clock that stops or is lost leaves the map freewheeling on the fitted line,
            # not at a steered tempo that drifts off it (the next update replaces the tail)
            steer_end = sample + _STEER_TICKS * self._fit_slope
            self.tempo_map = self.tempo_map.with_tempo(sample, map_bpm).with_tempo(steer_end, bpm)
        self.held_bpm = bpm


class RtMidiClockInput:
    """Receives MIDI clock from a real port with python-rtmidi; the engine thread polls it.

    No Python runs in the MIDI backend's thread: rtmidi queues each message
    with its delta time in C++, and :meth:`drain` (engine thread, at block
    boundaries) takes them, maps each receive time to a sample index with the
    given :class:`SampleClock` and feeds the :class:`MidiClockFollower`. (A
    Python callback would run in JACK's real-time thread and wait there for
    the GIL; the receiving client then misses cycles and ticks are lost.)

    Receive times: the deltas accumulate into the backend's own timeline
    ``t_acc`` (exact relative times). Its offset to ``time_fn()`` is the
    smallest ``poll time - t_acc`` of the newest message seen so far: a
    message is never polled before it arrived, so every candidate is at or
    above the true offset and the minimum converges on it from above. The
    offset may creep up by ``drift_ppm`` (clock drift) and is re-learnt when
    a candidate is more than ``reanchor_s`` above it (a stalled backend).
    ``time_fn`` defaults to ``time.monotonic``, the clock JACK and PortAudio
    stream times use on Linux.

    rtmidi's JACK backend stamps every event of a cycle with the time its
    process callback ran, so stamps are early by the event's offset in the
    cycle (up to one period, 5.3 ms at 256 frames / 48 kHz); measured about
    2 ms on average in ``tests/test_midi_clock_jack.py``.
    """

    def __init__(
        self,
        port: str | None = None,
        *,
        client_name: str = "sjtui-clock-in",
        api: str = "UNIX_JACK",
        time_fn: Callable[[], float] = time.monotonic,
        virtual: bool = False,
        drift_ppm: float = 20.0,
        reanchor_s: float = 0.5,
    ):
        import rtmidi

        api_id = getattr(rtmidi, f"API_{api}", None)
        if api_id is None:
            raise TransportError(f"MIDI API {api!r} is unknown; use UNIX_JACK or LINUX_ALSA")
        self._time_fn = time_fn
        self._drift = float(drift_ppm) * 1e-6
        self._reanchor_s = float(reanchor_s)
        self._t_acc: float | None = None
        self._offset: float | None = None
        self._last_poll: float | None = None
        with blocked():  # rtmidi's JACK client starts its threads here (sjtui/signals.py)
            self.midi_in = rtmidi.MidiIn(api_id, name=client_name, queue_size_limit=4096)
        self.midi_in.ignore_types(sysex=True, timing=False, active_sense=True)
        if virtual:
            with blocked():
                self.midi_in.open_virtual_port("clock_in")
            self.port_name = "clock_in"
        else:
            names = self.midi_in.get_ports()
            matches = [i for i, n in enumerate(names) if port is None or port.lower() in n.lower()]
            if not matches:
                with kept():
                    self.midi_in.delete()
                raise TransportError(
                    f"no MIDI input port matches {port!r}; ports are: {', '.join(names) or 'none'}. "
                    "Give part of a port name, or start the clock sender first"
                )
            with blocked():
                self.midi_in.open_port(matches[0])
            self.port_name = names[matches[0]]

    def drain(self, follower: MidiClockFollower, sample_clock: SampleClock) -> int:
        """Feed every message received since the last call to ``follower``; returns how many."""
        now = self._time_fn()
        batch = []
        while True:
            event = self.midi_in.get_message()
            if event is None:
                break
            message, delta_s = event
            self._t_acc = 0.0 if self._t_acc is None else self._t_acc + float(delta_s)
            batch.append((message, self._t_acc))
        if self._offset is not None and self._last_poll is not None:
            self._offset += self._drift * max(now - self._last_poll, 0.0)
        self._last_poll = now
        if not batch:
            return 0
        candidate = now - batch[-1][1]
        if self._offset is None or candidate < self._offset or candidate - self._offset > self._reanchor_s:
            self._offset = candidate
        for message, t_acc in batch:
            follower.feed(message, float(sample_clock.time_to_sample(t_acc + self._offset)))
        return len(batch)

    def close(self) -> None:
        with kept():  # libjack may set another signal mask on closing (sjtui/signals.py)
            self.midi_in.close_port()
            self.midi_in.delete()


class JackMidiClockInput:
    """Receives MIDI clock on a JACK-Client MIDI input port, stamped to the exact JACK frame.

    The JACK process callback only copies ``(bytes, frame)`` into a
    ``queue.SimpleQueue`` (frame = ``last_frame_time + offset``, exact);
    :meth:`drain` converts each frame to a time
    (through a ``frame_time``/``time_fn()`` pair read when draining) and then to
    the audio sample index with the :class:`SampleClock`. Unlike rtmidi's JACK backend, which stamps every
    event of a cycle with the time its callback ran (up to a period early),
    this keeps the sender's sample-exact timing.
    """

    def __init__(
        self,
        client_name: str = "sjtui-clock-in",
        port_name: str = "clock_in",
        connect_from: str | None = None,
        time_fn: Callable[[], float] = time.monotonic,
    ):
        from sjtui.midi.ports import jack_client

        self._time_fn = time_fn
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.client = jack_client(client_name)
        self.port = self.client.midi_inports.register(port_name)
        port, q, client = self.port, self._queue, self.client

        @self.client.set_process_callback
        def _process(frames):  # JACK thread: copy and queue only
            base = client.last_frame_time
            for offset, data in port.incoming_midi_events():
                q.put((bytes(data), base + offset))

        with blocked():  # libjack starts the process thread here
            self.client.activate()
        self.port_name = self.port.name
        if connect_from is not None:
            sources = [p.name for p in self.client.get_ports(connect_from, is_midi=True, is_output=True)]
            if not sources:
                self.close()
                raise TransportError(
                    f"no JACK MIDI output port matches {connect_from!r}; start the clock sender first"
                )
            self.client.connect(sources[0], self.port)

    def drain(
        self, follower: MidiClockFollower, sample_clock: SampleClock | None = None, frame_offset: float = 0.0
    ) -> int:
        """Feed every queued message to ``follower``; returns how many were fed.

        Without ``sample_clock`` the sample index is ``frame + frame_offset``:
        on JACK the audio stream counts the same frames, so this is exact
        (``frame_offset`` = the stream's sample index minus the JACK frame at
        one moment). With a ``sample_clock`` the frame becomes a time first,
        through a ``frame_time``/``time_fn()`` pair read here.
        """
        count = 0
        now_frame = self.client.frame_time
        now_s = self._time_fn()
        rate = float(self.client.samplerate)
        while True:
            try:
                message, frame = self._queue.get_nowait()
            except queue.Empty:
                return count
            # frames wrap at 2**32: the signed distance to the current frame estimate (events of
            # the cycle being processed lie up to a period ahead of it)
            ahead = (frame - now_frame) % (1 << 32)
            if ahead >= 1 << 31:
                ahead -= 1 << 32
            if sample_clock is None:
                sample = now_frame + ahead + frame_offset
            else:
                sample = float(sample_clock.time_to_sample(now_s + ahead / rate))
            follower.feed(message, float(sample))
            count += 1

    def close(self) -> None:
        from sjtui.midi.ports import close_jack_client

        self.client.deactivate()
        close_jack_client(self.client)
