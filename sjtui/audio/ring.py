"""A single-writer ring buffer of mono float32 samples with an absolute sample index.

The audio callback (the only writer) copies each block in with
:meth:`RingBuffer.write`; one analysis thread reads it back by *absolute*
sample index: sample ``i`` is the ``i``-th sample ever written to the ring
(an ``int`` that never wraps), so every frame, onset and grid step downstream
can carry the index of the audio it came from (CONVENTIONS §3).

Beside the samples the ring keeps what the callback learns about time and
trouble, in preallocated arrays the callback only assigns into:

* capture-time *anchors*: per callback, the absolute index of the block's
  first sample, the stream's capture time (PortAudio's
  ``time.inputBufferAdcTime``, in the stream's clock) and the host's
  ``time.monotonic()`` at the callback, in a small circular table;
* input overflows (the driver dropped samples before they reached us) and
  callback errors, as counts plus the sample index where the last one
  happened.

Thread safety (one writer, any number of readers, no locks)
------------------------------------------------------------
``write`` first copies the block into the slots it is about to own and only
*then* publishes the new ``write_index`` (one attribute store of a Python
int, atomic under the GIL; CPython executes the two steps in program order).
A reader therefore never sees an index for samples that are not yet in the
buffer. The danger is the other way round: while a reader copies, the
writer may overwrite old slots. A slot holding sample ``i`` is reused by
sample ``i + capacity``. A write in progress (copied but not yet published)
covers at most ``max_write_samples`` samples past ``write_index``, so after a
reader has copied ``[start, stop)`` it re-reads ``write_index`` and the copy is
intact exactly when ``start >= write_index - capacity + max_write_samples``
(numpy may drop the GIL during large copies, so no reasoning here relies on
the GIL for the sample data itself). If not, the reader reports how many
samples were lost and never returns the overwritten data (:class:`RingOverrun`
or :class:`RingReader`'s skip-ahead).

Writes longer than ``max_write_samples`` are split into chunks of that size,
each published on its own, so the guarantee holds for any block size.

:class:`SharedRingBuffer` is the same ring in one shared-memory block, for a
writer in another process (the audio input's child process); its docstring
says what replaces the GIL's ordering there.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import numpy as np


class RingOverrun(Exception):
    """Samples a reader asked for were already overwritten.

    ``lost_samples`` is how many of the requested samples are gone;
    ``oldest_index`` the first absolute index that can still be read.
    """

    def __init__(self, start_index: int, lost_samples: int, oldest_index: int):
        super().__init__(
            f"ring overrun: samples {start_index}..{start_index + lost_samples - 1} were overwritten "
            f"before they were read ({lost_samples} lost); the oldest readable sample is {oldest_index}"
        )
        self.start_index = start_index
        self.lost_samples = lost_samples
        self.oldest_index = oldest_index


@dataclass(frozen=True)
class Anchor:
    """One capture-time anchor: sample ``sample_index`` was captured at ``adc_time_s``.

    ``adc_time_s`` is in the stream's clock (PortAudio stream time, or the
    source's own clock for file sources); ``monotonic_s`` is
    ``time.monotonic()`` when the block arrived, for mapping to the host.
    """

    sample_index: int
    adc_time_s: float
    monotonic_s: float


def _check_sizes(capacity_samples: int, max_write_samples: int, n_anchors: int) -> None:
    if max_write_samples < 1:
        raise ValueError(f"max_write_samples must be >= 1, got {max_write_samples}")
    if capacity_samples < 2 * max_write_samples:
        raise ValueError(
            f"capacity_samples ({capacity_samples}) must be at least twice max_write_samples "
            f"({max_write_samples}) so a reader has room behind the writer"
        )
    if n_anchors < 1:
        raise ValueError(f"n_anchors must be >= 1, got {n_anchors}")


class RingBuffer:
    """Preallocated ring of ``capacity_samples`` float32 samples, absolute indexing.

    Parameters
    ----------
    capacity_samples:
        Slots in the ring. Readers can be at most
        ``capacity_samples - max_write_samples`` samples behind the writer.
    max_write_samples:
        Largest chunk a single publish covers (the safety margin above).
        Larger writes are split. Default: 4096, above any block size sjtui opens.
    n_anchors:
        Size of the circular table of capture-time anchors.
    """

    def __init__(self, capacity_samples: int, max_write_samples: int = 4096, n_anchors: int = 256):
        capacity_samples = int(capacity_samples)
        max_write_samples = int(max_write_samples)
        _check_sizes(capacity_samples, max_write_samples, n_anchors)
        self.capacity_samples = capacity_samples
        self.max_write_samples = max_write_samples
        self._buffer = np.zeros(capacity_samples, dtype=np.float32)
        # Published count of samples written; the only field readers trust for data.
        self.write_index = 0
        # Capture-time anchors, circular; anchor k lives at slot k % n_anchors.
        self._n_anchors = int(n_anchors)
        self._anchor_sample_index = np.zeros(self._n_anchors, dtype=np.int64)
        self._anchor_adc_time_s = np.zeros(self._n_anchors, dtype=np.float64)
        self._anchor_monotonic_s = np.zeros(self._n_anchors, dtype=np.float64)
        self.anchor_count = 0
        # Trouble counters, written by the writer only.
        self.overflow_count = 0
        self.last_overflow_index = -1
        self.error_count = 0
        self.last_error_index = -1
        self.frames_lost = 0  # input the driver never delivered (StreamGapDetector), in frames
        self.gap_count = 0
        self.last_gap_index = -1

    # ------------------------------------------------------------------ writer
    def write(self, block: np.ndarray) -> None:
        """Append ``block`` (shape ``(n,)``, any float dtype, may be strided).

        Copies into the preallocated buffer (at most two slices per chunk)
        and then publishes the new ``write_index``. Allocates no sample
        buffers. Only one thread may call this.
        """
        n_total = block.shape[0]
        done = 0
        capacity = self.capacity_samples
        while done < n_total:
            n = min(self.max_write_samples, n_total - done)
            index = self.write_index
            pos = index % capacity
            first = min(n, capacity - pos)
            self._buffer[pos : pos + first] = block[done : done + first]
            if first < n:
                self._buffer[: n - first] = block[done + first : done + n]
            self.write_index = index + n  # publish after the copy
            done += n

    def record_anchor(self, sample_index: int, adc_time_s: float, monotonic_s: float | None = None) -> None:
        """Note that sample ``sample_index`` was captured at ``adc_time_s`` (writer only)."""
        slot = self.anchor_count % self._n_anchors
        self._anchor_sample_index[slot] = sample_index
        self._anchor_adc_time_s[slot] = adc_time_s
        self._anchor_monotonic_s[slot] = time.monotonic() if monotonic_s is None else monotonic_s
        self.anchor_count += 1  # publish after the fields

    def note_overflow(self) -> None:
        """The driver reported an input overflow before the current write position."""
        self.overflow_count += 1
        self.last_overflow_index = self.write_index

    def note_gap(self, frames: int) -> None:
        """``frames`` of input were never delivered before the current write position."""
        self.frames_lost += int(frames)
        self.gap_count += 1
        self.last_gap_index = self.write_index

    def note_error(self) -> None:
        """The writer caught an exception (the callback must never raise)."""
        self.error_count += 1
        self.last_error_index = self.write_index

    # ------------------------------------------------------------------ readers
    @property
    def oldest_index(self) -> int:
        """First absolute index that is safe to read now."""
        return max(0, self.write_index - self.capacity_samples + self.max_write_samples)

    def available(self, start_index: int) -> int:
        """Samples written at or after ``start_index`` (may exceed what is still readable)."""
        return max(0, self.write_index - start_index)

    def read(self, start_index: int, stop_index: int, out: np.ndarray | None = None) -> np.ndarray:
        """Copy samples ``[start_index, stop_index)`` into ``out`` (shape ``(n,)``) and return it.

        Raises :class:`RingOverrun` if any of them were (or may have been,
        during the copy) overwritten, ``ValueError`` for samples not yet written.
        """
        n = stop_index - start_index
        if n < 0:
            raise ValueError(f"stop_index ({stop_index}) is before start_index ({start_index})")
        if stop_index > self.write_index:
            raise ValueError(
                f"samples up to {stop_index} requested but only {self.write_index} have been written"
            )
        if out is None:
            out = np.empty(n, dtype=np.float32)
        elif out.shape[0] != n:
            raise ValueError(f"out has {out.shape[0]} samples, the range has {n}")
        self._check_intact(start_index)
        capacity = self.capacity_samples
        pos = start_index % capacity
        first = min(n, capacity - pos)
        out[:first] = self._buffer[pos : pos + first]
        if first < n:
            out[first:] = self._buffer[: n - first]
        self._check_intact(start_index)  # the writer may have lapped us during the copy
        return out

    def _check_intact(self, start_index: int) -> None:
        oldest = self.oldest_index
        if start_index < oldest:
            raise RingOverrun(start_index, oldest - start_index, oldest)

    # ------------------------------------------------------------------ anchors
    def latest_anchor(self) -> Anchor | None:
        """The most recent capture-time anchor, or ``None`` before the first block."""
        return self._anchor(self.anchor_count - 1) if self.anchor_count else None

    def anchors(self) -> list[Anchor]:
        """The anchors still in the table, oldest first (a consistent snapshot is not guaranteed
        for the newest entry while the writer runs; use :meth:`latest_anchor` for one value)."""
        count = self.anchor_count
        first = max(0, count - self._n_anchors + 1)  # leave the slot being rewritten alone
        return [self._anchor(k) for k in range(first, count)]

    def _anchor(self, k: int) -> Anchor:
        slot = k % self._n_anchors
        return Anchor(
            int(self._anchor_sample_index[slot]),
            float(self._anchor_adc_time_s[slot]),
            float(self._anchor_monotonic_s[slot]),
        )


# ---------------------------------------------------------------------------- shared memory

# Slots of the shared block's int64 header (the counters a plain ring keeps as attributes).
_HEADER_FIELDS = (
    "write_index",
    "anchor_count",
    "overflow_count",
    "last_overflow_index",
    "error_count",
    "last_error_index",
    "callback_count",  # blocks the writing source delivered (DeviceInput.callback_count of the writer)
    "writer_active",  # 1 while a writer process streams into the ring
    "frames_lost",
    "gap_count",
    "last_gap_index",
)
_HEADER_SLOTS = 16  # room to grow; 128 bytes keep the anchors 8-byte aligned
_SHARED_NAME_PREFIX = "sjtui-ring-"


def _header_property(slot: int, doc: str) -> property:
    def get(self) -> int:
        return self._header[slot]

    def set(self, value: int) -> None:
        self._header[slot] = value

    return property(get, set, doc=doc)


class SharedRingHandle:
    """What a child process needs to attach a :class:`SharedRingBuffer`: the block's descriptor and layout.

    Picklable only as an argument of a process being started (``multiprocessing``'s
    ``DupFd`` passes the descriptor to the child, as it does for pipes).
    """

    def __init__(self, fd: int, capacity_samples: int, max_write_samples: int, n_anchors: int):
        self.fd = int(fd)
        self.capacity_samples = int(capacity_samples)
        self.max_write_samples = int(max_write_samples)
        self.n_anchors = int(n_anchors)

    def __reduce__(self):
        from multiprocessing import reduction

        return (
            _rebuild_handle,
            (reduction.DupFd(self.fd), self.capacity_samples, self.max_write_samples, self.n_anchors),
        )


def _rebuild_handle(
    dup_fd, capacity_samples: int, max_write_samples: int, n_anchors: int
) -> SharedRingHandle:
    return SharedRingHandle(dup_fd.detach(), capacity_samples, max_write_samples, n_anchors)


def _shared_size_bytes(capacity_samples: int, n_anchors: int) -> int:
    return 8 * _HEADER_SLOTS + 3 * 8 * n_anchors + 4 * capacity_samples


class SharedRingBuffer(RingBuffer):
    """A :class:`RingBuffer` whose samples, anchors and counters live in one shared-memory block.

    A writer in one process (:class:`~sjtui.audio.device_process.ProcessDeviceInput`'s
    child) and :class:`RingReader` s in another see the same ring; every method is
    the plain ring's. Create with :meth:`create` (the owner), pass :meth:`handle` to a
    child being started, and :meth:`attach` there.

    Layout of the block (bytes): ``[0, 128)`` int64 header (``_HEADER_FIELDS``:
    write_index, anchor_count, the trouble counters, callback_count, writer_active),
    then the anchors' sample indices (int64, ``n_anchors``), capture times and
    monotonic times (float64, ``n_anchors`` each), then the samples (float32,
    ``capacity_samples``).

    No name to leak
    ---------------
    The block is made by :class:`multiprocessing.shared_memory.SharedMemory` (POSIX
    ``shm_open``), mapped, and its *name is unlinked at once*: the memory lives as long
    as some process maps it or holds its descriptor. The owner keeps a descriptor;
    children receive it when they are spawned (``DupFd``), map it and close it. So
    nothing is ever left in ``/dev/shm``, however the processes end (SIGKILL included):
    the kernel frees the block with the last mapping.

    Memory ordering across processes
    --------------------------------
    The GIL no longer orders the writer against the readers. The writer still copies
    the samples (and an anchor's fields) *before* storing the new ``write_index``
    (``anchor_count``), each an aligned 8-byte store through a ``memoryview`` (one
    machine store, never torn). Readers load the index before the data. On x86-64
    (total store order: stores become visible in program order, loads are not
    reordered with loads) this is the same publish protocol as in one process. On
    weakly ordered CPUs (ARM) Python offers no fence, so a reader could in principle
    see an index before the samples it covers; the interpreter executes thousands of
    instructions between the copy and the publish, which makes that practically
    impossible but is not a guarantee. The overwrite check (re-reading ``write_index``
    after a copy) is unchanged and holds on any CPU.
    """

    write_index = _header_property(0, "Published count of samples written (shared).")
    anchor_count = _header_property(1, "Anchors recorded (shared).")
    overflow_count = _header_property(2, "Input overflows the writer noted (shared).")
    last_overflow_index = _header_property(3, "write_index at the last overflow, -1 before any (shared).")
    error_count = _header_property(4, "Exceptions the writer caught (shared).")
    last_error_index = _header_property(5, "write_index at the last error, -1 before any (shared).")
    callback_count = _header_property(6, "Blocks the writing source delivered (shared).")
    writer_active = _header_property(7, "1 while a writer process streams into the ring (shared).")
    frames_lost = _header_property(8, "Input frames the driver never delivered (shared).")
    gap_count = _header_property(9, "Gaps in the input the writer found (shared).")
    last_gap_index = _header_property(10, "write_index at the last gap, -1 before any (shared).")

    @property
    def oldest_index(self) -> int:
        """First absolute index that is safe to read now (one header load)."""
        return max(0, self._header[0] - self.capacity_samples + self.max_write_samples)

    def __init__(
        self, fd: int, capacity_samples: int, max_write_samples: int, n_anchors: int, *, owner: bool
    ):
        import mmap

        self.capacity_samples = int(capacity_samples)
        self.max_write_samples = int(max_write_samples)
        self._n_anchors = int(n_anchors)
        size = _shared_size_bytes(self.capacity_samples, self._n_anchors)
        self._mmap = mmap.mmap(fd, size)
        self.writers_in_process = 0  # C writers here holding the block (sjtui.audio.jack_input)
        self.owner = owner
        if owner:  # the descriptor is kept for children (closed with the ring)
            import weakref

            self._fd = fd
            self._fd_finalizer = weakref.finalize(self, _close_fd, fd)
        else:
            self._fd = -1
            os.close(fd)  # the mapping keeps the block
        self._header = memoryview(self._mmap)[: 8 * _HEADER_SLOTS].cast("q")
        offset = 8 * _HEADER_SLOTS
        n = self._n_anchors
        self._anchor_sample_index = np.frombuffer(self._mmap, np.int64, n, offset)
        self._anchor_adc_time_s = np.frombuffer(self._mmap, np.float64, n, offset + 8 * n)
        self._anchor_monotonic_s = np.frombuffer(self._mmap, np.float64, n, offset + 16 * n)
        self._buffer = np.frombuffer(self._mmap, np.float32, self.capacity_samples, offset + 24 * n)

    @classmethod
    def create(
        cls, capacity_samples: int, max_write_samples: int = 4096, n_anchors: int = 256
    ) -> SharedRingBuffer:
        """A new zeroed shared ring (same checks as :class:`RingBuffer`); its name is already unlinked."""
        import secrets
        from multiprocessing import shared_memory

        _check_sizes(int(capacity_samples), int(max_write_samples), int(n_anchors))
        _ensure_resource_tracker()  # SharedMemory registers the name with it (and unlink unregisters)
        name = f"{_SHARED_NAME_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        shm = shared_memory.SharedMemory(
            name=name, create=True, size=_shared_size_bytes(capacity_samples, n_anchors)
        )
        try:
            fd = os.dup(shm._fd)  # private, stable since 3.8: the descriptor outlives the name
        finally:
            shm.close()
            shm.unlink()
        ring = cls(fd, capacity_samples, max_write_samples, n_anchors, owner=True)
        ring.last_overflow_index = -1
        ring.last_error_index = -1
        ring.last_gap_index = -1
        return ring

    @classmethod
    def attach(cls, handle: SharedRingHandle) -> SharedRingBuffer:
        """The ring ``handle`` describes, in this (child) process."""
        return cls(
            handle.fd, handle.capacity_samples, handle.max_write_samples, handle.n_anchors, owner=False
        )

    def handle(self) -> SharedRingHandle:
        """For a child process being started: pass it as an argument, :meth:`attach` it there."""
        if self._fd < 0:
            raise ValueError("only the process that created a shared ring can hand it on")
        return SharedRingHandle(self._fd, self.capacity_samples, self.max_write_samples, self._n_anchors)

    def close(self) -> None:
        """Unmap the block here (the ring is unusable afterwards; other processes keep theirs)."""
        if self._mmap is None:
            return
        if self.writers_in_process:
            raise BufferError("a JACK input still writes into this ring: stop the input first, then close the ring")
        self._header.release()
        del self._anchor_sample_index, self._anchor_adc_time_s, self._anchor_monotonic_s, self._buffer
        self._mmap.close()
        self._mmap = None
        if self.owner:
            self._fd_finalizer()
            self._fd = -1


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _ensure_resource_tracker() -> None:
    from sjtui.midi.process import _ensure_resource_tracker as ensure

    ensure()


@dataclass
class ReadResult:
    """What :meth:`RingReader.read_available` returned.

    ``samples`` (shape ``(n,)``) is a view into the reader's own buffer, valid
    until its next read; its first sample has absolute index ``start_index``.
    ``lost_samples`` were skipped just before ``start_index`` because the
    reader fell too far behind.
    """

    start_index: int
    samples: np.ndarray
    lost_samples: int

    @property
    def stop_index(self) -> int:
        return self.start_index + self.samples.shape[0]


class RingReader:
    """A cursor over a :class:`RingBuffer` for one consumer, with overrun recovery.

    Reads go into a buffer preallocated here (``max_read_samples``). When
    the writer has lapped the cursor, the reader skips to the oldest intact
    sample and reports how many were lost (also summed in ``lost_samples``
    and counted in ``overrun_count``); it never returns overwritten data.
    """

    def __init__(self, ring: RingBuffer, start_index: int | None = None, max_read_samples: int | None = None):
        self.ring = ring
        self.next_index = ring.write_index if start_index is None else int(start_index)
        if max_read_samples is None:
            max_read_samples = ring.capacity_samples - ring.max_write_samples
        self.max_read_samples = int(max_read_samples)
        self._out = np.zeros(self.max_read_samples, dtype=np.float32)
        self.lost_samples = 0
        self.overrun_count = 0

    def available(self) -> int:
        """Samples written and not yet read (some may be lost already)."""
        return self.ring.available(self.next_index)

    def read_available(self, multiple_of: int = 1, max_samples: int | None = None) -> ReadResult:
        """Read everything waiting, rounded down to a multiple of ``multiple_of`` samples."""
        limit = self.max_read_samples if max_samples is None else min(max_samples, self.max_read_samples)
        limit -= limit % multiple_of
        lost = 0
        while True:
            start = self.next_index
            oldest = self.ring.oldest_index
            if start < oldest:
                lost += oldest - start
                start = oldest
            n = min(self.ring.write_index - start, limit)
            n -= n % multiple_of
            try:
                samples = self.ring.read(start, start + n, out=self._out[:n])
            except RingOverrun as overrun:
                lost += overrun.oldest_index - start
                self.next_index = overrun.oldest_index
                continue
            break
        if lost:
            self.lost_samples += lost
            self.overrun_count += 1
        self.next_index = start + n
        return ReadResult(start, samples, lost)


def capacity_for(seconds: float, sample_rate_hz: int, max_write_samples: int = 4096) -> int:
    """Ring capacity (samples) that holds ``seconds`` of audio behind the writer."""
    return int(math.ceil(seconds * sample_rate_hz)) + max_write_samples
