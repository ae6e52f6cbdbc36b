"""Pairing strategies on a simulated player: how fast does each teach a model the player's taste?

A synthetic check of :mod:`sjtui.labels.pairing` (the real personalisation
check, with the encoders and real ratings, belongs to the model's training
issue). The simulation:

- grooves and guitar loops are random unit vectors (``--dim``); the
  player's taste is a bilinear score ``loop^T (A_general + A_personal) groove``,
  and ratings 0..5 are ``2.5 + 2.5 tanh(score / std)`` plus noise, rounded;
- the model starts from the general taste ``A_general`` (what a shipped
  model knows) and learns from ratings with a logistic regression on
  ``rating >= 3`` over the outer-product features, with a Gaussian prior
  centred on the general taste (refit every ``--refit`` ratings);
- each rating picks a training loop at random and a groove by the strategy
  under test, excluding grooves already rated with that loop:
  ``mix`` (the shipped 10/70/20 mix with the median boundary, through
  :func:`plan_pairs`), ``mix-calibrated`` (the learner's own boundary,
  logit 0), ``mix-variance`` (plus its posterior predictive std as
  disagreement), ``random``, ``favourite`` only, ``uncertain`` only, and
  ``old-30-40-30-q90`` (the first defaults: 30/40/30, boundary at the 0.9
  quantile);
- after 0, 25, 50, 100, 200, 400 ratings the model ranks every groove for
  held-out loops: ``top1_rating`` is the player's expected rating of the
  model's first choice (what the jam would play; higher is better), and
  ``top5_hits`` the share of the model's top 5 among the player's true
  top 5 %. Means over ``--seeds`` seeds; ``mix_over_random`` compares the
  mixed strategy's top-1 rating gain (over the start) with random's.

    .venv/bin/python bench/pairing.py            # text
    .venv/bin/python bench/pairing.py --json
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

from sjtui.labels.pairing import PairingMix, plan_pairs

BUDGETS = (0, 25, 50, 100, 200, 400)
STRATEGIES = {  # name: (mix or None for plain random, boundary_quantile, calibrated boundary, disagreement)
    "mix": (PairingMix(), 0.5, False, False),  # the shipped default
    "mix-calibrated": (PairingMix(), 0.5, True, False),
    "mix-variance": (PairingMix(), 0.5, True, True),
    "random": (None, 0.5, False, False),
    "favourite": (PairingMix(1, 0, 0), 0.5, False, False),
    "uncertain": (PairingMix(0, 1, 0), 0.5, False, False),
    "old-30-40-30-q90": (PairingMix(0.3, 0.4, 0.3), 0.9, False, False),  # the first version's defaults
}


def _unit(rng, n, d):
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class World:
    def __init__(self, seed: int, dim: int, n_grooves: int, n_train: int, n_test: int, personal: float):
        rng = np.random.default_rng(seed)
        self.grooves = _unit(rng, n_grooves, dim)
        self.train = _unit(rng, n_train, dim)
        self.test = _unit(rng, n_test, dim)
        self.general = rng.standard_normal((dim, dim))
        self.true = self.general + personal * rng.standard_normal((dim, dim))
        all_scores = np.concatenate([self.train, self.test]) @ self.true @ self.grooves.T
        self.scale = float(all_scores.std())
        self.rng = rng

    def expected_rating(self, loops: np.ndarray, grooves: np.ndarray) -> np.ndarray:
        return 2.5 + 2.5 * np.tanh((loops @ self.true @ grooves.T) / self.scale)

    def rate(self, loop: np.ndarray, groove: np.ndarray) -> int:
        mean = 2.5 + 2.5 * np.tanh(float(loop @ self.true @ groove) / self.scale)
        return int(np.clip(np.rint(mean + self.rng.normal(0, 0.7)), 0, 5))


class Learner:
    """Logistic regression on vec(loop groove^T) with a Gaussian prior at the general taste."""

    def __init__(self, world: World, prior_precision: float = 2.0):
        self.dim = world.grooves.shape[1]
        self.prior = world.general.reshape(-1) * (3.0 / world.scale)  # logits in the right range
        self.w = self.prior.copy()
        self.precision = prior_precision
        self.x: list[np.ndarray] = []
        self.y: list[float] = []

    def add(self, loop, groove, rating) -> None:
        self.x.append(np.outer(loop, groove).reshape(-1))
        self.y.append(1.0 if rating >= 3 else 0.0)

    def fit(self, steps: int = 8) -> None:
        if not self.x:
            return
        x, y = np.array(self.x), np.array(self.y)
        w = self.w.copy()
        eye = np.eye(w.size)
        for _ in range(steps):  # Newton steps on the penalised log-likelihood
            p = 1.0 / (1.0 + np.exp(-(x @ w)))
            grad = x.T @ (p - y) + self.precision * (w - self.prior)
            hess = (x * (p * (1 - p))[:, None]).T @ x + self.precision * eye
            w -= np.linalg.solve(hess, grad)
        self.w = w

    def scores(self, loop: np.ndarray, grooves: np.ndarray) -> np.ndarray:
        return grooves @ (self.w.reshape(self.dim, self.dim).T @ loop)

    def predictive_std(self, loop: np.ndarray, grooves: np.ndarray) -> np.ndarray:
        """Laplace posterior std of each groove's logit: the learner's own disagreement measure."""
        x = np.einsum("i,gj->gij", loop, grooves).reshape(len(grooves), -1)
        if self.x:
            xs = np.array(self.x)
            p = 1.0 / (1.0 + np.exp(-(xs @ self.w)))
            hess = (xs * (p * (1 - p))[:, None]).T @ xs + self.precision * np.eye(self.w.size)
        else:
            hess = self.precision * np.eye(self.w.size)
        return np.sqrt(np.einsum("gi,gi->g", x, np.linalg.solve(hess, x.T).T))

    def rank_quality(self, world: World) -> tuple[float, float]:
        model = world.test @ self.w.reshape(self.dim, self.dim) @ world.grooves.T  # (n_test, n_grooves)
        truth = world.expected_rating(world.test, world.grooves)
        top1 = truth[np.arange(len(truth)), model.argmax(axis=1)].mean()
        k_true = max(5, int(0.05 * world.grooves.shape[0]))
        true_top = np.argsort(-truth, axis=1)[:, :k_true]
        model_top = np.argsort(-model, axis=1)[:, :5]
        hits = np.mean([len(set(m) & set(t)) / 5 for m, t in zip(model_top.tolist(), true_top.tolist())])
        return float(top1), float(hits)


def run(strategy: str, seed: int, args) -> dict:
    world = World(seed, args.dim, args.grooves, args.train_loops, args.test_loops, args.personal)
    learner = Learner(world)
    ids = np.arange(args.grooves)
    rated = [set() for _ in range(args.train_loops)]
    pick_rng = np.random.default_rng(seed + 1000)
    out = {}
    for n in range(max(BUDGETS) + 1):
        if n in BUDGETS:
            learner.fit()
            out[n] = learner.rank_quality(world)
        if n == max(BUDGETS):
            break
        loop_index = int(pick_rng.integers(args.train_loops))
        loop = world.train[loop_index]
        eligible = np.ones(args.grooves, bool)
        eligible[list(rated[loop_index])] = False
        mix, quantile, calibrated, variance = STRATEGIES[strategy]
        if mix is None:
            choice = int(pick_rng.choice(np.flatnonzero(eligible)))
        else:
            scores = learner.scores(loop, world.grooves)
            choice = plan_pairs(
                scores, ids, eligible, n=1, mix=mix, seed=seed, start=n, boundary_quantile=quantile,
                boundary=0.0 if calibrated else None,  # logit 0: the learner's own "rating >= 3" boundary
                disagreement=learner.predictive_std(loop, world.grooves) if variance else None,
            )[0].index  # fmt: skip
        rated[loop_index].add(choice)
        learner.add(loop, world.grooves[choice], world.rate(loop, world.grooves[choice]))
        if (n + 1) % args.refit == 0:
            learner.fit()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--grooves", type=int, default=400)
    parser.add_argument("--train-loops", type=int, default=30)
    parser.add_argument("--test-loops", type=int, default=60)
    parser.add_argument(
        "--personal", type=float, default=1.0, help="size of the personal taste relative to the general"
    )
    parser.add_argument("--refit", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    table = {}
    for strategy in STRATEGIES:
        runs = [run(strategy, seed, args) for seed in range(args.seeds)]
        table[strategy] = {
            str(n): {
                "top1_rating": round(float(np.mean([r[n][0] for r in runs])), 3),
                "top5_hits": round(float(np.mean([r[n][1] for r in runs])), 3),
            }
            for n in BUDGETS
        }
    ratios = {}
    for n in BUDGETS[1:]:
        base = table["random"]["0"]["top1_rating"]
        gain_mix = table["mix"][str(n)]["top1_rating"] - base
        gain_random = table["random"][str(n)]["top1_rating"] - base
        ratios[str(n)] = round(gain_mix / gain_random, 2) if abs(gain_random) > 1e-9 else None
    result = {"settings": vars(args), "by_strategy": table, "mix_over_random_gain": ratios,
              "elapsed_s": round(time.perf_counter() - start, 1)}  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print("top-1 rating / top-5 hits after N ratings")
    print(f"{'ratings':>8}  " + "  ".join(f"{s:>17}" for s in STRATEGIES))
    for n in BUDGETS:
        cells = [
            f"{table[s][str(n)]['top1_rating']:7.3f} / {table[s][str(n)]['top5_hits']:5.3f}"
            for s in STRATEGIES
        ]
        print(f"{n:>8}  " + "  ".join(f"{c:>17}" for c in cells))
    print("mix gain / random gain in top-1 rating: " + ", ".join(f"{n}: {r}" for n, r in ratios.items()))
    print(f"({args.seeds} seeds, {result['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
