"""Input the driver never delivered: StreamGapDetector, alone and on a real JACK server.

PortAudio's JACK host API raises its input-overflow flag for every xrun of the
server, whoever was late, so the live input also measures what it lost from
the stream's clock (sjtui.audio.device.StreamGapDetector).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from sjtui.audio.device import DeviceInput, StreamGapDetector
from sjtui.audio.ring import SharedRingBuffer
from tests.test_audio_device import XrunCounter, without_xruns

BLOCK = 256
RATE = 48000


def _feed(detector: StreamGapDetector, blocks: int, late_frames: np.ndarray, skip_at: set[int]) -> list[int]:
    """Blocks as a driver delivers them: capture time = server frame / rate + how late the callback ran."""
    found, frame, index = [], 0, 0
    for k in range(blocks):
        if k in skip_at:  # the server's cycle passed without this client: its block never arrives
            frame += BLOCK
        lost = detector.update(index, (frame + late_frames[k]) / RATE + 0.5)
        if lost:
            found.append(lost)
        frame += BLOCK
        index += BLOCK
    return found


def test_jitter_within_a_cycle_is_no_gap():
    rng = np.random.default_rng(0)
    late = rng.uniform(0, BLOCK, 4000)  # callbacks anywhere within their cycle
    assert _feed(StreamGapDetector(RATE, BLOCK, window=64), 4000, late, set()) == []


def test_a_skipped_cycle_is_one_block_lost_once():
    rng = np.random.default_rng(1)
    late = rng.uniform(0, 0.4 * BLOCK, 4000)
    found = _feed(StreamGapDetector(RATE, BLOCK, window=64), 4000, late, {1000, 3000})
    assert len(found) == 2, found
    assert all(abs(lost - BLOCK) <= 8 for lost in found), found  # the windows' earliest callbacks differ a little


def test_several_cycles_in_a_row_are_one_gap():
    late = np.zeros(2000)
    found = _feed(StreamGapDetector(RATE, BLOCK, window=64), 2000, late, {700, 701, 702})
    assert found == [3 * BLOCK]


def test_shared_ring_carries_the_gap_counters():
    ring = SharedRingBuffer.create(48000)
    try:
        assert (ring.frames_lost, ring.gap_count, ring.last_gap_index) == (0, 0, -1)
        ring.write(np.zeros(512, np.float32))
        ring.note_gap(256)
        ring.note_gap(512)
        assert (ring.frames_lost, ring.gap_count, ring.last_gap_index) == (768, 2, 512)
    finally:
        ring.close()


class _StallOnce(DeviceInput):
    """The real callback, once held up for ``stall_s`` as a descheduled thread would be."""

    stall_at: int | None = None
    stall_s = 0.0

    def _callback(self, indata, frames, time_info, status) -> None:
        if self.callback_count == self.stall_at:
            time.sleep(self.stall_s)
        super()._callback(indata, frames, time_info, status)


@pytest.mark.jack
def test_a_stalled_callback_loses_cycles_and_says_how_many(portaudio_jack):
    """jackd skips a client's cycles while it is late; the input reports exactly what it missed."""

    def take():
        with XrunCounter() as server:
            live = _StallOnce(device="system", block_size=BLOCK, ring_seconds=4).start()
            try:
                time.sleep(2.0)  # a full detector window (256 blocks = 1.4 s) before the stall
                live.stall_s = 0.030  # 5.6 periods of 5.3 ms
                live.stall_at = live.callback_count + 10
                time.sleep(3.5)  # two more windows
            finally:
                live.stop()
        assert server.xruns >= 1  # jackd saw the stall as an xrun, as the other tests' counters rely on
        return live.ring, server.xruns

    def judge(ring):
        assert ring.gap_count == 1, (ring.gap_count, ring.frames_lost)
        # 30 ms and the time to take the GIL back (a loaded machine adds milliseconds)
        assert 2 * BLOCK <= ring.frames_lost <= 12 * BLOCK, ring.frames_lost
        assert ring.overflow_count >= 1  # PortAudio's flag for the xrun we caused

    without_xruns(take, judge, expected_xruns=1)  # another xrun besides ours can add a gap: taken again


@pytest.mark.jack
def test_a_steady_stream_loses_nothing(portaudio_jack):
    def take():
        with XrunCounter() as server, DeviceInput(device="system", block_size=BLOCK, ring_seconds=4) as live:
            time.sleep(3.5)
        return live, server.xruns


    def judge(live):
        assert (live.ring.frames_lost, live.ring.gap_count) == (0, 0)
        assert live.callback_count > 500

    without_xruns(take, judge)  # an xrun of the server (any client late) really loses input: taken again
