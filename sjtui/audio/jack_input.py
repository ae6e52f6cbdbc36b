"""Live audio input on JACK from a C process callback: no Python in JACK's real-time thread.

Through PortAudio's JACK host API, sounddevice's callback is Python: JACK's process thread takes
the GIL every period (5.3 ms at 48 kHz/256), even in a child process of its own
(:mod:`sjtui.audio.device_process`). :class:`JackDeviceInput` is a JACK client of its own whose
process callback (``sjtui/audio/_jackinput.c``) copies the port's buffer into a
:class:`~sjtui.audio.ring.SharedRingBuffer` with the ring's publish protocol, and records what
:class:`~sjtui.audio.device.DeviceInput`'s callback records: an anchor per block (the block's
capture time on the server's frame clock, its arrival on ``time.monotonic``), the block count,
and input the server never delivered (frames between one cycle's start and the next beyond the
previous cycle's length: exact on JACK, where :class:`~sjtui.audio.device.StreamGapDetector` has
to estimate). Every server xrun counts as an overflow, as PortAudio's JACK host API counts it.

It is the same device as PortAudio's: a device of PortAudio's JACK host API is a JACK client
(``system``), its channel N that client's N-th audio output port. The engine uses this class for
such a device when the extension was built (:func:`available`; ``make`` installs JACK's headers),
else the PortAudio input in a child process. The server's period is the block size (JACK has no
other); the ring's memory stays exported to the client until :meth:`stop`, so it cannot be
unmapped while the callback may write.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from sjtui.audio.device import describe_input_devices, resolve_input
from sjtui.audio.ring import _HEADER_SLOTS, SharedRingBuffer, capacity_for
from sjtui.errors import AudioError

JACK_HOST_API = "JACK Audio Connection Kit"  # PortAudio's name for its JACK host API
CLIENT_NAME = "sjtui-input"


class _ClientInfo(NamedTuple):
    """What ``_jackinput.info`` answers (one call, one tuple from C)."""

    port_name: str
    sample_rate_hz: int
    period_frames: int
    frame_time: int  # the server's frame clock now (0 once the server is gone)
    capture_latency_frames: int
    server_alive: bool


def available() -> bool:
    """Whether the C client was built (it needs JACK's headers and a compiler at install)."""
    try:
        from sjtui.audio import _jackinput  # noqa: F401
    except ImportError:
        return False
    return True


def is_jack_device(device) -> bool:
    """Whether ``device`` (an :class:`~sjtui.audio.device.InputDeviceInfo`) is on PortAudio's JACK host API."""
    return device.host_api == JACK_HOST_API


def _posix_regex_escape(text: str) -> str:
    """``text`` as a literal in a POSIX extended regular expression (JACK's port patterns)."""
    return "".join("\\" + c if c in "\\.[]{}()*+?^$|" else c for c in text)


class JackDeviceInput:
    """The channel ``channel`` of a JACK device, written into a shared ring by a C JACK client.

    Same parameters, attributes and methods as :class:`~sjtui.audio.device.DeviceInput` (the
    engine swaps one for the other); ``ring`` must be a :class:`SharedRingBuffer` (one holding
    ``ring_seconds`` is made by default). ``block_size`` is checked, and set to the server's period
    once started (the blocks that arrive); ``latency`` is the server's.
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
    ):
        self.device, self.channel = resolve_input(device, channel, sample_rate_hz, block_size)
        if not is_jack_device(self.device):
            raise AudioError(
                f"{self.device.describe()} is not a JACK device; the C JACK input takes only JACK's "
                "(use DeviceInput for the others)"
            )
        self.sample_rate_hz = int(sample_rate_hz)
        self.block_size = int(block_size)
        if ring is None:
            ring = SharedRingBuffer.create(capacity_for(ring_seconds, sample_rate_hz))
        if not isinstance(ring, SharedRingBuffer):
            raise AudioError(
                "the JACK input writes into a SharedRingBuffer (its C callback needs the shared layout)"
            )
        self.ring = ring
        self.source_port: str | None = None
        self._handle = None

    @property
    def callback_count(self) -> int:
        return self.ring.callback_count

    def start(self) -> JackDeviceInput:
        """Open the client, check the rate, connect the channel; :class:`AudioError` if it cannot."""
        if self._handle is not None:
            return self
        from sjtui.audio import _jackinput

        ring = self.ring
        ring.callback_count = 0
        try:
            handle = _jackinput.open(
                CLIENT_NAME, os.environ.get("JACK_DEFAULT_SERVER"), ring._mmap, _HEADER_SLOTS,
                ring.capacity_samples, ring.max_write_samples, ring._n_anchors,
            )  # fmt: skip
        except OSError as error:
            raise AudioError(
                f"could not open the JACK input for {self.device.describe()}: {error}. Is the JACK server "
                "still running? Input devices:\n" + describe_input_devices()
            ) from error
        try:
            info = _ClientInfo(*_jackinput.info(handle))
            rate = info.sample_rate_hz
            if rate != self.sample_rate_hz:
                raise AudioError(
                    f"the JACK server runs at {rate} Hz, not {self.sample_rate_hz} Hz; start sjtui at "
                    f"{rate} Hz or set the server to {self.sample_rate_hz}"
                )
            pattern = f"^{_posix_regex_escape(self.device.name)}:"
            try:
                self.source_port = _jackinput.connect(handle, pattern, self.channel)
            except OSError as error:
                raise AudioError(
                    f"could not connect input {self.channel} of {self.device.describe()}: {error}. "
                    "Input devices:\n" + describe_input_devices()
                ) from error
        except BaseException:
            _jackinput.close(handle)
            raise
        self._handle = handle
        self.block_size = info.period_frames  # what arrives: JACK has no block size but the server's period
        ring.writers_in_process += 1
        return self

    def stop(self) -> None:
        """Deactivate and close the client (idempotent); the ring is left as it is."""
        handle, self._handle = self._handle, None
        if handle is not None:
            from sjtui.audio import _jackinput

            _jackinput.close(handle)
            self.ring.writers_in_process -= 1

    def _info(self) -> _ClientInfo:
        from sjtui.audio import _jackinput

        if self._handle is None:
            raise AudioError("the audio input is not running; call start() first")
        return _ClientInfo(*_jackinput.info(self._handle))

    @property
    def active(self) -> bool:
        """Running, and the JACK server has not gone away."""
        return self._handle is not None and self._info().server_alive

    def stream_time_s(self) -> float:
        """The server's frame clock now in seconds (the clock of the anchors' ``adc_time_s``)."""
        info = self._info()
        return info.frame_time / info.sample_rate_hz

    @property
    def input_latency_s(self) -> float:
        if self._handle is None:
            return float("nan")
        info = self._info()
        return info.capture_latency_frames / info.sample_rate_hz

    def __enter__(self) -> JackDeviceInput:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
