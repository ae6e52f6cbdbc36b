"""The fixed-size inputs of the two encoders, in pure numpy.

Training (``training/features.py``) and the runtime (:mod:`sjtui.model.runtime`)
both build their tensors with these functions, so a model sees at run time
exactly what it saw in training. The layout is described by
:func:`input_layout`, which the manifest records and the runtime compares.

Step axis
    Every window has ``MODEL_BARS`` (4) bars. Bars of different meters have
    different lengths on the 12-steps-per-beat grid (4/4 = 48 steps, 3/4 and
    6/8 = 36, 5/4 = 60, 7/8 = 42), so the step axis is padded with zeros to
    ``MODEL_STEPS_PER_BAR`` (60, enough for 5/4) and a ``mask`` channel is 1
    on the steps that exist. Step ``s`` of bar ``b`` is column ``s`` of row
    ``b`` in both towers: a guitar onset and a kick on the same grid step sit
    at the same position, which is what lets the encoders line them up (see
    MODEL-NOTES: sparse onset events aligned with the kick and snare carry the
    signal). Longer bars (6/4, 12/8: 72 steps) are refused with
    :class:`~sjtui.model.errors.ModelInputError`.

Guitar grid ``(n, 13, 4, 60)`` float32, channels in :data:`GUITAR_CHANNELS`:
    energy (3 bands), novelty (3 bands), onset strength (3 bands, the
    strongest onset of a cell), onset offset (3 bands, the micro-timing of
    that onset in steps, -0.5..0.5), mask.

Groove grid ``(n, 28, 4, 60)`` float32, channels in :data:`GROOVE_CHANNELS`:
    hit (9 voices), velocity (9), offset (9, steps), mask. A groove shorter
    than 4 bars is repeated (the player loops it); a longer one is refused
    (cut it with :meth:`~sjtui.grooves.vho.Groove.bar_slice`).

Groove descriptors ``(n, 16)`` float32:
    :func:`sjtui.grooves.descriptors.groove_descriptors`, scaled to about
    0..1 by :func:`scale_descriptors` (swing as log2 of the ratio).

Context ``(n, 10)`` float32, in :data:`CONTEXT_NAMES`, the same for both towers:
    ``log2(bpm / 120)``; ``cos`` and ``sin`` of ``2 pi log2(bpm / 120)``
    (equal for half, same and double time, so a dot product can favour
    tempo fits across octaves); steps per bar / 60; one-hot meter over
    4/4, 3/4, 6/8, 5/4, 7/8 and "other".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sjtui.constants import BAND_NAMES, BARS_PER_WINDOW, DRUM_VOICES
from sjtui.grooves.descriptors import DESCRIPTOR_NAMES, groove_descriptors
from sjtui.meter import Meter
from sjtui.model.errors import ModelInputError

INPUT_LAYOUT_VERSION = 1
"""Bumped whenever the meaning of any input value changes."""

MODEL_BARS = BARS_PER_WINDOW
MODEL_STEPS_PER_BAR = 60
"""Padded length of a bar: 5/4 at 12 steps per beat."""

REFERENCE_BPM = 120.0
KNOWN_METERS = ("4/4", "3/4", "6/8", "5/4", "7/8")

N_BANDS = len(BAND_NAMES)
N_VOICES = len(DRUM_VOICES)

GUITAR_CHANNELS: tuple[str, ...] = (
    *(f"energy_{band}" for band in BAND_NAMES),
    *(f"novelty_{band}" for band in BAND_NAMES),
    *(f"onset_strength_{band}" for band in BAND_NAMES),
    *(f"onset_offset_{band}" for band in BAND_NAMES),
    "mask",
)
GROOVE_CHANNELS: tuple[str, ...] = (
    *(f"hit_{voice}" for voice in DRUM_VOICES),
    *(f"velocity_{voice}" for voice in DRUM_VOICES),
    *(f"offset_{voice}" for voice in DRUM_VOICES),
    "mask",
)
CONTEXT_NAMES: tuple[str, ...] = (
    "log2_tempo_ratio",
    "tempo_octave_cos",
    "tempo_octave_sin",
    "steps_per_bar_fraction",
    *(f"meter_{meter}" for meter in KNOWN_METERS),
    "meter_other",
)

# channel offsets
_ENERGY, _NOVELTY, _STRENGTH, _ONSET_OFFSET = 0, N_BANDS, 2 * N_BANDS, 3 * N_BANDS
GUITAR_MASK_CHANNEL = 4 * N_BANDS
_HIT, _VELOCITY, _HIT_OFFSET = 0, N_VOICES, 2 * N_VOICES
GROOVE_MASK_CHANNEL = 3 * N_VOICES

GUITAR_GRID_SHAPE = (len(GUITAR_CHANNELS), MODEL_BARS, MODEL_STEPS_PER_BAR)
GROOVE_GRID_SHAPE = (len(GROOVE_CHANNELS), MODEL_BARS, MODEL_STEPS_PER_BAR)
CONTEXT_DIM = len(CONTEXT_NAMES)
DESCRIPTOR_DIM = len(DESCRIPTOR_NAMES)


def _descriptor_scales() -> tuple[np.ndarray, np.ndarray]:
    """Per descriptor ``(scale, is_log2)``: scaled = value / scale, or log2(value) for ratios."""
    scale = np.ones(DESCRIPTOR_DIM, dtype=np.float32)
    is_log2 = np.zeros(DESCRIPTOR_DIM, dtype=bool)
    for i, name in enumerate(DESCRIPTOR_NAMES):
        if name.startswith("density_"):
            scale[i] = 16.0  # hits per bar: straight 16ths in 4/4 -> 1
        elif name.startswith("syncopation"):
            scale[i] = 8.0  # LHL score per bar
        elif name == "swing_ratio":
            is_log2[i] = True  # 1 straight -> 0, 2 triplet -> 1
        elif name.startswith("timing_"):
            scale[i] = 0.5  # steps; offsets lie in -0.5..0.5
    return scale, is_log2


DESCRIPTOR_SCALE, DESCRIPTOR_IS_LOG2 = _descriptor_scales()


def input_layout() -> dict:
    """Everything a model's inputs depend on beyond the feature constants, as plain data.

    Recorded in the manifest at export; the runtime refuses a model whose
    layout differs from the running code's.
    """
    return {
        "input_layout_version": INPUT_LAYOUT_VERSION,
        "model_bars": MODEL_BARS,
        "model_steps_per_bar": MODEL_STEPS_PER_BAR,
        "reference_bpm": REFERENCE_BPM,
        "known_meters": list(KNOWN_METERS),
        "guitar_channels": list(GUITAR_CHANNELS),
        "groove_channels": list(GROOVE_CHANNELS),
        "context_names": list(CONTEXT_NAMES),
        "descriptor_names": list(DESCRIPTOR_NAMES),
        "descriptor_scale": [float(s) for s in DESCRIPTOR_SCALE],
        "descriptor_is_log2": [bool(b) for b in DESCRIPTOR_IS_LOG2],
    }


def model_steps_per_bar(meter: Meter) -> int:
    """Steps per bar of ``meter``, checked to fit the model's padded bar."""
    steps = meter.steps_per_bar
    if steps > MODEL_STEPS_PER_BAR:
        raise ModelInputError(
            f"meter {meter}: {steps} steps per bar do not fit the model's {MODEL_STEPS_PER_BAR}-step bar "
            f"(the longest it takes is 5/4); play in {', '.join(KNOWN_METERS)} or another meter of at most "
            f"{MODEL_STEPS_PER_BAR // 12} quarter notes"
        )
    return steps


def context_vector(bpm: float, meter: Meter, out: np.ndarray | None = None) -> np.ndarray:
    """``(CONTEXT_DIM,)`` float32 context of a window at ``bpm`` in ``meter`` (names in :data:`CONTEXT_NAMES`)."""
    if not np.isfinite(bpm) or bpm <= 0:
        raise ModelInputError(
            f"tempo {bpm!r} BPM is not a positive number; give the tempo in quarter notes per minute"
        )
    steps = model_steps_per_bar(meter)
    if out is None:
        out = np.zeros(CONTEXT_DIM, dtype=np.float32)
    else:
        out[:] = 0.0
    octave = np.log2(bpm / REFERENCE_BPM)
    out[0] = octave
    out[1] = np.cos(2.0 * np.pi * octave)
    out[2] = np.sin(2.0 * np.pi * octave)
    out[3] = steps / MODEL_STEPS_PER_BAR
    name = str(meter)
    out[4 + (KNOWN_METERS.index(name) if name in KNOWN_METERS else len(KNOWN_METERS))] = 1.0
    return out


def as_list(items, kind: str) -> list:
    """One object or a sequence of them -> a non-empty list (``kind`` names them in the error)."""
    if isinstance(items, Sequence) and not isinstance(items, (str, bytes)):
        items = list(items)
    else:
        items = [items]
    if not items:
        raise ModelInputError(f"no {kind} given; pass at least one")
    return items


def fill_guitar_input(fingerprint, grid: np.ndarray, context: np.ndarray) -> None:
    """Write one fingerprint into ``grid`` ``(13, 4, 60)`` and ``context`` ``(CONTEXT_DIM,)`` (float32 views).

    ``fingerprint`` is a :class:`sjtui.dsp.fingerprint.Fingerprint`: ``energy``
    and ``novelty`` ``(3, 4, steps_per_bar)``, ``onsets`` with fields band, bar,
    step, strength, offset.
    """
    steps = model_steps_per_bar(fingerprint.meter)
    expected = (N_BANDS, MODEL_BARS, steps)
    for field in ("energy", "novelty"):
        shape = np.shape(getattr(fingerprint, field))
        if shape != expected:
            raise ModelInputError(
                f"fingerprint {field} has shape {shape}; the model takes {expected} "
                f"({N_BANDS} bands x {MODEL_BARS} bars x {steps} steps of {fingerprint.meter})"
            )
    grid[:] = 0.0
    grid[_ENERGY : _ENERGY + N_BANDS, :, :steps] = fingerprint.energy
    grid[_NOVELTY : _NOVELTY + N_BANDS, :, :steps] = fingerprint.novelty
    grid[GUITAR_MASK_CHANNEL, :, :steps] = 1.0

    onsets = fingerprint.onsets
    if onsets.size:
        band = onsets["band"].astype(np.intp)
        bar = onsets["bar"].astype(np.intp)
        step = onsets["step"].astype(np.intp)
        bad = (band < 0) | (band >= N_BANDS) | (bar < 0) | (bar >= MODEL_BARS) | (step < 0) | (step >= steps)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ModelInputError(
                f"fingerprint onset (band {band[i]}, bar {bar[i]}, step {step[i]}) lies outside "
                f"{N_BANDS} bands x {MODEL_BARS} bars x {steps} steps; the fingerprint is malformed"
            )
        cell = (band * MODEL_BARS + bar) * MODEL_STEPS_PER_BAR + step
        strength = onsets["strength"].astype(np.float32)
        # the strongest onset of each cell wins (ties: the later event)
        order = np.lexsort((strength, cell))
        cell_sorted = cell[order]
        last = np.ones(order.size, dtype=bool)
        last[:-1] = cell_sorted[1:] != cell_sorted[:-1]
        winners = order[last]
        # channels of a band-major block are contiguous: ravel views of grid[a:b]
        grid[_STRENGTH : _STRENGTH + N_BANDS].reshape(-1)[cell[winners]] = strength[winners]
        grid[_ONSET_OFFSET : _ONSET_OFFSET + N_BANDS].reshape(-1)[cell[winners]] = onsets["offset"][winners]
    context_vector(float(fingerprint.bpm), fingerprint.meter, out=context)


def guitar_inputs(fingerprints) -> dict[str, np.ndarray]:
    """Encoder inputs of one fingerprint or a sequence of them.

    Returns ``{"grid": (n, 13, 4, 60), "context": (n, CONTEXT_DIM)}``, float32.
    """
    items = as_list(fingerprints, "fingerprint")
    grid = np.zeros((len(items), *GUITAR_GRID_SHAPE), dtype=np.float32)
    context = np.zeros((len(items), CONTEXT_DIM), dtype=np.float32)
    for i, fingerprint in enumerate(items):
        fill_guitar_input(fingerprint, grid[i], context[i])
    return {"grid": grid, "context": context}


def scale_descriptors(raw: np.ndarray) -> np.ndarray:
    """Raw descriptor vectors ``(..., DESCRIPTOR_DIM)`` -> model scale (float32, new array)."""
    raw = np.asarray(raw, dtype=np.float32)
    if raw.shape[-1:] != (DESCRIPTOR_DIM,):
        raise ModelInputError(
            f"descriptors have shape {raw.shape}; the model takes {DESCRIPTOR_DIM} per groove ({', '.join(DESCRIPTOR_NAMES)})"
        )
    scaled = raw / DESCRIPTOR_SCALE
    ratio = np.maximum(raw[..., DESCRIPTOR_IS_LOG2], 1e-3)
    scaled[..., DESCRIPTOR_IS_LOG2] = np.log2(ratio)
    return scaled


def fill_groove_input(groove, grid: np.ndarray, context: np.ndarray) -> None:
    """Write one groove into ``grid`` ``(28, 4, 60)`` and ``context`` ``(CONTEXT_DIM,)``.

    ``groove`` is a :class:`sjtui.grooves.vho.Groove` of at most 4 bars;
    shorter grooves are repeated bar by bar to fill the window.
    """
    try:
        steps = model_steps_per_bar(groove.meter)
    except ModelInputError as error:
        raise ModelInputError(f"groove {groove.name!r}: {error}") from None
    bars = groove.n_steps // steps
    if bars > MODEL_BARS or bars < 1:
        raise ModelInputError(
            f"groove {groove.name!r} has {bars} bars; the model takes windows of at most {MODEL_BARS} "
            f"(cut longer grooves with groove.bar_slice(start_bar, {MODEL_BARS}))"
        )
    rows = np.arange(MODEL_BARS) % bars  # loop short grooves
    for base, values in ((_HIT, groove.hits), (_VELOCITY, groove.velocities), (_HIT_OFFSET, groove.offsets)):
        by_bar = np.asarray(values, dtype=np.float32).reshape(bars, steps, N_VOICES)[
            rows
        ]  # (4, steps, voices)
        grid[base : base + N_VOICES, :, :steps] = by_bar.transpose(2, 0, 1)
        grid[base : base + N_VOICES, :, steps:] = 0.0
    grid[GROOVE_MASK_CHANNEL] = 0.0
    grid[GROOVE_MASK_CHANNEL, :, :steps] = 1.0
    context_vector(float(groove.bpm), groove.meter, out=context)


def groove_inputs(grooves, descriptors: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Encoder inputs of one groove or a sequence of them.

    ``descriptors``: optional ``(n, DESCRIPTOR_DIM)`` raw descriptor vectors
    (as stored in a groove library); computed with
    :func:`~sjtui.grooves.descriptors.groove_descriptors` when omitted.
    Returns ``{"grid": (n, 28, 4, 60), "descriptors": (n, DESCRIPTOR_DIM),
    "context": (n, CONTEXT_DIM)}``, float32.
    """
    items = as_list(grooves, "groove")
    n = len(items)
    grid = np.empty((n, *GROOVE_GRID_SHAPE), dtype=np.float32)
    context = np.zeros((n, CONTEXT_DIM), dtype=np.float32)
    for i, groove in enumerate(items):
        fill_groove_input(groove, grid[i], context[i])
    if descriptors is None:
        raw = np.stack([groove_descriptors(groove) for groove in items])
    else:
        raw = np.asarray(descriptors, dtype=np.float32)
        if raw.shape != (n, DESCRIPTOR_DIM):
            raise ModelInputError(
                f"descriptors have shape {raw.shape} for {n} grooves; give ({n}, {DESCRIPTOR_DIM}) "
                "or leave them out to compute them"
            )
    return {"grid": grid, "descriptors": scale_descriptors(raw), "context": context}
