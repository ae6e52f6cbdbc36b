"""The manifest of a model directory: what the encoders are, and what they need.

A model directory holds two ONNX files whose names carry the model name and
version (``guitar_encoder-0.1.0.onnx``, ``groove_encoder-0.1.0.onnx``) and
``manifest.json``::

    {
      "format_version": 1,
      "name": "sjtui-two-tower", "version": "0.1.0", "created_utc": "...",
      "embedding_dim": 128,
      "feature_constants": {...},      # sjtui.constants.feature_constants() at export
      "input_layout": {...},           # sjtui.model.inputs.input_layout() at export
      "architecture": {...},           # tower hyper-parameters, parameter counts
      "training": {"status": "untrained" | "trained", "summary": "...", ...},
      "evaluation": {"status": "not evaluated" | "evaluated", ...figures},
      "encoders": {
        "guitar": {"file": "...onnx", "sha256": "...", "size_bytes": n, "opset": 17,
                   "n_parameters": n,
                   "inputs": [{"name": "grid", "shape": ["batch", 13, 4, 60], "dtype": "float32"}, ...],
                   "outputs": [{"name": "embedding", "shape": ["batch", 128], "dtype": "float32"}],
                   "parity": {"max_abs_diff": x, "tolerance": 1e-05, "n_inputs": n}},
        "groove": {...}
      },
      "reference": {"file": "reference-0.1.0.npz", "sha256": "...", "size_bytes": n,
                    "atol": 0.0001, "n_guitar": 8, "n_groove": 8}   # optional, see sjtui.model.reference
    }

Both towers live in one manifest because their embeddings only mean
something together. ``training/export.py`` writes it with
:func:`write_manifest`; the runtime reads it with :func:`read_manifest`,
then :func:`check_compatible` and :func:`verify_encoder_file` refuse
anything it cannot trust, with a message saying what differs.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from sjtui.model.errors import ModelError

MANIFEST_FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
ENCODER_KINDS = ("guitar", "groove")
_REQUIRED_KEYS = (
    "format_version",
    "name",
    "version",
    "embedding_dim",
    "feature_constants",
    "input_layout",
    "encoders",
)
_REQUIRED_ENCODER_KEYS = ("file", "sha256", "size_bytes", "inputs", "outputs")


def encoder_file_name(kind: str, version: str) -> str:
    """``guitar_encoder-0.1.0.onnx`` for ``("guitar", "0.1.0")``."""
    return f"{kind}_encoder-{version}.onnx"


def sha256_of(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: str | Path, manifest: dict) -> Path:
    """Write ``manifest`` as ``directory/manifest.json`` atomically (temp file + rename)."""
    path = Path(directory) / MANIFEST_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def read_manifest(directory: str | Path) -> dict:
    """The parsed manifest of a model directory, with its format checked.

    Raises :class:`ModelError` for a missing or unreadable manifest, a format
    newer than this sjtui understands, or missing keys.
    """
    directory = Path(directory)
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise ModelError(
            f"no model manifest at {path}; a model directory holds {MANIFEST_FILE} and its ONNX files "
            "(export one with `python -m training.export`)"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"model manifest {path} cannot be read ({error}); export the model again") from error
    if not isinstance(manifest, dict):
        raise ModelError(f"model manifest {path} is not a JSON object; export the model again")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelError(
            f"model manifest {path} has no integer format_version (got {version!r}); export the model again"
        )
    if version > MANIFEST_FORMAT_VERSION:
        raise ModelError(
            f"model manifest {path} has format version {version}, newer than the {MANIFEST_FORMAT_VERSION} "
            "this sjtui reads; update sjtui, or use a model exported by this version"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in manifest]
    encoders = manifest.get("encoders")
    if not missing and isinstance(encoders, dict):
        for kind in ENCODER_KINDS:
            entry = encoders.get(kind)
            if not isinstance(entry, dict):
                missing.append(f"encoders.{kind}")
                continue
            missing += [f"encoders.{kind}.{key}" for key in _REQUIRED_ENCODER_KEYS if key not in entry]
    elif not missing:
        missing.append("encoders (an object)")
    if missing:
        raise ModelError(f"model manifest {path} lacks {', '.join(missing)}; export the model again")
    return manifest


def _differences(recorded: dict, running: dict) -> list[str]:
    lines = []
    for key in sorted(set(recorded) | set(running)):
        if key not in recorded:
            lines.append(f"{key}: not recorded by the model, {running[key]!r} here")
        elif key not in running:
            lines.append(f"{key}: {recorded[key]!r} in the model, unknown here")
        elif recorded[key] != running[key]:
            lines.append(f"{key}: {recorded[key]!r} in the model, {running[key]!r} here")
    return lines


def check_compatible(
    manifest: dict, feature_constants: dict, input_layout: dict, where: str = "model"
) -> None:
    """Refuse a model built for other features.

    ``feature_constants`` and ``input_layout`` are the running code's
    (:func:`sjtui.constants.feature_constants`, :func:`sjtui.model.inputs.input_layout`).
    The :class:`ModelError` names every constant that differs, with both values.
    """
    problems = [
        f"feature constant {line}" for line in _differences(manifest["feature_constants"], feature_constants)
    ]
    problems += [f"input layout {line}" for line in _differences(manifest["input_layout"], input_layout)]
    if problems:
        raise ModelError(
            f"{where} was built for other features than this sjtui computes:\n  "
            + "\n  ".join(problems)
            + "\nretrain and export the model with this version (`python -m training.train`), or use the shipped model"
        )


def verify_encoder_file(directory: str | Path, manifest: dict, kind: str) -> Path:
    """Path of the ``kind`` encoder after checking it exists and matches its size and sha256.

    Raises :class:`ModelError` naming the file for a missing, truncated or
    altered file.
    """
    return verify_file(directory, manifest["encoders"][kind], f"{kind} encoder")


def verify_file(directory: str | Path, entry: dict, what: str) -> Path:
    """Path of the file a manifest ``entry`` (file, size_bytes, sha256) describes, after checking it."""
    name = str(entry["file"])
    if Path(name).name != name:
        raise ModelError(
            f"model manifest names {what} file {name!r}; it must be a bare file name inside the model directory"
        )
    path = Path(directory) / name
    if not path.is_file():
        raise ModelError(f"{what} {path} is missing; restore the model directory or export the model again")
    size = path.stat().st_size
    if size != entry["size_bytes"]:
        raise ModelError(
            f"{what} {path} has {size} bytes, the manifest says {entry['size_bytes']}: the file is truncated "
            "or replaced; restore it or export the model again"
        )
    digest = sha256_of(path)
    if digest != entry["sha256"]:
        raise ModelError(
            f"{what} {path} has sha256 {digest[:16]}..., the manifest says {str(entry['sha256'])[:16]}...: "
            "the file was altered; restore it or export the model again"
        )
    return path
