"""Candidate floors and the FloorPlanner (mesp_core.forecasting.floors)."""

import numpy as np
import pytest
import torch

from mesp_core.floor_cost import demand_instances
from mesp_core.forecasting.demand import DEMAND_LEVELS, DemandHead
from mesp_core.forecasting.floors import (
    ALL_CLUSTERS,
    Candidate,
    FloorPlanner,
    default_candidates,
    head_quantile,
    newsvendor_floor,
)


def repeat_yesterday_or_last(contexts, horizon):
    rows = contexts if isinstance(contexts, list) else list(contexts)
    return np.stack([np.full(horizon, float(r[-1])) for r in rows])


@pytest.fixture(scope="module")
def head():
    torch.manual_seed(0)
    return DemandHead(hidden=8)


def planner(head, cost=10.0, defaults=None, **kw):
    return FloorPlanner(head, default_candidates(), defaults or {ALL_CLUSTERS: "newsvendor"}, cost,
                        naive=repeat_yesterday_or_last, **kw)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("cost", [0.5, 1.0, 3.0, 4.0, 9.0, 10.0, 19.0, 40.0])
def test_newsvendor_floor_is_the_brute_force_cost_minimum(seed, cost):
    rng = np.random.default_rng(seed)
    pmf = rng.dirichlet(np.full(6, 0.7))  # instance demand 0..5

    def expected_cost(f):
        d = np.arange(6)
        return float((pmf * (cost * np.maximum(d - f, 0) + np.maximum(f - d, 0))).sum())

    floor = int(newsvendor_floor(pmf, cost))
    brute = min(range(0, 7), key=expected_cost)
    assert expected_cost(floor) == pytest.approx(expected_cost(brute), abs=1e-12), (floor, brute)
    level = cost / (1 + cost)
    if any(abs(level - q) < 1e-9 for q in DEMAND_LEVELS):  # the head's path, at a stored level
        samples = rng.choice(6, size=20000, p=pmf)
        quantiles = np.quantile(samples, DEMAND_LEVELS, method="inverted_cdf")
        from_head = head_quantile(DEMAND_LEVELS, quantiles, level)
        sample_pmf = np.bincount(samples, minlength=6) / len(samples)
        assert from_head == newsvendor_floor(sample_pmf, cost)


def test_head_quantile_interpolates_between_levels():
    q = np.array([[0.0, 1.0, 3.0]])
    assert head_quantile([0.5, 0.8, 0.9], q, 0.85)[0] == pytest.approx(2.0)
    assert head_quantile([0.5, 0.8, 0.9], q, 0.99)[0] == pytest.approx(3.0)


def test_keep_alive_candidate_is_the_recent_peak(head):
    counts = np.zeros((2, 200), dtype=np.float32)
    counts[0, 195] = 130  # 3 instances, 5 minutes before the origin
    counts[1, 150] = 10
    p = planner(head)
    plans = p.candidate_plans(counts, np.arange(2), np.full(2, 200), 3)
    ka10 = p.names.index("keep-alive 10")
    ka3 = p.names.index("keep-alive 3")
    assert plans[ka10].tolist() == [[3, 3, 3], [0, 0, 0]]
    assert plans[ka3].tolist() == [[0, 0, 0], [0, 0, 0]]
    assert (plans[p.names.index("q=0.9+ka5")] >= plans[p.names.index("q=0.9")]).all()


def test_choose_takes_the_cheapest_and_keeps_the_default_on_ties(head):
    p = FloorPlanner(head, [Candidate("keep-alive 2", keep_alive=2), Candidate("keep-alive 30", keep_alive=30)],
                     {ALL_CLUSTERS: "keep-alive 30"}, 100.0)
    W = 120
    demand = np.zeros((2, W + 3), dtype=np.int64)
    demand[0, 3::20] = 1  # a timer every 20 min: at C=100 a held instance is cheaper than 6 cold starts
    floors = np.zeros((2, 2, W), dtype=np.int64)
    floors[1, 0] = 1  # 30-min keep-alive keeps one instance throughout
    floors[1, 1] = 0  # function 1 is idle: both candidates set 0 -> a tie
    chosen = p.choose(demand, floors)
    assert chosen.tolist() == [1, 1]
    cheap = FloorPlanner(head, p.candidates, {ALL_CLUSTERS: "keep-alive 30"}, 0.01)  # cold starts nearly free
    assert cheap.choose(demand, floors).tolist() == [0, 1]


def test_no_plan_sees_the_future(head):
    rng = np.random.default_rng(1)
    counts = (rng.poisson(2.0, size=(4, 700)) * (rng.random((4, 700)) < 0.3)).astype(np.float32)
    p = planner(head)
    plan, chosen = p.plan(counts[:, :600], 5)
    changed = counts.copy()
    changed[:, 600:] = rng.poisson(50.0, size=(4, 100))
    again, chosen_again = p.plan(changed[:, :600], 5)
    assert np.array_equal(plan, again) and np.array_equal(chosen, chosen_again)
    # The stateful path: plans made before minute 650 do not depend on minutes >= 650.
    out = []
    for trace in (counts, np.concatenate([counts[:, :650], changed[:, 650:]], axis=1)):
        p.reset(4)
        out.append(np.concatenate([p.advance(trace[:, :t], t) for t in range(300, 650)], axis=1))
    assert np.array_equal(out[0], out[1])


def test_stateful_choice_matches_the_stateless_backfill(head):
    rng = np.random.default_rng(2)
    counts = (rng.poisson(1.0, size=(6, 800)) * (rng.random((6, 800)) < 0.4)).astype(np.float32)
    counts[0, ::7] = 90  # a timer that needs 2 instances
    p = planner(head, reselect_every=30)
    p.reset(6)
    for t in range(300, 601):
        stateful = p.advance(counts[:, :t], t)
    # Minute 600 is a reselection (300 + 10 * 30) with a full 240-minute record.
    stateless, chosen = p.plan(counts[:, :600], 1)
    assert p.chosen_names == [p.names[i] for i in chosen]
    assert np.array_equal(stateful, stateless)
    # The first step rebuilds the record from the history, so it already chooses like the stateless plan.
    p.reset(6)
    first = p.advance(counts[:, :450], 450)
    stateless, chosen = p.plan(counts[:, :450], 1)
    assert p.chosen_names == [p.names[i] for i in chosen]
    assert np.array_equal(first, stateless)


def test_ragged_and_short_contexts_fall_back_to_the_default(head):
    p = planner(head, defaults={ALL_CLUSTERS: "keep-alive 10"})
    contexts = [np.ones(90, dtype=np.float32), np.zeros(400, dtype=np.float32)]
    plan, chosen = p.plan(contexts, 4)
    assert plan.shape == (2, 4)
    assert p.names[chosen[0]] == "keep-alive 10"  # 90 minutes: too little to score candidates


def test_bad_candidates_and_defaults_are_refused(head):
    with pytest.raises(ValueError, match="not among"):
        FloorPlanner(head, [Candidate("keep-alive 2", keep_alive=2)], {ALL_CLUSTERS: "q=0.9"}, 10.0)
    with pytest.raises(ValueError, match="naive forecaster"):
        FloorPlanner(head, [Candidate("seasonal naive", naive=True)], {}, 10.0)
    with pytest.raises(ValueError, match="sets no floor"):
        Candidate.from_dict({"name": "x"})
    assert Candidate.from_dict(Candidate("q=0.9+ka3", q=0.9, keep_alive=3).to_dict()).keep_alive == 3


def test_demand_of_a_plan_uses_the_capacity(head):
    counts = np.zeros((1, 300), dtype=np.float32)
    counts[0, 295] = 200
    p = FloorPlanner(head, [Candidate("keep-alive 10", keep_alive=10)], {ALL_CLUSTERS: "keep-alive 10"}, 10.0,
                     capacity=[100.0])
    p.reset(1)
    assert p.advance(counts, 300).tolist() == [[int(demand_instances(200, 100.0))]]


def _bursty(seed: int, n: int, T: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    counts = (rng.poisson(1.5, size=(n, T)) * (rng.random((n, T)) < 0.35)).astype(np.float32)
    counts[0, ::9] = 150  # a timer needing 3 instances of 60/min
    counts[1, 300:] = 0   # a function that goes quiet
    return counts


def test_plan_chosen_is_the_chosen_candidates_row_of_candidate_plans(head):
    counts = _bursty(4, 7, 500)
    p = planner(head, capacity=np.array([60.0, 30.0, 60.0, 10.0, 60.0, 60.0, 120.0]), lead_minutes=2)
    every = p.candidate_plans(counts, np.arange(7), np.full(7, 500), 6)
    for chosen in (np.arange(7), np.arange(7) + 7, np.array([14, 0, 1, 14, 18, 10, 3])):
        assert np.array_equal(p.plan_chosen(counts, 6, chosen), every[chosen, np.arange(7)])
    with pytest.raises(ValueError, match="indices"):
        p.plan_chosen(counts, 6, np.full(7, len(p.candidates)))
    with pytest.raises(ValueError, match="unknown floor candidates"):
        p.index_of(["keep-alive 10", "keep-alive 99"])


def test_before_boundary_gives_every_context_until_the_next_boundary_the_same_minutes(head):
    p = planner(head, reselect_every=30)
    series = _bursty(5, 2, 700)
    boundary, L = 600, 400
    cuts = [p.before_boundary(series[:, t - L:t], t - boundary) for t in range(boundary, boundary + 30)]
    assert all(np.array_equal(cut, cuts[0]) for cut in cuts)
    assert np.array_equal(cuts[0], series[:, boundary - (L - 29):boundary])  # nothing at or after the boundary
    # Ragged rows are cut as their left-padded array: the shorter row keeps its whole history before it.
    ragged = p.before_boundary([series[0, 300:600], series[1, 100:600]], [3, 0])
    assert np.array_equal(ragged[0], series[0, 300:597]) and np.array_equal(ragged[1], series[1, 129:600])
    with pytest.raises(ValueError, match="since must be in"):
        p.before_boundary(series, 30)


def test_keeping_the_boundarys_choice_plans_exactly_what_choosing_every_minute_does(head):
    """The operator's stateful path: choose at each row's own boundary, then only plan_chosen until
    the next one; the same plans, minute by minute, as the stateless plan(since=...)."""
    n, L, every = 6, 420, 30
    series = _bursty(6, n, 1000)
    p = planner(head, reselect_every=every, capacity=np.array([60.0, 20.0, 60.0, 60.0, 5.0, 60.0]))
    phase = np.array([0, 7, 29, 13, 0, 22])
    kept, boundary, chosen_at = np.zeros(n, dtype=np.int64), np.full(n, -1), 0
    for t in range(500, 580):
        contexts = series[:, t - L:t]
        since = (t - phase) % every
        due = np.flatnonzero(t - since != boundary)
        if due.size:  # only these rows choose: each with its own capacity, in one batch
            sub = planner(head, reselect_every=every, capacity=p.capacity[due])
            kept[due] = sub.choose_at(contexts[due], since[due])
            boundary[due] = t - since[due]
            chosen_at += due.size
        stateful = p.plan_chosen(contexts, 4, kept)
        stateless, chosen = p.plan(contexts, 4, since)
        assert np.array_equal(chosen, kept) and np.array_equal(stateful, stateless), t
    # Each row chooses at the first minute, then only at its own boundaries (2 or 3 in 79 minutes).
    assert chosen_at == n + int(((np.arange(501, 580)[:, None] - phase) % every == 0).sum()) == 23


def test_a_boundarys_choice_does_not_see_the_minutes_after_it(head):
    series = _bursty(7, 4, 800)
    p = planner(head, reselect_every=30)
    changed = series.copy()
    changed[:, 620:] = 40.0  # everything after the boundary at 620 is different
    for t in range(620, 650):
        since = t - 620
        assert np.array_equal(p.choose_at(series[:, t - 450:t], since), p.choose_at(changed[:, t - 450:t], since))


@pytest.mark.parametrize("ragged", [False, True])
def test_choosing_in_blocks_of_rows_chooses_as_all_at_once(head, monkeypatch, ragged):
    from mesp_core.forecasting import floors

    series = _bursty(8, 5, 520)
    contexts = [series[i, 520 - L:] for i, L in enumerate((400, 130, 500, 90, 420))] if ragged else series
    p = planner(head, capacity=np.array([60.0, 10.0, 60.0, 30.0, 60.0]))
    whole = p.choose_at(contexts)
    monkeypatch.setattr(floors, "CHOICE_ROWS", 2)
    assert np.array_equal(p.choose_at(contexts), whole)
