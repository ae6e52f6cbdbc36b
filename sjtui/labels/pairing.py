"""Which groove to pair next with a guitar loop, so that each rating teaches the model the most.

Pure functions over the model's score vector and the library's metadata
arrays; deterministic for a given ``seed`` and position in the session.

The mix (:data:`DEFAULT_MIX`, 30 / 40 / 30 %, boundary at the 0.9 quantile):

- **favourite** (exploit, 30 %): the eligible groove the model scores
  highest for this loop, i.e. what the jam would play. These ratings check
  the top of the ranking, where a wrong choice is heard and where the
  player's taste most often disagrees with the shipped model; they bring
  the positives (ratings >= 4) that fine-tuning contrasts with the lower
  ratings of the same loop, and keep a labelling session pleasant.
- **uncertain** (40 %): the eligible groove closest to the model's decision
  boundary (uncertainty sampling): the pair the model is least sure about.
  The boundary is a calibrated ``boundary`` score when the caller has one
  (the score where the model predicts the rating that separates liked from
  not liked, or a classifier's p = 0.5), else the ``boundary_quantile`` of
  the eligible scores (:data:`DEFAULT_BOUNDARY_QUANTILE` 0.9: the model is
  least sure whether a groove belongs to its top 10 %, the grooves the jam
  chooses among; the median would ask whether a groove is in the better
  half, which the jam never needs to know). Distances are measured in
  standard deviations of the eligible scores. A ``disagreement`` vector
  (e.g. the spread of a groove's score over the guitar encoder's embeddings
  of the loop's windows, between two model versions, or a posterior
  predictive std), scaled to 0..1, is subtracted from that distance: a
  groove the candidates disagree about counts as more uncertain.
- **explore** (30 %): a uniformly random eligible groove. It covers grooves
  the model never ranks near its boundary, gives the low ratings the
  positives are contrasted with and the unbiased sample the held-out
  evaluation needs, and rates grooves without embeddings (NaN scores),
  which only exploration picks.

Why these shares: the personalisation check of the model's training
(:func:`training.evaluate.personalisation_check`: the shipped model, real
held-out guitar windows and test grooves, a simulated player with a hidden
taste rating 40 loops x 5 grooves chosen by :func:`plan_pairs` as
``sjtui label`` does, a fine-tune, then agreement of the top pick with the
player's top 10 % on other loops) decides; ``bench/personalisation.py``
runs it per strategy over seeds, comparing seed by seed (~200
evaluation loops, one loop = 0.5 points; two equally random strategies
differ by 6-8 points std from seed to seed, so a mean over 20-30 seeds has
a standard error of 1-1.5 points). With the shipped model of commit
7d6706a (agreement ~0.33 before tuning), 30 / 40 / 30 at the 0.9 quantile
beat random choice by +6.6 points of agreement after tuning (std 7.0, won
21 of 25 seeds 0..24; +6.8 and 17 of 20 on seeds 5..24), the earlier
10 / 70 / 20 at the median by only +2.5 (std 6.3, won 12 of 20, 2 ties),
and 30 / 40 / 30 at 0.9 beat 10 / 70 / 20 at the median by +4.3 (won 14 of
20, 1 tie). With the model before it (agreement ~0.40 before tuning), over
seeds 0..32: +4.3 against random (std 5.9, won 24 of 33, 1 tie; +4.5 and
20 of 28 on seeds 5..32, which were not used to choose it among the
alternatives tried on seeds 0..4), 10 / 70 / 20 at the median +0.6 (won
20 of 33), i.e. level with random. Near the median the player mostly
rates 1-2 stars, which teaches little about the top of the ranking that
agreement (and the jam) depends on; the 0.9 quantile and the favourites
double the share of ratings >= 4 (0.34 against 0.17), the positives the
fine-tuning loss is built on. The synthetic simulation of
``bench/pairing.py`` (bilinear taste, logistic learner on ``rating >=
3``) ranks them the other way round (top-1 expected rating after 200
ratings: 10 / 70 / 20 at the median 4.748, random 4.731, 30 / 40 / 30 at
0.9 4.666), presumably because its learner is fitted at its own 50 %
boundary, unlike the encoders' fine-tuning on graded positives. The real
check is the one the issue asks for, so it sets the defaults; both are
simulated players, not human ratings.

Strategies are interleaved by a smooth weighted round robin
(:func:`strategy_schedule`): after any number of picks each strategy's count
is within one of its share, so even a short session has the mix.

Eligible grooves (:func:`eligible_mask`): the groove's meter equals the
loop's, its own tempo is within ``tempo_tolerance`` (25 %) of the loop's
(the groove is played at the loop's tempo, and a groove far from its own
tempo changes feel), and it was not rated recently with this clip
(``exclude_ids``, from :meth:`sjtui.labels.store.LabelStore.recent_groove_keys`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sjtui.labels.errors import LabelError
from sjtui.meter import Meter, parse_meter

STRATEGY_NAMES = ("favourite", "uncertain", "explore")


class PairingError(LabelError):
    """No groove can be paired with this loop."""


@dataclass(frozen=True)
class PairingMix:
    """Shares of the three strategies (normalised; at least one positive)."""

    favourite: float = 0.3
    uncertain: float = 0.4
    explore: float = 0.3

    def weights(self) -> np.ndarray:
        """``(3,)`` float64 shares summing to 1, in :data:`STRATEGY_NAMES` order."""
        w = np.array([self.favourite, self.uncertain, self.explore], dtype=np.float64)
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise PairingError(
                f"pairing mix {self} needs non-negative shares with a positive sum, e.g. 0.3/0.4/0.3"
            )
        return w / w.sum()


DEFAULT_MIX = PairingMix()
DEFAULT_BOUNDARY_QUANTILE = 0.9
"""Quantile of the eligible scores used as the decision boundary when no calibrated one is given."""


@dataclass(frozen=True)
class Pick:
    index: int  # row in the library arrays
    groove_id: int
    strategy: str  # one of STRATEGY_NAMES
    score: float  # the model's score (NaN when the groove has no embedding)


def strategy_schedule(n: int, mix: PairingMix = DEFAULT_MIX, start: int = 0) -> list[str]:
    """Strategies of picks ``start .. start + n - 1`` of a session (smooth weighted round robin).

    Each pick goes to the strategy with the largest credit; every strategy
    earns its share per pick and the chosen one pays 1. After any prefix of
    ``k`` picks, each count is within 1 of ``k * share``.
    """
    weights = mix.weights()
    credit = np.zeros(3)
    out: list[str] = []
    for t in range(start + n):
        credit += weights
        choice = int(np.argmax(credit))  # ties go to the earlier strategy: deterministic
        credit[choice] -= 1.0
        if t >= start:
            out.append(STRATEGY_NAMES[choice])
    return out


def eligible_mask(
    groove_bpm: np.ndarray,
    groove_meters: np.ndarray,
    loop_bpm: float,
    loop_meter: Meter | str,
    *,
    groove_ids: np.ndarray | None = None,
    exclude_ids=(),
    tempo_tolerance: float = 0.25,
) -> np.ndarray:
    """``(n_grooves,)`` bool: meter equal, tempo within ``tempo_tolerance``, not excluded.

    ``groove_bpm`` ``(n,)``, ``groove_meters`` ``(n,)`` strings such as
    ``"4/4"``; ``exclude_ids`` are groove ids (matched against
    ``groove_ids``). Tempo fits when ``loop_bpm / groove_bpm`` lies in
    ``[1 / (1 + tol), 1 + tol]``.
    """
    groove_bpm = np.asarray(groove_bpm, dtype=np.float64)
    if not np.isfinite(loop_bpm) or loop_bpm <= 0:
        raise PairingError(f"loop tempo {loop_bpm!r} BPM is not a tempo; estimate or set it first")
    if tempo_tolerance < 0:
        raise PairingError(f"tempo tolerance {tempo_tolerance} must be >= 0 (0.25 = ±25 %)")
    meter = str(parse_meter(loop_meter))
    ratio = loop_bpm / np.where(groove_bpm > 0, groove_bpm, np.nan)
    with np.errstate(invalid="ignore"):
        tempo_ok = np.abs(np.log(ratio)) <= np.log1p(tempo_tolerance) + 1e-12
    mask = tempo_ok & (np.asarray(groove_meters).astype(str) == meter)
    if groove_ids is not None and len(exclude_ids):
        mask &= ~np.isin(np.asarray(groove_ids), np.asarray(list(exclude_ids)))
    return mask


def plan_pairs(
    scores: np.ndarray,
    groove_ids: np.ndarray,
    eligible: np.ndarray,
    *,
    n: int = 1,
    mix: PairingMix = DEFAULT_MIX,
    seed: int = 0,
    start: int = 0,
    disagreement: np.ndarray | None = None,
    boundary: float | None = None,
    boundary_quantile: float = DEFAULT_BOUNDARY_QUANTILE,
) -> list[Pick]:
    """The next ``n`` grooves to pair with one loop, each with the strategy that chose it.

    ``scores`` ``(n_grooves,)``: the model's score of each groove for this
    loop (NaN: no embedding). ``groove_ids`` ``(n_grooves,)``. ``eligible``
    ``(n_grooves,)`` bool (see :func:`eligible_mask`). ``start``: picks
    already made in this session (keeps the mix across calls and varies the
    random draws). No groove is picked twice; when eligible grooves run out
    fewer than ``n`` picks come back. ``boundary``: a calibrated decision
    score, else the ``boundary_quantile`` of the eligible scores. A strategy with nothing to pick
    (favourite/uncertain when every eligible score is NaN) falls back to
    exploration, and the pick says so.
    """
    scores = np.asarray(scores, dtype=np.float64)
    eligible = np.asarray(eligible, dtype=bool)
    groove_ids = np.asarray(groove_ids)
    if scores.shape != eligible.shape or scores.shape != groove_ids.shape or scores.ndim != 1:
        raise PairingError(
            f"scores {scores.shape}, groove ids {groove_ids.shape} and the eligible mask {eligible.shape} "
            "must be the same (n_grooves,) shape"
        )
    if not eligible.any():
        raise PairingError(
            "no groove fits this loop: none has its meter and a tempo within the tolerance, or all were rated "
            "with it recently; import more grooves (`sjtui grooves import`) or choose another loop"
        )
    scored = eligible & np.isfinite(scores)
    if boundary is None:
        boundary = float(np.quantile(scores[scored], boundary_quantile)) if scored.any() else 0.0
    spread = float(np.std(scores[scored])) if scored.sum() > 1 else 1.0
    margin = np.abs(scores - boundary) / max(spread, 1e-9)
    if disagreement is not None:
        disagreement = np.asarray(disagreement, dtype=np.float64)
        if disagreement.shape != scores.shape:
            raise PairingError(
                f"disagreement {disagreement.shape} must have the shape of the scores {scores.shape}"
            )
        top = np.nanmax(np.where(scored, disagreement, np.nan)) if scored.any() else 0.0
        if np.isfinite(top) and top > 0:
            margin = margin - np.nan_to_num(disagreement / top)
    # orders computed once; picking walks them, skipping what is taken
    favourite_order = [
        int(i) for i in np.argsort(-np.where(scored, scores, -np.inf), kind="stable") if scored[i]
    ]
    uncertain_order = [
        int(i) for i in np.argsort(np.where(scored, margin, np.inf), kind="stable") if scored[i]
    ]
    rng = np.random.default_rng([int(seed), int(start)])
    explore_order = [int(i) for i in rng.permutation(np.flatnonzero(eligible))]
    orders = {"favourite": favourite_order, "uncertain": uncertain_order, "explore": explore_order}
    cursor = dict.fromkeys(orders, 0)
    taken: set[int] = set()

    def next_from(strategy: str) -> int | None:
        order = orders[strategy]
        while cursor[strategy] < len(order):
            index = order[cursor[strategy]]
            cursor[strategy] += 1
            if index not in taken:
                return index
        return None

    picks: list[Pick] = []
    for strategy in strategy_schedule(n, mix, start):
        index = next_from(strategy)
        if index is None and strategy != "explore":
            strategy, index = "explore", next_from("explore")
        if index is None:
            break
        taken.add(index)
        picks.append(Pick(index, int(groove_ids[index]), strategy, float(scores[index])))
    return picks


def ids_of_keys(keys, key_index: dict) -> list[int]:
    """Current groove ids of :class:`~sjtui.labels.store.GrooveKey` s (those the library holds).

    ``key_index`` is :func:`sjtui.labels.store.groove_key_index` of the library.
    """
    return [key_index[key][0] for key in keys if key in key_index]
