"""The analysis thread on a real ring fed by real sources, with the real OnlineAnalyzer."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import soundfile as sf

from sjtui.audio.analysis_thread import AnalysisThread
from sjtui.audio.file_source import ArraySource, FileSource
from sjtui.audio.riffs import generate_riff
from sjtui.audio.ring import RingBuffer
from sjtui.audio.synth_guitar import SynthGuitarSource
from sjtui.dsp.analysis import Features, OnlineAnalyzer, analyze

RECORDING = "berklee_guitar_riff_cutup4.wav"  # 9.8 s riff


class Recorder:
    """An analyzer that keeps what it was given (any object with process/reset will do)."""

    hop_size = 256
    sample_rate_hz = 48000

    def __init__(self, delay_s: float = 0.0):
        self.blocks: list[np.ndarray] = []
        self.resets = 0
        self.delay_s = delay_s

    def process(self, block):
        if self.delay_s:
            time.sleep(self.delay_s)
        self.blocks.append(block.copy())
        return block.shape[0]

    def reset(self):
        self.resets += 1


def _collect(thread_kwargs, source_factory, ring, analyzer):
    updates = []
    thread = AnalysisThread(ring, analyzer, on_update=updates.append, **thread_kwargs)
    source = source_factory(thread)
    with thread, source:
        assert source.wait(60)
        assert thread.wait_for(ring.write_index // thread.hop_size * thread.hop_size, 30)
    return thread, updates


@pytest.mark.parametrize("block_size", [100, 256, 1000])
def test_live_path_gives_the_same_features_as_offline_analysis(guitar_audio_dir, block_size):
    path = guitar_audio_dir / RECORDING
    signal, rate = sf.read(path, dtype="float32")
    ring = RingBuffer(1 << 14, max_write_samples=1024)
    analyzer = OnlineAnalyzer(rate)
    thread, updates = _collect(
        {"start_index": 0},
        lambda t: FileSource(ring, path, block_size=block_size, realtime=False, reader_index=lambda: t.next_index),
        ring,
        analyzer,
    )
    assert thread.overrun_count == 0 and thread.lost_samples == 0
    # Batches are whole hops and tile the stream without gaps.
    assert all((u.stop_index - u.start_index) % 256 == 0 for u in updates)
    assert [u.start_index for u in updates[1:]] == [u.stop_index for u in updates[:-1]]
    assert all(u.segment_start_index == 0 for u in updates)
    live = Features.concat([u.features for u in updates])
    offline = analyze(signal, rate)
    n = live.n_frames
    assert n == signal.shape[0] // 256
    np.testing.assert_array_equal(live.frame_sample, offline.frame_sample[:n])
    np.testing.assert_array_equal(live.energy_db, offline.energy_db[:, :n])
    np.testing.assert_array_equal(live.flux, offline.flux[:, :n])
    decided = offline.onsets[offline.onsets["decided_at"] <= live.frame_sample[-1]]
    assert len(decided) > 20
    np.testing.assert_array_equal(live.onsets, decided)
    assert thread.latest is updates[-1]


def test_synth_riff_onsets_are_found_through_the_thread():
    riff = generate_riff("straight8", bpm=120, bars=2, seed=3)
    ring = RingBuffer(1 << 14, max_write_samples=1024)
    analyzer = OnlineAnalyzer(48000)
    thread, updates = _collect(
        {},
        lambda t: SynthGuitarSource(ring, riff, 48000, "clean", realtime=False, loop=False,
                                    reader_index=lambda: t.next_index),
        ring,
        analyzer,
    )
    onsets = Features.concat([u.features for u in updates]).onsets
    found = np.unique(onsets["sample"])
    truth = np.ceil(riff.onset_times_s() * 48000).astype(np.int64)
    # every note is found within 50 ms (what the onset F-measure window allows)
    nearest = np.min(np.abs(found[None, :] - truth[:, None]), axis=1)
    assert (nearest <= 0.05 * 48000).all(), nearest


def test_slow_analyzer_is_told_what_it_lost_and_never_sees_garbage():
    signal = np.arange(1, 48000 * 4 + 1, dtype=np.float32)  # each sample is its index + 1
    ring = RingBuffer(8192, max_write_samples=512)
    analyzer = Recorder(delay_s=0.02)
    updates = []
    thread = AnalysisThread(ring, analyzer, on_update=updates.append, start_index=0)
    source = ArraySource(ring, signal, 48000, block_size=512, realtime=False)  # no flow control
    with thread:
        with source:
            assert source.wait(30)
        thread.wait_for(ring.write_index // 256 * 256, 30)
    assert thread.overrun_count > 0 and thread.lost_samples > 0
    assert analyzer.resets == thread.overrun_count
    delivered = 0
    for update, block in zip(updates, analyzer.blocks):
        # the samples handed over are exactly the stream at the stated absolute indices
        np.testing.assert_array_equal(block, signal[update.start_index : update.stop_index])
        delivered += block.shape[0]
    assert delivered + thread.lost_samples == ring.write_index // 256 * 256
    assert sum(u.lost_samples for u in updates) == thread.lost_samples
    lossy = [u for u in updates if u.lost_samples]
    assert all(u.segment_start_index == u.start_index for u in lossy)


def test_batches_everything_waiting_in_one_call():
    ring = RingBuffer(1 << 15, max_write_samples=4096)
    analyzer = Recorder()
    thread = AnalysisThread(ring, analyzer, start_index=0)
    ring.write(np.ones(256 * 10 + 17, np.float32))
    update = thread.step()  # synchronous step: everything waiting, whole hops only
    assert (update.start_index, update.stop_index) == (0, 2560)
    assert thread.step() is None
    ring.write(np.ones(239, np.float32))
    assert thread.step().stop_index == 2816


def test_thread_idles_without_data_and_stops_promptly():
    ring = RingBuffer(1 << 14)
    thread = AnalysisThread(ring, Recorder()).start()
    time.sleep(0.05)
    stopper = threading.Thread(target=thread.stop)
    stopper.start()
    stopper.join(2)
    assert not stopper.is_alive() and thread.batches == 0


def test_an_analyzer_error_is_raised_on_stop():
    class Broken(Recorder):
        def process(self, block):
            raise RuntimeError("analyzer broke")

    ring = RingBuffer(1 << 14)
    thread = AnalysisThread(ring, Broken(), start_index=0).start()
    ring.write(np.ones(512, np.float32))
    assert not thread.wait_for(512, 2)
    with pytest.raises(RuntimeError, match="analyzer broke"):
        thread.stop()
