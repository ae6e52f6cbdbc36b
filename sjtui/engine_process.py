"""The engine in a child process, for the jam screen: the UI and the engine stop sharing a GIL.

With the Textual screen and the engine in one process, a decision (fingerprint ->
embedding -> best groove) that starts while the screen renders a frame gets the
GIL only every other switch interval: 500 decisions in a row took p99 4.7 ms with
the UI at 30 Hz against 1.9 ms without it (bench/ui.py ``engine_timing``). Here the
engine runs in a child process (``spawn``) that answers the screen over a pipe;
:class:`EngineProcess` has the interface the screen uses
(:class:`~sjtui.snapshot.EngineLike`): ``snapshot``, ``send``, the ``list_*``
pickers and ``close``. The engine's own children (audio input, MIDI) are the
child's children, as they were the jam process's.

Lifetime (as :mod:`sjtui.audio.device_process`)
-----------------------------------------------
* Start: the child builds and starts the engine (library, model, devices) and
  sends ``ready``, or the error that stopped it, re-raised here with its message.
* Close: ``close`` over the pipe; the child closes the engine (all notes off,
  MIDI ports closed) and answers with its last figures (:attr:`EngineProcess.final`).
* The screen's process dies, even by SIGKILL: the child gets SIGTERM from the
  kernel (``PR_SET_PDEATHSIG``) or EOF on its pipe and closes the engine the same
  way, so no note is left on. Ctrl-C is the screen's to handle; the child ignores it.
"""

from __future__ import annotations

import multiprocessing
import os
import threading

from sjtui.audio.device_process import end_child
from sjtui.errors import SjtuiError

_DEFAULT_START_TIMEOUT_S = 120.0  # importing the GMD into a fresh library and embedding it
_ANSWER_TIMEOUT_S = 2.0


def _child(conn, parent_pid: int, options, probe) -> None:
    from sjtui.audio.device_process import CHILD_POLL_S, enter_child

    terminated = enter_child("engine", parent_pid)  # SIGTERM (the screen's process died): close the engine
    engine = probing = None
    try:
        from sjtui.engine import create_engine

        try:
            engine = create_engine(options)
            engine.start()
        except SjtuiError as error:  # what was wrong and what to do, as the engine says it
            conn.send(("error", error))
            return
        except Exception as error:  # noqa: BLE001 - reported to the screen
            conn.send(("error", SjtuiError(f"the engine failed to start: {error!r}")))
            return
        if probe is not None:  # a bench's measurement beside the engine (bench/ui.py)
            probing = probe(engine)
        conn.send(("ready", os.getpid()))
        while not terminated:
            if not conn.poll(CHILD_POLL_S):
                continue
            message = conn.recv()  # EOFError: the screen's process is gone
            kind = message[0]
            if kind == "snapshot":
                conn.send(engine.snapshot())
            elif kind == "send":
                engine.send(message[1])
            elif kind == "list":
                conn.send(getattr(engine, message[1])())
            elif kind == "close":
                break
    except (EOFError, OSError):
        pass
    finally:
        final = {}
        if engine is not None:
            probe_figures = probing.stop() if probing is not None else None
            engine.close()  # every note off, even when start() failed half-way
            final = {
                "selection_ms": list(engine.selection_ms),
                "selection_cpu_ms": list(engine.selection_cpu_ms),
                "timing": engine.snapshot().timing,
                "library_grooves": len(engine.library),
                "probe": probe_figures,
            }
        try:
            conn.send(("closed", final))
        except (OSError, EOFError, BrokenPipeError):
            pass


def _ended(process, what: str) -> SjtuiError:
    """The engine's child is gone: how it ended, where its log is, what to do."""
    from sjtui.childlog import log_dir

    how = ""
    if process is not None:
        process.join(0.5)
        code = process.exitcode
        how = "" if code is None else f" (killed by signal {-code})" if code < 0 else f" (exit code {code})"
    return SjtuiError(
        f"the engine process {what}{how}; its messages are in {log_dir() / 'engine.log'}. "
        "Press q and start sjtui again"
    )


class EngineProcess:
    """:func:`~sjtui.engine.create_engine` ``(options)`` in a child process, driven like an engine.

    ``probe``: a picklable function called in the child with the started engine,
    returning an object whose ``stop()`` gives figures for :attr:`final` (benches).
    """

    def __init__(self, options, start_timeout_s: float = _DEFAULT_START_TIMEOUT_S, probe=None):
        self.options = options
        self.start_timeout_s = float(start_timeout_s)
        self.probe = probe
        self.process: multiprocessing.process.BaseProcess | None = None
        self.final: dict | None = None  # the child's last figures, after close()
        self._conn = None
        self._lock = threading.Lock()  # one request and its answer at a time (UI thread, pickers)
        self._late = 0  # questions whose answers are still to come

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self) -> EngineProcess:
        """Spawn the child and wait until its engine runs; its error (same message) if it cannot start."""
        if self.process is not None:
            return self
        from sjtui.audio.device_process import spawn_child

        # from the lasting spawner thread: PR_SET_PDEATHSIG follows the thread that started the child
        process, conn = spawn_child(_child, (os.getpid(), self.options, self.probe), "sjtui-engine", daemon=False)
        try:
            if not conn.poll(self.start_timeout_s):
                raise SjtuiError(
                    f"the engine did not start within {self.start_timeout_s:g} s (a first start imports and "
                    "embeds the groove library); try again, or run `sjtui jam --headless` to see where it stops"
                )
            kind, payload = conn.recv()
        except EOFError:
            kind, payload = "error", _ended(process, "died while starting")
        except BaseException:
            end_child(process, conn)
            raise
        if kind != "ready":
            end_child(process, conn)
            raise payload if isinstance(payload, BaseException) else SjtuiError(str(payload))
        self._conn, self.process = conn, process
        self.options = None  # the child has them; the demo's song (samples) need not stay here too
        return self

    def _ask(self, *message, timeout_s: float = _ANSWER_TIMEOUT_S):
        with self._lock:
            conn = self._conn
            if conn is None:
                raise SjtuiError("the engine is not running")
            try:
                while self._late and conn.poll(0):  # answers to questions that timed out
                    conn.recv()
                    self._late -= 1
                if self._late:
                    raise SjtuiError("the engine process is not answering (busy or stuck)")
                conn.send(message)
                if not conn.poll(timeout_s):  # the screen must not freeze on a stuck engine
                    self._late += 1
                    raise SjtuiError(f"the engine process did not answer within {timeout_s:g} s")
                answer = conn.recv()
            except (EOFError, OSError) as error:
                raise _ended(self.process, "has stopped") from error
        if isinstance(answer, tuple) and answer and answer[0] == "closed":  # it ended on its own
            raise _ended(self.process, "has stopped")
        return answer

    def snapshot(self):
        return self._ask("snapshot")

    def send(self, command) -> None:
        with self._lock:
            if self._conn is None:
                return
            try:
                self._conn.send(("send", command))
            except (OSError, BrokenPipeError):
                pass

    def list_inputs(self) -> list[str]:
        return self._ask("list", "list_inputs")

    def list_midi_outputs(self) -> list[str]:
        return self._ask("list", "list_midi_outputs")

    def list_midi_inputs(self) -> list[str]:
        return self._ask("list", "list_midi_inputs")

    def close(self, timeout_s: float = 10.0) -> None:
        """Close the engine in the child (all notes off) and wait for the child (idempotent)."""
        with self._lock:
            process, conn = self.process, self._conn
            self.process, self._conn = None, None
        if process is None:
            return
        try:
            conn.send(("close",))
            while conn.poll(timeout_s):
                kind, payload = conn.recv()
                if kind == "closed":
                    self.final = payload
                    break
        except (OSError, EOFError, BrokenPipeError, ValueError):
            pass
        end_child(process, conn)

    def __enter__(self) -> EngineProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

