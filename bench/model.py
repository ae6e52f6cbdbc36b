"""Speed of the model runtime: one guitar window, a groove library, top-k scoring.

Measured in one process, one thread everywhere (the app's setting):

- ``guitar_layout``: fingerprint -> input arrays (:func:`sjtui.model.inputs.guitar_inputs`);
- ``guitar_ort``: the guitar encoder in onnxruntime, batch 1, inputs ready;
- ``guitar_torch`` (peer): the same tower in torch (``torch.set_num_threads(1)``);
- ``embed_guitar``: the app's call, layout + onnxruntime;
- ``embed_grooves``: per groove, embedding a library of real Groove MIDI
  Dataset windows (layout, descriptors, onnxruntime in batches of 256);
- ``best_grooves``: top 10 of N groove embeddings (numpy dot + argpartition);
  peer ``full_argsort``: the same dot product followed by a full argsort.

Figures are medians (and p95) of repeated calls after a warm-up. Weights do
not change the speed, so without ``--model`` a seeded untrained model is
exported to a temporary directory (needs torch: the ``train`` extra).

    .venv/bin/python bench/model.py --json
    .venv/bin/python bench/model.py --model models --n-grooves 5000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# one thread everywhere, numpy's BLAS included (the dot product of best_grooves), as in the app's
# analysis thread; set before numpy is imported
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sjtui.model import inputs as layout
from sjtui.model.runtime import EncoderPair, best_grooves


def shared_dir() -> Path:
    shared = os.environ.get("SJTUI_SHARED")
    return Path(shared) if shared else REPO.parent / "shared"


def timed(fn, repeats: int, warmup: int = 5) -> dict:
    """Median and p95 wall time of ``fn()`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - start
    return {
        "median_ms": float(np.median(times) * 1e3),
        "p95_ms": float(np.percentile(times, 95) * 1e3),
        "repeats": repeats,
    }


def real_fingerprint():
    """A 4/4 window of a real recorded riff, or a synthetic one when the recordings are not there."""
    path = shared_dir() / "datasets" / "guitar-audio" / "berklee_guitar_riff_cutup5.wav"
    if path.is_file():
        import soundfile as sf

        from sjtui.dsp.analysis import analyze
        from sjtui.dsp.fingerprint import fingerprints_of
        from sjtui.transport.timebase import TempoMap

        audio, rate = sf.read(path, dtype="float32")
        return fingerprints_of(analyze(audio, rate), TempoMap.constant(rate, 123.0, "4/4"))[
            0
        ], f"real: {path.name}"
    from training.features import synthetic_fingerprints

    return synthetic_fingerprints(1, np.random.default_rng(0))[0], "synthetic"


def real_grooves(limit: int):
    """Up to ``limit`` 4-bar windows of Groove MIDI Dataset files, or synthetic grooves."""
    root = shared_dir() / "datasets" / "groove-midi"
    grooves = []
    if root.is_dir():
        from sjtui.errors import SjtuiError
        from sjtui.grooves.midi_import import read_grooves

        for path in sorted(root.rglob("*.mid")):
            try:
                windows, _ = read_grooves(path, name=path.stem, source_name="gmd")
            except SjtuiError:
                continue
            grooves += [g for g in windows if g.meter.steps_per_bar <= layout.MODEL_STEPS_PER_BAR]
            if len(grooves) >= limit:
                return grooves[:limit], "real: Groove MIDI Dataset"
    from training.features import synthetic_grooves

    return synthetic_grooves(limit, np.random.default_rng(0)), "synthetic"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, help="model directory (default: a seeded untrained export in a temp dir)"
    )
    parser.add_argument("--n-grooves", type=int, default=5000, help="library size for top-k scoring")
    parser.add_argument(
        "--n-embed", type=int, default=512, help="grooves embedded for the library throughput"
    )
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    temp = None
    torch = None
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        torch = None
    if args.model is None:
        if torch is None:
            parser.error("torch is not installed: pass --model DIR or install the train extra")
        from training.export import export_model, untrained_summary
        from training.towers import build_two_tower

        temp = tempfile.TemporaryDirectory(prefix="sjtui-bench-model-")
        tower_model = build_two_tower(seed=0)
        export_model(tower_model, temp.name, version="0.0.0", training=untrained_summary(0))
        model_dir = Path(temp.name)
    else:
        model_dir, tower_model = args.model, None

    pair = EncoderPair(model_dir)
    fingerprint, fingerprint_source = real_fingerprint()
    feeds = layout.guitar_inputs(fingerprint)
    results: dict = {
        "model": {
            "directory": str(model_dir) if args.model else "temporary untrained export (seed 0)",
            "trained": pair.trained,
            "guitar_bytes": pair.manifest["encoders"]["guitar"]["size_bytes"],
            "groove_bytes": pair.manifest["encoders"]["groove"]["size_bytes"],
            "guitar_parameters": pair.manifest["encoders"]["guitar"].get("n_parameters"),
            "groove_parameters": pair.manifest["encoders"]["groove"].get("n_parameters"),
        },
        "inputs": {"fingerprint": fingerprint_source},
        "threads": {"onnxruntime": 1, "torch": 1, "blas": os.environ["OPENBLAS_NUM_THREADS"]},
    }
    results["guitar_layout"] = timed(lambda: layout.guitar_inputs(fingerprint), args.repeats)
    results["guitar_ort"] = timed(
        lambda: pair.embed_guitar_inputs(feeds["grid"], feeds["context"]), args.repeats
    )
    results["embed_guitar"] = timed(lambda: pair.embed_guitar(fingerprint), args.repeats)
    if torch is not None and tower_model is not None:
        grid, context = torch.from_numpy(feeds["grid"]), torch.from_numpy(feeds["context"])

        def torch_forward():
            with torch.no_grad():
                tower_model.guitar(grid, context)

        results["guitar_torch"] = timed(torch_forward, args.repeats)
        results["ratio_torch_over_ort"] = (
            results["guitar_torch"]["median_ms"] / results["guitar_ort"]["median_ms"]
        )

    grooves, groove_source = real_grooves(args.n_embed)
    results["inputs"]["grooves"] = f"{groove_source} ({len(grooves)} windows)"
    start = time.perf_counter()
    pair.embed_grooves(grooves)
    total_s = time.perf_counter() - start
    results["embed_grooves"] = {
        "n": len(grooves),
        "total_s": total_s,
        "per_groove_ms": total_s * 1e3 / len(grooves),
    }
    prepared = layout.groove_inputs(grooves)
    start = time.perf_counter()
    pair.groove.run(prepared)
    ort_s = time.perf_counter() - start
    results["embed_grooves"]["ort_only_per_groove_ms"] = ort_s * 1e3 / len(grooves)

    rng = np.random.default_rng(0)
    library = rng.normal(size=(args.n_grooves, pair.embedding_dim)).astype(np.float32)
    library /= np.linalg.norm(library, axis=1, keepdims=True)
    query = pair.embed_guitar(fingerprint)[0]
    results["best_grooves"] = {
        "n": args.n_grooves,
        "top_k": 10,
        **timed(lambda: best_grooves(query, library, 10), args.repeats),
    }
    results["full_argsort"] = {
        "n": args.n_grooves,
        **timed(lambda: np.argsort(-(library @ query))[:10], args.repeats),
    }
    results["ratio_argsort_over_best_grooves"] = (
        results["full_argsort"]["median_ms"] / results["best_grooves"]["median_ms"]
    )
    if temp is not None:
        temp.cleanup()

    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    m = results["model"]
    print(
        f"model: {m['directory']} (trained: {m['trained']}); guitar {m['guitar_bytes'] / 1e6:.3f} MB, "
        f"groove {m['groove_bytes'] / 1e6:.3f} MB; one thread"
    )
    print(f"inputs: fingerprint {results['inputs']['fingerprint']}; grooves {results['inputs']['grooves']}")
    for key in (
        "guitar_layout",
        "guitar_ort",
        "guitar_torch",
        "embed_guitar",
        "best_grooves",
        "full_argsort",
    ):
        if key in results:
            r = results[key]
            print(f"{key:14s} median {r['median_ms']:.3f} ms  p95 {r['p95_ms']:.3f} ms")
    if "ratio_torch_over_ort" in results:
        print(f"torch / onnxruntime (guitar, batch 1): {results['ratio_torch_over_ort']:.2f}x")
    print(
        f"full argsort / best_grooves (N={args.n_grooves}): {results['ratio_argsort_over_best_grooves']:.2f}x"
    )
    e = results["embed_grooves"]
    print(
        f"embed_grooves: {e['n']} grooves in {e['total_s']:.2f} s = {e['per_groove_ms']:.3f} ms/groove "
        f"(onnxruntime alone {e['ort_only_per_groove_ms']:.3f} ms/groove)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
