"""Process isolation for MIDI timing: the scheduler and its backend in a child process with its own GIL.

In one process, any busy Python thread (the UI, analysis) holds the GIL for
up to the switch interval at a time, and the scheduler thread and a Python
JACK process callback must wait for it: measured in ``bench/timing.py``,
that costs tens of milliseconds and JACK xruns. :class:`MidiProcess` runs
the same :class:`~sjtui.midi.scheduler.MidiScheduler` in a child process
(``spawn``); the parent's calls are pickled over a pipe by a feeder thread,
so :meth:`submit` and the other commands never block the producer.

The sample timeline is shared: with the JACK backend it is JACK frames
(global to the server); otherwise the parent passes the line of its audio
clock, ``sample = sample0 + (monotonic - time0) * rate`` (``time.monotonic``
is system-wide), and may update it with :meth:`set_clock_line`.

If the parent dies, the child sees the pipe close, stops and silences every
note (and its state file covers a SIGKILL of the child itself).
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
from typing import Any

from sjtui.signals import start_thread, unblocked

_STOP = ("__stop__",)


def _make_backend(spec: dict):
    kind = spec.get("kind", "jack")
    if kind == "jack":
        from sjtui.midi.backends import jack_midi_backend

        return jack_midi_backend(
            client_name=spec.get("client_name", "sjtui"),
            port_name=spec.get("port_name", "sjtui"),
            connect_to=spec.get("connect_to"),
            frame_offset=spec.get("frame_offset", 0),
        )
    if kind == "rtmidi":
        from sjtui.midi.backends import RtMidiBackend

        return RtMidiBackend(
            spec.get("port"), api=spec.get("api"), client_name=spec.get("client_name", "sjtui")
        )
    if kind == "synth":
        from sjtui.synth.backend import SynthBackend

        return SynthBackend(engine=spec.get("engine", "auto"), device=spec.get("device"))
    from sjtui.midi.events import MidiError

    raise MidiError(f"MIDI backend {kind!r} is unknown; use jack, rtmidi or synth")


class _LineClock:
    def __init__(self, line):
        self.set(line)

    def set(self, line) -> None:
        self.line = tuple(
            float(v) for v in line
        )  # (time0_s, sample0, rate_hz): one tuple, swapped atomically

    def __call__(self) -> float:
        time0, sample0, rate = self.line
        return sample0 + (time.monotonic() - time0) * rate


def _child(conn, spec: dict, options: dict, clock_line) -> None:
    from sjtui.childlog import stderr_to_log

    stderr_to_log("midi-out")  # before rtmidi / libjack start: their messages stay off the jam screen
    from sjtui.midi.scheduler import MidiScheduler, install_signal_handlers

    install_signal_handlers()
    import signal

    # Ctrl-C reaches the whole process group: the parent handles it and stops us over the pipe
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    deferred = bool(spec.pop("deferred_start", False))  # wait for "begin" (the timeline is tied first)
    try:
        backend = _make_backend(spec)
    except Exception as error:
        conn.send(("error", f"{error}"))
        return
    line_clock = _LineClock(clock_line) if clock_line is not None else None
    if line_clock is not None:
        options = dict(options, clock=line_clock)
    scheduler = MidiScheduler(backend, **options)
    if not deferred:
        scheduler.start()
    conn.send(
        (
            "ready",
            {
                **backend.describe(),
                "sample_rate_hz": scheduler.sample_rate_hz,
                "timed": bool(backend.timed),
                "cleanup_reports": list(scheduler.cleanup_reports),
            },
        )
    )
    from sjtui.audio.device_process import avoid_gil_priority_inversion

    avoid_gil_priority_inversion()  # this thread handles the commands, holding the GIL the JACK callback needs
    try:
        while True:
            try:
                # short waits: a SIGTERM taken by a thread that does not block it (OpenBLAS's) only
                # runs its handler here once this thread runs Python again (sjtui/signals.py)
                while not conn.poll(0.25):
                    pass
                message = conn.recv()
            except (EOFError, OSError):  # the parent is gone
                break
            name, args = message[0], message[1:]
            if name == "__stop__":
                break
            if name == "stats":
                conn.send(
                    (
                        "stats",
                        {
                            **scheduler.stats(),
                            "warnings": list(scheduler.warnings),
                            "running": scheduler.running,
                            "error": repr(scheduler.error) if scheduler.error else None,
                            "late_events_backend": int(getattr(backend, "late_events", 0)),
                            "lost_events_backend": int(getattr(backend, "lost_events", 0)),
                            "min_lead_samples": scheduler.min_lead_samples,
                            "note_errors_ms": scheduler.note_errors_ms.values().tolist()
                            if args and args[0]
                            else None,
                        },
                    )
                )
            elif name == "clock_line":
                if line_clock is not None:
                    line_clock.set(args[0])
            elif name == "begin":
                # the parent's line first (the scheduler's loop keeps its start time), then start
                if line_clock is not None:
                    line_clock.set(args[0])
                if not backend.timed and hasattr(backend, "frame_offset"):
                    frames_now = backend.now_sample() + backend.frame_offset
                    backend.frame_offset = int(round(frames_now - _LineClock(args[0])()))
                scheduler.start()
                conn.send(
                    (
                        "begin",
                        {
                            "frame_offset": getattr(backend, "frame_offset", None),
                            "cleanup_reports": list(scheduler.cleanup_reports),
                        },
                    )
                )
            elif name == "tie":
                # a buffered backend's frames tied to the parent's line: frame_offset = frames - line(now)
                if not backend.timed and hasattr(backend, "frame_offset"):
                    frames_now = backend.now_sample() + backend.frame_offset
                    backend.frame_offset = int(round(frames_now - _LineClock(args[0])()))
                conn.send(("tie", getattr(backend, "frame_offset", None)))
            elif name == "now":
                conn.send(("now", float(scheduler.clock())))
            else:
                getattr(scheduler, name)(*args)
    finally:
        scheduler.close()
        try:
            conn.send(("closed", None))
        except (OSError, EOFError, BrokenPipeError):
            pass


def _ensure_resource_tracker() -> None:
    """Start multiprocessing's resource tracker with a real stderr.

    It passes ``sys.stderr.fileno()`` to its process; under a Textual app
    stderr is a capture object whose ``fileno()`` is -1, and spawning fails
    with "bad value(s) in fds_to_keep". The real stderr stands in for the
    moment the tracker starts (once per process)."""
    import sys
    from multiprocessing import resource_tracker

    stderr = sys.stderr
    try:
        usable = stderr is not None and stderr.fileno() >= 0
    except Exception:  # noqa: BLE001 - io.UnsupportedOperation and the like
        usable = False
    if not usable and sys.__stderr__ is not None:
        sys.stderr = sys.__stderr__
    try:
        resource_tracker.ensure_running()
    finally:
        sys.stderr = stderr


class MidiProcess:
    """The MIDI scheduler in a child process; same commands as :class:`MidiScheduler`.

    ``backend``: ``{"kind": "jack"|"rtmidi"|"synth", ...}`` (see ``_make_backend``);
    ``options``: keyword arguments of :class:`MidiScheduler` (no clock);
    ``clock_line``: ``(time0_s, sample0, rate_hz)`` for non-JACK timelines.
    """

    def __init__(
        self, backend: dict, options: dict | None = None, clock_line=None, start_timeout_s: float = 20.0
    ):
        _ensure_resource_tracker()
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._replies: queue.SimpleQueue = queue.SimpleQueue()
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.process = context.Process(
            target=_child,
            args=(child_conn, backend, options or {}, clock_line),
            name="sjtui-midi",
            daemon=True,
        )
        with unblocked():  # a child starts with its starter's mask, whatever thread that is
            self.process.start()
        child_conn.close()
        if not self._conn.poll(start_timeout_s):
            self.process.kill()
            from sjtui.midi.events import MidiError

            raise MidiError(f"the MIDI process did not start within {start_timeout_s:g} s")
        kind, payload = self._conn.recv()
        if kind != "ready":
            self.process.join(5)
            from sjtui.midi.events import MidiError

            raise MidiError(payload)
        self.description = payload
        self._lock = threading.Lock()
        self._feeder = start_thread(self._feed, "sjtui-midi-feeder")

    def _feed(self) -> None:
        while True:
            message = self._outbox.get()
            try:
                self._conn.send(message)
            except (OSError, BrokenPipeError):
                return
            if message is _STOP or message[0] == "__stop__":
                return

    def _put(self, *message: Any) -> None:
        self._outbox.put(message)

    # commands (never block)
    def submit(self, events) -> None:
        self._put("submit", events)

    def cancel_from(self, sample: int) -> None:
        self._put("cancel_from", int(sample))

    def set_tempo_map(self, tempo_map) -> None:
        self._put("set_tempo_map", tempo_map)

    def clock_start(self, tempo_map, tick: int = 0) -> None:
        self._put("clock_start", tempo_map, int(tick))

    def clock_stop(self, at_sample=None) -> None:
        self._put("clock_stop", at_sample)

    def panic(self) -> None:
        self._put("panic")

    def set_clock_line(self, line) -> None:
        self._put("clock_line", tuple(line))

    def begin(self, line) -> dict | None:
        """With ``deferred_start`` in the backend spec: tie the timeline to ``line`` and start the
        scheduler; returns ``{"frame_offset", "cleanup_reports"}`` (None without an answer)."""
        return self._ask("begin", tuple(float(v) for v in line))

    def tie(self, line) -> int | None:
        """A buffered (JACK) backend's frame clock follows the parent's line ``(time0_s, sample0, rate_hz)``;
        returns its new ``frame_offset`` (None for a timed backend or no answer)."""
        return self._ask("tie", tuple(float(v) for v in line))

    # queries (wait for the answer)
    def _ask(self, name: str, *args, timeout_s: float = 5.0):
        with self._lock:
            self._put(name, *args)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if self._conn.poll(0.05):
                    kind, payload = self._conn.recv()
                    if kind == name:
                        return payload
            return None

    def stats(self, with_errors: bool = False) -> dict | None:
        return self._ask("stats", with_errors)

    def now_sample(self) -> float | None:
        return self._ask("now")

    def close(self, timeout_s: float = 5.0) -> None:
        if self.process.is_alive():
            self._put("__stop__")
            self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(2)

    def __enter__(self) -> MidiProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
