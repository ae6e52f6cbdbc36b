"""The losses: what each one rewards, on small hand-made score/rating matrices."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from training.losses import mse_regression, plain_infonce, rated_contrastive, rated_with_top_pick

LOG_SCALE = torch.tensor(2.3)


def _ratings() -> torch.Tensor:
    # 3 guitar windows x 6 grooves: several positives per row, graded
    return torch.tensor(
        [
            [5.0, 4.0, 2.0, 0.0, 1.0, 4.5],
            [0.0, 5.0, 4.0, 3.0, 0.0, 0.0],
            [1.0, 0.0, 0.0, 4.0, 5.0, 2.0],
        ]
    )


def test_rated_loss_is_lower_when_scores_follow_the_ratings():
    ratings = _ratings()
    ordered = (ratings / 5.0) * 1.6 - 0.8  # scores rising with the rating
    reversed_ = -ordered
    torch.manual_seed(0)
    good, parts = rated_contrastive(ordered, ratings, LOG_SCALE)
    torch.manual_seed(0)
    bad, _ = rated_contrastive(reversed_, ratings, LOG_SCALE)
    assert good < bad
    assert set(parts) == {"best", "infonce", "pairwise", "across"}


def test_graded_infonce_does_not_punish_a_second_good_groove_but_plain_infonce_does():
    ratings = torch.tensor([[5.0, 4.5, 0.0, 0.0, 0.0]])

    def grad_of_second(loss_fn) -> float:
        scores = torch.tensor([[0.9, 0.9, -0.5, -0.5, -0.5]], requires_grad=True)
        torch.manual_seed(0)
        loss, _ = loss_fn(scores, ratings, LOG_SCALE)
        loss.backward()
        return scores.grad[0, 1].item()

    # gradient descent moves a score by -grad: plain InfoNCE pushes the 4.5-rated groove down hard
    # (it is a "negative" there); the rated loss does not (4.5 vs 5 is within the margin), and its
    # variant with half a plain InfoNCE for the top pick pushes less than plain InfoNCE
    plain = grad_of_second(plain_infonce)
    assert plain > 0.1
    assert grad_of_second(rated_contrastive) <= 1e-6
    assert grad_of_second(rated_with_top_pick) < plain


def test_known_mask_ignores_unrated_pairs():
    ratings = torch.tensor([[5.0, 0.0, 0.0, 0.0]])
    known = torch.tensor([[True, True, False, False]])
    scores = torch.tensor([[0.5, 0.0, 0.9, 0.9]], requires_grad=True)
    torch.manual_seed(0)
    loss, _ = rated_contrastive(scores, ratings, LOG_SCALE, known=known)
    loss.backward()
    assert scores.grad[0, 2].item() == 0.0 and scores.grad[0, 3].item() == 0.0
    assert scores.grad[0, 0].item() < 0 < scores.grad[0, 1].item()


def test_mse_regression_is_zero_when_scores_map_to_the_ratings():
    ratings = _ratings()
    loss, _ = mse_regression(ratings / 2.5 - 1.0, ratings, LOG_SCALE)
    assert loss.item() == pytest.approx(0.0, abs=1e-10)


def test_rated_loss_without_positives_is_the_pairwise_term_only():
    ratings = torch.tensor([[3.0, 1.0, 0.0]])
    torch.manual_seed(0)
    loss, parts = rated_contrastive(torch.tensor([[0.2, 0.1, 0.0]]), ratings, LOG_SCALE)
    assert parts["infonce"] == 0.0 and parts["pairwise"] > 0
    assert torch.isfinite(loss)
