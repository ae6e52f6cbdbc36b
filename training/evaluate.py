"""Evaluation on held-out data: the model against baselines, and a personalisation check.

``python -m training.evaluate --json [--model sjtui/data/models/]`` prints one JSON object.

Held-out data: guitar windows of the ``test`` takes of :mod:`training.data`
(seeds never trained on; half of them rendered by renderer combinations
never trained on) against the grooves of the Groove MIDI Dataset's
``test`` split (never trained on). The weak targets of
:mod:`training.targets` say which pairs are *relevant* (rating >= 4) and
which are incompatible (rating <= 1). **These figures measure agreement
with the weak targets on unseen guitar parts and unseen grooves, not human
judgement.**

Selection applies the hard filter of :mod:`sjtui.model.fit` (tempo within
8 % or at double/half, same meter) to every method, as the live path does;
so ``tempo_ok`` and ``meter_ok`` of filtered picks are 1 whenever a groove
fits. ``unfiltered`` figures (the same ranking without the filter) are
reported too, to show what the model learned about tempo by itself.

Per guitar window (``query``) with at least one allowed and one relevant groove:

- ``recall_at_k``: ``|top k ∩ relevant| / min(k, |relevant|)`` (1 when the k
  picks are all relevant or all relevant grooves are picked);
- ``mrr``: mean of ``1 / rank`` of the first relevant groove;
- ``roc_auc``: pooled over all allowed (query, groove) pairs, relevant
  (rating >= 4) against incompatible (rating <= 1); ``roc_auc_per_query``
  is the mean of the per-query AUCs;
- ``tempo_ok`` / ``meter_ok``: share of top picks whose tempo fits (8 %,
  double/half) / whose meter is the guitar's.

Baselines: ``random`` (seeded uniform scores); ``rhythmic_nearest`` (cosine
of the guitar's raw onset grid with the groove's hit grid, all voices: the
groove that copies the guitar); ``style_tempo_prior`` (style affinity of
:data:`training.targets.STYLE_AFFINITY` plus closeness of tempo, octave-folded).

Personalisation: a simulated rater with a hidden taste ("busy drums,
especially under sparse guitar": its rating is the weak rating plus
``TASTE_GAIN * (2 rank(groove density) - 1) * (0.5 + 0.5 sparse(guitar))``,
clipped to 0..5) rates 200 pairs (40 guitar windows x 5 grooves: 2 of the
model's top 10 and 3 random allowed ones); the model is fine-tuned on them
(:func:`training.train.finetune`); on *other* guitar windows, agreement =
share of windows whose top pick is among the rater's top 10 % of allowed
grooves. ``personalisation_gain`` = agreement after - before, in points.
``strategy`` chooses the 5 grooves of each rated window: ``"check"`` (the
rule above, the default and the shipped figure), ``"pairing"`` (what
``sjtui label`` does: :func:`sjtui.labels.pairing.plan_pairs`) or
``"random"``; ``bench/personalisation.py`` compares them over seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from training import targets as T

TOP_KS = (1, 10)
TASTE_GAIN = 3.0
N_RATED_WINDOWS = 40
RATED_PER_WINDOW = 5
PREFERRED_SHARE = 0.10


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney AUC of positive vs negative scores (ties count half)."""
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    scores = np.concatenate([pos, neg])
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size, dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks of ties
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [scores.size]])
    avg = (starts + ends - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0) / (pos.size * neg.size))


def ranking_metrics(
    scores: np.ndarray,
    ratings: np.ndarray,
    allowed: np.ndarray,
    tempo_fit: np.ndarray,
    meter_fit: np.ndarray,
    use_filter: bool = True,
) -> dict:
    """Figures of one scoring method; all arguments ``(n_guitar, n_groove)``.

    ``allowed`` = tempo_fit & meter_fit (the hard filter; applied to the
    ranking when ``use_filter``). Relevant: rating >= 4; incompatible: <= 1.
    """
    relevant = ratings >= T.POSITIVE_RATING
    incompatible = ratings <= T.NEGATIVE_RATING
    recalls = {k: [] for k in TOP_KS}
    rr, per_query_auc, top_tempo, top_meter = [], [], [], []
    masked = np.where(allowed, scores, -np.inf) if use_filter else scores
    for i in range(scores.shape[0]):
        if not allowed[i].any():
            continue
        order = np.argsort(-masked[i], kind="stable")
        top = order[0]
        top_tempo.append(bool(tempo_fit[i, top]))
        top_meter.append(bool(meter_fit[i, top]))
        rel = relevant[i] & allowed[i]
        if not rel.any():
            continue
        hits = rel[order]
        for k in TOP_KS:
            recalls[k].append(hits[:k].sum() / min(k, rel.sum()))
        rr.append(1.0 / (1 + np.flatnonzero(hits)[0]))
        neg = incompatible[i] & allowed[i]
        if neg.any():
            per_query_auc.append(_auc(scores[i, rel], scores[i, neg]))
    pos_all = scores[relevant & allowed]
    neg_all = scores[incompatible & allowed]
    out = {f"recall_at_{k}": float(np.mean(v)) if v else float("nan") for k, v in recalls.items()}
    out.update(
        mrr=float(np.mean(rr)) if rr else float("nan"),
        roc_auc=_auc(pos_all, neg_all),
        roc_auc_per_query=float(np.mean(per_query_auc)) if per_query_auc else float("nan"),
        tempo_ok=float(np.mean(top_tempo)) if top_tempo else float("nan"),
        meter_ok=float(np.mean(top_meter)) if top_meter else float("nan"),
        n_queries=len(rr),
    )
    return out


def fit_matrices(guitar: T.GuitarSide, groove: T.GrooveSide) -> tuple[np.ndarray, np.ndarray]:
    """``(tempo_fit, meter_fit)`` ``(n_guitar, n_groove)`` bool."""
    from sjtui.model import fit

    ratio = groove.bpm[np.newaxis, :] / guitar.bpm[:, np.newaxis]
    tol = fit.TEMPO_TOLERANCE
    tempo = (
        (np.abs(ratio - 1.0) <= tol) | (np.abs(ratio / 2.0 - 1.0) <= tol) | (np.abs(ratio * 2.0 - 1.0) <= tol)
    )
    meter = guitar.meter[:, np.newaxis] == groove.meter[np.newaxis, :]
    return tempo, meter


def baseline_scores(guitar: T.GuitarSide, groove: T.GrooveSide, seed: int = 0) -> dict[str, np.ndarray]:
    """Scores ``(n_guitar, n_groove)`` of the baselines."""
    rng = np.random.default_rng(seed)
    n_g, n_d = guitar.bpm.size, groove.bpm.size
    octave = np.log2(groove.bpm[np.newaxis, :] / guitar.bpm[:, np.newaxis])
    folded = np.abs(octave - np.round(octave))  # 0 at same, half or double time
    return {
        "random": rng.random((n_g, n_d)),
        "rhythmic_nearest": guitar.raw_unit @ groove.hits_unit.T,
        "style_tempo_prior": T.style_matrix(guitar.style, groove.style) + (1.0 - 2.0 * folded),
    }


def evaluate_scores(
    model_scores: np.ndarray, guitar: T.GuitarSide, groove: T.GrooveSide, ratings: np.ndarray, seed: int = 0
) -> dict:
    """``{"model": {...}, "baselines": {name: {...}}, "model_unfiltered": {...}}``."""
    tempo, meter = fit_matrices(guitar, groove)
    allowed = tempo & meter
    out = {"model": ranking_metrics(model_scores, ratings, allowed, tempo, meter)}
    out["model_unfiltered"] = ranking_metrics(model_scores, ratings, allowed, tempo, meter, use_filter=False)
    out["baselines"] = {
        name: ranking_metrics(scores, ratings, allowed, tempo, meter)
        for name, scores in baseline_scores(guitar, groove, seed).items()
    }
    return out


# ---------------------------------------------------------------------------- personalisation


def rater_ratings(guitar: T.GuitarSide, groove: T.GrooveSide, weak: np.ndarray) -> np.ndarray:
    """The simulated rater's ratings ``(n_guitar, n_groove)``: weak target + hidden taste for busy drums."""
    rank = np.argsort(np.argsort(groove.density, kind="stable"), kind="stable") / max(
        1, groove.density.size - 1
    )
    sparse = np.clip(1.0 - 2.0 * guitar.density, 0.0, 1.0)
    taste = (2.0 * rank[np.newaxis, :] - 1.0) * (0.5 + 0.5 * sparse[:, np.newaxis])
    tempo, meter = fit_matrices(guitar, groove)
    return np.where(tempo & meter, np.clip(weak + TASTE_GAIN * taste, 0.0, 5.0), 0.0).astype(np.float32)


def agreement(scores: np.ndarray, rater: np.ndarray, allowed: np.ndarray) -> float:
    """Share of guitar windows whose top allowed pick is in the rater's top 10 % of allowed grooves."""
    agree = []
    for i in range(scores.shape[0]):
        if allowed[i].sum() < 10:
            continue
        candidates = np.flatnonzero(allowed[i])
        top = candidates[np.argmax(scores[i, candidates])]
        cut = np.quantile(rater[i, candidates], 1.0 - PREFERRED_SHARE)
        agree.append(rater[i, top] >= cut)
    return float(np.mean(agree)) if agree else float("nan")


PERSONALISATION_STRATEGIES = ("check", "pairing", "random")


def choose_rated_pairs(
    strategy: str,
    scores: np.ndarray,
    allowed: np.ndarray,
    rated_rows: np.ndarray,
    rng: np.random.Generator,
    *,
    seed: int = 0,
    mix=None,
    boundary_quantile: float | None = None,
    boundary: float | None = None,
) -> list[tuple[int, int]]:
    """The ``(guitar row, groove row)`` pairs the simulated rater rates: ``RATED_PER_WINDOW`` per rated row.

    ``scores`` ``(n_guitar, n_groove)``: the model's scores before tuning;
    ``allowed`` ``(n_guitar, n_groove)`` bool (the hard filter);
    ``rated_rows`` ``(n_rated,)`` guitar rows, in the order a session would
    visit them. ``strategy``:

    - ``"check"``: 2 of the model's top 10 allowed grooves and 3 random
      allowed ones (draws from ``rng``; the rule of the shipped figure);
    - ``"pairing"``: what ``sjtui label`` does:
      :func:`sjtui.labels.pairing.plan_pairs` over the allowed grooves with
      the model's scores, ``mix`` (default
      :data:`sjtui.labels.pairing.DEFAULT_MIX`), session ``seed``, and
      ``start`` advancing by the picks made, as a session does across loops;
      ``boundary`` / ``boundary_quantile`` are passed on (None: the
      defaults of ``plan_pairs``, as in ``sjtui label``);
    - ``"random"``: ``RATED_PER_WINDOW`` distinct uniformly random allowed
      grooves (draws from ``rng``).
    """
    if strategy not in PERSONALISATION_STRATEGIES:
        raise ValueError(
            f"personalisation strategy {strategy!r} is not one of {', '.join(PERSONALISATION_STRATEGIES)}"
        )
    pairs: list[tuple[int, int]] = []
    if strategy == "pairing":
        from sjtui.labels.pairing import DEFAULT_MIX, plan_pairs

        groove_rows = np.arange(scores.shape[1])
        options = {} if boundary_quantile is None else {"boundary_quantile": boundary_quantile}
        start = 0
        for i in rated_rows:
            picks = plan_pairs(
                scores[i],
                groove_rows,
                allowed[i],
                n=RATED_PER_WINDOW,
                mix=DEFAULT_MIX if mix is None else mix,
                seed=seed,
                start=start,
                boundary=boundary,
                **options,
            )
            start += len(picks)
            pairs += [(int(i), int(p.index)) for p in picks]
        return pairs
    for i in rated_rows:
        candidates = np.flatnonzero(allowed[i])
        if strategy == "check":
            top10 = candidates[np.argsort(-scores[i, candidates])[:10]]
            chosen = list(rng.choice(top10, size=2, replace=False))
            rest = np.setdiff1d(candidates, chosen)
            chosen += list(rng.choice(rest, size=min(RATED_PER_WINDOW - 2, rest.size), replace=False))
        else:  # random
            chosen = list(rng.choice(candidates, size=min(RATED_PER_WINDOW, candidates.size), replace=False))
        pairs += [(int(i), int(j)) for j in chosen]
    return pairs


def personalisation_check(
    model,
    guitar_inputs: dict,
    groove_inputs: dict,
    guitar: T.GuitarSide,
    groove: T.GrooveSide,
    weak: np.ndarray,
    seed: int = 0,
    strategy: str = "check",
    *,
    mix=None,
    boundary_quantile: float | None = None,
    boundary: float | None = None,
    before_embeddings: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """Simulated rater rates 200 pairs, the model is fine-tuned on them; agreement before and after.

    ``model``: a :class:`training.towers.TwoTower` (not modified: a copy is tuned).
    ``guitar_inputs`` / ``groove_inputs``: numpy encoder inputs of the rows of ``guitar`` / ``groove``.
    ``strategy``: how the 5 grooves of each rated window are chosen (see
    :func:`choose_rated_pairs`; ``mix``, ``boundary_quantile`` and
    ``boundary`` apply to ``"pairing"``). The rater, the rated and evaluation
    windows (drawn from ``seed``) and the fine-tuning are the same for every
    strategy. ``before_embeddings``: ``embed_numpy(model, ...)`` when the
    caller already has it (saves recomputing it per strategy).
    """
    import copy

    from training.train import embed_numpy, finetune

    rng = np.random.default_rng(seed + 77)
    rater = rater_ratings(guitar, groove, weak)
    tempo, meter = fit_matrices(guitar, groove)
    allowed = tempo & meter
    usable = np.flatnonzero(allowed.sum(axis=1) >= 10)
    rng.shuffle(usable)
    rated_rows, eval_rows = usable[:N_RATED_WINDOWS], usable[N_RATED_WINDOWS:]
    g_emb, d_emb = before_embeddings or embed_numpy(model, guitar_inputs, groove_inputs)
    before_scores = g_emb @ d_emb.T
    chosen = choose_rated_pairs(
        strategy,
        before_scores,
        allowed,
        rated_rows,
        rng,
        seed=seed,
        mix=mix,
        boundary_quantile=boundary_quantile,
        boundary=boundary,
    )
    pairs = [(i, j, float(np.round(rater[i, j]))) for i, j in chosen]  # integer stars, as a person
    stars = np.array([p[2] for p in pairs])
    tuned = copy.deepcopy(model)
    info = finetune(tuned, guitar_inputs, groove_inputs, pairs, seed=seed)
    g_after, d_after = embed_numpy(tuned, guitar_inputs, groove_inputs)
    after_scores = g_after @ d_after.T
    before = agreement(before_scores[eval_rows], rater[eval_rows], allowed[eval_rows])
    after = agreement(after_scores[eval_rows], rater[eval_rows], allowed[eval_rows])
    weak_before = ranking_metrics(
        before_scores[eval_rows], weak[eval_rows], allowed[eval_rows], tempo[eval_rows], meter[eval_rows]
    )
    weak_after = ranking_metrics(
        after_scores[eval_rows], weak[eval_rows], allowed[eval_rows], tempo[eval_rows], meter[eval_rows]
    )
    return {
        "taste": "busy drums, especially under sparse guitar (hidden from the model)",
        "strategy": strategy,
        "n_ratings": len(pairs),
        "n_rated_windows": int(rated_rows.size),
        "n_eval_windows": int(eval_rows.size),
        "rated_mean_stars": float(stars.mean()),
        "rated_share_positive": float(np.mean(stars >= T.POSITIVE_RATING)),
        "agreement_before": before,
        "agreement_after": after,
        "personalisation_gain": 100.0 * (after - before),
        "weak_target_recall_at_10_before": weak_before["recall_at_10"],
        "weak_target_recall_at_10_after": weak_after["recall_at_10"],
        "finetune_seconds": info["seconds"],
        "finetune_steps": info["steps"],
    }


# ---------------------------------------------------------------------------- whole evaluation


def held_out_data(cache_dir=None, gmd_dir=None, n_test: int | None = None, workers: int = 2, progress=None):
    """``(guitar_set, groove_set, GuitarSide, GrooveSide, weak ratings)`` of the held-out data."""
    from training import data as D

    cache_dir = Path(cache_dir or D.DEFAULT_CACHE_DIR)
    grooves = D.groove_sets(cache_dir, gmd_dir or D.DEFAULT_GMD_DIR)["test"]
    guitars = D.guitar_set(D.make_specs("test", n_test or D_DEFAULTS["n_test"]), cache_dir, workers, progress)
    g_side = T.GuitarSide(guitars.grid, guitars.context, guitars.bpm, guitars.meter, guitars.style)
    d_side = T.GrooveSide(grooves.grid, grooves.context, grooves.bpm, grooves.meter, grooves.style)
    return guitars, grooves, g_side, d_side, T.ratings(g_side, d_side)


D_DEFAULTS = {"n_test": 120}


def evaluate_embeddings(g_emb, d_emb, guitars, g_side, d_side, weak, seed: int = 0) -> dict:
    """All ranking figures of embeddings ``g_emb`` (n_guitar, d) and ``d_emb`` (n_groove, d)."""
    scores = g_emb @ d_emb.T
    result = evaluate_scores(scores, g_side, d_side, weak, seed)
    unseen = np.asarray(guitars.held_out_renderer, dtype=bool)
    tempo, meter = fit_matrices(g_side, d_side)
    result["model_unseen_renderers"] = ranking_metrics(
        scores[unseen], weak[unseen], (tempo & meter)[unseen], tempo[unseen], meter[unseen]
    )
    covered = (tempo & meter).any(axis=1)
    result["coverage"] = {
        "guitar_windows": len(guitars),
        "windows_with_an_allowed_groove": int(covered.sum()),
        "meters_without_test_grooves": sorted(set(g_side.meter[~covered].tolist())),
        "test_grooves": int(d_side.bpm.size),
        "pairs_relevant": int(((weak >= T.POSITIVE_RATING) & tempo & meter).sum()),
        "pairs_incompatible_allowed": int(((weak <= T.NEGATIVE_RATING) & tempo & meter).sum()),
    }
    return result


def beats_every_baseline(result: dict) -> dict:
    """``{metric: bool}``: does the model beat every baseline on recall_at_10 and roc_auc?"""
    out = {}
    for metric in ("recall_at_10", "roc_auc"):
        best = max(b[metric] for b in result["baselines"].values())
        out[metric] = bool(result["model"][metric] > best)
    out["tempo_ok>=0.95"] = bool(result["model"]["tempo_ok"] >= 0.95)
    out["meter_ok>=0.95"] = bool(result["model"]["meter_ok"] >= 0.95)
    return out


def evaluate_model_dir(
    model_dir: Path, checkpoint: Path | None = None, seed: int = 0, personalise: bool = True, cache_dir=None
) -> dict:
    """Figures of the ONNX model in ``model_dir`` (and, for personalisation, its torch ``checkpoint``)."""
    from sjtui.model.runtime import EncoderPair

    guitars, grooves, g_side, d_side, weak = held_out_data(cache_dir)
    pair = EncoderPair(model_dir)
    g_emb = pair.embed_guitar_inputs(guitars.grid, guitars.context)
    d_emb = pair.embed_groove_inputs(grooves.grid, grooves.descriptors, grooves.context)
    result = evaluate_embeddings(g_emb, d_emb, guitars, g_side, d_side, weak, seed)
    result["model_name"] = pair.describe()
    result["targets_met"] = beats_every_baseline(result)
    if personalise and checkpoint is not None and Path(checkpoint).is_file():
        from training.towers import load_checkpoint

        model, _ = load_checkpoint(checkpoint)
        g_in = {"grid": guitars.grid, "context": guitars.context}
        d_in = {"grid": grooves.grid, "descriptors": grooves.descriptors, "context": grooves.context}
        result["personalisation"] = personalisation_check(model, g_in, d_in, g_side, d_side, weak, seed)
    return result


def main(argv: list[str] | None = None) -> int:
    from sjtui.model.runtime import SHIPPED_MODEL_DIR

    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL_DIR)
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="torch checkpoint of the same model, for the personalisation check (default: the one its manifest lists)",
    )
    parser.add_argument("--no-personalisation", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    checkpoint = args.checkpoint
    if checkpoint is None:
        from sjtui.model.manifest import read_manifest, verify_file

        entry = read_manifest(args.model).get("training", {}).get("checkpoint")
        checkpoint = verify_file(args.model, entry, "model checkpoint") if isinstance(entry, dict) else None
    result = evaluate_model_dir(args.model, checkpoint, args.seed, not args.no_personalisation, args.cache)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        rows = [("model", result["model"])] + list(result["baselines"].items())
        print(
            f"{'method':20s} "
            + " ".join(
                f"{m:>12s}" for m in ("recall_at_1", "recall_at_10", "mrr", "roc_auc", "tempo_ok", "meter_ok")
            )
        )
        for name, figures in rows:
            print(
                f"{name:20s} "
                + " ".join(
                    f"{figures[m]:12.3f}"
                    for m in ("recall_at_1", "recall_at_10", "mrr", "roc_auc", "tempo_ok", "meter_ok")
                )
            )
        if "personalisation" in result:
            p = result["personalisation"]
            print(
                f"personalisation: agreement {p['agreement_before']:.3f} -> {p['agreement_after']:.3f} "
                f"({p['personalisation_gain']:+.1f} points, {p['n_ratings']} ratings)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
