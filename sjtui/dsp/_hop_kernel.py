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

import numba
import numpy as np

# ``ints`` parameter vector layout (built by OnlineAnalyzer): [0:nb] band
# offsets, [nb:2nb] band counts, [2nb:3nb] reference frames, then W, rise,
# min_interval, mask_frames.


@numba.njit(cache=True, nogil=True)
def ingest(buffer, length, block, clip, window, windowed, frame_start):
    """Copy ``block`` to ``buffer[length:]``; True if every sample is finite and inside ``(-clip, clip)``.

    When ``frame_start >= 0`` and the block is clean, also writes
    ``windowed = buffer[frame_start : frame_start + N] * window`` (float32).
    """
    ok = True
    n = block.size
    for i in range(n):
        v = block[i]
        buffer[length + i] = v
        if not (-clip < v and v < clip):  # also False for NaN
            ok = False
    if ok and frame_start >= 0:
        for j in range(window.size):
            windowed[j] = buffer[frame_start + j] * window[j]
    return ok


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


@numba.njit(cache=True, nogil=True)
def hop(magnitude, log_cur, history, scratch, ints, f32, f64, pick_history, last_onset, frame, out, found):
    """Band energy, band flux and onset decisions of one frame; returns the number of onsets.

    ``magnitude``/``log_cur`` (k,) float32: ``|X|`` of the band bins and its
    ``log1p``; ``history`` (mu, k) the log-magnitudes of the previous frames,
    oldest first (shifted in place); ``scratch`` (2k,) float32; ``ints``
    int64 parameters (layout above); ``f32`` = (scale
    (2nb,), energy floor, linear energy threshold, 1/FLUX_QUANTUM);
    ``f64`` = (delta_w (nb,), ratio, mask_ratio); ``pick_history`` (nb, W)
    int64 past flux quanta, oldest first, and ``last_onset`` (2, nb) int64
    the frame and the flux quanta of each band's last onset (the picker's
    state, updated in place); ``out`` (2, nb, 1) float32 receives
    the linear energy (the caller takes ``10 log10``) and the flux;
    ``found`` (nb,) int64 receives the bands with an onset.
    """
    nb = pick_history.shape[0]
    k = magnitude.size
    mu = history.shape[0]
    # power | rectified log rise, like SpectralKernel._power_diff
    for b in range(nb):
        o = ints[b]
        c = ints[nb + b]
        r = ints[2 * nb + b]
        for j in range(o, o + c):
            m = magnitude[j]
            scratch[j] = m * m
            ref = history[mu - 1, j]
            for t in range(mu - r, mu - 1):
                v = history[t, j]
                if ref == ref and (v > ref or v != v):  # np.maximum: NaN wins
                    ref = v
            d = log_cur[j] - ref
            if d < 0.0:
                d = np.float32(0.0)
            scratch[k + j] = d
    for t in range(mu - 1):
        for j in range(k):
            history[t, j] = history[t + 1, j]
    for j in range(k):
        history[mu - 1, j] = log_cur[j]
    floor = f32[2 * nb]
    threshold = f32[2 * nb + 1]
    inv_quantum = f32[2 * nb + 2]
    w = ints[3 * nb]
    rise = ints[3 * nb + 1]
    min_interval = ints[3 * nb + 2]
    mask_frames = ints[3 * nb + 3]
    ratio = f64[nb]
    mask_ratio = f64[nb + 1]
    n_found = 0
    for b in range(nb):
        o = ints[b]
        c = ints[nb + b]
        energy = _segment_sum(scratch, o, c) * f32[b]
        if not (energy >= floor or energy != energy):
            energy = floor
        q = np.rint(_segment_sum(scratch, k + o, c) * f32[nb + b])
        out[0, b, 0] = energy
        out[1, b, 0] = q * inv_quantum
        # OnsetPicker.process_one
        past_sum = 0
        rise_ref = pick_history[b, w - rise]
        for t in range(w):
            v = pick_history[b, t]
            past_sum += v
            if t > w - rise and v > rise_ref:
                rise_ref = v
        for t in range(w - 1):
            pick_history[b, t] = pick_history[b, t + 1]
        qi = np.int64(q)
        pick_history[b, w - 1] = qi
        since = frame - last_onset[0, b]
        if (
            qi * w >= ratio * past_sum + f64[b]
            and qi > rise_ref
            and energy >= threshold
            and since >= min_interval
            and (since > mask_frames or qi >= mask_ratio * last_onset[1, b])
        ):
            last_onset[0, b] = frame
            last_onset[1, b] = qi
            found[n_found] = b
            n_found += 1
    return n_found
