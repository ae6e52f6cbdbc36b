"""Simple guitar effects in numpy/scipy for onset tests (pedalboard is not a test dependency).

Each takes mono float32 ``x`` (n_samples,) and returns float32 of the same length.
"""

from __future__ import annotations

import numpy as np
from scipy import signal as sps


def distortion(x: np.ndarray, sample_rate_hz: int, drive: float = 25.0, tone_hz: float = 5000.0) -> np.ndarray:
    """Hard-ish clipping (tanh of a driven signal) with a low-pass tone control, peak 0.5."""
    y = np.tanh(drive * x.astype(np.float64))
    b, a = sps.butter(2, tone_hz / (sample_rate_hz / 2))
    y = sps.lfilter(b, a, y)
    return (0.5 * y / max(np.max(np.abs(y)), 1e-9)).astype(np.float32)


def reverb(x: np.ndarray, sample_rate_hz: int, rt60_s: float = 1.5, wet: float = 0.5, seed: int = 0) -> np.ndarray:
    """Convolution with exponentially decaying noise (a diffuse room), mixed ``wet``."""
    rng = np.random.default_rng(seed)
    n = int(rt60_s * sample_rate_hz)
    t = np.arange(n) / sample_rate_hz
    ir = rng.standard_normal(n) * np.exp(-6.91 * t / rt60_s)
    ir[: int(0.01 * sample_rate_hz)] = 0.0  # 10 ms pre-delay
    ir /= np.sqrt(np.sum(ir**2))
    wet_signal = sps.fftconvolve(x.astype(np.float64), ir)[: x.size]
    y = (1.0 - wet) * x + wet * wet_signal
    return (y / max(np.max(np.abs(y)), 1e-9) * 0.5).astype(np.float32)


def compressor(
    x: np.ndarray, sample_rate_hz: int, threshold_db: float = -30.0, ratio: float = 8.0, smoothing_ms: float = 10.0
) -> np.ndarray:
    """Feed-forward compressor: RMS envelope (one-pole, ``smoothing_ms``), gain above threshold, make-up to peak 0.5."""
    x64 = x.astype(np.float64)
    alpha = np.exp(-1.0 / (smoothing_ms * 1e-3 * sample_rate_hz))
    power = sps.lfilter([1.0 - alpha], [1.0, -alpha], x64**2)
    level_db = 10.0 * np.log10(power + 1e-12)
    over_db = np.maximum(level_db - threshold_db, 0.0)
    gain = 10.0 ** (-over_db * (1.0 - 1.0 / ratio) / 20.0)
    y = x64 * gain
    return (y / max(np.max(np.abs(y)), 1e-9) * 0.5).astype(np.float32)
