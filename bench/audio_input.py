"""Audio input paths: callback cost, reader cost, synthesized guitar speed, with peers in the same run.

Measures (median of ``--repeats`` runs each, same process, same data):

- ``callback_us``: sjtui's :class:`DeviceInput` callback per 256-sample
  block of 2-channel input (copy channel 2 into the ring, anchor, counters),
  called exactly as PortAudio calls it; peer ``queue_callback_us``: the
  pattern of sounddevice's own examples (``q.put(indata[:, ch].copy())``).
- ``read_us``: :class:`RingReader` reading 8 waiting hops (2048 samples)
  into its preallocated buffer; peer ``queue_drain_us``: draining the queue's
  8 blocks and ``np.concatenate``-ing them.
- ``synth_x_realtime``: :func:`render_notes` of an 8-bar riff per timbre;
  peer ``lfilter_x_realtime``: the same strings with the recursion done by
  ``scipy.signal.lfilter`` over the equivalent ``N + taps`` denominator.

    .venv/bin/python bench/audio_input.py
    .venv/bin/python bench/audio_input.py --json
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sjtui.audio import synth_guitar  # noqa: E402
from sjtui.audio.riffs import generate_riff  # noqa: E402
from sjtui.audio.ring import RingBuffer, RingReader, capacity_for  # noqa: E402

BLOCK = 256
RATE = 48000


class _Flags:
    input_overflow = False


def _median_time(fn, repeats: int, inner: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times)


def bench_callback(repeats: int) -> dict:
    # DeviceInput's callback without opening a device: same method, same ring.
    from sjtui.audio.device import DeviceInput

    live = DeviceInput.__new__(DeviceInput)
    live.ring = RingBuffer(capacity_for(4.0, RATE))
    live._column = 1
    live.callback_count = 0
    indata = np.random.default_rng(0).standard_normal((BLOCK, 2)).astype(np.float32)
    time_info = types.SimpleNamespace(inputBufferAdcTime=1.0)
    flags = _Flags()
    sjtui_s = _median_time(lambda: live._callback(indata, BLOCK, time_info, flags), repeats, 2000)
    q: queue.Queue = queue.Queue()

    def queue_callback():
        q.put(indata[:, 1].copy())
        if q.qsize() > 64:
            q.get_nowait()

    peer_s = _median_time(queue_callback, repeats, 2000)

    ring = RingBuffer(capacity_for(4.0, RATE))
    reader = RingReader(ring, start_index=0)

    def ring_read():
        for _ in range(8):
            ring.write(indata[:, 1])
        reader.read_available(multiple_of=BLOCK)

    def ring_write_only():
        for _ in range(8):
            ring.write(indata[:, 1])

    read_s = _median_time(ring_read, repeats, 300) - _median_time(ring_write_only, repeats, 300)
    q2: queue.Queue = queue.Queue()

    def queue_fill():
        for _ in range(8):
            q2.put(indata[:, 1].copy())

    def queue_drain():
        queue_fill()
        blocks = []
        while True:
            try:
                blocks.append(q2.get_nowait())
            except queue.Empty:
                break
        np.concatenate(blocks)

    drain_s = _median_time(queue_drain, repeats, 300) - _median_time(lambda: (queue_fill(), q2.queue.clear()), repeats, 300)
    return {
        "callback_us": sjtui_s * 1e6,
        "queue_callback_us": peer_s * 1e6,
        "callback_vs_queue": peer_s / sjtui_s,
        "block_period_us": BLOCK / RATE * 1e6,
        "read_us": read_s * 1e6,
        "queue_drain_us": drain_s * 1e6,
        "read_vs_queue": drain_s / read_s if read_s > 0 else float("nan"),
    }


def _pluck_lfilter(pitch_hz, n_samples, sample_rate_hz, velocity, voice, rng):
    """Peer: the same string (same excitation, same taps), recursion by scipy.signal.lfilter."""
    from scipy.signal import lfilter

    n, taps = synth_guitar.loop_filter(pitch_hz, sample_rate_hz, voice)
    burst = synth_guitar.excitation(pitch_hz, sample_rate_hz, velocity, voice, rng)
    a = np.zeros(n + taps.shape[0])
    a[0] = 1.0
    a[n:] -= taps
    x = np.zeros(n_samples)
    x[: min(burst.shape[0], n_samples)] = burst[:n_samples]
    return lfilter([1.0], a, x)


def bench_synth(repeats: int) -> dict:
    riff = generate_riff("straight8", bpm=120, bars=8, seed=1)
    out = {"riff_s": riff.duration_s}
    for timbre in synth_guitar.TIMBRES:
        own = min(_time_once(lambda: synth_guitar.render_notes(riff.notes, RATE, timbre, length_s=riff.duration_s))
                  for _ in range(repeats))
        original = synth_guitar.pluck
        synth_guitar.pluck = _pluck_lfilter
        try:
            peer = min(_time_once(lambda: synth_guitar.render_notes(riff.notes, RATE, timbre, length_s=riff.duration_s))
                       for _ in range(repeats))
        finally:
            synth_guitar.pluck = original
        out[f"synth_x_realtime_{timbre}"] = riff.duration_s / own
        out[f"lfilter_x_realtime_{timbre}"] = riff.duration_s / peer
        out[f"synth_vs_lfilter_{timbre}"] = peer / own
    return out


def _time_once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    result = {**bench_callback(args.repeats), **bench_synth(max(1, args.repeats // 2))}
    if args.json:
        print(json.dumps(result))
        return 0
    for key, value in result.items():
        print(f"{key:32s} {value:12.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
