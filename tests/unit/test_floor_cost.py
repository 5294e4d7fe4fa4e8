"""The floor stage's cost recurrence (mesp_core.floor_cost) against the replay's."""

import numpy as np
import pytest

from mesp_core.floor_cost import demand_instances, floor_cost, replay_floors, trailing_max
from mesp_core.replay import policies as replay_policies
from mesp_core.replay import simulate as replay


def test_demand_instances_is_ceil_and_one_for_any_invocation():
    counts = np.array([[0, 0.4, 1, 59, 60, 61, 120, 121]])
    assert demand_instances(counts, 60.0).tolist() == [[0, 1, 1, 1, 1, 2, 2, 3]]
    assert np.array_equal(demand_instances(counts, 60.0), replay_policies.demand_instances(counts, 60.0))


def test_trailing_max_excludes_the_current_minute():
    assert trailing_max(np.array([[3, 0, 0, 1, 0]]), 2).tolist() == [[0, 3, 3, 0, 1]]


@pytest.mark.parametrize("keep_alive, lead, start", [(2, 1, 5), (0, 0, 1), (3, 2, 10), (2, 1, 0)])
def test_agrees_with_the_replay(keep_alive, lead, start):
    rng = np.random.default_rng(keep_alive * 10 + lead)
    n, T = 7, 60
    demand = rng.poisson(0.8, size=(n, T)) * (rng.random((n, T)) < 0.5)
    floors = rng.integers(0, 3, size=(3, n, T - start))
    cold, idle = replay_floors(demand, floors, keep_alive=keep_alive, lead_minutes=lead, start=start)
    if start == 0:  # the replay always has one minute of history before it plans: pad one idle minute
        demand = np.concatenate([np.zeros((n, 1), dtype=demand.dtype), demand], axis=1)
        start = 1
    ref_cold, ref_idle, _held = replay.replay_floors(demand, floors, start, keep_alive, lead)
    assert np.array_equal(cold, ref_cold)
    assert np.array_equal(idle, ref_idle)


def test_a_floor_that_covers_demand_has_no_cold_start_after_the_lead():
    demand = np.array([[0, 0, 2, 0, 1, 3, 0, 0]])
    cold, idle = replay_floors(demand, np.full((1, 8), 3), keep_alive=2, lead_minutes=1)
    assert cold[0, 1:].sum() == 0 and cold[0, 0] == 0
    assert idle.sum() == 3 * 8 - demand.sum()


def test_floor_cost_and_bad_input():
    assert floor_cost(2, 5, 10.0) == 25.0
    with pytest.raises(ValueError, match="cold_start_cost"):
        floor_cost(1, 1, 0.0)
    with pytest.raises(ValueError, match="floors end in shape"):
        replay_floors(np.zeros((2, 5), dtype=int), np.zeros((2, 4), dtype=int), start=0)
