"""Pairing: the documented mix, what each strategy picks, and the exclusions that always hold."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sjtui.grooves.store import GrooveStore
from sjtui.labels.pairing import (
    DEFAULT_BOUNDARY_QUANTILE,
    DEFAULT_MIX,
    STRATEGY_NAMES,
    PairingError,
    PairingMix,
    eligible_mask,
    ids_of_keys,
    plan_pairs,
    strategy_schedule,
)
from sjtui.labels.store import GrooveKey, groove_key_index


def _library(rng, n=300):
    meters = rng.choice(np.array(["4/4", "3/4", "6/8", "7/8"]), size=n, p=[0.6, 0.15, 0.15, 0.1])
    bpm = rng.uniform(60, 200, n).astype(np.float32)
    ids = np.arange(1000, 1000 + n)
    scores = rng.normal(0.0, 0.3, n)
    return ids, meters, bpm, scores


def test_default_mix_is_the_documented_30_40_30_at_the_0_9_quantile():
    assert np.allclose(DEFAULT_MIX.weights(), [0.3, 0.4, 0.3])
    assert DEFAULT_BOUNDARY_QUANTILE == 0.9
    assert STRATEGY_NAMES == ("favourite", "uncertain", "explore")


@pytest.mark.parametrize(
    "mix", [DEFAULT_MIX, PairingMix(0.5, 0.5, 0.0), PairingMix(0, 0, 1), PairingMix(1, 2, 3)]
)
def test_schedule_keeps_every_prefix_within_one_of_the_shares(mix):
    weights = mix.weights()
    schedule = strategy_schedule(400, mix)
    counts = np.zeros(3)
    for k, strategy in enumerate(schedule, start=1):
        counts[STRATEGY_NAMES.index(strategy)] += 1
        assert np.all(np.abs(counts - k * weights) < 1.0 + 1e-9), (k, counts)
    # a session continued in several calls gets the same sequence
    assert strategy_schedule(150, mix, start=0) + strategy_schedule(250, mix, start=150) == schedule


def test_bad_mix_refused():
    for mix in (PairingMix(0, 0, 0), PairingMix(-1, 1, 1), PairingMix(float("nan"), 1, 1)):
        with pytest.raises(PairingError, match="non-negative"):
            mix.weights()


def test_plan_has_the_mix_and_each_strategy_picks_what_it_promises():
    rng = np.random.default_rng(0)
    ids, meters, bpm, scores = _library(rng, 600)
    eligible = eligible_mask(bpm, meters, 120.0, "4/4", groove_ids=ids)
    n_eligible = int(eligible.sum())
    assert n_eligible > 100
    picks = plan_pairs(scores, ids, eligible, n=50, seed=3)
    counts = Counter(p.strategy for p in picks)
    assert counts == {"favourite": 15, "uncertain": 20, "explore": 15}
    assert len({p.index for p in picks}) == 50 and all(eligible[p.index] for p in picks)
    assert all(ids[p.index] == p.groove_id and scores[p.index] == p.score for p in picks)

    # favourites are the best eligible scores, best first, skipping grooves another strategy took
    favourites = [p.index for p in picks if p.strategy == "favourite"]
    ranked = [int(i) for i in np.argsort(-np.where(eligible, scores, -np.inf)) if eligible[i]]
    taken_before = set()
    for p in picks:
        if p.strategy == "favourite":
            assert p.index == next(i for i in ranked if i not in taken_before)
        taken_before.add(p.index)
    unpicked = eligible.copy()
    unpicked[[p.index for p in picks]] = False
    assert scores[favourites].min() >= scores[unpicked].max()  # nothing better was left out

    # uncertain picks hug the boundary (the 0.9 quantile of eligible scores): they are the closest ones
    # but for those the other strategies took first
    boundary = np.quantile(scores[eligible], DEFAULT_BOUNDARY_QUANTILE)
    uncertain = np.array([p.index for p in picks if p.strategy == "uncertain"])
    distance = np.abs(scores - boundary)
    assert distance[uncertain].max() <= np.sort(distance[eligible])[len(picks) - 1]
    # with another quantile they hug that one
    median = plan_pairs(scores, ids, eligible, n=10, mix=PairingMix(0, 1, 0), boundary_quantile=0.5)
    to_median = np.abs(scores - np.median(scores[eligible]))
    assert to_median[[p.index for p in median]].max() <= np.sort(to_median[eligible])[9]
    # with a calibrated boundary they hug that instead
    calibrated = plan_pairs(scores, ids, eligible, n=10, mix=PairingMix(0, 1, 0), boundary=0.4)
    assert (
        np.abs(scores[[p.index for p in calibrated]] - 0.4).max()
        <= np.sort(np.abs(scores[eligible] - 0.4))[9]
    )

    # exploration is spread over the whole eligible range, not the top
    explored = np.array([p.index for p in picks if p.strategy == "explore"])
    assert np.median(scores[explored]) < np.quantile(scores[eligible], 0.9)


def test_same_seed_same_plan_other_seed_other_exploration():
    rng = np.random.default_rng(1)
    ids, meters, bpm, scores = _library(rng)
    eligible = eligible_mask(bpm, meters, 100.0, "4/4")
    a = plan_pairs(scores, ids, eligible, n=20, seed=5)
    assert plan_pairs(scores, ids, eligible, n=20, seed=5) == a
    b = plan_pairs(scores, ids, eligible, n=20, seed=6)
    assert [p.strategy for p in a] == [p.strategy for p in b] and a[0] == b[0]  # the first pick is not random
    assert [p.index for p in a if p.strategy == "explore"] != [p.index for p in b if p.strategy == "explore"]
    # continuing the session moves the schedule and the draws on
    later = plan_pairs(scores, ids, eligible, n=20, seed=5, start=20)
    assert [p.strategy for p in later] == strategy_schedule(20, start=20)


def test_disagreement_breaks_ties_towards_contested_grooves():
    scores = np.array([0.0, 1.0, 1.0, 1.0, 2.0, -1.0])
    ids = np.arange(6)
    disagreement = np.array([0.0, 0.1, 0.9, 0.2, 0.0, 0.0])
    picks = plan_pairs(
        scores, ids, np.ones(6, bool), n=1, mix=PairingMix(0, 1, 0), boundary=1.0, disagreement=disagreement
    )
    assert picks[0].index == 2 and picks[0].strategy == "uncertain"
    plain = plan_pairs(scores, ids, np.ones(6, bool), n=1, mix=PairingMix(0, 1, 0), boundary=1.0)
    assert plain[0].index == 1  # without it: the first of the equally close


def test_unembedded_grooves_only_by_exploration_and_fallback():
    scores = np.array([np.nan, np.nan, 0.5, np.nan])
    ids = np.array([7, 8, 9, 10])
    picks = plan_pairs(scores, ids, np.ones(4, bool), n=4, mix=PairingMix(1, 0, 0))
    assert picks[0] == picks[0].__class__(2, 9, "favourite", 0.5)
    assert [p.strategy for p in picks[1:]] == ["explore"] * 3  # nothing left to exploit: explore instead
    assert sorted(p.groove_id for p in picks) == [7, 8, 9, 10]
    assert len(plan_pairs(scores, ids, np.ones(4, bool), n=10)) == 4  # runs out, no repeats


def test_nothing_fits_is_a_clear_error():
    ids = np.arange(3)
    eligible = eligible_mask(
        np.array([90.0, 100.0, 110.0]), np.array(["4/4"] * 3), 100.0, "7/8", groove_ids=ids
    )
    assert not eligible.any()
    with pytest.raises(PairingError, match="no groove fits this loop"):
        plan_pairs(np.zeros(3), ids, eligible)
    with pytest.raises(PairingError, match="loop tempo"):
        eligible_mask(np.array([90.0]), np.array(["4/4"]), float("nan"), "4/4")
    with pytest.raises(PairingError, match="same"):
        plan_pairs(np.zeros(3), ids, np.ones(2, bool))


def test_tempo_and_meter_fit_rules():
    bpm = np.array([100.0, 125.0, 126.0, 80.0, 79.0, 100.0, 0.0])
    meters = np.array(["4/4", "4/4", "4/4", "4/4", "4/4", "6/8", "4/4"])
    assert eligible_mask(bpm, meters, 100.0, "4/4").tolist() == [True, True, False, True, False, False, False]
    ids = np.arange(7)
    assert eligible_mask(bpm, meters, 100.0, "4/4", groove_ids=ids, exclude_ids=[1, 3]).tolist() == [
        True, False, False, False, False, False, False]  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n_grooves=st.integers(1, 120),
    n=st.integers(1, 60),
    loop_bpm=st.floats(50, 220),
    loop_meter=st.sampled_from(["4/4", "3/4", "6/8", "7/8"]),
    tolerance=st.floats(0.0, 0.6),
    start=st.integers(0, 500),
    shares=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0.01, 1)),
)
def test_excluded_and_unfitting_grooves_are_never_chosen(
    seed, n_grooves, n, loop_bpm, loop_meter, tolerance, start, shares
):
    rng = np.random.default_rng(seed)
    ids, meters, bpm, scores = _library(rng, n_grooves)
    scores[rng.random(n_grooves) < 0.1] = np.nan
    recent = rng.choice(ids, size=int(rng.integers(0, n_grooves + 1)), replace=False)
    eligible = eligible_mask(
        bpm, meters, loop_bpm, loop_meter, groove_ids=ids, exclude_ids=recent, tempo_tolerance=tolerance
    )
    if not eligible.any():
        with pytest.raises(PairingError):
            plan_pairs(scores, ids, eligible, n=n, seed=seed, start=start, mix=PairingMix(*shares))
        return
    picks = plan_pairs(scores, ids, eligible, n=n, seed=seed, start=start, mix=PairingMix(*shares))
    assert len(picks) == min(n, int(eligible.sum()))
    chosen = np.array([p.index for p in picks])
    assert len(set(chosen.tolist())) == len(chosen)
    assert not np.isin(ids[chosen], recent).any()
    assert np.all(meters[chosen] == loop_meter)
    ratio = loop_bpm / bpm[chosen]
    assert np.all((ratio <= 1 + tolerance + 1e-9) & (ratio >= 1 / (1 + tolerance) - 1e-9))


def test_recently_rated_grooves_of_a_real_library_are_excluded(tmp_path):
    from sjtui.labels import LabelStore

    with GrooveStore(tmp_path / "grooves.sqlite") as grooves:
        library = grooves.load_library()
        index = groove_key_index(grooves)
        rows = grooves.list_rows()
        four_four = [r for r in rows if r["meter"] == "4/4" and 1 / 1.25 <= 110 / r["bpm"] <= 1.25]
        with LabelStore.open(tmp_path / "labels.sqlite") as store:
            clip = store.add_clip(np.full(4800, 0.1, np.float32), 48000, None, {"source": "generated"})
            for row in four_four[:3]:
                store.add_rating(clip, GrooveKey.from_row(row), 3, strategy="explore")
            recent = ids_of_keys(store.recent_groove_keys(clip), index)
        assert sorted(recent) == sorted(r["id"] for r in four_four[:3])
        eligible = eligible_mask(
            library.bpm, library.meters, 110.0, "4/4", groove_ids=library.ids, exclude_ids=recent
        )
        scores = np.random.default_rng(2).normal(size=len(library))
        picks = plan_pairs(scores, library.ids, eligible, n=len(library))
        assert len(picks) == int(eligible.sum()) == len(four_four) - 3
        assert not set(p.groove_id for p in picks) & set(recent)
