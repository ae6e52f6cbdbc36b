"""Live audio input in a child process: the PortAudio callback gets its own GIL.

In one process, the sounddevice callback (:class:`~sjtui.audio.device.DeviceInput`)
must take the GIL within one audio period (5.3 ms at 48 kHz/256); while the
analysis thread, the engine thread and the Textual UI run Python, it sometimes
does not, and PortAudio reports input overflows and JACK an xrun.
:class:`ProcessDeviceInput` runs the *same* ``DeviceInput`` and callback in a child
process (``spawn``) writing into a :class:`~sjtui.audio.ring.SharedRingBuffer`; the
engine's readers (analysis thread, anchors, counters) read that ring unchanged.

Lifetime
--------
* Start: the parent resolves the device (same errors as ``DeviceInput``), spawns the
  child with the ring's descriptor and waits for ``ready`` (stream running) or the
  child's :class:`~sjtui.errors.AudioError` text (with the device list), re-raised here.
* Stop: ``stop`` over the pipe; the child closes the stream and exits.
* The parent dies (even SIGKILL): the child gets SIGTERM from the kernel
  (``PR_SET_PDEATHSIG``, Linux) and also sees EOF on its pipe (any OS), closes the
  stream and exits. ``PR_SET_PDEATHSIG`` fires when the *thread* that started the
  child ends, so children are started from one lasting thread of this module, never
  from a caller's (possibly short-lived) thread.
* Ctrl-C reaches the whole process group: the child ignores SIGINT; the parent
  handles it and stops the child.
* Shared memory: the ring's name is unlinked as soon as it is created (see
  :class:`~sjtui.audio.ring.SharedRingBuffer`); the child gets the descriptor when
  spawned. Nothing can be left in ``/dev/shm``: the kernel frees the block with the
  last process that maps it.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import time

from sjtui.audio.device import DeviceInput, find_input_device, resolve_input
from sjtui.audio.ring import SharedRingBuffer, capacity_for
from sjtui.errors import AudioError
from sjtui.signals import start_thread, unblocked

CHILD_POLL_S = 0.1  # the children's pipe poll: how soon they notice a stop or a dead parent


# --------------------------------------------------------------------------------- the child


class _SharedCountDeviceInput(DeviceInput):
    """DeviceInput with ``callback_count`` in the shared ring (the callback's code is unchanged)."""

    @property
    def callback_count(self) -> int:
        return self.ring.callback_count

    @callback_count.setter
    def callback_count(self, value: int) -> None:
        self.ring.callback_count = value


class Terminated:
    """True once SIGTERM came (the parent died, or asked): the child's loop leaves and cleans up.

    The handler only sets the flag. Raising from it (as these children did) could land in the
    middle of the cleanup itself when the pipe's EOF had already started it: a SIGKILLed screen
    gives the engine child both, and its All Notes Off was sometimes cut short."""

    def __init__(self):
        self.flag = False

    def __bool__(self) -> bool:
        return self.flag

    def set(self, signum=None, frame=None) -> None:
        self.flag = True


def enter_child(log_name: str, parent_pid: int) -> Terminated:
    """First thing in a spawned child: its libraries' stderr off the terminal (``<log_name>.log``),
    Ctrl-C is the parent's to handle (it stops the child over the pipe), SIGTERM when the parent
    (its starting thread) dies; exit now if it already has. Returns the SIGTERM flag, which the
    child's loop checks at each poll."""
    import signal

    from sjtui.audio.jack_server import die_with_parent
    from sjtui.childlog import stderr_to_log

    stderr_to_log(log_name)
    terminated = Terminated()
    signal.signal(signal.SIGTERM, terminated.set)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        die_with_parent()
    except (OSError, AttributeError):  # not Linux: EOF on the pipe is the signal
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl
        os._exit(0)
    return terminated


def avoid_gil_priority_inversion() -> None:
    """SCHED_FIFO 1 for the calling thread where permitted, below JACK's client threads (5).

    For a child process whose JACK callback runs Python in JACK's real-time thread
    and needs the GIL (the audio input here, the JACK MIDI output in
    :mod:`sjtui.midi.process`). This thread takes the GIL now and then; at normal
    priority the kernel could preempt it *while holding the GIL* in favour of the
    jam's busy threads, and the real-time callback would wait for it (priority
    inversion: JACK names the input the late client of an xrun). At FIFO 1 only
    real-time threads preempt it.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except (OSError, AttributeError):  # not permitted, or not Linux: the poll stays as it was
        pass


def _child(conn, handle, parent_pid: int, device_index: int, device_name: str, settings: dict) -> None:
    terminated = enter_child("audio-input", parent_pid)  # before PortAudio: its messages stay off the screen
    ring = SharedRingBuffer.attach(handle)
    live = None
    try:
        try:
            device = find_input_device(device_index)
            if device.name != device_name:  # the device list changed since the parent looked
                device = find_input_device(device_name)
            live = _SharedCountDeviceInput(device.index, ring=ring, **settings)
            live.start()
        except AudioError as error:
            conn.send(("error", str(error)))
            return
        except Exception as error:  # noqa: BLE001 - reported to the parent as an AudioError
            conn.send(("error", f"the audio input process failed to open {device_name!r}: {error!r}"))
            return
        ring.writer_active = 1
        avoid_gil_priority_inversion()
        conn.send(("ready", {"input_latency_s": live.input_latency_s, "pid": os.getpid()}))
        while not terminated:
            if conn.poll(CHILD_POLL_S):
                message = conn.recv()  # EOFError: the parent is gone
                if message[0] == "stop":
                    break
                if message[0] == "stream_time":
                    conn.send(("stream_time", live.stream_time_s()))
            else:
                ring.writer_active = int(live.active)
    except (EOFError, OSError):
        pass
    finally:
        ring.writer_active = 0
        if live is not None:
            live.stop()
        try:
            conn.send(("stopped", None))
        except (OSError, EOFError):
            pass
        ring.close()


# --------------------------------------------------------------------------------- spawning


class _Spawner:
    """One lasting daemon thread that starts the children (see the module docstring: PDEATHSIG)."""

    def __init__(self):
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = start_thread(self._serve, "sjtui-audio-spawner")

    def _serve(self) -> None:
        while True:
            process, done = self._requests.get()
            try:
                with unblocked():  # the child starts with this thread's mask: it must see SIGTERM
                    process.start()
                done.put(None)
            except BaseException as error:  # noqa: BLE001 - handed to the caller
                done.put(error)

    def start(self, process) -> None:
        done: queue.SimpleQueue = queue.SimpleQueue()
        self._requests.put((process, done))
        error = done.get()
        if error is not None:
            raise error


_spawner: _Spawner | None = None
_spawner_lock = threading.Lock()


def _start_process(process) -> None:
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = _Spawner()
    _spawner.start(process)


def spawn_child(target, args: tuple, name: str, daemon: bool = True):
    """``target(conn, *args)`` in a new ``spawn`` process started from the lasting spawner thread;
    ``(process, conn)``, the parent's end of their pipe. ``daemon=False`` for a child that has
    children of its own (multiprocessing forbids them to daemons)."""
    from sjtui.midi.process import _ensure_resource_tracker

    _ensure_resource_tracker()  # spawning starts it; under Textual it needs a real stderr
    context = multiprocessing.get_context("spawn")
    conn, child_conn = context.Pipe()
    process = context.Process(target=target, args=(child_conn, *args), name=name, daemon=daemon)
    _start_process(process)
    child_conn.close()
    return process, conn


# --------------------------------------------------------------------------------- the parent


class ProcessDeviceInput:
    """:class:`~sjtui.audio.device.DeviceInput` in a child process; same arguments and interface.

    Parameters as ``DeviceInput``; ``ring`` must be a
    :class:`~sjtui.audio.ring.SharedRingBuffer` (one holding ``ring_seconds`` is
    made by default). ``start_timeout_s``: how long the child may take to import
    and open the stream.

    ``callback_count`` and the ring's counters and anchors are written by the
    child and read here through shared memory; ``input_latency_s`` is the
    stream's, reported by the child when it started.
    """

    def __init__(
        self,
        device: int | str | None = None,
        channel: int = 1,
        sample_rate_hz: int = 48000,
        block_size: int = 256,
        ring: SharedRingBuffer | None = None,
        ring_seconds: float = 4.0,
        latency: str | float = "low",
        start_timeout_s: float = 30.0,
    ):
        self.device, self.channel = resolve_input(device, channel, sample_rate_hz, block_size)
        self.sample_rate_hz = int(sample_rate_hz)
        self.block_size = int(block_size)
        self.latency = latency
        self.start_timeout_s = float(start_timeout_s)
        if ring is None:
            ring = SharedRingBuffer.create(capacity_for(ring_seconds, sample_rate_hz))
        elif not isinstance(ring, SharedRingBuffer):
            raise AudioError(
                "the audio input process writes into a shared-memory ring (SharedRingBuffer.create), "
                f"not a {type(ring).__name__}; use DeviceInput for an in-process ring"
            )
        self.ring = ring
        if self.ring.max_write_samples < self.block_size:
            raise AudioError(
                f"the ring's max_write_samples ({self.ring.max_write_samples}) is below the block size "
                f"({self.block_size}); make a larger ring"
            )
        self.process: multiprocessing.process.BaseProcess | None = None
        self._conn = None
        self._latency_s = float("nan")
        self._lock = threading.Lock()

    @property
    def callback_count(self) -> int:
        """Blocks the child's callback delivered (the shared ring's count; the child zeroes it when it opens)."""
        return self.ring.callback_count

    def start(self) -> ProcessDeviceInput:
        """Spawn the child and wait until its stream runs; :class:`AudioError` (with the device list) if it cannot."""
        if self.process is not None:
            return self
        settings = {
            "channel": self.channel,
            "sample_rate_hz": self.sample_rate_hz,
            "block_size": self.block_size,
            "latency": self.latency,
        }
        process, conn = spawn_child(
            _child, (self.ring.handle(), os.getpid(), self.device.index, self.device.name, settings), "sjtui-audio-input"
        )
        try:
            if not conn.poll(self.start_timeout_s):
                raise AudioError(
                    f"the audio input process for {self.device.describe()} did not start within "
                    f"{self.start_timeout_s:g} s; the machine may be overloaded (try again) or use the in-process "
                    "input (EngineOptions.input_process=False)"
                )
            kind, payload = conn.recv()
        except EOFError:
            kind, payload = (
                "error",
                f"the audio input process for {self.device.describe()} died while starting",
            )
        except BaseException:
            end_child(process, conn)
            raise
        if kind != "ready":
            end_child(process, conn)
            raise AudioError(payload)
        self._latency_s = float(payload["input_latency_s"])
        self._conn, self.process = conn, process
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the child's stream and wait for the child (idempotent)."""
        with self._lock:
            process, conn = self.process, self._conn
            self.process, self._conn = None, None
        if process is None:
            return
        try:
            conn.send(("stop",))
        except (OSError, BrokenPipeError):
            pass
        end_child(process, conn, timeout_s)
        self._latency_s = float("nan")

    @property
    def active(self) -> bool:
        process = self.process
        return process is not None and process.is_alive() and self.ring.writer_active == 1

    def stream_time_s(self) -> float:
        """The child's stream clock now (the anchors' ``adc_time_s`` clock), asked over the pipe."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise AudioError("the audio input is not running; call start() first")
            conn.send(("stream_time",))
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline:
                if conn.poll(0.05):
                    kind, payload = conn.recv()
                    if kind == "stream_time":
                        return float(payload)
        raise AudioError("the audio input process did not answer; it may have died")

    @property
    def input_latency_s(self) -> float:
        return self._latency_s

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return None if self.process is None else self.process.pid

    def __enter__(self) -> ProcessDeviceInput:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def end_child(process, conn, timeout_s: float = 5.0) -> None:
    """Wait for the child to leave; terminate, then kill, if it does not."""
    process.join(timeout_s)
    if process.is_alive():
        process.terminate()
        process.join(2.0)
    if process.is_alive():
        process.kill()
        process.join(2.0)
    try:
        conn.close()
    except OSError:
        pass
