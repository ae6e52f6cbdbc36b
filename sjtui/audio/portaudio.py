"""PortAudio, initialised only while sjtui uses it.

Importing sounddevice initialises PortAudio, and PortAudio's JACK host API
then keeps an *active* JACK client, with a process callback that jackd
wakes every cycle, for as long as PortAudio stays initialised. A jam whose
audio input runs in a child process used to keep such an idle client in its
own process for the whole jam: one more client to run in every cycle, and
jackd named it among the late clients of xruns. So the import's
initialisation is released at once, and PortAudio is held only around a
query (:func:`held`) or for the life of a stream (:class:`Hold`). Each new
hold scans the host APIs again, so a JACK server started later is seen.

Every sjtui module reaches sounddevice through :func:`sounddevice`, so the
count of holds stays balanced.
"""

from __future__ import annotations

import contextlib
import threading

from sjtui.errors import AudioError
from sjtui.signals import blocked, kept

_lock = threading.Lock()
_module = None


def sounddevice():
    """The sounddevice module, with PortAudio not held by the import."""
    global _module
    with _lock:
        if _module is None:
            try:
                with blocked():  # Pa_Initialize: PortAudio's JACK client starts its threads
                    import sounddevice as sd
            except OSError as error:  # libportaudio missing
                raise AudioError(
                    f"PortAudio could not be loaded ({error}); install it (Debian: `apt-get install libportaudio2`)"
                ) from error
            if sd._initialized > 0:  # the import's own Pa_Initialize
                with kept():  # Pa_Terminate closes its JACK client (sjtui/signals.py)
                    sd._terminate()
            _module = sd
    return _module


class Hold:
    """PortAudio initialised from construction until :meth:`release` (idempotent)."""

    def __init__(self):
        self.sd = sounddevice()
        with blocked():  # PortAudio's JACK host API opens and activates its client here
            self.sd._initialize()
        self._held = True

    def release(self) -> None:
        with _lock:
            held, self._held = self._held, False
        if held:
            with kept():  # Pa_Terminate closes its JACK client (sjtui/signals.py)
                self.sd._terminate()


@contextlib.contextmanager
def held():
    """PortAudio initialised for the block; yields the sounddevice module."""
    hold = Hold()
    try:
        yield hold.sd
    finally:
        hold.release()


def holds() -> int:
    """How many holds are open now (0 when PortAudio holds no device or JACK client)."""
    return 0 if _module is None else int(_module._initialized)
