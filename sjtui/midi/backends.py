"""MIDI output backends behind one small interface, all driven by :class:`~sjtui.midi.scheduler.MidiScheduler`.

Two kinds:

- *timed* backends (``timed = True``, :class:`RtMidiBackend`): the scheduler
  calls :meth:`send` at each event's deadline; the event leaves when sent
  (rtmidi's JACK path then rounds it to the start of the next JACK cycle).
- *buffered* backends (``timed = False``, :class:`JackMidiBackend`, the
  built-in synth in :mod:`sjtui.synth.backend`): the scheduler hands events
  a lookahead ahead with :meth:`schedule` and the backend's own real-time
  callback puts each at its exact frame. Their :meth:`now_sample` is the
  clock the scheduler uses, so "sample" means the backend's frame counter
  plus ``frame_offset``.

Every backend has :meth:`send_now` for the panic path (buffered backends drop
what is queued and put the messages at the start of the next cycle, waiting
for that cycle), :meth:`destinations` (what the notes reach, recorded in the
state file so a later run can silence them), :meth:`poll` (a problem to
report, e.g. the destination vanished) and :meth:`close`.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Sequence

from sjtui.midi.events import MidiError
from sjtui.midi.ports import choose_api, close_jack_client, jack_client, list_ports, match_port, rtmidi_api_id
from sjtui.signals import blocked, kept

DEFAULT_CLIENT_NAME = "sjtui"
DEFAULT_PORT_NAME = "sjtui"
JACK_DRAIN_S = 0.05  # rtmidi queues JACK output for the next cycles: wait before closing


class MidiBackend:
    """Interface (and the defaults) of an output backend."""

    name = "base"
    timed = True
    sample_rate_hz: float | None = None

    def send(self, data: Sequence[int]) -> None:  # timed backends: now
        raise NotImplementedError

    def schedule(self, sample: int, data: bytes) -> None:  # buffered backends: at a sample
        raise NotImplementedError

    def send_now(
        self, messages: Sequence[Sequence[int]], timeout_s: float = 0.5, silence: bool = False
    ) -> bool:
        """Send at once (panic path). True when out.

        Buffered backends drop their queue first and, with ``silence``, precede
        the messages with a note-off for every note-on they put out that has
        not had its note-off (they track this at output, where it is exact).
        """
        for data in messages:
            self.send(data)
        return True

    def now_sample(self) -> float | None:  # buffered backends: their own clock
        return None

    def destinations(self) -> list[str]:
        return []

    def describe(self) -> dict:
        return {"backend": self.name}

    def poll(self) -> str | None:
        return None

    def close(self) -> None:
        pass


# --- rtmidi ------------------------------------------------------------------


class RtMidiBackend(MidiBackend):
    """python-rtmidi output to a named port (``port``) or a virtual port (``port=None``).

    ``api``: see :func:`sjtui.midi.ports.choose_api`. A port that does not
    exist raises :class:`MidiError` listing the ports that do.

    On the JACK API the output is always our own port ``client_name:virtual_name``
    and connections to ``port`` are made with JACK-Client. Caution: python-rtmidi
    holds the GIL while it opens and closes its JACK client, which waits for
    the JACK cycle; if a Python JACK or PortAudio callback runs in the same
    process at that moment both wait forever. Open this backend before such
    streams start and close it after they stop, or use :class:`JackMidiBackend`
    (chosen automatically on JACK by :func:`open_backend`).
    """

    name = "rtmidi"
    timed = True

    def __init__(
        self,
        port: str | None = None,
        *,
        api: str | None = None,
        client_name: str = DEFAULT_CLIENT_NAME,
        virtual_name: str = DEFAULT_PORT_NAME,
    ):
        import rtmidi

        self.api = choose_api(api)
        self.client_name = client_name
        self._reported = False
        self.port_name = None
        self.virtual_name = None
        if port is not None:
            names = list_ports(self.api)["outputs"]
            self.port_name = names[match_port(port, names)]
        try:
            with blocked():  # rtmidi's JACK client starts its threads here
                self.midi_out = rtmidi.MidiOut(rtmidi_api_id(self.api), name=client_name)
        except rtmidi.SystemError as error:
            raise MidiError(f"cannot open MIDI output on {self.api}: {error}") from None
        try:
            if port is None or self.api == "UNIX_JACK":
                with blocked():
                    self.midi_out.open_virtual_port(virtual_name)
                self.virtual_name = virtual_name
                if port is not None:
                    jack_connect(self.own_port_name(), self.port_name)
            else:
                names = self.midi_out.get_ports()
                with blocked():
                    self.midi_out.open_port(match_port(self.port_name, names))
        except (rtmidi.SystemError, rtmidi.InvalidUseError, MidiError) as error:
            with kept():
                self.midi_out.delete()
            raise MidiError(f"cannot open MIDI output port {port!r} on {self.api}: {error}") from None
        self._send = self.midi_out.send_message
        self._jack_client = None
        if self.api == "UNIX_JACK":  # for connections and port checks, without rtmidi (see above)
            import jack

            try:
                self._jack_client = jack_client(f"{client_name}-watch")
            except jack.JackError:
                self._jack_client = None

    def send(self, data: Sequence[int]) -> None:
        self._send(data)

    def send_now(
        self, messages: Sequence[Sequence[int]], timeout_s: float = 0.5, silence: bool = False
    ) -> bool:
        if self.midi_out is None:
            return False
        for data in messages:
            self._send(data)
        if self.api == "UNIX_JACK" and messages:
            time.sleep(min(timeout_s, JACK_DRAIN_S))  # rtmidi writes them in a later JACK cycle
        return True

    def own_port_name(self) -> str | None:
        """Full name of our own port where the API has one (JACK: ``client:port``)."""
        if self.api == "UNIX_JACK" and self.virtual_name:
            return f"{self.client_name}:{self.virtual_name}"
        return None

    def destinations(self) -> list[str]:
        own = self.own_port_name()
        if own:
            return jack_connections(own, self._jack_client)
        return [self.port_name] if self.port_name else []

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "api": self.api,
            "port": self.port_name,
            "virtual": self.virtual_name,
            "client": self.client_name,
        }

    def poll(self) -> str | None:
        """Reports once that the named destination port is gone (checked against the port list)."""
        if self.port_name is None or self._reported:
            return None
        if self.api == "UNIX_JACK":
            client = self._jack_client
            names = [p.name for p in client.get_ports(is_midi=True, is_input=True)] if client else []
        else:
            try:
                names = self.midi_out.get_ports()
            except Exception:  # pragma: no cover - backend died
                names = []
        if self.port_name not in names:
            self._reported = True
            return f"MIDI port {self.port_name!r} disappeared; ports now: {', '.join(names) or 'none'}"
        return None

    def close(self) -> None:
        with kept():  # libjack may set another signal mask on closing (sjtui/signals.py)
            client, self._jack_client = getattr(self, "_jack_client", None), None
            if client is not None:
                client.close()
            midi_out, self.midi_out = getattr(self, "midi_out", None), None
            if midi_out is not None:
                try:
                    midi_out.close_port()
                finally:
                    midi_out.delete()


def jack_connect(source: str, destination: str) -> None:
    """Connect two JACK ports with JACK-Client (which releases the GIL while it waits)."""
    import jack

    client = jack_client("sjtui-conn")
    try:
        client.connect(source, destination)
    except jack.JackError as error:
        raise MidiError(f"cannot connect {source} to {destination}: {error}") from None
    finally:
        close_jack_client(client)


def jack_connections(port_name: str, client=None) -> list[str]:
    """Names of the ports a JACK port is connected to ([] without a JACK server)."""
    import jack

    own = client is None
    if own:
        try:
            client = jack_client("sjtui-conn")
        except jack.JackError:
            return []
    try:
        return [p.name for p in client.get_all_connections(port_name)]
    except jack.JackError:
        return []
    finally:
        if own:
            close_jack_client(client)


# --- JACK (sample accurate) ----------------------------------------------------


def connect_or_close(backend, connect_to: str | Sequence[str] | None) -> None:
    """Connect a JACK backend's port to ``connect_to`` (a port name or several; None: leave it to the
    user or DAW); on a name that matches nothing, close the backend and raise its MidiError."""
    if connect_to is None:
        return
    targets = [connect_to] if isinstance(connect_to, str) else list(connect_to)
    try:
        for target in targets:
            backend.connect(target)
    except MidiError:
        backend.close()
        raise


class JackMidiBackend(MidiBackend):
    """A JACK client with one MIDI output port; events written at their exact frame in the process callback.

    Event sample ``s`` goes out at JACK frame ``s + frame_offset`` (the
    default 0: the scheduler's samples *are* JACK frames, and
    :meth:`now_sample` is ``client.frame_time``). An event handed over too
    late for its frame goes out at offset 0 of the current cycle and is
    counted in ``late_events``. ``connect_to``: port names (or one name) to
    connect the output to; ``None`` leaves connecting to the user/DAW.

    ``on_lost``: what the engine should do when every connection of the port
    disappears (the receiving client quit): reported once by :meth:`poll`.
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
        try:
            import jack
        except (ImportError, OSError) as error:
            raise MidiError(f"the JACK backend needs the JACK-Client package and libjack: {error}") from None
        self._jack = jack
        try:
            self.client = jack_client(client_name)
        except jack.JackError as error:
            raise MidiError(
                f"no JACK server to connect to ({error}); start jackd or choose another backend"
            ) from None
        self.frame_offset = int(frame_offset)
        self.sample_rate_hz = float(self.client.samplerate)
        self.port = self.client.midi_outports.register(port_name)
        self._queue: collections.deque = collections.deque()
        self._panic: tuple[list[bytes], bool] | None = None
        self._panic_done = threading.Event()
        self._on = bytearray(16 * 128)  # note-ons out without their note-off, per (channel << 7 | note)
        self._had_connections = False
        self._lost: str | None = None
        self._reported = False
        self.late_events = 0
        self.max_late_frames = 0
        self.lost_events = 0
        self.sent_events = 0
        self.client.set_process_callback(self._process)
        self.client.set_port_connect_callback(self._on_connect)
        self.client.set_shutdown_callback(self._on_shutdown)
        with blocked():  # libjack starts the process thread here
            self.client.activate()
        connect_or_close(self, connect_to)

    @property
    def full_port_name(self) -> str:
        return self.port.name

    def connect(self, target: str) -> None:
        names = [p.name for p in self.client.get_ports(is_midi=True, is_input=True)]
        try:
            full = names[match_port(target, names, "input")]
            self.client.connect(self.port, full)
        except MidiError:
            raise
        except self._jack.JackError as error:
            raise MidiError(f"cannot connect {self.port.name} to {target!r}: {error}") from None
        self._had_connections = True

    # -- JACK threads -------------------------------------------------------------

    def _process(self, frames: int) -> None:
        port = self.port
        port.clear_buffer()
        panic = self._panic
        if panic is not None:
            self._queue.clear()
            messages, silence = panic
            if silence:
                on = self._on
                offs = [bytes((0x80 | (i >> 7), i & 0x7F, 0)) for i in range(len(on)) for _ in range(on[i])]
                messages = offs + messages
                on[:] = bytes(len(on))
            for data in messages:
                try:
                    port.write_midi_event(0, data)
                except self._jack.JackError:
                    self.lost_events += 1
            self._panic = None
            self._panic_done.set()
            return
        queue = self._queue
        if not queue:
            return
        start = self.client.last_frame_time
        end = start + frames
        due = []
        while queue and queue[0][0] < end:
            due.append(queue.popleft())
        if not due:
            return
        offsets = []
        for frame, data in due:
            offset = frame - start
            if offset < 0:
                self.late_events += 1
                self.max_late_frames = max(self.max_late_frames, -offset)
                offset = 0
            offsets.append(offset)
        if len(due) > 1 and any(b < a for a, b in zip(offsets, offsets[1:])):
            order = sorted(range(len(due)), key=offsets.__getitem__)
        else:
            order = range(len(due))
        on = self._on
        for i in order:
            data = due[i][1]
            try:
                port.write_midi_event(offsets[i], data)
                self.sent_events += 1
            except self._jack.JackError:
                self.lost_events += 1
                continue
            kind = data[0] & 0xF0
            if kind == 0x90 or kind == 0x80:
                key = ((data[0] & 0x0F) << 7) | data[1]
                if kind == 0x90 and data[2] > 0:
                    if on[key] < 255:
                        on[key] += 1
                elif on[key]:
                    on[key] -= 1

    def _on_connect(self, a, b, connect: bool) -> None:
        if self.port.name not in (a.name, b.name):
            return
        if connect:
            self._had_connections = True
            self._lost = None
            self._reported = False
        else:
            other = b.name if a.name == self.port.name else a.name
            try:
                remaining = self.port.number_of_connections
            except Exception:
                remaining = 0
            if remaining == 0:
                self._lost = (
                    f"JACK MIDI destination {other!r} went away; {self.port.name} is connected to nothing"
                )

    def _on_shutdown(self, status, reason) -> None:
        self._lost = f"the JACK server shut down: {reason}"

    # -- interface -------------------------------------------------------------------

    def schedule(self, sample: int, data: bytes) -> None:
        self._queue.append((int(sample) + self.frame_offset, data))

    def now_sample(self) -> float:
        return float(self.client.frame_time - self.frame_offset)

    def send_now(
        self, messages: Sequence[Sequence[int]], timeout_s: float = 2.0, silence: bool = False
    ) -> bool:
        # waits for a cycle of the callback: 5 ms normally, but the panic must not give up on a
        # machine stalled for a moment (a Python callback also waits for the GIL)
        if self.client is None:
            return False
        self._panic_done.clear()
        self._panic = ([bytes(m) for m in messages], silence)
        return self._panic_done.wait(timeout_s)

    def destinations(self) -> list[str]:
        try:
            return [p.name for p in self.port.connections]
        except Exception:
            return []

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "api": "JACK",
            "port": self.port.name,
            "client": self.client.name,
            "frame_offset": self.frame_offset,
        }

    def poll(self) -> str | None:
        if self._lost and not self._reported:
            self._reported = True
            return self._lost
        return None

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                client.deactivate()
            finally:
                close_jack_client(client)


def jack_midi_backend(**kwargs) -> MidiBackend:
    """The JACK MIDI output: the C client (:class:`sjtui.midi.jack_out.CJackMidiBackend`, no Python
    in JACK's thread) where it was built, else :class:`JackMidiBackend`; ``SJTUI_JACK_MIDI=python``
    asks for the Python one. ``kwargs`` as both take them."""
    from sjtui.midi import jack_out

    if jack_out.available() and os.environ.get("SJTUI_JACK_MIDI", "c") != "python":
        return jack_out.CJackMidiBackend(**kwargs)
    return JackMidiBackend(**kwargs)


def open_backend(
    kind: str = "auto",
    *,
    port: str | None = None,
    api: str | None = None,
    client_name: str = DEFAULT_CLIENT_NAME,
    connect_to: str | Sequence[str] | None = None,
) -> MidiBackend:
    """Open ``kind`` = ``"jack"``, ``"rtmidi"`` or ``"auto"`` (JACK-Client when the chosen API is JACK)."""
    if kind == "auto":
        kind = "jack" if choose_api(api) == "UNIX_JACK" else "rtmidi"
    if kind == "jack":
        return jack_midi_backend(client_name=client_name, connect_to=connect_to if connect_to else port)
    if kind == "rtmidi":
        return RtMidiBackend(port, api=api, client_name=client_name)
    raise MidiError(
        f"MIDI backend {kind!r} is unknown; use auto, jack, rtmidi (or --synth for the built-in synth)"
    )
