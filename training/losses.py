"""Losses over a batch: ``scores`` (B, M) cosines of B guitar windows with M grooves, ``ratings`` (B, M) 0..5.

The shipped model uses :func:`rated_contrastive`: a graded InfoNCE over
*every* positive of a row (rating >= 4) against the row's grooves rated at
least a point lower (in-batch negatives), a pairwise term that orders
grooves by rating within and across rows (and, optionally, a top-pick
term: half a plain InfoNCE on each row's best groove; off in the shipped model). The alternatives,
trained with the same budget for the comparison in ``training/README.md``
(``python -m training.train --compare``):

- :func:`plain_infonce`: the usual CLIP-style InfoNCE with one positive per
  guitar window (its best-rated groove) and every other groove of the batch
  as a negative, ratings otherwise unused. It punishes the model for
  scoring *other good* grooves highly (false negatives: a window has many
  compatible grooves) and says nothing about the order below the top.
- :func:`mse_regression`: ``5 (cos + 1) / 2`` regressed on the rating. It
  spends its capacity on getting absolute values right for the bulk of
  unremarkable pairs (most ratings are 0: tempo or meter do not fit), which
  is not what a ranking needs.
- :func:`rated_with_top_pick`: the rated loss plus half a plain InfoNCE on
  each row's best groove (a variant; not shipped, see the README).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POSITIVE = 4.0
PAIR_MARGIN = 1.0
BEST_WEIGHT = 0.0
"""Weight of the optional top-pick term (plain InfoNCE on the best-rated groove) of :func:`rated_contrastive`.

0 in the shipped model: at the shipped budget (3000 steps) the validation split preferred the loss
without it (``rated_top`` in the comparison of ``training/README.md``)."""
"""Pairs of one row whose ratings differ by at least this much are ordered by the pairwise term."""


def rated_contrastive(
    scores: torch.Tensor,
    ratings: torch.Tensor,
    log_scale: torch.Tensor,
    pair_weight: float = 1.0,
    pair_scale: float = 10.0,
    known: torch.Tensor | None = None,
    max_pairs: int = 1024,
    best_weight: float = BEST_WEIGHT,
) -> tuple[torch.Tensor, dict]:
    """Graded multi-positive InfoNCE + rating-ordered pairwise logistic loss (+ a top-pick term).

    InfoNCE: for each positive ``p`` of row ``i`` (``ratings[i, p] >= 4``),
    ``-log softmax`` of ``p`` among ``{p} U lower(i, p)`` with logits
    ``exp(log_scale) * scores``, where ``lower(i, p)`` are the row's grooves
    rated at least ``PAIR_MARGIN`` below ``p`` (in-batch negatives, graded);
    averaged over positives, then rows. Positives of similar rating are
    never in each other's denominator, so a window with many good grooves
    is not pushed to prefer one arbitrarily (the false negatives of plain
    InfoNCE), while a 5 is still pushed above a 3.5.
    Pairwise: for each row and each pair ``(j, k)`` with ``r_ij - r_ik >=
    PAIR_MARGIN``, ``softplus(-pair_scale (s_ij - s_ik))`` weighted by
    ``(r_ij - r_ik) / 5``; mean over the pairs (``max_pairs`` random column
    pairs per row when ``M * M`` is larger, which keeps a step cheap), and the
    same over ``4 max_pairs`` random pairs of cells of the whole batch (across
    windows, so scores are comparable between windows); the two averaged.
    Top pick: ``best_weight`` times :func:`plain_infonce` (each window's
    best-rated groove against the whole batch) when every cell is rated;
    it sharpens the very top of the ranking (chosen on the validation split:
    see ``training/README.md``).
    ``known``: optional (B, M) bool of the pairs that have a rating (fine-tuning
    from a few ratings): unknown pairs are neither positives, negatives nor
    ordered, and the top-pick term is off. Returns ``(loss, parts)``.
    """
    logits = scores * log_scale.exp()
    known_all = known is None
    known = torch.ones_like(ratings, dtype=torch.bool) if known is None else known
    positive = (ratings >= POSITIVE) & known
    # graded denominators: positive p of row i competes with the row's known grooves rated at least
    # PAIR_MARGIN lower than p (so a 5 is also pushed above a 4, never a 4 above a 4.5)
    rows, cols = positive.nonzero(as_tuple=True)  # the positive cells, (P,) each
    lower = (ratings[rows] <= (ratings[rows, cols] - PAIR_MARGIN).unsqueeze(1)) & known[rows]  # (P, M)
    usable = lower.any(dim=1)
    if usable.any():
        rows, cols, lower = rows[usable], cols[usable], lower[usable]
        neg_lse = torch.logsumexp(logits[rows].masked_fill(~lower, float("-inf")), dim=1)  # (P,)
        own = logits[rows, cols]
        per_positive = torch.logaddexp(own, neg_lse) - own  # -log(e^l_p / (e^l_p + sum_lower e^l_k))
        # mean over each row's positives, then over rows
        n_rows = ratings.shape[0]
        count = torch.zeros(n_rows).index_add_(0, rows, torch.ones_like(per_positive))
        total = torch.zeros(n_rows).index_add_(0, rows, per_positive)
        has = count > 0
        nce = (total[has] / count[has]).mean()
    else:
        nce = scores.sum() * 0.0
    n_rows, n_cols = ratings.shape
    if n_cols * n_cols > max_pairs:
        # a random subset of (j, k) column pairs per row (torch's global generator: seeded by the caller)
        j = torch.randint(n_cols, (n_rows, max_pairs))
        k = torch.randint(n_cols, (n_rows, max_pairs))
        diff_r = ratings.gather(1, j) - ratings.gather(1, k)  # (B, P)
        ordered = (diff_r >= PAIR_MARGIN) & known.gather(1, j) & known.gather(1, k)
        diff_s = scores.gather(1, j) - scores.gather(1, k)
    else:
        diff_r = ratings.unsqueeze(2) - ratings.unsqueeze(1)  # (B, M, M): r_ij - r_ik
        ordered = (diff_r >= PAIR_MARGIN) & known.unsqueeze(2) & known.unsqueeze(1)
        diff_s = scores.unsqueeze(2) - scores.unsqueeze(1)
    pair = _ordered_pairs(diff_r, diff_s, ordered, pair_scale, scores)
    # the same across windows: cells of the whole batch ordered by rating, so that scores are comparable
    # between guitar windows (a pooled ROC AUC and a threshold on the score mean something)
    cells = known.reshape(-1).nonzero().squeeze(1)
    flat_r, flat_s = ratings.reshape(-1)[cells], scores.reshape(-1)[cells]
    j = torch.randint(cells.numel(), (max_pairs * 4,))
    k = torch.randint(cells.numel(), (max_pairs * 4,))
    diff_r = flat_r[j] - flat_r[k]
    across = _ordered_pairs(diff_r, flat_s[j] - flat_s[k], diff_r >= PAIR_MARGIN, pair_scale, scores)
    loss = nce + pair_weight * 0.5 * (pair + across)
    best = scores.sum() * 0.0
    if best_weight and known_all:
        best, _ = plain_infonce(scores, ratings, log_scale)
        loss = loss + best_weight * best
    return loss, {
        "best": float(best.detach()),
        "infonce": float(nce.detach()),
        "pairwise": float(pair.detach()),
        "across": float(across.detach()),
    }


def _ordered_pairs(diff_r, diff_s, ordered, pair_scale, scores) -> torch.Tensor:
    """Weighted logistic loss ``softplus(-pair_scale * diff_s)`` over the ``ordered`` pairs (weight ``diff_r / 5``)."""
    if not ordered.any():
        return scores.sum() * 0.0
    weight = (diff_r / 5.0) * ordered
    return (F.softplus(-pair_scale * diff_s) * weight).sum() / weight.sum()


def plain_infonce(
    scores: torch.Tensor, ratings: torch.Tensor, log_scale: torch.Tensor
) -> tuple[torch.Tensor, dict]:
    """CLIP-style InfoNCE: row ``i``'s positive is its best-rated groove only; the rest are negatives."""
    logits = scores * log_scale.exp()
    best = ratings.argmax(dim=1)
    loss = F.cross_entropy(logits, best)
    return loss, {"infonce": float(loss.detach())}


def mse_regression(
    scores: torch.Tensor, ratings: torch.Tensor, log_scale: torch.Tensor
) -> tuple[torch.Tensor, dict]:
    """MSE between ``5 (cos + 1) / 2`` and the rating (``log_scale`` unused)."""
    loss = F.mse_loss(2.5 * (scores + 1.0), ratings)
    return loss, {"mse": float(loss.detach())}


def rated_with_top_pick(
    scores: torch.Tensor, ratings: torch.Tensor, log_scale: torch.Tensor
) -> tuple[torch.Tensor, dict]:
    """Variant: :func:`rated_contrastive` plus 0.5 x :func:`plain_infonce` on each row's best groove."""
    return rated_contrastive(scores, ratings, log_scale, best_weight=0.5)


LOSSES = {
    "rated": rated_contrastive,
    "rated_top": rated_with_top_pick,
    "infonce": plain_infonce,
    "mse": mse_regression,
}
