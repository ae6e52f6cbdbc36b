"""Augmentation of the guitar audio before analysis, so the encoder learns structure, not surface.

Every generated guitar take goes through a random chain of effects
(:func:`random_chain`, pedalboard) and additive noise before it is analysed
by the real analysis (:func:`sjtui.dsp.analysis.analyze`); the start point
inside the long take is shifted as well (:func:`shifted_start`), so the
windows do not always begin on the riff's first phrase bar and the grid
placement carries a few milliseconds of error like a live transport.

Effects (each with its own probability; parameters drawn uniformly in the
ranges of :data:`RANGES`):

=============  ============================================================
gain           -12..+6 dB (the fingerprint is relative, but the onset
               detector's absolute floor is not)
eq             low shelf 200 Hz, peak 300-3000 Hz, high shelf 4 kHz,
               -9..+9 dB each
compressor     threshold -30..-10 dB, ratio 2..8, attack 1-20 ms
distortion     drive 5..25 dB (with a -drive/2 dB make-down)
chorus         rate 0.3..2 Hz, depth 0.1..0.4, mix 0.2..0.6
reverb         room 0.1..0.8, wet 0.05..0.35 (dry 1 - wet)
noise          white noise at SNR 15..45 dB of the take's RMS
=============  ============================================================

All draws come from one ``numpy.random.Generator``, so a seed gives the
same chain. :func:`apply_chain` returns the audio and a description of the
chain (recorded in the cache metadata).
"""

from __future__ import annotations

import numpy as np

PROBABILITIES = {
    "gain": 0.8,
    "eq": 0.6,
    "compressor": 0.5,
    "distortion": 0.25,
    "chorus": 0.3,
    "reverb": 0.5,
    "noise": 0.6,
}
RANGES = {
    "gain_db": (-12.0, 6.0),
    "eq_gain_db": (-9.0, 9.0),
    "eq_peak_hz": (300.0, 3000.0),
    "comp_threshold_db": (-30.0, -10.0),
    "comp_ratio": (2.0, 8.0),
    "comp_attack_ms": (1.0, 20.0),
    "drive_db": (5.0, 25.0),
    "chorus_rate_hz": (0.3, 2.0),
    "chorus_depth": (0.1, 0.4),
    "chorus_mix": (0.2, 0.6),
    "room_size": (0.1, 0.8),
    "reverb_wet": (0.05, 0.35),
    "noise_snr_db": (15.0, 45.0),
}


def _draw(rng: np.random.Generator, name: str) -> float:
    lo, hi = RANGES[name]
    return float(rng.uniform(lo, hi))


def random_chain(rng: np.random.Generator, strength: float = 1.0) -> list[tuple[str, dict]]:
    """A random effect chain as ``[(effect, params), ...]`` in signal order.

    ``strength`` scales every probability (0 = no effects, 1 = the table above).
    """
    chain: list[tuple[str, dict]] = []
    p = {name: min(1.0, prob * strength) for name, prob in PROBABILITIES.items()}
    if rng.random() < p["eq"]:
        chain.append(
            (
                "eq",
                {
                    "low_db": _draw(rng, "eq_gain_db"),
                    "peak_hz": _draw(rng, "eq_peak_hz"),
                    "peak_db": _draw(rng, "eq_gain_db"),
                    "high_db": _draw(rng, "eq_gain_db"),
                },
            )
        )
    if rng.random() < p["compressor"]:
        chain.append(
            (
                "compressor",
                {
                    "threshold_db": _draw(rng, "comp_threshold_db"),
                    "ratio": _draw(rng, "comp_ratio"),
                    "attack_ms": _draw(rng, "comp_attack_ms"),
                },
            )
        )
    if rng.random() < p["distortion"]:
        chain.append(("distortion", {"drive_db": _draw(rng, "drive_db")}))
    if rng.random() < p["chorus"]:
        chain.append(
            (
                "chorus",
                {
                    "rate_hz": _draw(rng, "chorus_rate_hz"),
                    "depth": _draw(rng, "chorus_depth"),
                    "mix": _draw(rng, "chorus_mix"),
                },
            )
        )
    if rng.random() < p["reverb"]:
        chain.append(("reverb", {"room_size": _draw(rng, "room_size"), "wet": _draw(rng, "reverb_wet")}))
    if rng.random() < p["gain"]:
        chain.append(("gain", {"gain_db": _draw(rng, "gain_db")}))
    if rng.random() < p["noise"]:
        chain.append(("noise", {"snr_db": _draw(rng, "noise_snr_db"), "seed": int(rng.integers(2**31))}))
    return chain


def _plugin(name: str, params: dict):
    import pedalboard as pb

    if name == "eq":
        return [
            pb.LowShelfFilter(cutoff_frequency_hz=200.0, gain_db=params["low_db"]),
            pb.PeakFilter(cutoff_frequency_hz=params["peak_hz"], gain_db=params["peak_db"], q=1.0),
            pb.HighShelfFilter(cutoff_frequency_hz=4000.0, gain_db=params["high_db"]),
        ]
    if name == "compressor":
        return [
            pb.Compressor(
                threshold_db=params["threshold_db"],
                ratio=params["ratio"],
                attack_ms=params["attack_ms"],
                release_ms=100.0,
            )
        ]
    if name == "distortion":
        return [pb.Distortion(drive_db=params["drive_db"]), pb.Gain(gain_db=-params["drive_db"] / 2.0)]
    if name == "chorus":
        return [pb.Chorus(rate_hz=params["rate_hz"], depth=params["depth"], mix=params["mix"])]
    if name == "reverb":
        return [
            pb.Reverb(room_size=params["room_size"], wet_level=params["wet"], dry_level=1.0 - params["wet"])
        ]
    if name == "gain":
        return [pb.Gain(gain_db=params["gain_db"])]
    raise ValueError(f"unknown effect {name!r}")


def apply_chain(audio: np.ndarray, sample_rate_hz: int, chain: list[tuple[str, dict]]) -> np.ndarray:
    """``audio`` (n_samples,) float32 through ``chain`` -> (n_samples,) float32 (clipped to -1..1)."""
    import pedalboard as pb

    x = np.asarray(audio, dtype=np.float32)
    plugins = []
    noise = None
    for name, params in chain:
        if name == "noise":
            noise = params
        else:
            plugins += _plugin(name, params)
    if plugins:
        x = pb.Pedalboard(plugins)(x[np.newaxis, :], float(sample_rate_hz))[0]
    if noise is not None:
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) or 1e-4
        sigma = rms * 10.0 ** (-noise["snr_db"] / 20.0)
        x = x + np.random.default_rng(noise["seed"]).normal(0.0, sigma, x.shape).astype(np.float32)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def shifted_start(
    rng: np.random.Generator, bar_s: float, max_bars: int, sample_rate_hz: int, jitter_ms: float = 8.0
) -> tuple[int, float]:
    """A start point inside a long take: ``(start_sample, grid_error_ms)``.

    The start is a whole number of bars ``0..max_bars`` into the take (so the
    windows begin on other bars of the riff's phrase); the grid placed on the
    cut audio is then off by ``grid_error_ms`` (uniform within
    ±``jitter_ms``), as a live transport's downbeat is.
    """
    bars = int(rng.integers(0, max_bars + 1))
    return int(round(bars * bar_s * sample_rate_hz)), float(rng.uniform(-jitter_ms, jitter_ms))
