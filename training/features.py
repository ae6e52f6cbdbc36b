"""Encoder input tensors from sjtui objects, for training and export.

The numbers come from :mod:`sjtui.model.inputs` (pure numpy, used by the
app too); this module only wraps them as torch tensors, so training and the
runtime compute identical inputs by construction.

It also makes synthetic but real-shaped inputs (:func:`synthetic_fingerprints`,
:func:`synthetic_grooves`): true :class:`~sjtui.dsp.fingerprint.Fingerprint`
and :class:`~sjtui.grooves.vho.Groove` objects with sparse onsets and hits on
musical steps, over all supported meters, built through the same layout
code. Export checks numeric parity on them besides plain random tensors.
They are for checking shapes and numerics, not training targets.
"""

from __future__ import annotations

import numpy as np
import torch

from sjtui.constants import STEPS_PER_BEAT
from sjtui.dsp.fingerprint import ONSET_DTYPE, Fingerprint
from sjtui.grooves.vho import N_VOICES, Groove
from sjtui.meter import parse_meter
from sjtui.model import inputs as layout


def _tensors(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(array) for name, array in arrays.items()}


def guitar_batch(fingerprints) -> dict[str, torch.Tensor]:
    """``{"grid": (n, 13, 4, 60), "context": (n, 10)}`` float32 tensors of fingerprints."""
    return _tensors(layout.guitar_inputs(fingerprints))


def groove_batch(grooves, descriptors: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """``{"grid": (n, 28, 4, 60), "descriptors": (n, 16), "context": (n, 10)}`` tensors of grooves."""
    return _tensors(layout.groove_inputs(grooves, descriptors))


def random_inputs(kind: str, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Plain random tensors of the ``kind`` ("guitar" | "groove") input shapes (uniform 0..1, mask 0/1)."""
    if kind == "guitar":
        shapes = {"grid": layout.GUITAR_GRID_SHAPE, "context": (layout.CONTEXT_DIM,)}
        mask_channel = layout.GUITAR_MASK_CHANNEL
    elif kind == "groove":
        shapes = {
            "grid": layout.GROOVE_GRID_SHAPE,
            "descriptors": (layout.DESCRIPTOR_DIM,),
            "context": (layout.CONTEXT_DIM,),
        }
        mask_channel = layout.GROOVE_MASK_CHANNEL
    else:
        raise ValueError(f"kind {kind!r}: use 'guitar' or 'groove'")
    out = {name: torch.rand((n, *shape), generator=generator) for name, shape in shapes.items()}
    out["grid"][:, mask_channel] = (out["grid"][:, mask_channel] > 0.3).float()
    return out


def synthetic_fingerprints(n: int, rng: np.random.Generator) -> list[Fingerprint]:
    """``n`` fingerprints of random meters and tempi with sparse onsets on 8th/16th/triplet steps."""
    out = []
    for _ in range(n):
        meter = parse_meter(rng.choice(layout.KNOWN_METERS))
        steps = meter.steps_per_bar
        shape = (layout.N_BANDS, layout.MODEL_BARS, steps)
        energy = np.clip(rng.normal(0.6, 0.2, shape), 0.0, 1.0).astype(np.float32)
        novelty = (rng.random(shape) ** 4).astype(np.float32)
        unit = int(rng.choice([3, 4, 6]))  # 16ths, 8th triplets, 8ths
        slots = np.arange(0, layout.MODEL_BARS * steps, unit)
        chosen = np.sort(
            rng.choice(
                slots, size=max(1, int(rng.integers(slots.size // 4, slots.size // 2 + 1))), replace=False
            )
        )
        onsets = np.zeros(chosen.size, dtype=ONSET_DTYPE)
        onsets["band"] = rng.integers(0, layout.N_BANDS, chosen.size)
        onsets["bar"] = chosen // steps
        onsets["step"] = chosen % steps
        onsets["strength"] = rng.uniform(0.2, 1.0, chosen.size)
        onsets["strength"][np.argmax(onsets["strength"])] = 1.0
        onsets["offset"] = np.clip(rng.normal(0.0, 0.12, chosen.size), -0.5, 0.49)
        bpm = float(rng.uniform(60.0, 200.0))
        out.append(Fingerprint(energy, novelty, onsets, meter, bpm, first_bar=0, start_sample=0.0))
    return out


def synthetic_grooves(n: int, rng: np.random.Generator) -> list[Groove]:
    """``n`` grooves of 1, 2 or 4 bars: kick and snare on beats and off-beats, hats on 8ths or 16ths."""
    out = []
    for i in range(n):
        meter = parse_meter(rng.choice(layout.KNOWN_METERS))
        steps = meter.steps_per_bar
        bars = int(rng.choice([1, 2, 4]))
        total = bars * steps
        hits = np.zeros((total, N_VOICES), dtype=bool)
        position = np.arange(total)
        hat_unit = int(rng.choice([3, 6]))
        hits[position % hat_unit == 0, 2] = True
        beats = position % STEPS_PER_BEAT == 0
        hits[:, 0] = beats & (rng.random(total) < 0.5)
        hits[:, 1] = beats & ~hits[:, 0] & (rng.random(total) < 0.6)
        hits[(position % 6 == 0) & (rng.random(total) < 0.1), 0] = True
        hits[0, 7] = rng.random() < 0.3
        velocities = np.where(hits, rng.uniform(0.3, 1.0, hits.shape), 0.0).astype(np.float32)
        offsets = np.where(hits, np.clip(rng.normal(0.0, 0.1, hits.shape), -0.5, 0.49), 0.0).astype(
            np.float32
        )
        out.append(
            Groove(
                hits,
                velocities,
                offsets,
                meter,
                float(rng.uniform(60.0, 200.0)),
                name=f"synthetic {i}",
                source="builtin",
            )
        )
    return out
