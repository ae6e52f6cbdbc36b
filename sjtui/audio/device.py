"""Live audio input from a sound card through sounddevice (PortAudio).

:class:`DeviceInput` opens a ``sounddevice.InputStream`` whose callback only
copies the selected channel into a :class:`~sjtui.audio.ring.RingBuffer`,
records the capture time of the block and counts overflows and errors
(CONVENTIONS §1). It never raises: an exception escaping a PortAudio
callback silently ends the stream, so everything is caught and counted in
``ring.error_count``.

Channels are numbered from 1, as printed on an interface's front panel:
``channel=2`` takes input 2, where many interfaces put the instrument jack.
PortAudio opens the first *N* channels of a device, so the stream opens
``channel`` channels and keeps the last one.

:class:`~sjtui.audio.device_process.ProcessDeviceInput` runs this class in a child
process (its own GIL) writing into a shared-memory ring; the engine uses it by default.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from sjtui.audio.portaudio import Hold, held
from sjtui.audio.ring import RingBuffer, capacity_for
from sjtui.constants import MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, SUPPORTED_SAMPLE_RATES_HZ
from sjtui.errors import AudioError


@dataclass(frozen=True)
class InputDeviceInfo:
    """An audio device that has inputs."""

    index: int
    name: str
    channels: int
    host_api: str
    default_sample_rate_hz: float

    def describe(self) -> str:
        return (
            f"[{self.index}] {self.name} ({self.channels} in, {self.host_api}, "
            f"default {self.default_sample_rate_hz:g} Hz)"
        )


def list_input_devices() -> list[InputDeviceInfo]:
    """All devices with at least one input channel, in PortAudio's order."""
    with held() as sd:
        host_apis = sd.query_hostapis()
        found = sd.query_devices()
    devices = []
    for device in found:
        if device["max_input_channels"] > 0:
            devices.append(
                InputDeviceInfo(
                    index=int(device["index"]),
                    name=str(device["name"]),
                    channels=int(device["max_input_channels"]),
                    host_api=str(host_apis[device["hostapi"]]["name"]),
                    default_sample_rate_hz=float(device["default_samplerate"]),
                )
            )
    return devices


def describe_input_devices(devices: list[InputDeviceInfo] | None = None) -> str:
    """The input devices as indented lines, or a note that there are none."""
    devices = list_input_devices() if devices is None else devices
    if not devices:
        return "  (no audio input devices found: is the interface plugged in and the audio server running?)"
    return "\n".join("  " + d.describe() for d in devices)


def find_input_device(device: int | str | InputDeviceInfo | None) -> InputDeviceInfo:
    """Resolve ``device`` (index, case-insensitive name substring, or None for the default input).

    Raises :class:`AudioError` listing the input devices that exist when
    nothing (or more than one device, for a substring) matches. An
    :class:`InputDeviceInfo` is already resolved and comes back as it is (the
    streams check at start that its index still names it).
    """
    if isinstance(device, InputDeviceInfo):
        return device
    with held() as sd:
        devices = list_input_devices()
        default_index = sd.default.device[0]
    if device is None:
        if default_index is None or default_index < 0:
            if devices:
                return devices[0]
            raise AudioError(
                "no audio input device found.\nInput devices:\n" + describe_input_devices(devices)
            )
        matches = [d for d in devices if d.index == default_index]
        if matches:
            return matches[0]
        if devices:
            return devices[0]
        raise AudioError("no audio input device found.\nInput devices:\n" + describe_input_devices(devices))
    if isinstance(device, (int, np.integer)) or (isinstance(device, str) and device.strip().isdigit()):
        index = int(device)
        for d in devices:
            if d.index == index:
                return d
        raise AudioError(
            f"no audio input device with index {index}; choose one of these with --device INDEX or NAME:\n"
            + describe_input_devices(devices)
        )
    wanted = device.strip().lower()
    exact = [d for d in devices if d.name.lower() == wanted]
    if len(exact) == 1:
        return exact[0]
    matches = [d for d in devices if wanted in d.name.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise AudioError(
            f"no audio input device matches {device!r}; choose one of these with --device INDEX or NAME:\n"
            + describe_input_devices(devices)
        )
    raise AudioError(
        f"{len(matches)} audio input devices match {device!r}; give the index or a longer name:\n"
        + describe_input_devices(matches)
    )


def validate_stream_settings(sample_rate_hz: int, block_size: int) -> None:
    """Raise :class:`AudioError` unless the rate is 44.1/48 kHz and the block 64..1024 samples."""
    if sample_rate_hz not in SUPPORTED_SAMPLE_RATES_HZ:
        raise AudioError(
            f"unsupported sample rate {sample_rate_hz!r} Hz; sjtui runs at "
            + " or ".join(f"{r}" for r in SUPPORTED_SAMPLE_RATES_HZ)
            + " Hz (set your interface or audio server to one of them)"
        )
    if not isinstance(block_size, (int, np.integer)) or not MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE:
        raise AudioError(
            f"unsupported block size {block_size!r}; use {MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE} samples "
            "(256 is a good start: 5.3 ms at 48 kHz)"
        )


def check_input_channel(device: InputDeviceInfo, channel: int) -> int:
    """``channel`` (1-based) as an int, or :class:`AudioError` if ``device`` has no such input."""
    if not isinstance(channel, (int, np.integer)) or not 1 <= channel <= device.channels:
        raise AudioError(
            f"input channel {channel!r} does not exist on {device.name!r}, which has "
            f"{device.channels} input channel(s); channels count from 1 as on the interface"
        )
    return int(channel)


def resolve_input(
    device: int | str | None, channel: int, sample_rate_hz: int, block_size: int
) -> tuple[InputDeviceInfo, int]:
    """Check the settings, find the device and check its channel (every input class's first step)."""
    validate_stream_settings(sample_rate_hz, block_size)
    info = find_input_device(device)
    return info, check_input_channel(info, channel)


class StreamGapDetector:
    """Finds cycles a stream missed, from the stream's clock against the samples counted: input the
    driver never delivered, or output blocks a late callback never rendered (the built-in synth).

    PortAudio's ``input_overflow`` flag is not that measure on every host: its JACK
    host API raises it for *every* xrun on the server (pa_jack.c sets
    ``paInputOverflow | paOutputUnderflow`` on JACK's xrun notification, "XXX: Any
    way to tell which of these occurred?"), whichever client was late and whether
    or not this stream lost anything. Here each block's capture time
    (``inputBufferAdcTime``, on JACK the server's frame clock) in frames, minus the
    number of samples received before it, is an offset that only moves when samples
    are missing; within a cycle it varies by how late the callback ran, so the
    smallest offset of each window of ``window`` blocks is compared with the
    previous window's. A rise of more than half a block is input lost (on JACK a
    skipped cycle is exactly one block; the estimate is good to the few frames by
    which the two windows' earliest callbacks differ). Clock drift between adjacent windows (a
    second or so apart) is a few frames at most.
    """

    def __init__(self, sample_rate_hz: int, block_size: int, window: int = 256):
        self.sample_rate_hz = float(sample_rate_hz)
        self.threshold = block_size / 2.0
        self.window = int(window)
        self._previous_min: float | None = None
        self._min = float("inf")
        self._n = 0

    def update(self, index: int, adc_time_s: float) -> int:
        """Frames found missing at this block (0 almost always); ``index`` = samples received (or
        rendered) before it, ``adc_time_s`` its time on the stream's clock (capture or DAC time)."""
        offset = adc_time_s * self.sample_rate_hz - index
        self._min = min(self._min, offset)
        self._n += 1
        if self._n < self.window:
            return 0
        previous, self._previous_min = self._previous_min, self._min
        self._min, self._n = float("inf"), 0
        if previous is None:
            return 0
        rise = self._previous_min - previous
        return round(rise) if rise > self.threshold else 0


class DeviceInput:
    """A running (or ready) input stream feeding one channel into a ring.

    Parameters
    ----------
    device:
        Index, name substring or None (the default input device).
    channel:
        1-based input channel, as on the interface (``2`` = input 2).
    sample_rate_hz, block_size:
        44100 or 48000 Hz; 64 to 1024 samples per callback.
    ring:
        Ring to feed; by default one holding ``ring_seconds`` of audio.

    Use as a context manager or call :meth:`start` and :meth:`stop`.
    The ring's ``overflow_count`` (the driver's overflow flag), ``frames_lost``
    and ``gap_count`` (:class:`StreamGapDetector`) and ``error_count`` tell what
    went wrong in the callback; ``callback_count`` how many blocks arrived.
    """

    def __init__(
        self,
        device: int | str | None = None,
        channel: int = 1,
        sample_rate_hz: int = 48000,
        block_size: int = 256,
        ring: RingBuffer | None = None,
        ring_seconds: float = 4.0,
        latency: str | float = "low",
    ):
        self.device, self.channel = resolve_input(device, channel, sample_rate_hz, block_size)
        self.sample_rate_hz = int(sample_rate_hz)
        self.block_size = int(block_size)
        self.latency = latency
        self.ring = ring if ring is not None else RingBuffer(capacity_for(ring_seconds, sample_rate_hz))
        if self.ring.max_write_samples < self.block_size:
            raise AudioError(
                f"the ring's max_write_samples ({self.ring.max_write_samples}) is below the block size "
                f"({self.block_size}); make a larger ring"
            )
        self.callback_count = 0
        self._gaps = StreamGapDetector(self.sample_rate_hz, self.block_size)
        self._column = self.channel - 1
        self._stream = None

    # The hot path: copy, count, note time. Nothing else, and never raise.
    def _callback(self, indata, frames, time_info, status) -> None:
        try:
            ring = self.ring
            index = ring.write_index
            ring.write(indata[:frames, self._column])
            adc_time_s = time_info.inputBufferAdcTime
            ring.record_anchor(index, adc_time_s, time.monotonic())
            lost = self._gaps.update(index, adc_time_s)
            if lost:
                ring.note_gap(lost)
            if status.input_overflow:
                ring.note_overflow()
            self.callback_count += 1
        except Exception:  # noqa: BLE001 - an exception here would silently end the stream
            try:
                self.ring.note_error()
            except Exception:  # noqa: BLE001
                pass

    def start(self) -> DeviceInput:
        """Open and start the stream; :class:`AudioError` (with the device list) if it cannot."""
        if self._stream is not None:
            return self
        self._gaps = StreamGapDetector(self.sample_rate_hz, self.block_size)  # a new stream, a new clock
        hold = Hold()  # for the life of the stream; released in stop()
        sd = hold.sd
        try:
            if sd.query_devices(self.device.index)["name"] != self.device.name:  # renumbered since it was found
                self.device = find_input_device(self.device.name)
            stream = sd.InputStream(
                device=self.device.index,
                channels=self.channel,
                samplerate=self.sample_rate_hz,
                blocksize=self.block_size,
                dtype="float32",
                latency=self.latency,
                callback=self._callback,
            )
            stream.start()
        except AudioError:  # the device is gone (find_input_device lists the others)
            hold.release()
            raise
        except (sd.PortAudioError, ValueError) as error:
            hold.release()
            raise AudioError(
                f"could not open audio input {self.device.describe()} at {self.sample_rate_hz} Hz, "
                f"{self.channel} channel(s), block {self.block_size}: {error}. The device may be busy, "
                "unplugged or not support these settings; input devices:\n" + describe_input_devices()
            ) from error
        self._stream, self._hold = stream, hold
        return self

    def stop(self) -> None:
        """Stop and close the stream (idempotent)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
            finally:
                try:
                    stream.close()
                finally:
                    self._hold.release()

    @property
    def active(self) -> bool:
        return self._stream is not None and self._stream.active

    def stream_time_s(self) -> float:
        """The stream's clock now (same clock as the anchors' ``adc_time_s``)."""
        if self._stream is None:
            raise AudioError("the audio input is not running; call start() first")
        return float(self._stream.time)

    @property
    def input_latency_s(self) -> float:
        return float(self._stream.latency) if self._stream is not None else float("nan")

    def __enter__(self) -> DeviceInput:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
