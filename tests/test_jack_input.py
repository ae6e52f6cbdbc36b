"""The audio input's C JACK client (sjtui/audio/jack_input.py, _jackinput.c) on a real JACK server.

The same recordings as PortAudio's input (tests/test_audio_device.py) must arrive bit exact through
it, with an anchor per block; what a late cycle costs is counted exactly; the engine takes it for a
JACK device; and the ring's memory cannot be unmapped while the callback may write into it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import jack
import numpy as np
import pytest
import soundfile as sf

from sjtui.audio import jack_input
from sjtui.audio.jack_input import JackDeviceInput
from sjtui.audio.ring import RingBuffer, SharedRingBuffer
from sjtui.errors import AudioError
from tests.test_audio_device import RECORDING, XrunCounter, _record, assert_arrived_bit_exact, without_xruns

pytestmark = [
    pytest.mark.jack,
    pytest.mark.skipif(
        not jack_input.available(), reason="the C JACK input was not built (JACK's headers missing)"
    ),
]

BLOCK = 256  # the test server's period


def test_a_real_recording_arrives_bit_exact_with_an_anchor_per_block(portaudio_jack, guitar_audio_dir):
    signal, _ = sf.read(guitar_audio_dir / RECORDING, dtype="float32")

    def judge(live, received, first_index):
        assert_arrived_bit_exact(received, signal, silence_around=True)
        assert first_index == 0 and live.source_port == "system:capture_1"
        ring = live.ring
        assert live.callback_count > signal.shape[0] // BLOCK and ring.error_count == 0
        anchors = ring.anchors()
        assert set(np.diff([a.sample_index for a in anchors]).tolist()) == {BLOCK}
        # capture times: the server's frame clock, exactly one period apart when no cycle was skipped
        adc_s = np.array([a.adc_time_s for a in anchors])
        assert np.allclose(np.diff(adc_s), BLOCK / 48000, atol=1e-9)
        arrival_s = np.array([a.monotonic_s for a in anchors])
        assert (np.diff(arrival_s) > 0).all() and abs(arrival_s[-1] - time.monotonic()) < 60
        assert (ring.frames_lost, ring.gap_count) == (0, 0)

    _record([signal], judge, input_class=JackDeviceInput)


def test_channel_two_is_the_devices_second_port(portaudio_jack, guitar_audio_dir):
    signal, _ = sf.read(guitar_audio_dir / RECORDING, dtype="float32", frames=48000)
    other = np.random.default_rng(3).uniform(-0.5, 0.5, signal.shape[0]).astype(np.float32)

    def judge(live, received, _):
        assert live.source_port == "system:capture_2"
        assert_arrived_bit_exact(received, signal)

    _record([other, signal], judge, channel=2, input_class=JackDeviceInput)


# the input in a child process, so that the test can stop it (SIGSTOP) as a descheduled thread would be
_CHILD = """
import json, sys
import numpy as np
from sjtui.audio.jack_input import JackDeviceInput
live = JackDeviceInput(device="system", ring_seconds=4).start()
print("READY", flush=True)
sys.stdin.readline()
live.stop()
ring = live.ring
anchors = ring.anchors()[20:]  # once the port's capture latency (in adc_time_s) is known after connecting
frames = np.rint(np.array([a.adc_time_s for a in anchors]) * 48000).astype(np.int64)
index = np.array([a.sample_index for a in anchors])
print(json.dumps({"frames_lost": ring.frames_lost, "gap_count": ring.gap_count, "overflows": ring.overflow_count,
                  "anchor_jumps": int((np.diff(frames) - np.diff(index)).sum()), "anchors_kept": len(anchors) + 20,
                  "anchors": ring.anchor_count}))
"""


def test_cycles_the_input_missed_are_counted_exactly(portaudio_jack):
    def take():
        with XrunCounter():
            child = subprocess.Popen(
                [sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            try:
                assert child.stdout.readline().strip() == "READY"
                time.sleep(0.3)
                child.send_signal(signal.SIGSTOP)  # its JACK thread too: the server runs cycles without it
                time.sleep(0.040)
                child.send_signal(signal.SIGCONT)
                time.sleep(0.3)
                out, _ = child.communicate("\n", timeout=30)
            finally:
                if child.poll() is None:
                    child.kill()
        return json.loads(out.strip().splitlines()[-1])

    found = take()
    assert found["gap_count"] >= 1 and found["frames_lost"] >= BLOCK, found
    assert found["frames_lost"] % BLOCK == 0 and found["overflows"] >= 1, found
    assert found["anchors_kept"] == found["anchors"]  # all still in the table (256 slots, ~120 blocks)
    # the capture clock jumped by exactly what was counted lost
    assert found["anchor_jumps"] == found["frames_lost"], found


_SERVER_GOES = """
import json, time
from sjtui.audio.jack_input import JackDeviceInput
from sjtui.audio.jack_server import PrivateJackServer
server = PrivateJackServer("sjtui-test-gone", 48000, 256).start()  # JACK_DEFAULT_SERVER set while it runs
live = JackDeviceInput(device="system").start()
time.sleep(0.3)
before = live.ring.write_index
server.stop()  # jackd is gone: its shared memory with it
deadline = time.monotonic() + 10
while live.active and time.monotonic() < deadline:
    time.sleep(0.05)
gone = not live.active
live.stop()
print(json.dumps({"before": before, "inactive_after_server_left": gone, "writer_active": live.ring.writer_active}))
"""


def test_the_server_going_away_leaves_the_input_inactive_not_crashed(portaudio_jack):
    """In a child process: a crash there (a jack_* call on a dead server) shows as its exit code."""
    run = subprocess.run(
        [sys.executable, "-c", _SERVER_GOES], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found == {"before": found["before"], "inactive_after_server_left": True, "writer_active": 0}, found
    assert found["before"] > 0


def test_a_steady_stream_loses_nothing(portaudio_jack):
    def take():
        # 128 asked, the server's 256 delivered: the input says so (the engine's clock counts on it)
        with (
            XrunCounter() as server,
            JackDeviceInput(device="system", block_size=128, ring_seconds=4) as live,
        ):
            time.sleep(3.0)
        return live, server.xruns


    def judge(live):
        assert (live.ring.frames_lost, live.ring.gap_count, live.ring.overflow_count) == (0, 0, 0)
        assert live.callback_count > 500 and not live.active
        assert live.block_size == BLOCK and set(
            np.diff([a.sample_index for a in live.ring.anchors()]).tolist()
        ) == {BLOCK}

    without_xruns(take, judge)  # a lost cycle with an xrun of the server's is taken again


def test_the_rings_memory_stays_mapped_while_the_client_runs(portaudio_jack):
    ring = SharedRingBuffer.create(48000 * 2)
    live = JackDeviceInput(device="system", ring=ring).start()
    try:
        with pytest.raises(BufferError, match="stop the input first"):
            ring.close()  # the C callback holds the block: unmapping it now would crash the process
        deadline = time.monotonic() + 10  # start() returns once active, maybe before the first cycle
        while ring.write_index == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ring.write_index > 0  # and the ring is still whole
    finally:
        live.stop()
    live.stop()  # idempotent
    ring.close()


def test_bad_settings_and_devices_say_what_to_do(portaudio_jack):
    with pytest.raises(AudioError, match="runs at 48000 Hz, not 44100"):
        JackDeviceInput(device="system", sample_rate_hz=44100).start()
    with pytest.raises(AudioError, match="SharedRingBuffer"):
        JackDeviceInput(device="system", ring=RingBuffer(48000))
    with pytest.raises(AudioError, match="channel 9 does not exist"):
        JackDeviceInput(device="system", channel=9)
    with pytest.raises(AudioError, match="no audio input device matches 'nowhere'"):
        JackDeviceInput(device="nowhere")
    lookup = jack.Client("sjtui-test-lookup", no_start_server=True)
    try:
        assert lookup.get_ports("sjtui-input") == []  # nothing left open
    finally:
        lookup.close()


def test_the_engine_takes_the_c_input_for_a_jack_device(portaudio_jack):
    from sjtui.engine import EngineOptions, _device_input

    ring = SharedRingBuffer.create(48000 * 2)
    options = EngineOptions()
    try:
        assert type(_device_input(ring, "system", 1, 48000, options)) is JackDeviceInput
        # a plain ring: PortAudio's callback in this process, as asked for with input_process=False
        assert (
            type(_device_input(RingBuffer(48000 * 2), "system", 1, 48000, options)).__name__ == "DeviceInput"
        )
    finally:
        ring.close()
