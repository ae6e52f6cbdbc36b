"""Stored reference windows and the embeddings a model gave them at export.

Export writes ``reference-<version>.npz`` beside the encoders: a few
fingerprints and grooves (as the *objects* the app builds, not as tensors)
and the embeddings torch computed for them. :meth:`sjtui.model.runtime.EncoderPair.check_reference`
rebuilds the inputs with the running code and compares (atol
:data:`REFERENCE_ATOL`), so a silent change anywhere on the way (input
layout, descriptors, onnxruntime) is caught rather than quietly degrading
the choices.

File layout (numpy ``.npz``, no pickles): ``fingerprint_{i}_energy``,
``fingerprint_{i}_novelty`` ``(3, 4, steps_per_bar)``, ``fingerprint_{i}_onsets``
(structured, :data:`sjtui.dsp.fingerprint.ONSET_DTYPE`), ``fingerprint_meter``
``(n,)`` str, ``fingerprint_bpm`` ``(n,)``; ``groove_{i}_hits`` /
``_velocities`` / ``_offsets`` ``(n_steps, 9)``, ``groove_meter``,
``groove_bpm``; ``guitar_embedding`` ``(n, d)`` and ``groove_embedding`` ``(m, d)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sjtui.model.errors import ModelError

REFERENCE_ATOL = 1e-4


def reference_file_name(version: str) -> str:
    return f"reference-{version}.npz"


def save_reference(
    path: str | Path, fingerprints, grooves, guitar_embedding: np.ndarray, groove_embedding: np.ndarray
) -> None:
    """Write reference windows and their embeddings (``(n, d)`` and ``(m, d)`` float32) to ``path``."""
    arrays: dict[str, np.ndarray] = {}
    for i, fp in enumerate(fingerprints):
        arrays[f"fingerprint_{i}_energy"] = np.asarray(fp.energy, dtype=np.float32)
        arrays[f"fingerprint_{i}_novelty"] = np.asarray(fp.novelty, dtype=np.float32)
        arrays[f"fingerprint_{i}_onsets"] = np.asarray(fp.onsets)
    arrays["fingerprint_meter"] = np.array([str(fp.meter) for fp in fingerprints])
    arrays["fingerprint_bpm"] = np.array([fp.bpm for fp in fingerprints], dtype=np.float64)
    for i, groove in enumerate(grooves):
        arrays[f"groove_{i}_hits"] = groove.hits
        arrays[f"groove_{i}_velocities"] = groove.velocities
        arrays[f"groove_{i}_offsets"] = groove.offsets
    arrays["groove_meter"] = np.array([str(g.meter) for g in grooves])
    arrays["groove_bpm"] = np.array([g.bpm for g in grooves], dtype=np.float64)
    arrays["guitar_embedding"] = np.asarray(guitar_embedding, dtype=np.float32)
    arrays["groove_embedding"] = np.asarray(groove_embedding, dtype=np.float32)
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def load_reference(path: str | Path):
    """``(fingerprints, grooves, guitar_embedding, groove_embedding)`` from a reference file."""
    from sjtui.dsp.fingerprint import Fingerprint
    from sjtui.grooves.vho import Groove
    from sjtui.meter import parse_meter

    try:
        with np.load(path, allow_pickle=False) as data:
            fingerprints = [
                Fingerprint(
                    energy=data[f"fingerprint_{i}_energy"],
                    novelty=data[f"fingerprint_{i}_novelty"],
                    onsets=data[f"fingerprint_{i}_onsets"],
                    meter=parse_meter(str(meter)),
                    bpm=float(bpm),
                    first_bar=0,
                    start_sample=0.0,
                )
                for i, (meter, bpm) in enumerate(zip(data["fingerprint_meter"], data["fingerprint_bpm"]))
            ]
            grooves = [
                Groove(
                    data[f"groove_{i}_hits"],
                    data[f"groove_{i}_velocities"],
                    data[f"groove_{i}_offsets"],
                    parse_meter(str(meter)),
                    float(bpm),
                    name=f"reference {i}",
                    source="builtin",
                )
                for i, (meter, bpm) in enumerate(zip(data["groove_meter"], data["groove_bpm"]))
            ]
            return fingerprints, grooves, data["guitar_embedding"], data["groove_embedding"]
    except (OSError, KeyError, ValueError) as error:
        raise ModelError(f"reference file {path} cannot be read ({error}); export the model again") from error
