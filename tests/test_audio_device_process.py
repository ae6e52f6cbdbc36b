"""The audio input in a child process (ProcessDeviceInput) and the shared-memory ring it writes.

Real parts: spawned processes, POSIX shared memory, a private JACK server (dummy
backend) with a JACK-Client feeder playing a guitar recording into PortAudio's
input, and the real engine. What reaches the parent's ring through the child
must be the file, bit for bit, exactly as through the in-process DeviceInput.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sjtui.audio.device import DeviceInput
from sjtui.audio.device_process import ProcessDeviceInput
from sjtui.audio.ring import RingBuffer, RingReader, SharedRingBuffer
from sjtui.errors import AudioError
from tests.test_audio_device import RECORDING, _aligned, _record, assert_arrived_bit_exact
from tests.test_engine_fast import library_dir  # noqa: F401 - fixture

REPO = Path(__file__).resolve().parent.parent


def _ring_names(pid: int | None = None) -> list[str]:
    prefix = "sjtui-ring-" if pid is None else f"sjtui-ring-{pid}-"
    return sorted(name for name in os.listdir("/dev/shm") if name.startswith(prefix))


def _gone(pid: int) -> bool:
    """No such process, or only a zombie left (reaped by whoever adopted it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def _within(condition, timeout_s: float = 10.0) -> bool:
    """``condition()`` became true within ``timeout_s`` (progress of another process or thread)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def _wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return _gone(pid)


# ------------------------------------------------------------------ the shared ring, no audio


def _writer(handle, blocks: int, block_size: int) -> None:
    ring = SharedRingBuffer.attach(handle)
    for k in range(blocks):
        index = ring.write_index
        ring.write(np.arange(index, index + block_size, dtype=np.float32) % 65536)
        ring.record_anchor(index, 100.0 + k * block_size / 48000, 200.0 + k)
        if k % 7 == 3:
            ring.note_overflow()
        if k == 11:
            ring.note_error()
        time.sleep(0.0005)
    ring.close()


def test_a_writer_process_and_a_reader_here_share_samples_anchors_and_counters():
    ring = SharedRingBuffer.create(8192 + 1024, max_write_samples=1024, n_anchors=32)
    assert _ring_names(os.getpid()) == []  # the name is unlinked as soon as the block exists
    assert (ring.write_index, ring.anchor_count, ring.last_overflow_index, ring.last_error_index) == (
        0,
        0,
        -1,
        -1,
    )
    reader = RingReader(ring, 0)
    process = multiprocessing.get_context("spawn").Process(target=_writer, args=(ring.handle(), 400, 96))
    process.start()
    received, starts = [], []
    while process.is_alive() or reader.available():
        result = reader.read_available()
        if result.samples.size:
            received.append(result.samples.copy())
            starts.append(result.start_index)
        time.sleep(0.002)
    process.join(10)
    assert process.exitcode == 0
    assert ring.write_index == 400 * 96
    # every sample the reader got is the writer's, at its absolute index; losses are reported, never garbage
    for start, samples in zip(starts, received):
        np.testing.assert_array_equal(
            samples, np.arange(start, start + samples.shape[0], dtype=np.float32) % 65536
        )
    assert sum(s.shape[0] for s in received) + reader.lost_samples == 400 * 96
    assert ring.overflow_count == len([k for k in range(400) if k % 7 == 3])
    last_overflow_block = max(k for k in range(400) if k % 7 == 3)
    assert ring.last_overflow_index == (last_overflow_block + 1) * 96  # noted after that block's write
    assert (ring.error_count, ring.last_error_index) == (1, 12 * 96)
    anchors = ring.anchors()
    assert ring.anchor_count == 400 and len(anchors) == 31
    assert [a.sample_index for a in anchors] == [k * 96 for k in range(369, 400)]
    assert anchors[-1].adc_time_s == 100.0 + 399 * 96 / 48000 and anchors[-1].monotonic_s == 599.0
    ring.close()


def test_the_shared_ring_refuses_what_the_plain_ring_refuses():
    for args in ((1000, 1024), (4096, 0)):
        with pytest.raises(ValueError) as plain:
            RingBuffer(*args)
        with pytest.raises(ValueError) as shared:
            SharedRingBuffer.create(*args)
        assert str(plain.value) == str(shared.value)
    owner = SharedRingBuffer.create(8192)
    handle = owner.handle()
    handle.fd = os.dup(handle.fd)  # what a spawned child receives: its own descriptor (attach closes it)
    other_side = SharedRingBuffer.attach(handle)
    owner.write(np.full(100, 0.25, np.float32))
    owner.note_overflow()
    assert other_side.write_index == 100 and other_side.overflow_count == 1
    np.testing.assert_array_equal(other_side.read(0, 100), np.full(100, 0.25, np.float32))
    with pytest.raises(ValueError, match="only the process that created"):
        other_side.handle()
    other_side.close()
    owner.close()


# ------------------------------------------------------------------ the input process on JACK


@pytest.mark.jack
def test_the_recording_arrives_bit_exact_through_the_child_as_in_process(portaudio_jack, guitar_audio_dir):
    signal_, _ = sf.read(guitar_audio_dir / RECORDING, dtype="float32")
    other = np.random.default_rng(5).uniform(-0.5, 0.5, signal_.shape[0]).astype(np.float32)
    results = {}

    def judge(live, received, _):
        assert_arrived_bit_exact(received, signal_, silence_around=True)
        assert live.ring.error_count == 0 and live.callback_count > signal_.shape[0] // 256
        # one anchor per callback, a block apart; capture times advance at the sample rate
        anchors = live.ring.anchors()
        assert {b.sample_index - a.sample_index for a, b in itertools.pairwise(anchors)} == {256}
        index = np.array([a.sample_index for a in anchors], dtype=np.float64)
        adc_s = np.array([a.adc_time_s for a in anchors])
        assert np.polyfit(index, adc_s, 1)[0] == pytest.approx(1 / 48000, rel=0.01)
        # the child's monotonic_s is this process's time.monotonic() (one system-wide clock)
        assert anchors[0].monotonic_s < anchors[-1].monotonic_s < time.monotonic()
        assert time.monotonic() - anchors[-1].monotonic_s < 60.0

    for input_class in (ProcessDeviceInput, DeviceInput):
        _, received, _ = _record([other, signal_], judge, channel=2, input_class=input_class)
        offset = _aligned(received, signal_)
        results[input_class.__name__] = received[offset : offset + signal_.shape[0] + 4800]
    np.testing.assert_array_equal(results["ProcessDeviceInput"], results["DeviceInput"])


@pytest.mark.jack
def test_overflows_and_anchors_in_the_child_are_seen_here(portaudio_jack):
    """A stopped child misses JACK cycles: PortAudio flags input overflows, which reach the parent's ring."""
    with ProcessDeviceInput(device="system", block_size=256) as live:
        ring = live.ring
        deadline = time.monotonic() + 10
        while ring.anchor_count < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        # PortAudio flags an overflow after any xrun of the server (a client starting can
        # cause one), so the stop's overflow is the one counted from here on
        before, stopped_at = ring.overflow_count, ring.write_index
        os.kill(live.pid, signal.SIGSTOP)
        time.sleep(0.1)
        os.kill(live.pid, signal.SIGCONT)
        deadline = time.monotonic() + 10
        while ring.overflow_count == before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ring.overflow_count > before
        assert stopped_at <= ring.last_overflow_index <= ring.write_index
        count = ring.anchor_count
        while ring.anchor_count < count + 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert live.active and ring.error_count == 0
        latest = ring.latest_anchor()
        assert ring.write_index >= latest.sample_index + 256
        # the stream time the child reports is the anchors' clock, past the last anchor
        assert live.stream_time_s() >= latest.adc_time_s
    # every callback (counted in the child) wrote one block and one anchor
    assert ring.anchor_count == live.callback_count and ring.write_index == 256 * live.callback_count
    assert ring.latest_anchor().sample_index == ring.write_index - 256


@pytest.mark.jack
def test_device_errors_come_back_with_the_device_list(portaudio_jack):
    with pytest.raises(AudioError) as info:
        ProcessDeviceInput(device="Scarlett 2i2")
    message = str(info.value)
    assert "'Scarlett 2i2'" in message and "system" in message and "JACK Audio Connection Kit" in message
    with pytest.raises(AudioError, match="input channel 3 does not exist on 'system'"):
        ProcessDeviceInput(device="system", channel=3)
    # opened in the child: the same AudioError text as in process, with the device list
    texts = []
    for input_class in (DeviceInput, ProcessDeviceInput):
        live = input_class(device="system", sample_rate_hz=44100)
        with pytest.raises(AudioError) as info:
            live.start()
        texts.append(str(info.value))
        assert not live.active
    assert texts[0] == texts[1]
    assert (
        "could not open audio input" in texts[1] and "44100 Hz" in texts[1] and "\n  [0] system" in texts[1]
    )
    with pytest.raises(AudioError, match="shared-memory ring"):
        ProcessDeviceInput(device="system", ring=RingBuffer(48000))


@pytest.mark.jack
def test_stop_leaves_no_child_and_no_shared_memory(portaudio_jack):
    live = ProcessDeviceInput(device="system")
    for _ in range(2):  # and it starts again after a stop (the engine's input switch)
        live.start()
        pid = live.pid
        assert not _gone(pid) and live.active
        assert _ring_names(os.getpid()) == []
        os.kill(pid, signal.SIGINT)  # Ctrl-C reaches the process group: the parent decides, the child goes on
        count = live.callback_count
        assert _within(lambda: live.callback_count > count + 10) and live.active  # noqa: B023
        live.stop()
        assert _gone(pid) and live.pid is None and not live.active
        live.stop()  # idempotent
    assert _ring_names(os.getpid()) == []
    assert multiprocessing.active_children() == []


PARENT = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {repo!r})
    from sjtui.audio.device_process import ProcessDeviceInput

    if __name__ == "__main__":
        live = ProcessDeviceInput(device="system").start()
        while live.ring.anchor_count < 10:
            time.sleep(0.01)
        print(os.getpid(), live.pid, flush=True)
        time.sleep(120)
    """
)


@pytest.mark.jack
def test_sigkill_of_the_parent_leaves_no_child_and_no_shared_memory(portaudio_jack, tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT.format(repo=str(REPO)))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        line = parent.stdout.readline()
        assert line, "the parent script did not start its audio input"
        parent_pid, child_pid = (int(v) for v in line.split())
        assert parent_pid == parent.pid and not _gone(child_pid)
        assert _ring_names(parent_pid) == []  # unlinked while both run
        parent.kill()
        parent.wait(10)
        assert _wait_gone(child_pid), "the audio input child outlived its killed parent"
        assert _ring_names(parent_pid) == []
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)


@pytest.mark.jack
def test_the_engine_listens_through_the_child_by_default(portaudio_jack, library_dir):  # noqa: F811
    """The engine's clock is fitted through the child's anchors; ``input_process=False`` keeps it in process.

    On JACK the default is the C JACK client when it was built (tests/test_jack_input.py);
    ``jack_input=False`` asks for PortAudio's JACK host API in the child, as other devices get."""
    from sjtui.audio import jack_input
    from sjtui.engine import EngineOptions, create_engine

    default = jack_input.JackDeviceInput if jack_input.available() else ProcessDeviceInput
    cases = ((True, True, default), (True, False, ProcessDeviceInput), (False, True, DeviceInput))
    for input_process, c_client, expected in cases:
        engine = create_engine(
            EngineOptions(
                input="system", synth=True, synth_engine="numpy", bpm=120.0, model="none",
                library=str(library_dir), state_file=False, input_process=input_process, jack_input=c_client,
            )
        )  # fmt: skip
        try:
            assert type(engine.source) is expected
            assert isinstance(engine.ring, SharedRingBuffer) == input_process
            engine.start()
            assert _within(lambda: engine.ring.anchor_count > 50)  # noqa: B023 - called here
            assert engine.error is None and engine.source.active
            ring = engine.ring
            assert ring.error_count == 0
            # the sample clock follows the ring: 'now' is within a few blocks of what arrived
            assert _within(lambda: abs(engine.now_sample() - ring.write_index) < 4096, 5)  # noqa: B023
            assert _within(lambda: engine.analysis.next_index > 0)  # noqa: B023
            pid = getattr(engine.source, "pid", None)
        finally:
            engine.close()
        assert not engine.source.active
        if pid is not None:
            assert _gone(pid)


def _portaudio_clients(client) -> list[str]:
    """The PortAudio JACK clients on the server (PortAudio names them PortAudio, PortAudio-01, ...)."""
    import jack

    found = []
    for name in ["PortAudio"] + [f"PortAudio-{n:02d}" for n in range(1, 8)]:
        try:
            client.get_uuid_for_client_name(name)
        except jack.JackError:
            continue
        found.append(name)
    return found


@pytest.mark.jack
@pytest.mark.parametrize("c_client", [False, True], ids=["portaudio-child", "c-jack-client"])
def test_the_jam_process_holds_no_portaudio_client_of_its_own(portaudio_jack, library_dir, c_client):  # noqa: F811
    """With the input in its child and the drums on JACK MIDI, the child's PortAudio client is the only one;
    with the C JACK input (the default where built) there is none at all.

    While PortAudio is initialised its JACK host API keeps an active client
    whose callback jackd runs every cycle, streams or not: the jam's own
    process used to keep one for the whole jam.
    """
    from sjtui.audio import jack_input

    if c_client and not jack_input.available():
        pytest.skip("the C JACK input was not built")
    import jack

    from sjtui.audio.portaudio import holds
    from sjtui.engine import EngineOptions, create_engine

    probe = jack.Client("sjtui-test-probe", no_start_server=True)
    engine = create_engine(
        EngineOptions(
            input="system", midi_backend="jack", bpm=120.0, model="none",
            library=str(library_dir), state_file=False, jack_input=c_client,
        )
    )  # fmt: skip
    try:
        engine.start()
        assert _within(lambda: engine.ring.anchor_count > 20)
        assert engine.error is None and engine.source.active
        assert holds() == 0
        clients = _portaudio_clients(probe)
        assert len(clients) == (0 if c_client else 1), clients
        owners = {p.name.split(":")[0] for p in probe.get_ports() if p.name.startswith("PortAudio")}
        assert owners == set(clients)  # and it is the one with the input stream's ports
    finally:
        engine.close()
    assert _portaudio_clients(probe) == []
    probe.close()


@pytest.mark.jack
@pytest.mark.parametrize("c_client", [False, True], ids=["portaudio-child", "c-jack-client"])
def test_a_device_chosen_mid_jam_gets_its_own_process(portaudio_jack, library_dir, guitar_audio_dir, c_client):  # noqa: F811
    """From a file to a JACK device mid-jam: the PortAudio child, or the C JACK client where built."""
    from sjtui import snapshot as snap
    from sjtui.audio import jack_input
    from sjtui.engine import EngineOptions, create_engine

    if c_client and not jack_input.available():
        pytest.skip("the C JACK input was not built")
    expected = jack_input.JackDeviceInput if c_client else ProcessDeviceInput
    engine = create_engine(
        EngineOptions(
            input=str(guitar_audio_dir / RECORDING), loop=True, synth=True, synth_engine="numpy", bpm=120.0,
            model="none", library=str(library_dir), state_file=False, jack_input=c_client,
        )
    )  # fmt: skip
    try:
        engine.start()
        assert isinstance(engine.ring, SharedRingBuffer)  # a file writes the shared ring in this process
        time.sleep(0.5)
        engine.send(snap.ChooseInput("system"))
        deadline = time.monotonic() + 20
        while not isinstance(engine.source, expected) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert isinstance(engine.source, expected) and engine.source.active
        count, index = engine.ring.anchor_count, engine.ring.write_index
        assert _within(lambda: engine.ring.anchor_count > count + 20)
        assert engine.ring.write_index > index  # the index goes on
        assert engine.error is None
        # the engine's clock follows the new input (checked a few times: a stall of jackd or the
        # input for ~85 ms at the moment of one reading is not the clock's fault)
        assert _within(lambda: abs(engine.now_sample() - engine.ring.write_index) < 4096, 5)
        pid = getattr(engine.source, "pid", None)
    finally:
        engine.close()
    assert not engine.source.active
    if pid is not None:
        assert _gone(pid)
