"""Compiled one-hop path of :class:`sjtui.dsp.analysis.OnlineAnalyzer` (numba, cached on disk).

The live analyzer calls this once per 256-sample hop. It replaces the ~30
small numpy calls of the reference one-frame path (``SpectralKernel.compute``
+ ``OnsetPicker.process``) by two compiled calls around the numpy calls that
must stay numpy to keep every value bit for bit (the FFT, ``np.abs`` of the
complex bins, ``np.log1p`` and ``np.log10``: numpy's float32 versions of those
are SIMD kernels whose last-bit rounding numba's libm versions do not share).
Everything done here is exact IEEE arithmetic in the order numpy uses
(float32 products and differences, maxima, and the sums of
``np.add.reduceat``: first element + numpy's pairwise sum of the rest, see
:func:`_pairwise`), so the features, the flux quanta and the onsets equal the
batch path's exactly. ``tests/test_dsp_analysis.py`` checks that for every
block size 1..4096 (the batch path is the numpy reference).

Imported lazily by :mod:`sjtui.dsp.analysis` (numba costs a few hundred ms to
import); without numba the analyzer uses the numpy one-frame path.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from sjtui.dsp.hop_aot import FRAME_BITS, NOT_HANDLED
from sjtui.dsp.onsets import ONSET_DTYPE

_ONSET_RECORDS = numba.from_dtype(ONSET_DTYPE)[::1]

# Layouts (built by OnlineAnalyzer._setup_compiled_hop); nb bands, k band bins, mu history
# frames, F = max_batch_frames, N = frame size:
# counters (int64): [0] next frame, [1] samples held in the buffer, [2] stream index of buffer[0],
#     [3] buffer capacity, [4] hop, [5] frame size, [6] nb, then ints (5nb + 6), the float64 bit
#     patterns of f64 (3nb + 1) and picks (nb * (W + 2)), all below. One array: each array
#     argument costs ~60 ns of unboxing per call.
# ints: [0:nb] band offsets, [nb:2nb] band counts, [2nb:3nb] reference frames, [3nb:4nb] mask
#     frames, [4nb:5nb] echo frames, then W, rise, min_interval, onset lag (samples), mu, F.
# work (float32, (mu + 3 + 2F, k)): rows [0:mu] log-magnitude history (oldest first, the
#     analyzer's log_history), mu power, mu+1 rectified log rise, mu+2 constants: [0:2nb]
#     per-column scale, [2nb] energy floor, [2nb+1] linear energy threshold, [2nb+2]
#     1/FLUX_QUANTUM; [mu+3 : mu+3+F] |X| of the band bins of each frame, [mu+3+F : mu+3+2F]
#     their log1p.
# windows (float32, (1 + F, N)): row 0 the window, rows 1.. the windowed frames.
# f64: [0:nb] delta * W per band, [nb:2nb] mask ratio per band, [2nb:3nb] echo floor (flux quanta)
#     per band, threshold ratio.
# picks (int64, (nb, W + 2)): per band the past W flux quanta (oldest first), the frame of the
#     last onset and its flux quanta (the OnsetPicker's state).


def entry_point(dispatcher):
    """The compiled function of a single-signature kernel, callable without numba's type dispatch.

    Saves ~0.3 us per call. Only for calls whose argument types are fixed by
    construction (no check is made); falls back to the dispatcher if this
    numba does not expose it.
    """
    try:
        (signature,) = dispatcher.signatures
        return dispatcher.overloads[signature].entry_point
    except (AttributeError, KeyError, ValueError):  # pragma: no cover - depends on numba internals
        return dispatcher


@numba.njit("int64(float32[::1], float32[::1], int64[::1], float32[:, ::1], float32)", cache=True, nogil=True)
def ingest(buffer, block, counters, windows, clip):
    """Append a clean live block and window the frames it completes; see the return value.

    Copies ``block`` after the buffered samples (dropping the samples no
    future frame needs when the buffer is full). When it fits, completes at
    most F frames and every sample is finite and inside ``(-clip, clip)``,
    writes ``windows[1 + i] = frame (first + i) * windows[0]`` (float32) for
    the ``n`` frames it completes and returns ``(n << FRAME_BITS) | first``
    (the caller runs the FFT and :func:`hop`). Returns ``NOT_HANDLED`` when
    the general path must take the block (the buffered samples and the
    counters still describe the same stream).
    """
    n = block.size
    length = counters[1]
    end = length + n
    frame = counters[0]
    hop_size = counters[4]
    if end > counters[3]:
        # drop the samples no future frame needs (as the general path does)
        keep_from = (frame + 1) * hop_size - counters[5] - counters[2]
        if length - keep_from + n > counters[3]:
            return NOT_HANDLED
        for i in range(length - keep_from):
            buffer[i] = buffer[keep_from + i]
        length -= keep_from
        counters[1] = length
        counters[2] += keep_from
        end = length + n
    completes = (counters[2] + end) // hop_size - frame
    if completes > windows.shape[0] - 1:
        return NOT_HANDLED
    inside = True
    for i in range(n):  # branch-free, so that it vectorises
        v = block[i]
        buffer[length + i] = v
        inside &= (v > -clip) & (v < clip)  # also False for NaN
    if not inside:
        return NOT_HANDLED
    counters[1] = end
    size = counters[5]
    window = windows[0]
    for f in range(completes):
        start = (frame + 1 + f) * hop_size - size - counters[2]
        frame_samples = buffer[start : start + size]
        windowed = windows[1 + f]
        for j in range(size):  # 1-D views: this loop vectorises
            windowed[j] = frame_samples[j] * window[j]
    return (completes << FRAME_BITS) | frame


@numba.njit(cache=True, nogil=True)
def _pairwise(a, lo, n):
    """numpy's float32 pairwise sum of ``a[lo:lo+n]`` (8 accumulators, blocks of 128), same order."""
    if n < 8:
        res = np.float32(-0.0)
        for i in range(n):
            res += a[lo + i]
        return res
    if n <= 128:
        r0 = a[lo]
        r1 = a[lo + 1]
        r2 = a[lo + 2]
        r3 = a[lo + 3]
        r4 = a[lo + 4]
        r5 = a[lo + 5]
        r6 = a[lo + 6]
        r7 = a[lo + 7]
        i = 8
        m = n - n % 8
        while i < m:
            r0 += a[lo + i]
            r1 += a[lo + i + 1]
            r2 += a[lo + i + 2]
            r3 += a[lo + i + 3]
            r4 += a[lo + i + 4]
            r5 += a[lo + i + 5]
            r6 += a[lo + i + 6]
            r7 += a[lo + i + 7]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n:
            res += a[lo + i]
            i += 1
        return res
    n2 = n // 2
    n2 -= n2 % 8
    return _pairwise(a, lo, n2) + _pairwise(a, lo + n2, n - n2)


@numba.njit(cache=True, nogil=True)
def _segment_sum(a, lo, n):
    """``np.add.reduceat`` of one segment: its first element plus the pairwise sum of the rest."""
    return a[lo] + _pairwise(a, lo + 1, n - 1)


@numba.njit(
    numba.int64(
        numba.float32[:, ::1],
        numba.int64[::1],
        numba.int64,
        numba.float32[:, :, ::1],
        numba.int64[::1],
        _ONSET_RECORDS,
    ),
    cache=True,
    nogil=True,
)
def hop(work, counters, n_frames, out, frame_sample, onsets):
    """Band energy, band flux and onset decisions of the next ``n_frames`` frames; returns the number of onsets.

    Call after the FFT with ``work[mu + 3 + i]`` = ``|X|`` of the band bins
    of frame ``i`` and ``work[mu + 3 + F + i]`` = its ``log1p`` (layouts
    above). Frame by frame, exactly as ``SpectralKernel.compute`` and
    ``OnsetPicker.process``: shifts the history, updates the picker's state,
    advances ``counters[0]``; writes the linear band energy (floored; the
    caller takes ``10 log10``) to ``out[0]`` and the flux to ``out[1]``
    ((2, nb, n_frames) float32), each frame's end sample to ``frame_sample``
    (n_frames,) and the onsets found to ``onsets[:count]`` (``ONSET_DTYPE``,
    at least nb * n_frames, in time order, then band order).
    """
    nb = counters[6]
    ints_at = 7
    f64_at = ints_at + 5 * nb + 6
    picks_at = f64_at + 3 * nb + 1
    ints = counters[ints_at:f64_at]
    f64 = counters[f64_at:picks_at].view(np.float64)
    w = ints[5 * nb]
    picks = counters[picks_at : picks_at + nb * (w + 2)].reshape((nb, w + 2))
    k = work.shape[1]
    rise = ints[5 * nb + 1]
    min_interval = ints[5 * nb + 2]
    lag = ints[5 * nb + 3]
    mu = ints[5 * nb + 4]
    max_frames = ints[5 * nb + 5]
    power = work[mu]
    rise_log = work[mu + 1]
    consts = work[mu + 2]
    floor = consts[2 * nb]
    threshold = consts[2 * nb + 1]
    inv_quantum = consts[2 * nb + 2]
    ratio = f64[3 * nb]
    found = 0
    for f in range(n_frames):
        magnitude = work[mu + 3 + f]
        log_cur = work[mu + 3 + max_frames + f]
        # power | rectified log rise, as SpectralKernel.compute
        for b in range(nb):
            o = ints[b]
            c = ints[nb + b]
            r = ints[2 * nb + b]
            for j in range(o, o + c):
                m = magnitude[j]
                power[j] = m * m
                ref = work[mu - 1, j]
                for t in range(mu - r, mu - 1):
                    v = work[t, j]
                    if not math.isnan(ref) and (v > ref or math.isnan(v)):  # np.maximum: NaN wins
                        ref = v
                d = log_cur[j] - ref
                if d < 0.0:
                    d = np.float32(0.0)
                rise_log[j] = d
        # shift only the rows each band reads (rows mu - r .. mu - 1 of its bins): older rows are
        # read by neither path (SpectralKernel.compute reads the same rows), so they may go stale
        for b in range(nb):
            o = ints[b]
            c = ints[nb + b]
            for t in range(mu - ints[2 * nb + b], mu - 1):
                older = work[t]
                newer = work[t + 1]
                for j in range(o, o + c):
                    older[j] = newer[j]
        newest = work[mu - 1]
        for j in range(k):
            newest[j] = log_cur[j]
        frame = counters[0]
        decided = (frame + 1) * counters[4]
        last_any = picks[0, w]  # the last onset of any band, this frame's included
        for b in range(1, nb):
            last_any = max(last_any, picks[b, w])
        for b in range(nb):
            o = ints[b]
            c = ints[nb + b]
            energy = _segment_sum(power, o, c) * consts[b]
            if not (energy >= floor or math.isnan(energy)):  # np.maximum: NaN wins
                energy = floor
            q = np.rint(_segment_sum(rise_log, o, c) * consts[nb + b])
            out[0, b, f] = energy
            out[1, b, f] = q * inv_quantum
            # OnsetPicker.process_one
            past_sum = 0
            rise_ref = picks[b, w - rise]
            for t in range(w):
                v = picks[b, t]
                past_sum += v
                if t > w - rise and v > rise_ref:
                    rise_ref = v
            for t in range(w - 1):
                picks[b, t] = picks[b, t + 1]
            qi = np.int64(q)
            picks[b, w - 1] = qi
            since = frame - picks[b, w]
            if (
                qi * w >= ratio * past_sum + f64[b]
                and qi > rise_ref
                and energy >= threshold
                and since >= min_interval
                and (since > ints[3 * nb + b] or qi >= f64[nb + b] * picks[b, w + 1])
                and (frame - last_any > ints[4 * nb + b] or qi >= f64[2 * nb + b])
            ):
                picks[b, w] = frame
                picks[b, w + 1] = qi
                last_any = frame
                onsets[found].sample = decided - lag
                onsets[found].band = b
                onsets[found].strength = out[1, b, f]
                onsets[found].decided_at = decided
                found += 1
        counters[0] = frame + 1
        frame_sample[f] = decided
    return found
