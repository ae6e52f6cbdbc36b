"""Asynchronous signals are taken by the main thread, never by a worker or a libjack thread.

CPython runs a signal's Python handler in the main thread, but the kernel hands a signal sent to
the process to any thread that does not block it. Two things then go wrong, both seen here:

- The main thread is not woken. One asleep in a long blocking call (``time.sleep``, a pipe read)
  only runs the handler when that call returns: a MIDI child took 60 s to act on SIGTERM.
- The blocking call in the thread that took it fails with EINTR (Python installs its handlers
  without SA_RESTART). libjack takes an interrupted read of its server socket for a dead server:
  "JackSocketClientChannel read fail", the client is shut down mid-jam.

A thread starts with the signal mask of the thread that creates it. So every thread sjtui starts
(:func:`start_thread`) and every JACK client it opens (libjack's threads start in
``jack_client_open`` and ``jack_activate``) is created inside :func:`blocked`. The C clients do the
same in ``sjtui/_jackclient.h``. A child process inherits the mask too, so children are started
inside :func:`unblocked`. Threads of other libraries (OpenBLAS, onnxruntime) may still take one,
so the main thread's waits are also kept short.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

# synchronous signals are raised by the faulting thread itself and must stay deliverable there;
# SIGKILL and SIGSTOP cannot be blocked
_KEEP = {"SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGABRT", "SIGSYS", "SIGKILL", "SIGSTOP"}
ASYNC_SIGNALS = frozenset(
    s for s in getattr(signal, "valid_signals", lambda: ())() if getattr(s, "name", "") not in _KEEP
)
_HAS_MASK = hasattr(signal, "pthread_sigmask")  # not on Windows, which has no such signals


@contextlib.contextmanager
def _masked(how: str, signals: frozenset) -> Iterator[None]:
    if not _HAS_MASK:
        yield
        return
    previous = signal.pthread_sigmask(getattr(signal, how), signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def blocked() -> contextlib.AbstractContextManager[None]:
    """Block the asynchronous signals in this thread for the block: threads started inside inherit it."""
    return _masked("SIG_BLOCK", ASYNC_SIGNALS)


def unblocked() -> contextlib.AbstractContextManager[None]:
    """Unblock them for the block: a child process started inside handles its signals itself."""
    return _masked("SIG_UNBLOCK", ASYNC_SIGNALS)


def kept() -> contextlib.AbstractContextManager[None]:
    """Keep this thread's mask across the block, whatever runs in it. For closing a JACK client:
    libjack saves the mask it sees when a process opens its first client (inside :func:`blocked`:
    everything blocked) and sets it again in the thread that closes the last one. python-rtmidi
    carries its own libjack, so its first and last client count separately."""
    return _masked("SIG_BLOCK", frozenset())


def start_thread(
    target: Callable[..., object], name: str, args: tuple = (), daemon: bool = True
) -> threading.Thread:
    """Start a thread that leaves every asynchronous signal to the main thread."""
    thread = threading.Thread(target=target, name=name, args=args, daemon=daemon)
    with blocked():
        thread.start()
    return thread
