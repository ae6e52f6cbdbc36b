"""Export both towers to single-file ONNX, check them against torch, write the manifest.

``python -m training.export --out DIR --checkpoint run/model.pt`` exports a
trained checkpoint; ``--random-init --seed N`` exports a freshly initialised
model for development (it is marked "untrained" in its manifest and is
refused as the shipped model in ``sjtui/data/models/``).

Steps (:func:`export_model`):

1. each tower is exported with the TorchScript exporter
   (``torch.onnx.export(..., dynamo=False)``) at opset :data:`OPSET`, with a
   dynamic batch axis and its weights inside the file (checked: no external
   data);
2. parity: the ONNX file, run by onnxruntime with the same session options
   as the app (one thread), must agree with torch within
   :data:`PARITY_TOLERANCE` (max abs difference of the embeddings) on plain
   random tensors at batch sizes 1, 3 and 7, on real-shaped synthetic
   fingerprints and grooves of every meter, and on any real inputs the
   caller passes (for example Groove MIDI Dataset grooves);
3. the guitar encoder must stay under :data:`GUITAR_MAX_BYTES`;
4. the manifest (see :mod:`sjtui.model.manifest`) records name, version,
   files, sha256, input shapes, the feature constants and input layout,
   the parity figures, the training summary and evaluation figures;
5. reference windows (synthetic fingerprints and grooves of several meters)
   are stored with their torch embeddings (:mod:`sjtui.model.reference`), so
   a later silent change of the input code is caught;
6. the staged directory must load through the runtime
   (:class:`sjtui.model.runtime.EncoderPair`) and pass its reference check
   before its files are moved into place; files it replaces are kept as
   ``NAME.bak-YYYYmmddTHHMMSS``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from sjtui.constants import feature_constants
from sjtui.model import inputs as layout
from sjtui.model.manifest import (
    MANIFEST_FILE,
    MANIFEST_FORMAT_VERSION,
    encoder_file_name,
    sha256_of,
    write_manifest,
)
from sjtui.model.reference import REFERENCE_ATOL, reference_file_name, save_reference
from sjtui.model.runtime import SHIPPED_MODEL_DIR, EncoderPair, session_options
from training.features import (
    groove_batch,
    guitar_batch,
    random_inputs,
    synthetic_fingerprints,
    synthetic_grooves,
)
from training.towers import TwoTower, build_two_tower, load_checkpoint

OPSET = 17
PARITY_TOLERANCE = 1e-5
GUITAR_MAX_BYTES = 1_000_000
MODEL_NAME = "sjtui-two-tower"
OUTPUT_NAME = "embedding"
_VERSION_PATTERN = re.compile(r"^\d+\.\d+\.\d+([.+-][0-9A-Za-z.]+)?$")


class ExportError(RuntimeError):
    """The export failed a check; nothing was installed."""


def _tower(model: TwoTower, kind: str):
    return model.guitar if kind == "guitar" else model.groove


def export_tower(tower: torch.nn.Module, kind: str, path: Path) -> None:
    """Write ``tower`` as one self-contained ONNX file at ``path`` (opset :data:`OPSET`, dynamic batch)."""
    import onnx

    generator = torch.Generator().manual_seed(0)
    example = random_inputs(kind, 2, generator)
    names = list(tower.input_names)
    dynamic_axes = {name: {0: "batch"} for name in [*names, OUTPUT_NAME]}
    tower.eval()
    with warnings.catch_warnings():
        # the TorchScript exporter announces its deprecation in favour of dynamo; it is still
        # supported in torch 2.13, exports in a fraction of a second and needs no onnxscript
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(
            tower,
            tuple(example[name] for name in names),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=names,
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    proto = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(proto)
    external = [t.name for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise ExportError(
            f"{kind} encoder {path}: weights stored outside the file ({external[:3]}); it must be one file"
        )
    opsets = {entry.domain or "ai.onnx": entry.version for entry in proto.opset_import}
    if opsets.get("ai.onnx") != OPSET:
        raise ExportError(f"{kind} encoder {path}: opset {opsets}, expected {OPSET}")


def parity_inputs(kind: str, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """Labelled input batches for the parity check: random tensors and real-shaped synthetic objects."""
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    sets = {f"random_batch{n}": random_inputs(kind, n, generator) for n in (1, 3, 7)}
    wide = random_inputs(kind, 4, generator)
    sets["gaussian_batch4"] = {
        name: 3.0 * torch.randn(t.shape, generator=generator) for name, t in wide.items()
    }
    if kind == "guitar":
        sets["synthetic_fingerprints16"] = guitar_batch(synthetic_fingerprints(16, rng))
    else:
        sets["synthetic_grooves16"] = groove_batch(synthetic_grooves(16, rng))
    return sets


def check_parity(
    tower: torch.nn.Module, kind: str, path: Path, input_sets: dict[str, dict[str, torch.Tensor]]
) -> dict:
    """Max abs difference torch vs onnxruntime per input set; raises :class:`ExportError` above the tolerance."""
    import onnxruntime

    session = onnxruntime.InferenceSession(
        str(path), sess_options=session_options(), providers=["CPUExecutionProvider"]
    )
    names = list(tower.input_names)
    diffs = {}
    with torch.no_grad():
        for label, feeds in input_sets.items():
            expected = tower(*(feeds[name] for name in names)).numpy()
            got = session.run(
                [OUTPUT_NAME], {name: feeds[name].numpy().astype(np.float32) for name in names}
            )[0]
            if got.shape != expected.shape:
                raise ExportError(
                    f"{kind} encoder parity on {label}: onnxruntime shape {got.shape}, torch {expected.shape}"
                )
            diffs[label] = float(np.max(np.abs(got - expected)))
    worst = max(diffs.values())
    if not worst <= PARITY_TOLERANCE:
        raise ExportError(
            f"{kind} encoder: onnxruntime differs from torch by {worst:.3g} (> {PARITY_TOLERANCE:g}) on "
            f"{max(diffs, key=diffs.get)}; per set: {diffs}"
        )
    return {
        "max_abs_diff": worst,
        "tolerance": PARITY_TOLERANCE,
        "per_input_set": diffs,
        "n_input_sets": len(diffs),
    }


def write_reference(model: TwoTower, directory: Path, version: str, seed: int, n: int = 8) -> dict:
    """Store ``n`` synthetic fingerprints and grooves with their torch embeddings; returns the manifest entry."""
    rng = np.random.default_rng(10_000 + seed)
    fingerprints, grooves = synthetic_fingerprints(n, rng), synthetic_grooves(n, rng)
    with torch.no_grad():
        g, d = guitar_batch(fingerprints), groove_batch(grooves)
        guitar_embedding = model.guitar(g["grid"], g["context"]).numpy()
        groove_embedding = model.groove(d["grid"], d["descriptors"], d["context"]).numpy()
    path = directory / reference_file_name(version)
    save_reference(path, fingerprints, grooves, guitar_embedding, groove_embedding)
    return {
        "file": path.name,
        "sha256": sha256_of(path),
        "size_bytes": path.stat().st_size,
        "atol": REFERENCE_ATOL,
        "n_guitar": n,
        "n_groove": n,
        "meters": sorted({str(fp.meter) for fp in fingerprints} | {str(gr.meter) for gr in grooves}),
    }


def _io_spec(tower: torch.nn.Module, kind: str, embedding_dim: int) -> tuple[list, list]:
    shapes = {
        "grid": layout.GUITAR_GRID_SHAPE if kind == "guitar" else layout.GROOVE_GRID_SHAPE,
        "descriptors": (layout.DESCRIPTOR_DIM,),
        "context": (layout.CONTEXT_DIM,),
    }
    inputs = [{"name": n, "shape": ["batch", *shapes[n]], "dtype": "float32"} for n in tower.input_names]
    outputs = [{"name": OUTPUT_NAME, "shape": ["batch", embedding_dim], "dtype": "float32"}]
    return inputs, outputs


def _install(staging: Path, out_dir: Path, names: list[str]) -> list[str]:
    """Move ``names`` from ``staging`` into ``out_dir`` (manifest last); back up differing files. Returns backups."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    backups = []
    for name in sorted(names, key=lambda n: n == MANIFEST_FILE):
        target = out_dir / name
        if target.exists():
            if sha256_of(target) == sha256_of(staging / name):
                os.replace(staging / name, target)
                continue
            backup = out_dir / f"{name}.bak-{stamp}"
            # a second name for the old file first, then one atomic replace: killed at any moment,
            # ``target`` is the old file or the new one, never missing (the active manifest above all)
            try:
                os.link(target, backup)
            except OSError:  # no hard links here (some network or FAT file systems)
                shutil.copy2(target, backup)
            backups.append(backup.name)
        os.replace(staging / name, target)
    return backups


def export_model(
    model: TwoTower,
    out_dir: str | Path,
    *,
    version: str,
    training: dict,
    evaluation: dict | None = None,
    name: str = MODEL_NAME,
    real_inputs: dict[str, dict[str, dict[str, torch.Tensor]]] | None = None,
    seed: int = 0,
) -> dict:
    """Export, check and install both towers of ``model`` into ``out_dir``; returns the manifest.

    ``training``: at least ``{"status": "trained" | "untrained", "summary": str}``.
    ``real_inputs``: optional ``{"guitar" | "groove": {label: feeds}}`` added to the parity check.
    Raises :class:`ExportError` (nothing installed) when a check fails.
    """
    if not _VERSION_PATTERN.match(version):
        raise ExportError(f"version {version!r} is not like 1.2.3; it goes into the file names")
    if training.get("status") not in ("trained", "untrained") or not isinstance(training.get("summary"), str):
        raise ExportError(
            f"training summary {training!r} needs status 'trained' or 'untrained' and a summary text "
            "(what data, how many ratings/pairs, how the weak targets were made)"
        )
    out_dir = Path(out_dir)
    trained = training["status"] == "trained"
    if not trained and out_dir.resolve() == SHIPPED_MODEL_DIR.resolve():
        raise ExportError(
            f"refusing to install an untrained model into {SHIPPED_MODEL_DIR} (the shipped model); "
            "export a trained checkpoint there, or choose another --out"
        )
    model = model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    try:
        encoders = {}
        for kind in ("guitar", "groove"):
            tower = _tower(model, kind)
            file_name = encoder_file_name(kind, version)
            path = staging / file_name
            export_tower(tower, kind, path)
            input_sets = parity_inputs(kind, seed)
            for label, feeds in ((real_inputs or {}).get(kind) or {}).items():
                input_sets[f"real_{label}"] = feeds
            parity = check_parity(tower, kind, path, input_sets)
            size = path.stat().st_size
            if kind == "guitar" and size >= GUITAR_MAX_BYTES:
                raise ExportError(
                    f"guitar encoder is {size} bytes; it must stay under {GUITAR_MAX_BYTES} (shrink the tower)"
                )
            inputs, outputs = _io_spec(tower, kind, model.embedding_dim)
            encoders[kind] = {
                "file": file_name,
                "sha256": sha256_of(path),
                "size_bytes": size,
                "opset": OPSET,
                "n_parameters": tower.n_parameters(),
                "inputs": inputs,
                "outputs": outputs,
                "parity": parity,
            }
        manifest = {
            "format_version": MANIFEST_FORMAT_VERSION,
            "name": name,
            "version": version,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "embedding_dim": model.embedding_dim,
            "compatibility": "dot product of the two L2-normalised embeddings",
            "feature_constants": feature_constants(),
            "input_layout": layout.input_layout(),
            "architecture": model.architecture(),
            "exporter": {
                "torch": torch.__version__,
                "method": "torch.onnx.export(dynamo=False)",
                "opset": OPSET,
            },
            "training": training,
            "evaluation": evaluation or {"status": "not evaluated", "summary": "no evaluation figures"},
            "encoders": encoders,
        }
        manifest["reference"] = write_reference(model, staging, version, seed)
        write_manifest(staging, manifest)
        EncoderPair(staging).check_reference()  # the runtime accepts what we are about to install
        files = [
            MANIFEST_FILE,
            encoders["guitar"]["file"],
            encoders["groove"]["file"],
            manifest["reference"]["file"],
        ]
        leftovers = sorted(set(os.listdir(staging)) - set(files))
        if leftovers:
            raise ExportError(f"export left unexpected files {leftovers}: the encoders must be single files")
        manifest_backups = _install(staging, out_dir, files)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if manifest_backups:
        print(f"kept previous files as {', '.join(manifest_backups)} in {out_dir}", file=sys.stderr)
    return manifest


def untrained_summary(seed: int) -> dict:
    return {
        "status": "untrained",
        "summary": f"untrained: random initialisation (seed {seed}); no training data",
        "seed": seed,
    }


def real_groove_inputs(midi_dir: str | Path, limit: int = 32) -> dict[str, dict[str, torch.Tensor]]:
    """Parity inputs from real drum MIDI files under ``midi_dir`` (4-bar windows, first ``limit``)."""
    from sjtui.errors import SjtuiError
    from sjtui.grooves.midi_import import read_grooves

    grooves = []
    for path in sorted(Path(midi_dir).rglob("*.mid")):
        try:
            windows, _ = read_grooves(path, name=path.stem, source_name="midi")
        except SjtuiError:
            continue
        grooves += [
            g
            for g in windows
            if g.bars <= layout.MODEL_BARS and g.meter.steps_per_bar <= layout.MODEL_STEPS_PER_BAR
        ]
        if len(grooves) >= limit:
            break
    if not grooves:
        raise ExportError(f"no usable drum MIDI windows under {midi_dir}")
    return {f"midi_grooves{len(grooves[:limit])}": groove_batch(grooves[:limit])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", required=True, type=Path, help="model directory to write (manifest + ONNX files)"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--checkpoint", type=Path, help="trained checkpoint (training.towers.save_checkpoint)"
    )
    source.add_argument(
        "--random-init", action="store_true", help="a freshly initialised, UNTRAINED model (development)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --random-init and of the parity inputs")
    parser.add_argument("--version", default="0.1.0")
    parser.add_argument("--name", default=MODEL_NAME)
    parser.add_argument(
        "--groove-midi", type=Path, help="folder of drum MIDI files to add real grooves to the parity check"
    )
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")
    args = parser.parse_args(argv)

    if args.checkpoint:
        model, meta = load_checkpoint(args.checkpoint)
        if meta["feature_constants"] != feature_constants() or meta["input_layout"] != layout.input_layout():
            print(
                f"error: {args.checkpoint} was trained with other feature constants or input layout; retrain",
                file=sys.stderr,
            )
            return 2
        training, evaluation = meta["training"], meta["evaluation"]
    else:
        model = build_two_tower(args.seed)
        training, evaluation = untrained_summary(args.seed), None
    real = {"groove": real_groove_inputs(args.groove_midi)} if args.groove_midi else None
    try:
        manifest = export_model(
            model,
            args.out,
            version=args.version,
            name=args.name,
            training=training,
            evaluation=evaluation,
            real_inputs=real,
            seed=args.seed,
        )
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(manifest, indent=2))
    else:
        for kind, entry in manifest["encoders"].items():
            print(
                f"{kind:6s} {entry['file']}  {entry['size_bytes'] / 1e6:.3f} MB  {entry['n_parameters']} parameters  "
                f"parity max |diff| {entry['parity']['max_abs_diff']:.2e} over {entry['parity']['n_input_sets']} input sets"
            )
        print(f"manifest: {args.out / MANIFEST_FILE} ({manifest['training']['summary']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
