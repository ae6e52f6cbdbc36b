"""FileSource / ArraySource: real files into a real ring, paced or fast, looping, bad files."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import soundfile as sf

from sjtui.audio.file_source import ArraySource, FileSource, load_audio
from sjtui.audio.ring import RingBuffer, RingReader
from sjtui.errors import AudioError

RECORDING = "berklee_guitar_riff_cutup3.wav"


def _file(guitar_audio_dir):
    samples, rate = sf.read(guitar_audio_dir / RECORDING, dtype="float32")
    return samples, rate


def test_fast_source_fills_ring_with_the_file_exactly(guitar_audio_dir):
    samples, rate = _file(guitar_audio_dir)
    ring = RingBuffer(samples.shape[0] + 8192)
    source = FileSource(ring, guitar_audio_dir / RECORDING, block_size=256, realtime=False)
    assert source.sample_rate_hz == 44100 and source.notes == []
    source.start()
    assert source.wait(10)
    source.stop()
    assert ring.write_index == samples.shape[0]
    np.testing.assert_array_equal(ring.read(0, ring.write_index), samples)
    # One anchor per block, in the source's own clock.
    anchor = ring.latest_anchor()
    assert anchor.sample_index == (samples.shape[0] - 1) // 256 * 256
    assert anchor.adc_time_s == anchor.sample_index / 44100


def test_fast_source_waits_for_a_slow_reader_instead_of_overrunning_it(guitar_audio_dir):
    samples, _ = _file(guitar_audio_dir)
    ring = RingBuffer(8192, max_write_samples=1024)  # far smaller than the file
    reader = RingReader(ring, start_index=0)
    source = FileSource(ring, guitar_audio_dir / RECORDING, block_size=1024, realtime=False,
                        reader_index=lambda: reader.next_index)
    got = []
    with source:
        while not (source.finished.is_set() and reader.available() == 0):
            got.append(reader.read_available(max_samples=700).samples.copy())
            time.sleep(0.0002)
    assert reader.lost_samples == 0
    np.testing.assert_array_equal(np.concatenate(got), samples)


def test_without_flow_control_a_slow_reader_is_told_what_it_lost(guitar_audio_dir):
    samples, _ = _file(guitar_audio_dir)
    ring = RingBuffer(8192, max_write_samples=1024)
    reader = RingReader(ring, start_index=0)
    source = FileSource(ring, guitar_audio_dir / RECORDING, block_size=1024, realtime=False)
    with source:
        assert source.wait(10)
    result = reader.read_available()
    assert result.lost_samples == samples.shape[0] - result.samples.shape[0] > 0
    np.testing.assert_array_equal(result.samples, samples[result.start_index :])


def test_looping_repeats_the_signal_with_a_continuous_index():
    signal = np.random.default_rng(0).standard_normal(1000).astype(np.float32)  # not a multiple of the block
    ring = RingBuffer(1 << 16, max_write_samples=256)
    reader = RingReader(ring, start_index=0)
    source = ArraySource(ring, signal, 48000, block_size=256, realtime=False, loop=True,
                         reader_index=lambda: reader.next_index)
    got = []
    with source:
        while sum(g.shape[0] for g in got) < 20_000:
            got.append(reader.read_available().samples.copy())
        assert not source.finished.is_set()
    played = np.concatenate(got)
    np.testing.assert_array_equal(played, np.tile(signal, played.shape[0] // 1000 + 1)[: played.shape[0]])


def test_looping_a_signal_shorter_than_a_block():
    signal = np.arange(1, 101, dtype=np.float32)
    ring = RingBuffer(1 << 14, max_write_samples=256)
    with ArraySource(ring, signal, 48000, block_size=256, realtime=False, loop=True,
                     reader_index=lambda: 0) as source:  # a reader stuck at 0: the source fills the ring and waits
        while ring.write_index < 2048:
            time.sleep(0.001)
    assert source.blocks_written >= 8
    np.testing.assert_array_equal(ring.read(0, 2048), np.tile(signal, 21)[:2048])


class VirtualTime:
    """A clock that only moves when the source waits (and when the test says it stalls)."""

    def __init__(self):
        self.now_s = 100.0
        self.stalls = {}  # call number -> extra seconds the "machine" stalls before answering

    def clock(self) -> float:
        return self.now_s

    def wait(self, timeout_s: float) -> bool:
        self.now_s += timeout_s
        return False


def test_paced_source_writes_each_block_at_its_absolute_deadline():
    vt = VirtualTime()
    signal = np.ones(48000, np.float32)
    ring = RingBuffer(1 << 17, max_write_samples=256, n_anchors=1024)
    source = ArraySource(ring, signal, 48000, block_size=256, realtime=True, clock=vt.clock, wait=vt.wait)
    original_write = ring.write
    count = [0]

    def slow_write(block):  # every 10th block the machine stalls for 2 ms (less than a period)
        count[0] += 1
        if count[0] % 10 == 0:
            vt.now_s += 0.002
        original_write(block)

    ring.write = slow_write
    with source:
        assert source.wait(5)
    anchors = ring.anchors()
    assert len(anchors) == -(-48000 // 256)
    period_s = 256 / 48000
    written_at = np.array([a.monotonic_s for a in anchors]) - 100.0
    deadlines = (np.arange(len(anchors)) + 1) * period_s
    stalled = np.array([(k + 1) % 10 == 0 for k in range(len(anchors))])
    # Blocks are never early; stalls delay only the stalled block, no drift accumulates.
    np.testing.assert_allclose(written_at[~stalled], deadlines[~stalled], atol=1e-9)
    np.testing.assert_allclose(written_at[stalled], deadlines[stalled] + 0.002, atol=1e-9)
    assert source.late_blocks == 0


def test_paced_source_in_real_time_is_never_ahead_of_the_clock():
    signal = np.ones(12000, np.float32)  # 0.25 s
    ring = RingBuffer(1 << 15, max_write_samples=256)
    start_s = time.monotonic()
    with ArraySource(ring, signal, 48000, block_size=256, realtime=True) as source:
        assert source.wait(10)
    for anchor in ring.anchors():
        # block starting at sample i is complete (and written) no earlier than (i + 256) / rate.
        assert anchor.monotonic_s - start_s >= (anchor.sample_index + 256) / 48000 - 1e-3


def test_44k1_file_into_48k_stream_is_resampled(tmp_path):
    rate_in = 44100
    t = np.arange(rate_in) / rate_in
    path = tmp_path / "sine.wav"
    sf.write(path, 0.5 * np.sin(2 * np.pi * 1000 * t), rate_in, subtype="FLOAT")
    audio = load_audio(path, sample_rate_hz=48000)
    assert audio.sample_rate_hz == 48000 and audio.file_sample_rate_hz == 44100
    assert audio.samples.shape == (48000,)
    assert "resampled from 44100 Hz to 48000 Hz" in audio.notes
    spectrum = np.abs(np.fft.rfft(audio.samples * np.hanning(48000)))
    assert np.argmax(spectrum) == 1000  # 1 Hz bins: still 1 kHz
    with pytest.raises(AudioError, match="at 44100 Hz but the stream runs at 48000 Hz"):
        load_audio(path, sample_rate_hz=48000, resample_to_stream=False)


def test_real_recording_into_48k_stream(guitar_audio_dir):
    samples, _ = _file(guitar_audio_dir)
    ring = RingBuffer(1 << 18)
    source = FileSource(ring, guitar_audio_dir / RECORDING, sample_rate_hz=48000, realtime=False)
    assert source.file_sample_rate_hz == 44100
    with source:
        assert source.wait(10)
    assert abs(ring.write_index - samples.shape[0] * 48000 / 44100) <= 1


def test_unsupported_rates(tmp_path):
    path = tmp_path / "low.wav"
    sf.write(path, np.zeros(2205, np.float32), 22050)
    with pytest.raises(AudioError, match="at 22050 Hz; sjtui analyses at 44100 or 48000 Hz"):
        load_audio(path)
    assert load_audio(path, sample_rate_hz=44100).samples.shape == (4410,)
    with pytest.raises(AudioError, match="unsupported stream sample rate 32000"):
        load_audio(path, sample_rate_hz=32000)


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(AudioError, match="audio file not found: .*nowhere.wav"):
        FileSource(RingBuffer(1 << 14), tmp_path / "nowhere.wav")
    text = tmp_path / "notes.wav"
    text.write_text("this is a text file, not audio\n" * 20)
    with pytest.raises(AudioError, match=r"cannot read audio file .*notes.wav.*Format not recognised.*WAV, FLAC"):
        load_audio(text)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 48000)
    with pytest.raises(AudioError, match="has no samples"):
        load_audio(empty)
    with pytest.raises(AudioError, match="is a folder"):
        load_audio(tmp_path)
    header_only = tmp_path / "header.wav"
    header_only.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    with pytest.raises(AudioError, match="cannot read audio file"):
        load_audio(header_only)


def test_truncated_file_plays_the_frames_that_exist(guitar_audio_dir, tmp_path):
    samples, _ = _file(guitar_audio_dir)
    data = (guitar_audio_dir / RECORDING).read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2 + 1])  # odd length: half a sample at the end
    audio = load_audio(cut)
    n = audio.samples.shape[0]
    assert 0 < n < samples.shape[0]
    np.testing.assert_array_equal(audio.samples, samples[:n])


def test_nan_and_inf_become_zero_and_are_counted(tmp_path):
    signal = np.linspace(-0.5, 0.5, 4800).astype(np.float32)
    signal[[10, 20, 30]] = [np.nan, np.inf, -np.inf]
    path = tmp_path / "nan.wav"
    sf.write(path, signal, 48000, subtype="FLOAT")
    ring = RingBuffer(1 << 14)
    source = FileSource(ring, path, realtime=False)
    assert source.nonfinite_count == 3 and "replaced 3 NaN/Inf sample(s) by 0.0" in source.notes
    with source:
        assert source.wait(5)
    played = ring.read(0, ring.write_index)
    assert np.isfinite(played).all() and (played[[10, 20, 30]] == 0).all()
    keep = np.ones(4800, bool)
    keep[[10, 20, 30]] = False
    np.testing.assert_array_equal(played[keep], signal[keep])


def test_channel_selection_and_mixdown(tmp_path):
    left = np.full(4800, 0.25, np.float32)
    right = np.linspace(-1, 1, 4800).astype(np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 48000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path, channel=2).samples, right)
    np.testing.assert_array_equal(load_audio(path, channel=1).samples, left)
    np.testing.assert_allclose(load_audio(path).samples, (left + right) / 2, atol=1e-7)
    assert "mixed 2 channels down to mono" in load_audio(path).notes
    with pytest.raises(AudioError, match="channel 3 does not exist in .*2 channel"):
        load_audio(path, channel=3)


def test_clipping_silence_and_dc_pass_through_unchanged(tmp_path):
    signal = np.concatenate([np.full(1000, 1.7), np.zeros(1000), np.full(1000, 0.3)]).astype(np.float32)
    path = tmp_path / "odd.wav"
    sf.write(path, signal, 44100, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path).samples, signal)


def test_source_stops_promptly_while_paced_and_while_waiting_for_room():
    ring = RingBuffer(1 << 14, max_write_samples=256)
    long_signal = np.zeros(48000 * 60, np.float32)
    for kwargs in ({"realtime": True}, {"realtime": False, "reader_index": lambda: 0}):
        source = ArraySource(ring, long_signal, 48000, **kwargs).start()
        time.sleep(0.05)
        stopper = threading.Thread(target=source.stop)
        stopper.start()
        stopper.join(5)
        assert not stopper.is_alive()
        assert not source.finished.is_set() and source.blocks_written < long_signal.shape[0] // 256


def test_flac_and_mp3_are_read(guitar_audio_dir, tmp_path):
    samples, rate = _file(guitar_audio_dir)
    flac = tmp_path / "riff.flac"
    sf.write(flac, samples, rate, subtype="PCM_16")
    np.testing.assert_array_equal(load_audio(flac).samples, samples)  # lossless: bit-exact
    mp3 = tmp_path / "riff.mp3"
    sf.write(mp3, samples, rate, format="MP3")
    decoded = load_audio(mp3).samples
    # Lossy: same length within the codec's padding, and the same signal once aligned.
    assert abs(decoded.shape[0] - samples.shape[0]) < 2 * 1152
    lag = int(np.argmax(np.correlate(decoded[:20000], samples[:10000], mode="valid")))
    n = min(samples.shape[0], decoded.shape[0] - lag)
    residual = decoded[lag : lag + n] - samples[:n]
    assert 10 * np.log10(np.sum(samples[:n] ** 2) / np.sum(residual**2)) > 15  # dB SNR
