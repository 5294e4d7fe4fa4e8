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
