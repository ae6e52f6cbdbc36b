"""Which pairs should a player rate? Pair-choosing strategies in the real personalisation check.

The personalisation check of :mod:`training.evaluate` (shipped model,
held-out guitar windows and test grooves, a simulated rater with a hidden
taste, 40 rated windows x 5 grooves, :func:`training.train.finetune`, then
agreement on the other windows) run with each way of choosing the 5 grooves
of a rated window (:func:`training.evaluate.choose_rated_pairs`):

- ``pairing``: exactly what ``sjtui label`` does
  (:func:`sjtui.labels.pairing.plan_pairs` with its default mix and
  boundary quantile; ``start`` advancing across windows as in a session);
- ``random``: 5 uniformly random allowed grooves;
- ``check``: the check's fixed rule (2 of the model's top 10 + 3 random);
- ``uncertain``: ``plan_pairs`` with ``PairingMix(0, 1, 0)`` (default boundary);
- with ``--extra``: more mixes and boundaries (the alternatives studied
  when choosing the default; see :data:`EXTRA`).

Each seed draws another rated/evaluation split of the windows and other
random draws; the rater, windows, evaluation rows and fine-tuning of one
seed are the same for every strategy, so strategies are compared seed by
seed (``pairing_minus_random_points``: mean difference of agreement after
tuning in points, its std over seeds, and how many seeds pairing won).
Agreement is measured on ~200 windows, so one window is 0.5 points.

    .venv/bin/python bench/personalisation.py            # text, 5 seeds
    .venv/bin/python bench/personalisation.py --json --seeds 8 --extra
    .venv/bin/python bench/personalisation.py --first-seed 5 --seeds 28 --only random pairing 10-70-20-q50
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np

from sjtui.labels.pairing import DEFAULT_BOUNDARY_QUANTILE, DEFAULT_MIX, PairingMix
from sjtui.model.runtime import SHIPPED_MODEL_DIR

STRATEGIES: dict[str, dict] = {  # name: keyword arguments of training.evaluate.personalisation_check
    "pairing": {"strategy": "pairing"},  # sjtui label's defaults (DEFAULT_MIX, DEFAULT_BOUNDARY_QUANTILE)
    "random": {"strategy": "random"},
    "check": {"strategy": "check"},
    "uncertain": {"strategy": "pairing", "mix": PairingMix(0, 1, 0)},  # at the default boundary
}
EXTRA: dict[str, dict] = {  # alternatives to the default, run with --extra (mix shares, boundary quantile)
    "explore": {"strategy": "pairing", "mix": PairingMix(0, 0, 1)},  # random too: the noise between equals
    "favourite": {"strategy": "pairing", "mix": PairingMix(1, 0, 0)},
    "uncertain-q50": {"strategy": "pairing", "mix": PairingMix(0, 1, 0), "boundary_quantile": 0.5},
    "uncertain-q90": {"strategy": "pairing", "mix": PairingMix(0, 1, 0), "boundary_quantile": 0.9},
    "10-70-20-q50": {"strategy": "pairing", "mix": PairingMix(0.1, 0.7, 0.2), "boundary_quantile": 0.5},
    "10-70-20-q75": {"strategy": "pairing", "mix": PairingMix(0.1, 0.7, 0.2), "boundary_quantile": 0.75},
    "10-70-20-q90": {"strategy": "pairing", "mix": PairingMix(0.1, 0.7, 0.2), "boundary_quantile": 0.9},
    "30-40-30-q50": {"strategy": "pairing", "mix": PairingMix(0.3, 0.4, 0.3), "boundary_quantile": 0.5},
    "30-40-30-q90": {"strategy": "pairing", "mix": PairingMix(0.3, 0.4, 0.3), "boundary_quantile": 0.9},
    "20-40-40-q50": {"strategy": "pairing", "mix": PairingMix(0.2, 0.4, 0.4), "boundary_quantile": 0.5},
    "40-20-40-q50": {"strategy": "pairing", "mix": PairingMix(0.4, 0.2, 0.4), "boundary_quantile": 0.5},
    "40-0-60": {"strategy": "pairing", "mix": PairingMix(0.4, 0.0, 0.6)},
}


def load(model_dir: Path, cache_dir: Path | None):
    """``(model, guitar_inputs, groove_inputs, GuitarSide, GrooveSide, weak, before_embeddings, checkpoint)``."""
    from sjtui.model.manifest import read_manifest, verify_file
    from training.evaluate import held_out_data
    from training.towers import load_checkpoint
    from training.train import embed_numpy

    entry = read_manifest(model_dir).get("training", {}).get("checkpoint")
    if not isinstance(entry, dict):
        raise SystemExit(f"model {model_dir} lists no torch checkpoint in its manifest; nothing to fine-tune")
    checkpoint = verify_file(model_dir, entry, "model checkpoint")
    model, _ = load_checkpoint(checkpoint)
    guitars, grooves, g_side, d_side, weak = held_out_data(cache_dir)
    g_in = {"grid": guitars.grid, "context": guitars.context}
    d_in = {"grid": grooves.grid, "descriptors": grooves.descriptors, "context": grooves.context}
    return model, g_in, d_in, g_side, d_side, weak, embed_numpy(model, g_in, d_in), checkpoint


def _stats(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0}


def paired(a: list[float], b: list[float]) -> dict:
    """Seed-by-seed comparison of two strategies' agreement after tuning (points)."""
    diff = 100.0 * (np.asarray(a) - np.asarray(b))
    return {
        "mean": float(diff.mean()),
        "std": float(diff.std(ddof=1)) if diff.size > 1 else 0.0,
        "per_seed": [round(float(d), 2) for d in diff],
        "wins": int((diff > 0).sum()),
        "ties": int((diff == 0).sum()),
        "losses": int((diff < 0).sum()),
        "n_seeds": int(diff.size),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (default 5)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds FIRST .. FIRST + N - 1 (default 0)")
    parser.add_argument("--extra", action="store_true", help="also run the alternative mixes of EXTRA")
    parser.add_argument("--only", nargs="*", default=None, help="run only these strategies (names)")
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL_DIR)
    parser.add_argument(
        "--cache", type=Path, default=None, help="training data cache (default .cache/training)"
    )
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds {args.seeds}: need at least 1 seed")

    import torch

    torch.set_num_threads(1)
    from training.evaluate import personalisation_check

    started = time.perf_counter()
    variants = dict(STRATEGIES, **(EXTRA if args.extra else {}))
    if args.only:
        unknown = sorted(set(args.only) - set(STRATEGIES) - set(EXTRA))
        if unknown:
            parser.error(f"unknown strategies {unknown}; known: {sorted(STRATEGIES) + sorted(EXTRA)}")
        variants = {name: {**STRATEGIES, **EXTRA}[name] for name in args.only}
    model, g_in, d_in, g_side, d_side, weak, before_emb, checkpoint = load(args.model, args.cache)
    load_seconds = time.perf_counter() - started
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    for seed in seeds:
        for name, kwargs in variants.items():
            r = personalisation_check(
                model, g_in, d_in, g_side, d_side, weak, seed, before_embeddings=before_emb, **kwargs
            )
            runs[name].append(r)
            if not args.json:
                print(
                    f"seed {seed} {name:14s} agreement {r['agreement_before']:.3f} -> {r['agreement_after']:.3f} "
                    f"({r['personalisation_gain']:+5.1f} points; rated: mean {r['rated_mean_stars']:.2f} stars, "
                    f"{100 * r['rated_share_positive']:.0f} % >= 4)",
                    flush=True,
                )
    summary = {}
    for name, rs in runs.items():
        summary[name] = {
            "agreement_after": _stats([r["agreement_after"] for r in rs]),
            "personalisation_gain": _stats([r["personalisation_gain"] for r in rs]),
            "rated_share_positive": _stats([r["rated_share_positive"] for r in rs]),
            "weak_target_recall_at_10_after": _stats([r["weak_target_recall_at_10_after"] for r in rs]),
            "settings": {
                k: (v.__dict__ if isinstance(v, PairingMix) else v) for k, v in variants[name].items()
            },
        }
    after = {name: [r["agreement_after"] for r in rs] for name, rs in runs.items()}
    comparisons = {
        f"{name}_minus_random_points": paired(after[name], after["random"])
        for name in after
        if name != "random" and "random" in after
    }
    result = {
        "model": str(checkpoint.relative_to(REPO) if checkpoint.is_relative_to(REPO) else checkpoint),
        "default_mix": DEFAULT_MIX.__dict__,
        "default_boundary_quantile": DEFAULT_BOUNDARY_QUANTILE,
        "seeds": seeds,
        "n_eval_windows": runs[next(iter(runs))][0]["n_eval_windows"],
        "agreement_before": _stats([r["agreement_before"] for r in runs[next(iter(runs))]]),
        "strategies": summary,
        "pairing_minus_random_points": comparisons.get("pairing_minus_random_points"),
        "comparisons": comparisons,
        "load_seconds": round(load_seconds, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    b = result["agreement_before"]
    print(
        f"\nshipped model {result['model']}, {args.seeds} seeds, ~{result['n_eval_windows']} evaluation windows; "
        f"agreement before tuning {b['mean']:.3f} ± {b['std']:.3f}"
    )
    print(f"{'strategy':14s} {'agreement after':>18s} {'gain (points)':>16s} {'rated >= 4':>12s}  vs random")
    for name, s in summary.items():
        a, g, p = s["agreement_after"], s["personalisation_gain"], s["rated_share_positive"]
        c = comparisons.get(f"{name}_minus_random_points")
        vs = f"{c['mean']:+5.1f} ± {c['std']:.1f} points, won {c['wins']}/{c['n_seeds']}" if c else ""
        print(
            f"{name:14s} {a['mean']:10.3f} ± {a['std']:.3f} {g['mean']:+9.1f} ± {g['std']:4.1f} "
            f"{100 * p['mean']:10.0f} %  {vs}"
        )
    c = result["pairing_minus_random_points"]
    if c:
        print(
            f"pairing_minus_random_points: {c['mean']:+.2f} (std {c['std']:.2f}; per seed {c['per_seed']}); "
            f"pairing won {c['wins']} of {c['n_seeds']} seeds, tied {c['ties']}"
        )
    print(f"took {result['seconds']:.0f} s (loading {result['load_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
