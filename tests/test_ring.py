"""The ring buffer against a reference (the whole stream kept in a list), by property."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sjtui.audio.ring import RingBuffer, RingOverrun, RingReader


def _stream(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(64, 600),
    max_write=st.integers(1, 32),
    write_sizes=st.lists(st.integers(0, 200), min_size=1, max_size=40),
    read_every=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_reader_that_keeps_up_gets_every_sample_exactly(capacity, max_write, write_sizes, read_every, seed):
    capacity = max(capacity, 2 * max_write)
    ring = RingBuffer(capacity, max_write_samples=max_write, n_anchors=4)
    reader = RingReader(ring)
    reference = _stream(sum(write_sizes), seed)
    got = []
    pos = 0
    for i, size in enumerate(write_sizes):
        # Keep the writer within the reader's reach: split writes that would lap it.
        block = reference[pos : pos + size]
        pos += size
        for k in range(0, size, capacity - ring.max_write_samples):
            ring.write(block[k : k + capacity - ring.max_write_samples])
            result = reader.read_available()
            assert result.lost_samples == 0
            got.append(result.samples.copy())
        if i % read_every == 0:
            got.append(reader.read_available().samples.copy())
    got.append(reader.read_available().samples.copy())
    assert ring.write_index == reference.shape[0]
    np.testing.assert_array_equal(np.concatenate(got) if got else np.zeros(0, np.float32), reference)
    assert reader.lost_samples == 0 and reader.overrun_count == 0


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(64, 400),
    write_sizes=st.lists(st.integers(1, 300), min_size=1, max_size=30),
    start_frac=st.floats(0, 1),
    length_frac=st.floats(0, 1),
    seed=st.integers(0, 2**16),
)
def test_random_absolute_reads_match_reference_or_report_overrun(capacity, write_sizes, start_frac, length_frac, seed):
    max_write = 16
    ring = RingBuffer(capacity, max_write_samples=max_write)
    reference = _stream(sum(write_sizes), seed)
    pos = 0
    for size in write_sizes:
        ring.write(reference[pos : pos + size])
        pos += size
    total = ring.write_index
    start = int(start_frac * total)
    stop = start + int(length_frac * (total - start))
    oldest = max(0, total - capacity + max_write)
    if start < oldest:
        with pytest.raises(RingOverrun) as info:
            ring.read(start, stop)
        assert info.value.lost_samples == oldest - start
        assert info.value.oldest_index == oldest
    else:
        np.testing.assert_array_equal(ring.read(start, stop), reference[start:stop])


@settings(max_examples=40, deadline=None)
@given(
    write_sizes=st.lists(st.integers(1, 500), min_size=1, max_size=30),
    seed=st.integers(0, 2**16),
)
def test_reader_that_falls_behind_skips_and_counts_exactly_what_it_lost(write_sizes, seed):
    capacity, max_write = 256, 32
    ring = RingBuffer(capacity, max_write_samples=max_write)
    reader = RingReader(ring)
    reference = _stream(sum(write_sizes), seed)
    pos = 0
    got_index, got = [], []
    for size in write_sizes:
        ring.write(reference[pos : pos + size])
        pos += size
        result = reader.read_available()
        # Whatever is returned is the true stream at the stated absolute index.
        np.testing.assert_array_equal(result.samples, reference[result.start_index : result.stop_index])
        got_index.append(result.start_index)
        got.append(result.samples.shape[0] + result.lost_samples)
    # Every sample was either delivered or counted as lost, none twice.
    assert sum(got) == reference.shape[0]
    expected_lost = sum(max(0, s - (capacity - max_write)) for s in write_sizes)
    assert reader.lost_samples == expected_lost
    assert reader.overrun_count == sum(1 for s in write_sizes if s > capacity - max_write)


def test_read_of_unwritten_samples_is_refused():
    ring = RingBuffer(128, max_write_samples=16)
    ring.write(np.ones(10, np.float32))
    with pytest.raises(ValueError, match="only 10 have been written"):
        ring.read(5, 11)


def test_read_available_rounds_to_hop_and_keeps_the_rest():
    ring = RingBuffer(4096, max_write_samples=256)
    reader = RingReader(ring)
    data = _stream(1000, 1)
    ring.write(data)
    first = reader.read_available(multiple_of=256)
    assert (first.start_index, first.samples.shape[0]) == (0, 768)
    ring.write(_stream(100, 2))
    second = reader.read_available(multiple_of=256)
    assert (second.start_index, second.samples.shape[0]) == (768, 256)
    np.testing.assert_array_equal(second.samples[:232], data[768:])


def test_anchors_and_trouble_counters():
    ring = RingBuffer(1024, max_write_samples=64, n_anchors=3)
    assert ring.latest_anchor() is None
    for k in range(5):
        ring.record_anchor(ring.write_index, adc_time_s=k * 0.5, monotonic_s=100.0 + k)
        ring.write(np.zeros(64, np.float32))
    assert ring.latest_anchor().sample_index == 4 * 64
    assert ring.latest_anchor().adc_time_s == 2.0
    assert [a.sample_index for a in ring.anchors()] == [3 * 64, 4 * 64]
    ring.note_overflow()
    ring.note_error()
    assert (ring.overflow_count, ring.last_overflow_index) == (1, 320)
    assert (ring.error_count, ring.last_error_index) == (1, 320)


def test_concurrent_writer_and_reader_deliver_exact_stream_or_declared_losses():
    """A real writer thread against a real reader thread: data is exact wherever it is returned."""
    ring = RingBuffer(2048, max_write_samples=64)
    reader = RingReader(ring)
    reference = (np.arange(400_000) % 65521).astype(np.float32)
    done = threading.Event()

    def writer():
        for pos in range(0, reference.shape[0], 64):
            ring.write(reference[pos : pos + 64])
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    delivered = lost = 0
    while True:
        finished = done.is_set()
        result = reader.read_available()
        np.testing.assert_array_equal(result.samples, reference[result.start_index : result.stop_index])
        delivered += result.samples.shape[0]
        lost += result.lost_samples
        if finished and reader.available() == 0:
            break
    thread.join()
    assert delivered + lost == reference.shape[0]
    assert lost == reader.lost_samples


def test_constructor_validation():
    with pytest.raises(ValueError, match="twice"):
        RingBuffer(100, max_write_samples=64)
