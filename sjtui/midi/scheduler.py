"""The MIDI scheduler thread: lookahead, absolute deadlines, clock out, no stuck notes (CONVENTIONS §7).

The engine feeds timed events (:mod:`sjtui.midi.events`, absolute samples)
with :meth:`MidiScheduler.submit`; it never blocks (a ``SimpleQueue`` of
commands that the scheduler thread drains). The thread wakes at absolute
deadlines ``start + n * interval`` and, for timed backends (rtmidi), also at
each event's own sample; it never chains relative sleeps, so nothing drifts.

- *timed* backends: due events are sent when their sample is reached; the
  send error (clock just before the send minus the intended sample) is
  recorded in :attr:`note_errors_ms` / :attr:`tick_times`.
- *buffered* backends (JACK, synth): events up to ``lookahead`` ahead are
  handed to the backend, which places them at their exact frame.

The clock is injectable: ``clock()`` returns the current position in samples
(default: the backend's own frame clock for buffered backends, else
``time.monotonic`` times the sample rate from the moment of construction);
``sleep(seconds)`` defaults to an interruptible wait. The engine passes a
clock on its audio sample clock (``SampleClock.time_to_sample(monotonic())``)
so events share the audio input's timeline.

MIDI clock out (master, 24 PPQN): :meth:`clock_start` (Start, or Song
Position Pointer + Continue from a position), :meth:`clock_stop`,
:meth:`set_tempo_map` (future ticks follow the new map). Ticks are computed
from the tempo map as absolute samples, never accumulated intervals.

No stuck notes: every note the scheduler has sent (or handed over) is
tracked; :meth:`panic`, :meth:`stop`, :meth:`close`, leaving the context
manager, an exception in the thread, interpreter exit (atexit) and, with
:func:`install_signal_handlers`, SIGTERM/SIGHUP (SIGINT is already a
KeyboardInterrupt) end with note-offs for every sounding note and All Notes
Off on every channel used. A state file (:mod:`sjtui.midi.state`) covers
SIGKILL: the next start, or the parent with ``cleanup_after(pid)``, silences
the ports it names.
"""

from __future__ import annotations

import atexit
import collections
import math
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable

import numpy as np

from sjtui.constants import MIDI_CLOCK_PPQN
from sjtui.midi import state as state_module
from sjtui.midi.backends import MidiBackend
from sjtui.midi.events import (
    CLOCK,
    CONTINUE,
    EVENT_DTYPE,
    GM_DRUM_CHANNEL,
    NOTE_OFF,
    NOTE_ON,
    START,
    STOP,
    TICKS_PER_SPP_UNIT,
    MidiError,
    event_priority,
    panic_messages,
)
from sjtui.midi.kits import GM_KIT
from sjtui.signals import start_thread
from sjtui.transport.timebase import TempoMap

DEFAULT_INTERVAL_MS = 5.0
DEFAULT_LOOKAHEAD_MS = {True: 20.0, False: 40.0}  # timed / buffered backends
POLL_EVERY_S = 0.25
DEFAULT_SWITCH_INTERVAL_S = 0.001  # GIL hand-over: 1 ms instead of 5 (process-wide; None leaves it)
DEFAULT_REALTIME_PRIORITY = (
    3  # SCHED_FIFO below JACK client threads (jackd -P 10: clients 5); tried, skipped where not allowed
)
STATE_EVERY_S = 1.0
_TICK = bytes([CLOCK])
_STATS_SIZE = 1 << 16


class LinearClock:
    """Samples since construction on ``time_fn`` (monotonic seconds) at the nominal rate."""

    def __init__(
        self, sample_rate_hz: float, time_fn: Callable[[], float] = time.monotonic, start_sample: float = 0.0
    ):
        self.sample_rate_hz = float(sample_rate_hz)
        self.time_fn = time_fn
        self.t0 = time_fn()
        self.start_sample = float(start_sample)

    def __call__(self) -> float:
        return self.start_sample + (self.time_fn() - self.t0) * self.sample_rate_hz


class _Ring:
    """Fixed-size float64 ring for statistics (written by one thread)."""

    def __init__(self, size: int = _STATS_SIZE):
        self.data = np.zeros(size, dtype=np.float64)
        self.count = 0

    def add(self, value: float) -> None:
        self.data[self.count % self.data.shape[0]] = value
        self.count += 1

    def values(self) -> np.ndarray:
        n = min(self.count, self.data.shape[0])
        if self.count <= self.data.shape[0]:
            return self.data[:n].copy()
        split = self.count % self.data.shape[0]
        return np.concatenate((self.data[split:], self.data[:split]))

    def clear(self) -> None:
        self.count = 0


class MidiScheduler:
    """Sends timed MIDI events and clock through one backend from its own thread.

    ``sample_rate_hz``: of the sample timeline (default: the backend's);
    ``lookahead_ms``: how far ahead events are taken (buffered backends hand
    them over that early); ``interval_ms``: the periodic wake-up;
    ``channels``: channels to silence with All Notes Off even when nothing
    sounds there; ``state``: keep a state file for clean-up after SIGKILL
    (True, False or a :class:`~sjtui.midi.state.StateFile`); ``on_port_lost``:
    ``"continue"`` (report, keep time) or ``"stop"`` (report, stop playing).
    """

    def __init__(
        self,
        backend: MidiBackend,
        *,
        sample_rate_hz: float | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        lookahead_ms: float | None = None,
        interval_ms: float = DEFAULT_INTERVAL_MS,
        channels=(GM_DRUM_CHANNEL,),
        state: bool | state_module.StateFile = True,
        state_notes=tuple(GM_KIT.notes.tolist()),
        all_sound_off: bool = False,
        on_port_lost: str = "continue",
        cleanup_at_start: bool = True,
        realtime_priority: int | None = DEFAULT_REALTIME_PRIORITY,
        switch_interval_s: float | None = DEFAULT_SWITCH_INTERVAL_S,
    ):
        self.backend = backend
        rate = sample_rate_hz or backend.sample_rate_hz
        if not rate or rate <= 0:
            raise MidiError(
                "the MIDI scheduler needs the sample rate of its timeline, e.g. sample_rate_hz=48000"
            )
        self.sample_rate_hz = float(rate)
        if clock is None:
            clock = (
                backend.now_sample if backend.now_sample() is not None else LinearClock(self.sample_rate_hz)
            )
        self.clock = clock
        self._sleep = sleep
        self.timed = bool(backend.timed)
        self.lookahead_samples = (
            float(DEFAULT_LOOKAHEAD_MS[self.timed] if lookahead_ms is None else lookahead_ms)
            * 1e-3
            * self.sample_rate_hz
        )
        self.interval_samples = float(interval_ms) * 1e-3 * self.sample_rate_hz
        if self.interval_samples <= 0:
            raise MidiError(f"scheduler interval {interval_ms!r} ms must be positive")
        if on_port_lost not in ("continue", "stop"):
            raise MidiError(f"on_port_lost {on_port_lost!r}: use 'continue' or 'stop'")
        self.on_port_lost = on_port_lost
        self.channels = {int(c) for c in channels}
        self.all_sound_off = bool(all_sound_off)
        self.cleanup_at_start = cleanup_at_start
        self.realtime_priority = realtime_priority
        self.switch_interval_s = switch_interval_s
        self.realtime = False
        if state is True:
            state = state_module.StateFile()
        self.state_file: state_module.StateFile | None = state or None
        self._state_notes = set(int(n) for n in state_notes)

        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop_flag = False
        self._thread: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        self._watch_stop = threading.Event()
        self._closed = False

        # pending notes: sorted list of (sample, priority, bytes); _cursor = next unsent
        self._pending: list[tuple[int, int, bytes]] = []
        self._cursor = 0
        # clock stream: deque of (sample, priority, bytes), generated up to the horizon
        self._clock_q: collections.deque = collections.deque()
        self._tempo_map: TempoMap | None = None
        self._clock_running = False
        self._next_tick = 0
        self._clock_stop_at: float | None = None

        self.sounding = np.zeros((16, 128), dtype=np.int16)  # note-ons sent minus note-offs, >= 0
        self.error: BaseException | None = None
        self.warnings: collections.deque = collections.deque(maxlen=64)
        self.note_errors_ms = _Ring()
        self.tick_times = _Ring()  # samples at which ticks were sent (timed) or due (buffered)
        self.sent_events = 0
        self.late_events = 0
        self.min_lead_samples = math.inf  # buffered: the least time ahead an event was handed over
        self.cleanup_reports: list[dict] = []
        self.running = False

    # -- producer side (any thread, never blocks) ----------------------------------

    def submit(self, events: np.ndarray) -> None:
        """Queue timed events (an array of :data:`EVENT_DTYPE`, any order)."""
        events = np.asarray(events)
        if events.dtype != EVENT_DTYPE:
            raise MidiError(f"events must have EVENT_DTYPE, got {events.dtype}")
        if events.size:
            self._commands.put(("submit", events.copy()))
            self._wake.set()

    def cancel_from(self, sample: int) -> None:
        """Drop events at or after ``sample``; notes sounding there keep their first note-off."""
        self._commands.put(("cancel", int(sample)))
        self._wake.set()

    def set_tempo_map(self, tempo_map: TempoMap) -> None:
        """Clock ticks not yet sent follow ``tempo_map`` (notes already queued are not moved)."""
        self._commands.put(("tempo", tempo_map))
        self._wake.set()

    def clock_start(self, tempo_map: TempoMap, tick: int = 0) -> None:
        """Clock out from ``tick``: Start at tick 0, else SPP + Continue at the next 16th at/after ``tick``."""
        self._commands.put(("clock_start", tempo_map, int(tick)))
        self._wake.set()

    def clock_stop(self, at_sample: float | None = None) -> None:
        """Stop at ``at_sample`` (default: now); no tick at or after it."""
        self._commands.put(("clock_stop", at_sample))
        self._wake.set()

    @property
    def clock_tick(self) -> int:
        """The next tick the clock would send (the position to continue from)."""
        return self._next_tick

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> MidiScheduler:
        if self._thread is not None:
            return self
        if self.cleanup_at_start:
            try:
                self.cleanup_reports = state_module.cleanup_stale()
            except Exception as error:  # never keep the jam from starting
                self.warnings.append(f"clean-up after an earlier run failed: {error}")
        self._write_state(force=True)
        if self.switch_interval_s is not None and sys.getswitchinterval() > self.switch_interval_s:
            sys.setswitchinterval(self.switch_interval_s)
        self._stop_flag = False
        self.running = True
        self._thread = start_thread(self._run, "sjtui-midi-scheduler")
        self._watch_stop.clear()
        self._watcher = start_thread(self._watch, "sjtui-midi-watch")
        atexit.register(self.close)
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the thread, send Stop if the clock runs, silence every sounding note."""
        thread, self._thread = self._thread, None
        self._stop_flag = True
        self._wake.set()
        self._watch_stop.set()
        watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(timeout_s)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        self.running = False
        with self._lock:
            if self._clock_running:
                self._clock_running = False
                self._clock_q.clear()
                self._emit_now([[STOP]])
            self._pending = []
            self._cursor = 0
        self.panic()

    def close(self) -> None:
        """Stop, silence, close the backend and remove the state file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.stop()
        finally:
            try:
                self.backend.close()
            finally:
                if self.state_file is not None:
                    self.state_file.remove()
                try:
                    atexit.unregister(self.close)
                except Exception:  # pragma: no cover
                    pass

    def __enter__(self) -> MidiScheduler:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def panic(self) -> None:
        """Note-offs for every sounding note and All Notes Off on every channel used (any thread)."""
        with self._lock:
            if self.timed:
                messages = panic_messages(self.sounding, self.channels, self.all_sound_off)
            else:  # the backend knows what it put out: it adds the note-offs itself
                messages = panic_messages(np.zeros_like(self.sounding), self.channels, self.all_sound_off)
            try:
                self._emit_now(messages, silence=not self.timed)
            finally:
                self.sounding[:] = 0

    def _emit_now(self, messages, silence: bool = False) -> None:
        if self._closed and getattr(self.backend, "client", True) is None:
            return
        try:
            self.backend.send_now(messages, silence=silence)
        except Exception as error:
            self.warnings.append(f"could not send note-offs: {error}")

    # -- statistics ---------------------------------------------------------------------------

    def stats(self) -> dict:
        """Counts and send-time errors (timed backends) in ms."""
        errors = self.note_errors_ms.values()
        ticks = self.tick_times.values()
        out = {
            "sent_events": self.sent_events,
            "late_events": self.late_events + int(getattr(self.backend, "late_events", 0)),
            "n_note_errors": int(errors.size),
            "realtime": self.realtime,
        }
        if errors.size:
            out.update(
                note_error_ms_p50=float(np.percentile(errors, 50)),
                note_error_ms_p99=float(np.percentile(errors, 99)),
                note_error_ms_max=float(errors.max()),
            )
        if ticks.size > 2:
            out["clock_jitter_ms"] = float(np.std(np.diff(ticks)) / self.sample_rate_hz * 1e3)
        return out

    # -- the thread ----------------------------------------------------------------------------

    def _sleep_until(self, sample: float) -> None:
        seconds = (sample - self.clock()) / self.sample_rate_hz
        if seconds <= 0:
            return
        if self._sleep is not None:
            self._sleep(seconds)
        else:
            self._wake.wait(seconds)
            self._wake.clear()

    def _go_realtime(self) -> None:
        """SCHED_FIFO for this thread (Linux applies it to the calling thread) where permitted."""
        if self.realtime_priority is None or not hasattr(os, "sched_setscheduler"):
            return
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(self.realtime_priority)))
            self.realtime = True
        except (OSError, AttributeError):
            self.warnings.append(
                "MIDI timing: no real-time priority for the scheduler thread (not permitted)"
            )

    def _run(self) -> None:
        try:
            self._go_realtime()
            t0 = self.clock()
            n = 0
            while not self._stop_flag:
                with self._lock:
                    self._drain_commands()
                    now = self.clock()
                    horizon = now + self.lookahead_samples
                    self._extend_clock(horizon)
                    if self.timed:
                        next_event = self._send_due()
                    else:
                        self._hand_over(horizon)
                        next_event = math.inf
                now = self.clock()
                n = max(n + 1, int((now - t0) // self.interval_samples) + 1)
                wake = min(t0 + n * self.interval_samples, next_event)
                self._sleep_until(wake)
        except BaseException as error:  # noqa: BLE001 - record, silence, end the thread
            self.error = error
            self.warnings.append(f"MIDI scheduler stopped: {error!r}")
        finally:
            self.running = False
            if self.error is not None:
                try:
                    self.panic()
                except Exception:
                    pass

    def _watch(self) -> None:
        """Slow checks off the scheduler thread: destination lost, state file refresh."""
        last_state = time.monotonic()
        while not self._stop_flag and not self._watch_stop.wait(POLL_EVERY_S):
            try:
                self._poll_backend()
                if time.monotonic() - last_state >= STATE_EVERY_S:
                    last_state = time.monotonic()
                    self._write_state()
            except Exception as error:  # never let a check kill playback
                self.warnings.append(f"MIDI output check failed: {error!r}")

    def _poll_backend(self) -> None:
        problem = self.backend.poll()
        if problem:
            self.warnings.append(problem)
            if self.on_port_lost == "stop":
                with self._lock:
                    self._pending = []
                    self._cursor = 0
                    self._clock_running = False
                    self._clock_q.clear()
                self.panic()
                self._stop_flag = True

    def _write_state(self, force: bool = False) -> None:
        if self.state_file is None:
            return
        try:
            self.state_file.write(
                self.backend.describe(), self.backend.destinations(), self.channels, self._state_notes
            )
        except OSError as error:
            if force:
                self.warnings.append(f"cannot write the MIDI state file {self.state_file.path}: {error}")

    def _drain_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            kind = command[0]
            if kind == "submit":
                self._merge(command[1])
            elif kind == "cancel":
                self._cancel(command[1])
            elif kind == "tempo":
                self._set_map(command[1])
            elif kind == "clock_start":
                self._start_clock(command[1], command[2])
            elif kind == "clock_stop":
                at = command[1]
                self._stop_clock(self.clock() if at is None else float(at))

    def _merge(self, events: np.ndarray) -> None:
        priority = event_priority(events).tolist()
        samples = events["sample"].tolist()
        status = events["status"].tolist()
        d1 = events["data1"].tolist()
        d2 = events["data2"].tolist()
        size = events["size"].tolist()
        new = [
            (samples[i], priority[i], bytes((status[i], d1[i], d2[i])[: size[i]]))
            for i in range(len(samples))
        ]
        for i in range(len(samples)):
            if status[i] & 0xF0 in (NOTE_ON, NOTE_OFF):
                self.channels.add(status[i] & 0x0F)
                if d1[i] not in self._state_notes:
                    self._state_notes.add(d1[i])
        rest = self._pending[self._cursor :]
        rest.extend(new)
        rest.sort(key=lambda e: (e[0], e[1]))
        self._pending = rest
        self._cursor = 0

    def _cancel(self, sample: int) -> None:
        kept = [e for e in self._pending[self._cursor :] if e[0] < sample]
        later = [e for e in self._pending[self._cursor :] if e[0] >= sample]
        on = self.sounding.copy()
        for _, _, data in kept:
            kind = data[0] & 0xF0
            if kind == NOTE_ON and data[2] > 0:
                on[data[0] & 0x0F, data[1]] += 1
            elif kind in (NOTE_ON, NOTE_OFF) and on[data[0] & 0x0F, data[1]] > 0:
                on[data[0] & 0x0F, data[1]] -= 1
        for event in later:  # as many note-offs as notes still sounding at `sample`
            data = event[2]
            kind = data[0] & 0xF0
            if (
                kind in (NOTE_OFF, NOTE_ON)
                and (kind == NOTE_OFF or data[2] == 0)
                and on[data[0] & 0x0F, data[1]] > 0
            ):
                kept.append(event)
                on[data[0] & 0x0F, data[1]] -= 1
        self._pending = kept
        self._cursor = 0

    def _set_map(self, tempo_map: TempoMap) -> None:
        self._tempo_map = tempo_map
        unsent = [e for e in self._clock_q if e[2] == _TICK]
        self._next_tick -= len(unsent)
        self._clock_q = collections.deque(e for e in self._clock_q if e[2] != _TICK)

    def _start_clock(self, tempo_map: TempoMap, tick: int) -> None:
        self._tempo_map = tempo_map
        self._clock_q = collections.deque(e for e in self._clock_q if e[2] != _TICK)
        if tick <= 0:
            tick = 0
            at = int(round(float(tempo_map.tick_to_sample(0))))
            self._clock_q.append((at, 1, bytes([START])))
        else:
            tick = -(-tick // TICKS_PER_SPP_UNIT) * TICKS_PER_SPP_UNIT
            at = int(round(float(tempo_map.tick_to_sample(tick))))
            spp = tick // TICKS_PER_SPP_UNIT
            self._clock_q.append((at, 0, bytes([0xF2, spp & 0x7F, (spp >> 7) & 0x7F])))
            self._clock_q.append((at, 1, bytes([CONTINUE])))
        self._next_tick = tick
        self._clock_running = True
        self._clock_stop_at = None

    def _stop_clock(self, at: float) -> None:
        if not self._clock_running:
            return
        kept = collections.deque(e for e in self._clock_q if e[2] != _TICK or e[0] < at)
        self._next_tick -= len(self._clock_q) - len(kept)
        self._clock_q = kept
        self._clock_stop_at = at
        if self._tempo_map is None or self._tempo_map.tick_to_sample(self._next_tick) >= at:
            self._finish_clock()

    def _finish_clock(self) -> None:
        self._clock_q.append((int(math.ceil(self._clock_stop_at)), 3, bytes([STOP])))
        self._clock_running = False
        self._clock_stop_at = None

    def _extend_clock(self, horizon: float) -> None:
        if not self._clock_running or self._tempo_map is None:
            return
        tick_sample = self._tempo_map.tick_to_sample
        stop_at = self._clock_stop_at
        while True:
            sample = int(round(float(tick_sample(self._next_tick))))
            if stop_at is not None and sample >= stop_at:
                self._finish_clock()
                return
            if sample >= horizon:
                return
            self._clock_q.append((sample, 2, _TICK))
            self._next_tick += 1

    def _next(self):
        """The earlier of the next pending note and the next clock event (or None)."""
        note = self._pending[self._cursor] if self._cursor < len(self._pending) else None
        clk = self._clock_q[0] if self._clock_q else None
        if clk is not None and (note is None or (clk[0], clk[1]) <= (note[0], note[1])):
            return clk, True
        return note, False

    def _track(self, data: bytes) -> None:
        kind = data[0] & 0xF0
        if kind == NOTE_ON or kind == NOTE_OFF:
            channel, note = data[0] & 0x0F, data[1]
            if kind == NOTE_ON and data[2] > 0:
                self.sounding[channel, note] += 1
            elif self.sounding[channel, note] > 0:
                self.sounding[channel, note] -= 1

    def _consume(self, from_clock: bool) -> None:
        if from_clock:
            self._clock_q.popleft()
        else:
            self._cursor += 1
            if self._cursor > 4096:
                del self._pending[: self._cursor]
                self._cursor = 0

    def _send_due(self) -> float:
        """Timed backends: send every event whose sample has come; returns the next event's sample."""
        send = self.backend.send
        while True:
            event, from_clock = self._next()
            if event is None:
                return math.inf
            sample, _, data = event
            now = self.clock()
            if sample > now:
                return float(sample)
            send(data)
            self._consume(from_clock)
            self.sent_events += 1
            if data == _TICK:
                self.tick_times.add(now)
            elif data[0] & 0xF0 == NOTE_ON:
                self.note_errors_ms.add((now - sample) * 1e3 / self.sample_rate_hz)
            self._track(data)

    def _hand_over(self, horizon: float) -> None:
        """Buffered backends: hand every event before ``horizon`` to the backend."""
        schedule = self.backend.schedule
        now = self.clock()
        while True:
            event, from_clock = self._next()
            if event is None or event[0] >= horizon:
                return
            sample, _, data = event
            if sample < now:
                self.late_events += 1
            self.min_lead_samples = min(self.min_lead_samples, sample - now)
            schedule(sample, data)
            self._consume(from_clock)
            self.sent_events += 1
            if data == _TICK:
                self.tick_times.add(sample)
            self._track(data)


def install_signal_handlers(signals=(signal.SIGTERM, signal.SIGHUP)) -> None:
    """Turn SIGTERM/SIGHUP into ``SystemExit`` in the main thread so ``with`` blocks and atexit clean up.

    SIGINT already raises KeyboardInterrupt. Call from the main thread.
    """

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    for sig in signals:
        signal.signal(sig, handler)


__all__ = ["MIDI_CLOCK_PPQN", "LinearClock", "MidiScheduler", "install_signal_handlers"]
