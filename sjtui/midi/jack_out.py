"""The JACK MIDI output with its process callback in C (sjtui/midi/_jackmidi.c).

:class:`~sjtui.midi.backends.JackMidiBackend` does the same with JACK-Client's
Python callback, which takes the GIL in JACK's real-time thread every period:
a late Python callback (the GIL held elsewhere, a garbage collection) makes
the whole JACK graph late, and the player hears the click of an xrun. Here
the scheduler's events pass through a lock-free queue to a C callback that
writes each at its exact frame, tracks what is sounding and sends the panic;
no Python runs in JACK's thread. :func:`jack_midi_backend` picks this one
where the extension was built (JACK's headers at install time), the Python
one otherwise or when ``SJTUI_JACK_MIDI=python``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sjtui.midi.backends import DEFAULT_CLIENT_NAME, DEFAULT_PORT_NAME, MidiBackend, connect_or_close
from sjtui.midi.events import MidiError
from sjtui.midi.ports import match_port

try:
    from sjtui.midi import _jackmidi
except ImportError:  # built without JACK's headers: the Python callback it is
    _jackmidi = None

QUEUE_CAPACITY = 1 << 14  # events ahead of their frame; the scheduler's lookahead holds a few hundred


def available() -> bool:
    """The C client was built."""
    return _jackmidi is not None


class CJackMidiBackend(MidiBackend):
    """A JACK client with one MIDI output port, events written at their exact frame by a C callback.

    Same interface and behaviour as :class:`~sjtui.midi.backends.JackMidiBackend`: event
    sample ``s`` goes out at JACK frame ``s + frame_offset``; :meth:`now_sample` is the
    server's frame clock (64-bit here: JACK's own wraps after a day at 48 kHz); an event
    handed over too late goes out at offset 0 of the current cycle and is counted in
    ``late_events``; ``connect_to`` port names (or one) to connect to; :meth:`poll`
    reports once when the last connection went away or the server shut down.
    """

    name = "jack"
    timed = False

    def __init__(
        self,
        *,
        client_name: str = DEFAULT_CLIENT_NAME,
        port_name: str = DEFAULT_PORT_NAME,
        connect_to: str | Sequence[str] | None = None,
        frame_offset: int = 0,
    ):
        if _jackmidi is None:
            raise MidiError("the C JACK MIDI output was not built (JACK's headers missing at install)")
        try:
            self._handle = _jackmidi.open(client_name, port_name, None, QUEUE_CAPACITY)
        except OSError as error:
            raise MidiError(f"{error}; start jackd or choose another backend") from None
        self.client = self._handle  # None once closed (what the scheduler looks at)
        self.client_name, self.full_port_name, self.sample_rate_hz, _, _ = _jackmidi.info(self._handle)
        self.frame_offset = int(frame_offset)
        self._reason_seen = 0
        connect_or_close(self, connect_to)

    def connect(self, target: str) -> None:
        names = _jackmidi.ports(self._handle)
        full = names[match_port(target, names, "input")]
        try:
            _jackmidi.connect(self._handle, full)
        except OSError as error:
            raise MidiError(f"cannot connect {self.full_port_name} to {target!r}: {error}") from None

    # -- what the callback counted ---------------------------------------------------

    def _stats(self) -> tuple[int, int, int, int, int, int]:
        return _jackmidi.stats(self._handle)  # kept after closing

    @property
    def sent_events(self) -> int:
        return self._stats()[0]

    @property
    def late_events(self) -> int:
        return self._stats()[1]

    @property
    def max_late_frames(self) -> int:
        return self._stats()[2]

    @property
    def lost_events(self) -> int:
        """Events the port's buffer had no room for, or the queue (full) never took."""
        stats = self._stats()
        return stats[3] + stats[4]

    # -- interface -------------------------------------------------------------------

    def schedule(self, sample: int, data: bytes) -> None:
        _jackmidi.schedule(self._handle, int(sample) + self.frame_offset, data)  # a full queue counts it

    def now_sample(self) -> float:
        return float(_jackmidi.now(self._handle) - self.frame_offset)

    def send_now(
        self, messages: Sequence[Sequence[int]], timeout_s: float = 2.0, silence: bool = False
    ) -> bool:
        if self.client is None:
            return False
        return _jackmidi.send_now(self._handle, [bytes(m) for m in messages], silence, timeout_s)

    def destinations(self) -> list[str]:
        return [] if self.client is None else _jackmidi.connections(self._handle)

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "api": "JACK",
            "port": self.full_port_name,
            "client": self.client_name,
            "frame_offset": self.frame_offset,
            "callback": "C",
        }

    def poll(self) -> str | None:
        if self.client is None:
            return None
        sequence, text = _jackmidi.reason(self._handle)
        if sequence == self._reason_seen:
            return None
        self._reason_seen = sequence
        return text or None  # "" = connected again

    def close(self) -> None:
        if self.client is not None:
            self.client = None
            _jackmidi.close(self._handle)
