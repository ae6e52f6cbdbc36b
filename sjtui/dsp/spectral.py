"""Pure spectral maths: causal framing, band layout, band energy and spectral flux.

Framing convention (used everywhere in sjtui): frame ``k`` covers the samples
``[(k + 1) * hop - frame_size, (k + 1) * hop)`` of the stream, with zeros
before sample 0. A frame is therefore complete as soon as sample
``(k + 1) * hop - 1`` has arrived, and ``frame_end_sample(k) = (k + 1) * hop``
is the sample count at which it can be computed: nothing looks ahead.

Band layout: a bin belongs to band ``b`` when its centre frequency ``f`` lies in
``[lo_b, hi_b)``. Bins 0 and 1 are never used: a Hann window spreads a DC
offset over exactly those two bins (bin 2 and up see none of it), so an
interface with a DC offset does not read as low-band energy. The lowest guitar
fundamental (E2, 82 Hz) falls in bin 2 at 44.1 and 48 kHz with 1024-sample
frames.

Scaling: the window is scaled so that a full-scale sine (amplitude 1) in the
middle of a band reads 0 dB of band energy, whatever the frame size; the
magnitudes that feed the flux are ``compression * |X|`` with the same scaling
(a full-scale sine has magnitude ``compression``).

All functions work on batches of frames, shape ``(n_frames, ...)``, and each
frame's result depends only on that frame's samples (and on the previous
frame for the flux), bit for bit whatever the batch size: this is what lets
the online wrapper agree exactly with the offline analysis.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sjtui.errors import AudioError


def _load_pypocketfft():
    """SciPy's pocketfft binding, loaded from its file without importing ``scipy.fft``.

    The direct binding skips ~3 us of argument checking per call. Importing it the usual way
    runs ``scipy.fft``'s package, which imports ``scipy.special`` and costs the jam 27 MB of
    resident memory for nothing it uses. None where SciPy has no such file (numpy's FFT then).
    """
    import importlib.machinery
    import importlib.util
    import sys

    from sjtui.extension import load_extension_file

    name = "scipy.fft._pocketfft.pypocketfft"
    if name in sys.modules:
        return sys.modules[name]
    try:
        spec = importlib.util.find_spec("scipy")  # finds the package without running it
        folder = Path(spec.submodule_search_locations[0]) / "fft" / "_pocketfft"
        suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
        path = next(str(p) for p in folder.iterdir() if p.name.startswith("pypocketfft.") and p.name.endswith(suffixes))
        module = load_extension_file(name, path)
    except Exception:  # noqa: BLE001 - pragma: no cover - another SciPy layout: the usual import
        try:
            from scipy.fft._pocketfft import pypocketfft as module
        except ImportError:
            return None
    sys.modules[name] = module  # a later `import scipy.fft` uses this one instead of loading it twice
    return module


_pypocketfft = _load_pypocketfft()

ENERGY_FLOOR_DB = -120.0


def _energy_floor() -> np.float32:
    """Smallest float32 power whose float32 ``10 * log10`` is exactly ENERGY_FLOOR_DB (not -120.00001)."""
    floor = np.float32(10.0 ** (ENERGY_FLOOR_DB / 10.0))
    probe = np.empty(1, dtype=np.float32)
    for _ in range(64):
        probe[0] = floor
        np.log10(probe, out=probe)
        np.multiply(probe, np.float32(10.0), out=probe)
        if probe[0] >= ENERGY_FLOOR_DB:
            return floor
        floor = np.nextafter(floor, np.float32(1.0))
    raise RuntimeError("no float32 energy floor maps to ENERGY_FLOOR_DB")  # pragma: no cover


ENERGY_FLOOR = _energy_floor()
# Flux is quantised to multiples of 1/FLUX_QUANTUM so that moving sums of it
# are exact integers, identical in any summation order (online vs offline).
FLUX_QUANTUM = 4096
FIRST_USABLE_BIN = 2
MIN_SAMPLE_RATE_HZ = 22050
MAX_SAMPLE_RATE_HZ = 192000


def periodic_hann(frame_size: int) -> np.ndarray:
    """Periodic Hann window, shape ``(frame_size,)`` float64 (exact DFT leakage into bins 0 and 1 only)."""
    n = np.arange(frame_size, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / frame_size)


@dataclass(frozen=True)
class BandLayout:
    """Which FFT bins make up each band.

    ``bin_start``/``bin_stop``: the slice of rfft bins used (all bands are
    contiguous, low to high); ``offsets``: (n_bands,) start of each band
    relative to ``bin_start`` (the ``np.add.reduceat`` indices, equivalent to a
    rectangular band matrix); ``counts``: (n_bands,) bins per band;
    ``edges_hz``: the requested edges; ``bin_hz``: bin spacing.
    """

    bin_start: int
    bin_stop: int
    offsets: np.ndarray
    counts: np.ndarray
    edges_hz: tuple
    bin_hz: float

    @property
    def n_bins(self) -> int:
        return self.bin_stop - self.bin_start

    @property
    def n_bands(self) -> int:
        return len(self.counts)

    def band_matrix(self) -> np.ndarray:
        """The same layout as a dense ``(n_bands, n_rfft_bins)`` 0/1 matrix (for reference and plots)."""
        matrix = np.zeros((self.n_bands, self.bin_stop), dtype=np.float32)
        for b, (offset, count) in enumerate(zip(self.offsets, self.counts)):
            matrix[b, self.bin_start + offset : self.bin_start + offset + count] = 1.0
        return matrix


def check_sample_rate(sample_rate_hz: int, band_edges_hz) -> int:
    """Validate a sample rate for analysis; returns it as int or raises :class:`AudioError`."""
    try:
        rate = int(sample_rate_hz)
    except (TypeError, ValueError):
        raise AudioError(f"sample rate {sample_rate_hz!r} is not a number of Hz; use 44100 or 48000") from None
    top_hz = max(hi for _, hi in band_edges_hz)
    if rate != sample_rate_hz or not MIN_SAMPLE_RATE_HZ <= rate <= MAX_SAMPLE_RATE_HZ or rate / 2 <= top_hz:
        raise AudioError(
            f"sample rate {sample_rate_hz} Hz is not supported for analysis: it needs "
            f"{MIN_SAMPLE_RATE_HZ}..{MAX_SAMPLE_RATE_HZ} Hz with the top band edge ({top_hz:g} Hz) below "
            "Nyquist; sjtui is tuned for 44100 and 48000 Hz, so resample the audio to one of those"
        )
    return rate


def band_layout(sample_rate_hz: int, frame_size: int, band_edges_hz) -> BandLayout:
    """Assign rfft bins to bands (see the module docstring); raises if a band gets no bin."""
    bin_hz = sample_rate_hz / frame_size
    freqs = np.arange(frame_size // 2 + 1) * bin_hz
    starts, counts = [], []
    previous_stop = None
    for lo, hi in band_edges_hz:
        if not lo < hi:
            raise AudioError(f"band edges ({lo}, {hi}) Hz are not increasing; give (low, high) pairs in Hz")
        idx = np.flatnonzero((freqs >= lo) & (freqs < hi) & (np.arange(freqs.size) >= FIRST_USABLE_BIN))
        if idx.size == 0:
            raise AudioError(
                f"band {lo:g}-{hi:g} Hz holds no FFT bin at {sample_rate_hz} Hz with frame size {frame_size} "
                f"(bins are {bin_hz:.1f} Hz apart); use a larger frame size or wider bands"
            )
        if previous_stop is not None and idx[0] != previous_stop:
            raise AudioError(f"band edges {band_edges_hz} leave a gap or overlap; bands must be contiguous")
        starts.append(int(idx[0]))
        counts.append(int(idx.size))
        previous_stop = int(idx[-1]) + 1
    bin_start = starts[0]
    return BandLayout(
        bin_start=bin_start,
        bin_stop=previous_stop,
        offsets=np.asarray(starts, dtype=np.intp) - bin_start,
        counts=np.asarray(counts, dtype=np.int64),
        edges_hz=tuple(tuple(map(float, e)) for e in band_edges_hz),
        bin_hz=bin_hz,
    )


def frame_view(buffer: np.ndarray, frame_size: int, hop_size: int, n_frames: int, start: int = 0) -> np.ndarray:
    """Strided view ``(n_frames, frame_size)`` of ``buffer``, frames ``hop_size`` apart from ``start``."""
    if n_frames <= 0:
        return np.empty((0, frame_size), dtype=buffer.dtype)
    if n_frames == 1:
        return buffer[start : start + frame_size].reshape(1, frame_size)
    base = buffer[start : start + (n_frames - 1) * hop_size + frame_size]
    return np.lib.stride_tricks.as_strided(
        base, shape=(n_frames, frame_size), strides=(hop_size * base.strides[0], base.strides[0]), writeable=False
    )


def _rfft_into(frames: np.ndarray, out: np.ndarray, axis: int = 1) -> np.ndarray:
    """rfft along ``axis`` of ``frames`` ((n, N) or (N,)) float32 into ``out`` complex64."""
    if _pypocketfft is not None:
        return _pypocketfft.r2c(frames, (axis,), True, 0, out, 1)
    out[...] = np.fft.rfft(frames, axis=axis)
    return out


def _check_fast_rfft() -> None:
    """Disable the direct pocketfft binding if it does not behave like ``np.fft.rfft`` here."""
    global _pypocketfft
    if _pypocketfft is None:
        return
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    out = np.empty((2, 33), dtype=np.complex64)
    try:
        _pypocketfft.r2c(x, (1,), True, 0, out, 1)
        ok = np.allclose(out, np.fft.rfft(x, axis=1), atol=1e-4)
    except Exception:  # noqa: BLE001 - any failure means: use the public API
        ok = False
    if not ok:
        _pypocketfft = None


_check_fast_rfft()


class SpectralKernel:
    """Band energy and band flux for batches of frames, with all buffers preallocated.

    ``compute(frames, log_history)`` is a pure function of its inputs (the
    scratch buffers carry nothing from call to call): ``frames`` (n, N) with
    ``n <= max_frames``; ``log_history`` (history_frames, n_bins) the
    log-magnitudes of the frames before the first one, oldest first (zeros
    before the stream starts), updated in place. The flux of a bin is the
    rise of its log-magnitude above its maximum over the previous
    ``reference_frames[band]`` frames (1 = the classic frame-to-frame flux;
    more frames ignore the amplitude beating of neighbouring low partials,
    which repeats faster than that, while a new note still rises above it).
    Returns views into the kernel's buffers, valid until the next call:
    ``energy_db`` (n, n_bands) float32 and ``flux_q`` (n, n_bands) float32
    holding integers (flux * FLUX_QUANTUM).
    """

    def __init__(
        self,
        sample_rate_hz: int,
        frame_size: int,
        band_edges_hz,
        compression: float,
        max_frames: int,
        reference_frames=1,
    ):
        self.frame_size = frame_size
        self.max_frames = max_frames
        self.layout = band_layout(sample_rate_hz, frame_size, band_edges_hz)
        n_bands = self.layout.n_bands
        if np.ndim(reference_frames) == 0:
            reference_frames = (int(reference_frames),) * n_bands
        if len(reference_frames) != n_bands or min(reference_frames) < 1:
            raise ValueError(f"reference_frames needs one value >= 1 per band, got {reference_frames}")
        self.reference_frames = tuple(int(r) for r in reference_frames)
        self.history_frames = max(self.reference_frames)
        # (bin slice, frames) of the bands that look back more than one frame
        self._long_refs = [
            (slice(int(o), int(o + c)), r)
            for o, c, r in zip(self.layout.offsets, self.layout.counts, self.reference_frames)
            if r > 1
        ]
        window = periodic_hann(frame_size)
        # |X| of a full-scale sine at a bin centre = compression.
        self.window = (window * (2.0 * compression / window.sum())).astype(np.float32)
        # Mean square of a frame from its one-sided spectrum, referenced to a
        # full-scale sine (0 dB): sum(w)^2 / (N sum(w^2)) / compression^2.
        self.power_scale = np.float32(window.sum() ** 2 / (frame_size * np.sum(window**2)) / compression**2)
        k = self.layout.n_bins
        self._windowed = np.empty((max_frames, frame_size), dtype=np.float32)
        self._spectrum = np.empty((max_frames, frame_size // 2 + 1), dtype=np.complex64)
        self._magnitude = np.empty((max_frames, k), dtype=np.float32)
        self._log = np.empty((max_frames + self.history_frames, k), dtype=np.float32)
        self._reference = np.empty((max_frames, k), dtype=np.float32)
        # power | rectified log difference, side by side: one reduceat gives both.
        self._power_diff = np.empty((max_frames, 2 * k), dtype=np.float32)
        self._reduce_idx = np.concatenate([self.layout.offsets, self.layout.offsets + k]).astype(np.intp)
        self._sums = np.empty((max_frames, 2 * n_bands), dtype=np.float32)
        # Per-column scale: power -> linear energy; diff sum -> mean per bin, in flux quanta.
        self._scale = np.concatenate(
            [np.full(n_bands, self.power_scale), FLUX_QUANTUM / self.layout.counts.astype(np.float64)]
        ).astype(np.float32)
        self._n_bands = n_bands
        self._bins = slice(self.layout.bin_start, self.layout.bin_stop)
        self._bound_history = None

    def _bind(self, log_history: np.ndarray) -> None:
        """Precompute the views the one-frame path uses (slicing costs as much as a small ufunc)."""
        k = self.layout.n_bins
        mu = self.history_frames
        nb = self._n_bands
        self._bound_history = log_history
        self._one_windowed = self._windowed[0]
        self._one_spectrum = self._spectrum[0]
        self._one_spectrum_bins = self._spectrum[0, self._bins]
        self._one_magnitude = self._magnitude[0]
        self._one_power = self._power_diff[0, :k]
        self._one_diff = self._power_diff[0, k:]
        self._one_power_diff = self._power_diff[:1]
        self._one_reference = self._reference[0]
        self._one_long_refs = [
            (log_history[mu - r :, cols], self._reference[0, cols]) for cols, r in self._long_refs
        ]
        self._one_history_head = log_history[:-1]
        self._one_history_tail = log_history[1:]
        self._one_history_last = log_history[mu - 1]
        self._one_needs_copy = len(self._long_refs) < nb  # some band compares with the last frame only
        self._one_sums = self._sums[:1]
        self._one_energy = self._sums[:1, :nb]
        self._one_flux = self._sums[:1, nb:]

    def compute_one(self, frame: np.ndarray, log_history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`compute` for one frame ``(frame_size,)``, bit for bit, with fewer Python-level steps."""
        if log_history is not self._bound_history:
            self._bind(log_history)
        np.multiply(frame, self.window, out=self._one_windowed)
        _rfft_into(self._one_windowed, self._one_spectrum, axis=0)
        magnitude = self._one_magnitude
        np.abs(self._one_spectrum_bins, out=magnitude)
        np.square(magnitude, out=self._one_power)
        reference = self._one_reference
        last = self._one_history_last
        if self._one_needs_copy:
            np.copyto(reference, last)
        for source, target in self._one_long_refs:
            np.maximum.reduce(source, axis=0, out=target)
        if self.history_frames > 1:
            np.copyto(self._one_history_head, self._one_history_tail)
        np.log1p(magnitude, out=last)
        diff = self._one_diff
        np.subtract(last, reference, out=diff)
        np.maximum(diff, 0.0, out=diff)
        sums = self._one_sums
        np.add.reduceat(self._one_power_diff, self._reduce_idx, axis=1, out=sums)
        np.multiply(sums, self._scale, out=sums)
        energy = self._one_energy
        np.maximum(energy, np.float32(ENERGY_FLOOR), out=energy)
        np.log10(energy, out=energy)
        np.multiply(energy, np.float32(10.0), out=energy)
        flux_q = self._one_flux
        np.rint(flux_q, out=flux_q)
        return energy, flux_q

    def compute(self, frames: np.ndarray, log_history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = frames.shape[0]
        k = self.layout.n_bins
        mu = self.history_frames
        windowed = self._windowed[:n]
        np.multiply(frames, self.window, out=windowed)
        spectrum = _rfft_into(windowed, self._spectrum[:n])
        magnitude = self._magnitude[:n]
        np.abs(spectrum[:, self._bins], out=magnitude)
        power_diff = self._power_diff[:n]
        np.square(magnitude, out=power_diff[:, :k])
        diff = power_diff[:, k:]
        if n == 1:
            # one frame (the live case): shift the history in place
            reference = self._reference[0]
            reference[...] = log_history[mu - 1]
            for cols, r in self._long_refs:
                np.maximum.reduce(log_history[mu - r :, cols], axis=0, out=reference[cols])
            if mu > 1:
                log_history[:-1] = log_history[1:]
            current = log_history[mu - 1]
            np.log1p(magnitude[0], out=current)
            np.subtract(current, reference, out=diff[0])
        else:
            log = self._log[: n + mu]
            log[:mu] = log_history
            np.log1p(magnitude, out=log[mu:])
            reference = self._reference[:n]
            reference[...] = log[mu - 1 : mu - 1 + n]
            for cols, r in self._long_refs:
                ref = reference[:, cols]
                if n < r - 1:  # fewer ops frame by frame (max is exact: both ways agree)
                    for i in range(n):
                        np.maximum.reduce(log[i + mu - r : i + mu, cols], axis=0, out=ref[i])
                else:
                    for j in range(mu - r, mu - 1):
                        np.maximum(ref, log[j : j + n, cols], out=ref)
            np.subtract(log[mu:], reference, out=diff)
            log_history[...] = log[n:]
        np.maximum(diff, 0.0, out=diff)
        sums = self._sums[:n]
        np.add.reduceat(power_diff, self._reduce_idx, axis=1, out=sums)
        np.multiply(sums, self._scale, out=sums)
        nb = self._n_bands
        energy = sums[:, :nb]
        np.maximum(energy, np.float32(ENERGY_FLOOR), out=energy)
        np.log10(energy, out=energy)
        np.multiply(energy, np.float32(10.0), out=energy)
        flux_q = sums[:, nb:]
        np.rint(flux_q, out=flux_q)
        return energy, flux_q
