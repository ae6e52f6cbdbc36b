"""How the personalisation check chooses the pairs its simulated rater rates (the plumbing, not the figure).

A tiny real subset: four generated guitar takes (rendered and analysed for
real into a temporary cache), the built-in grooves with their own tempo and
meter, the shipped model's checkpoint scoring them, and the hard filter of
the check. ``"pairing"`` must be exactly what ``sjtui label`` does
(:func:`sjtui.labels.pairing.plan_pairs`, ``start`` advancing across
windows), every strategy must rate distinct allowed grooves, and the check
must fine-tune on the pairs the strategy chose.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sjtui.grooves.textgrid import load_builtin
from sjtui.labels import pairing as P
from sjtui.model import inputs as layout
from sjtui.model.manifest import read_manifest, verify_file
from sjtui.model.runtime import SHIPPED_MODEL_DIR
from training import data as D
from training import evaluate as E
from training import targets as T
from training import train as TR
from training.towers import load_checkpoint

GUITAR_BPM = (92.0, 100.0, 110.0, 120.0)


@pytest.fixture(scope="module")
def subset(tmp_path_factory):
    torch.set_num_threads(1)
    specs = [
        dataclasses.replace(s, meter="4/4", bpm=bpm, bars=10)
        for s, bpm in zip(D.make_specs("test", 4), GUITAR_BPM)
    ]
    guitars = D.guitar_set(specs, tmp_path_factory.mktemp("cache"), workers=1)
    grooves = [g for g in load_builtin() if g.bars <= 4 and g.meter.steps_per_bar <= 60]
    g_in = {"grid": guitars.grid, "context": guitars.context}
    d_in = layout.groove_inputs(grooves)
    g_side = T.GuitarSide(guitars.grid, guitars.context, guitars.bpm, guitars.meter, guitars.style)
    d_side = T.GrooveSide(
        d_in["grid"],
        d_in["context"],
        np.array([g.bpm for g in grooves], dtype=np.float64),
        np.array([str(g.meter) for g in grooves]),
        np.array([g.style for g in grooves]),
    )
    entry = read_manifest(SHIPPED_MODEL_DIR)["training"]["checkpoint"]
    model, _ = load_checkpoint(verify_file(SHIPPED_MODEL_DIR, entry, "model checkpoint"))
    g_emb, d_emb = TR.embed_numpy(model, g_in, d_in)
    tempo, meter = E.fit_matrices(g_side, d_side)
    allowed = tempo & meter
    rated_rows = np.flatnonzero(allowed.sum(axis=1) >= 10)
    assert rated_rows.size >= 6, "the subset needs windows with 10 allowed grooves"
    return {
        "model": model,
        "g_in": g_in,
        "d_in": d_in,
        "g_side": g_side,
        "d_side": d_side,
        "weak": T.ratings(g_side, d_side),
        "embeddings": (g_emb, d_emb),
        "scores": g_emb @ d_emb.T,
        "allowed": allowed,
        "rated_rows": rated_rows,
    }


def _by_window(pairs):
    windows: dict[int, list[int]] = {}
    for i, j in pairs:
        windows.setdefault(i, []).append(j)
    return windows


def _check_shape(pairs, subset):
    windows = _by_window(pairs)
    assert sorted(windows) == sorted(subset["rated_rows"].tolist())
    for i, grooves in windows.items():
        assert len(grooves) == E.RATED_PER_WINDOW == len(set(grooves)), f"window {i}: {grooves}"
        assert subset["allowed"][i, grooves].all(), f"window {i} rated a groove the hard filter rejects"
    return windows


def test_pairing_is_what_the_labelling_session_plans(subset, monkeypatch):
    calls = []
    real = P.plan_pairs

    def spy(*args, **kwargs):
        picks = real(*args, **kwargs)
        calls.append((args, kwargs, picks))
        return picks

    monkeypatch.setattr(P, "plan_pairs", spy)
    rng = np.random.default_rng(0)
    pairs = E.choose_rated_pairs(
        "pairing", subset["scores"], subset["allowed"], subset["rated_rows"], rng, seed=7
    )
    windows = _check_shape(pairs, subset)
    assert len(calls) == subset["rated_rows"].size
    for k, (row, (args, kwargs, picks)) in enumerate(zip(subset["rated_rows"], calls)):
        scores, _, eligible = args
        np.testing.assert_array_equal(scores, subset["scores"][row])
        np.testing.assert_array_equal(eligible, subset["allowed"][row])
        assert kwargs["mix"] == P.DEFAULT_MIX and kwargs["seed"] == 7
        assert kwargs["boundary"] is None and "boundary_quantile" not in kwargs  # plan_pairs' default boundary
        assert kwargs["start"] == k * E.RATED_PER_WINDOW  # the session's pick counter runs across windows
        assert [p.index for p in picks] == windows[int(row)]
    # the strategies of the whole "session" follow the mix's schedule
    strategies = [p.strategy for *_, picks in calls for p in picks]
    assert strategies == P.strategy_schedule(len(pairs), P.DEFAULT_MIX)
    # a favourite pick is the model's top allowed groove among those the window has not rated yet
    for row, (*_, picks) in zip(subset["rated_rows"], calls):
        for k, p in enumerate(picks):
            if p.strategy == "favourite":
                left = np.setdiff1d(np.flatnonzero(subset["allowed"][row]), [q.index for q in picks[:k]])
                assert p.index == left[np.argmax(subset["scores"][row, left])]
    # a different mix changes the picks: the mix reaches plan_pairs
    calls.clear()
    uncertain = E.choose_rated_pairs(
        "pairing",
        subset["scores"],
        subset["allowed"],
        subset["rated_rows"],
        rng,
        seed=7,
        mix=P.PairingMix(0, 1, 0),
    )
    assert all(p.strategy == "uncertain" for *_, picks in calls for p in picks)
    assert uncertain != pairs


def test_random_and_check_rate_distinct_allowed_grooves_and_differ_from_pairing(subset):
    args = (subset["scores"], subset["allowed"], subset["rated_rows"])
    pairing = E.choose_rated_pairs("pairing", *args, np.random.default_rng(0), seed=0)
    random_a = E.choose_rated_pairs("random", *args, np.random.default_rng(0))
    random_b = E.choose_rated_pairs("random", *args, np.random.default_rng(1))
    check = E.choose_rated_pairs("check", *args, np.random.default_rng(0))
    for pairs in (random_a, random_b, check):
        _check_shape(pairs, subset)
    assert random_a == E.choose_rated_pairs("random", *args, np.random.default_rng(0))  # seeded
    assert random_a != random_b
    assert set(random_a) != set(pairing)
    for row, grooves in _by_window(check).items():  # 2 of the model's top 10 allowed grooves
        allowed = np.flatnonzero(subset["allowed"][row])
        top10 = set(allowed[np.argsort(-subset["scores"][row, allowed])[:10]].tolist())
        assert len(top10 & set(grooves[:2])) == 2
    with pytest.raises(ValueError, match="bogus"):
        E.choose_rated_pairs("bogus", *args, np.random.default_rng(0))


def test_the_check_fine_tunes_on_the_pairs_its_strategy_chose(subset, monkeypatch):
    monkeypatch.setattr(E, "N_RATED_WINDOWS", 3)  # the rest of the tiny subset is the evaluation
    tuned_on = []
    real = TR.finetune

    def spy(model, g_in, d_in, pairs, seed=0, **kwargs):
        tuned_on.append(list(pairs))
        return real(model, g_in, d_in, pairs, seed=seed, steps=5)

    monkeypatch.setattr(TR, "finetune", spy)
    s = subset
    common = (s["model"], s["g_in"], s["d_in"], s["g_side"], s["d_side"], s["weak"], 3)
    results = {
        strategy: E.personalisation_check(*common, strategy, before_embeddings=s["embeddings"])
        for strategy in ("pairing", "random")
    }
    rater = E.rater_ratings(s["g_side"], s["d_side"], s["weak"])
    rows = [sorted({i for i, _, _ in pairs}) for pairs in tuned_on]
    assert rows[0] == rows[1] and len(rows[0]) == 3  # same rated windows for both strategies
    assert {(i, j) for i, j, _ in tuned_on[0]} != {(i, j) for i, j, _ in tuned_on[1]}
    for strategy, pairs in zip(results, tuned_on):
        r = results[strategy]
        assert r["strategy"] == strategy and r["n_ratings"] == len(pairs) == 3 * E.RATED_PER_WINDOW
        assert all(stars == np.round(rater[i, j]) for i, j, stars in pairs)  # the rater's integer stars
        assert r["rated_share_positive"] == np.mean([stars >= T.POSITIVE_RATING for *_, stars in pairs])
    assert results["pairing"]["agreement_before"] == results["random"]["agreement_before"]  # same eval rows
