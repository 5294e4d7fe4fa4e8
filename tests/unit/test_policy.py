"""Table tests of the forecast -> min-scale policy (mesp_core.policy)."""

import re
from dataclasses import replace

import numpy as np
import pytest

from mesp_core.policy import (
    plan_from_instances,
    PlanState,
    PolicyConfig,
    capacity_from_concurrency,
    instances_for_demand,
    plan_min_scale,
)


def undamped(**overrides):
    """A config without cooldown (unless asked for) and a 2-minute hold, so each test isolates one rule."""
    return PolicyConfig(**{"cooldown_minutes": 0, "hold_minutes": 2, **overrides})


def spike(h=20, at=10, value=600.0, n=1):
    f = np.zeros((n, h))
    f[:, at] = value
    return f


@pytest.mark.parametrize(
    "demand, capacity, min_demand, expected",
    [
        (0.0, 60.0, 0.5, 0),
        (0.49, 60.0, 0.5, 0),  # rounds to no invocation
        (0.5, 60.0, 0.5, 1),  # one invocation expected -> one instance
        (59.9, 60.0, 0.5, 1),
        (60.0, 60.0, 0.5, 1),  # exactly full
        (60.0000001, 60.0, 0.5, 1),  # float noise does not add an instance
        (60.1, 60.0, 0.5, 2),
        (120.0, 60.0, 0.5, 2),
        (121.0, 60.0, 0.5, 3),
        (5.0, 2.5, 0.5, 2),
        (3.0, 0.5, 0.5, 6),  # slow functions: fewer invocations than instances
        (0.3, 60.0, 0.1, 1),  # a lower threshold keeps an instance for sparse forecasts
    ],
)
def test_capacity_rounding(demand, capacity, min_demand, expected):
    assert instances_for_demand(np.array([demand]), capacity, min_demand)[0] == expected
    config = undamped(capacity_per_instance=capacity, min_demand=min_demand, lead_minutes=0, hold_minutes=0)
    plan, _ = plan_min_scale(np.full((1, 3), demand), None, config)
    assert plan.tolist() == [[expected] * 3]


@pytest.mark.parametrize(
    "user_min, max_scale, level, expected",
    [
        (0, None, 0.0, 0),
        (2, None, 0.0, 2),  # floor: never below the user's min-scale
        (2, None, 600.0, 10),
        (0, 5, 600.0, 5),  # cap: never above max-scale
        (3, 3, 600.0, 3),
        (3, 3, 0.0, 3),
        (0, 10, 600.0, 10),  # exactly at the cap
    ],
)
def test_floor_and_cap(user_min, max_scale, level, expected):
    config = undamped(user_min_scale=user_min, max_scale=max_scale)
    plan, reasons = plan_min_scale(np.full((1, 6), level), None, config)
    assert plan.tolist() == [[expected] * 6]
    if max_scale is not None and level / 60 > max_scale:
        assert reasons[0][0] == (0, f"cap max-scale {max_scale} (forecast peak 600/min at +0 min needs 10)")


@pytest.mark.parametrize(
    "lead, hold, first_up",
    [
        (0, 0, 10),
        (1, 0, 9),
        (3, 0, 7),
        (1, 2, 7),
        (5, 5, 0),
        (12, 0, 0),  # the whole horizon is inside the look-ahead
    ],
)
def test_lead_time_raises_the_plan_early_enough(lead, hold, first_up):
    config = undamped(lead_minutes=lead, hold_minutes=hold)
    plan, reasons = plan_min_scale(spike(h=20, at=10), None, config)
    expected = np.zeros(20, dtype=int)
    expected[first_up:11] = 10
    assert plan[0].tolist() == expected.tolist()
    assert reasons[0][0] == (first_up, "raise to 10 ahead of forecast peak 600/min at +10 min")
    # Instances asked for at column i are ready at i + lead: the spike minute is covered.
    assert plan[0, max(0, 10 - lead)] == 10


@pytest.mark.parametrize(
    "hysteresis, targets_per_min, expected",
    [
        (0, [540, 480, 420, 0], [9, 8, 7, 0]),
        (1, [540, 480, 420, 0], [10, 8, 8, 0]),  # -1 ignored, -2 applied, to the floor always applied
        (2, [540, 480, 420, 0], [10, 10, 7, 0]),
        (5, [300, 300, 60, 0], [10, 10, 1, 0]),
        (1, [60, 0, 0, 0], [1, 0, 0, 0]),  # 1 -> 0 is a step of 1 but goes to the floor: applied
    ],
)
def test_scale_down_hysteresis(hysteresis, targets_per_min, expected):
    config = undamped(lead_minutes=0, hold_minutes=0, scale_down_hysteresis=hysteresis)
    previous = PlanState(current=np.array([10]), minutes_since_needed=np.array([100]))
    plan, _ = plan_min_scale(np.array([targets_per_min], dtype=float), None, config, previous)
    assert plan[0].tolist() == expected


def test_hysteresis_never_blocks_a_raise_and_respects_user_floor():
    config = undamped(lead_minutes=0, hold_minutes=0, scale_down_hysteresis=3, user_min_scale=2)
    previous = PlanState(current=np.array([4]), minutes_since_needed=np.array([100]))
    forecast = np.array([[0.0, 600.0, 540.0, 0.0]])
    plan, reasons = plan_min_scale(forecast, None, config, previous)
    # 4 -> 2 is the user's floor (allowed); raise to 10 at once; 10 -> 9 held; 10 -> 2 allowed.
    assert plan[0].tolist() == [2, 10, 10, 2]
    texts = [t for _, t in reasons[0]]
    assert texts[0].startswith("lower to user min-scale 2")
    assert texts[1] == "raise to 10 ahead of forecast peak 600/min at +1 min"
    assert texts[2] == "hold 10 (hysteresis: target 9 is within 3 instance(s))"


@pytest.mark.parametrize(
    "cooldown, expected",
    [
        (0, [0, 3, 0, 0, 0, 0, 0, 0]),
        (1, [0, 3, 0, 0, 0, 0, 0, 0]),
        (3, [0, 3, 3, 3, 0, 0, 0, 0]),
        (5, [0, 3, 3, 3, 3, 3, 0, 0]),
    ],
)
def test_cooldown_delays_decreases_not_raises(cooldown, expected):
    config = undamped(lead_minutes=0, hold_minutes=0, cooldown_minutes=cooldown)
    forecast = np.zeros((1, 8))
    forecast[0, 1] = 150.0
    plan, reasons = plan_min_scale(forecast, None, config)
    assert plan[0].tolist() == expected
    if cooldown > 1:
        assert (2, f"hold 3 (cooldown {cooldown} min; forecast needs 0)") in reasons[0]


def test_flapping_forecast_is_damped_by_cooldown():
    forecast = np.tile([120.0, 0.0], 10)[None, :]
    calm = undamped(lead_minutes=0, hold_minutes=0, cooldown_minutes=4)
    raw = undamped(lead_minutes=0, hold_minutes=0)
    changes = lambda p: int(np.count_nonzero(np.diff(p[0])))
    assert changes(plan_min_scale(forecast, None, raw)[0]) == 19
    assert changes(plan_min_scale(forecast, None, calm)[0]) == 0


def test_previous_cooldown_carries_across_planning_steps():
    config = undamped(lead_minutes=1, hold_minutes=1, cooldown_minutes=4, scale_down_hysteresis=1)
    rng = np.random.default_rng(3)
    forecast = rng.choice([0.0, 30.0, 200.0, 700.0], size=(5, 40))
    whole, _ = plan_min_scale(forecast, None, config)
    state = PlanState.initial(5, config)
    pieces = []
    for start in range(0, 30, 3):
        # Each step sees the same forecast from its start on, as a replanning operator would.
        part, _, state = plan_min_scale(forecast[:, start:], None, config, state, plan_horizon=3,
                                        return_state=True)
        pieces.append(part)
    assert np.array_equal(np.concatenate(pieces, axis=1), whole[:, :30])


def test_upper_forecast_sizes_the_plan_and_rows_are_independent():
    config = undamped(lead_minutes=0, hold_minutes=0)
    point = np.array([[30.0, 30.0], [0.0, 0.0], [100.0, 100.0]])
    upper = np.array([[150.0, 30.0], [0.7, 0.0], [100.0, 100.0]])
    plan, _ = plan_min_scale(point, upper, config)
    assert plan.tolist() == [[3, 1], [1, 0], [2, 2]]
    for k in range(3):
        alone, _ = plan_min_scale(point[k: k + 1], upper[k: k + 1], config)
        assert np.array_equal(alone[0], plan[k])


@pytest.mark.parametrize("shape", [(0, 10), (3, 0), (0, 0)])
def test_empty_forecasts(shape):
    plan, reasons = plan_min_scale(np.zeros(shape), None, undamped())
    assert plan.shape == shape
    assert plan.dtype.kind == "i"
    assert reasons == [[] for _ in range(shape[0])]


def test_all_zero_forecast_goes_to_the_floor():
    config = undamped(user_min_scale=1)
    plan, reasons = plan_min_scale(np.zeros((2, 5)), None, config)
    assert plan.tolist() == [[1] * 5, [1] * 5]
    assert reasons == [[], []]  # starts at the user's floor: nothing changes
    previous = PlanState(current=np.array([4, 1]), minutes_since_needed=np.array([10, 10]))
    plan, reasons = plan_min_scale(np.zeros((2, 5)), None, config, previous)
    assert plan.tolist() == [[1] * 5, [1] * 5]
    assert reasons[0] == [(0, "lower to user min-scale 1 (forecast peak 0.0/min over the next 4 min)")]
    assert reasons[1] == []


def test_reason_names_the_peak_and_its_minute():
    forecast = np.zeros((1, 10))
    forecast[0, 4] = 150.0
    plan, reasons = plan_min_scale(forecast, None, undamped(lead_minutes=1, hold_minutes=2))
    assert reasons[0][0] == (1, "raise to 3 ahead of forecast peak 150/min at +4 min")
    assert reasons[0][1] == (5, "lower to user min-scale 0 (forecast peak 0.0/min over the next 4 min)")
    _, silent = plan_min_scale(forecast, None, undamped(), explain=False)
    assert silent == []


def test_plan_horizon_uses_the_look_ahead_past_it():
    forecast = spike(h=12, at=8)
    plan, _ = plan_min_scale(forecast, None, undamped(lead_minutes=2, hold_minutes=1), plan_horizon=5)
    assert plan.tolist() == [[0, 0, 0, 0, 0]]
    plan, _ = plan_min_scale(forecast, None, undamped(lead_minutes=2, hold_minutes=2), plan_horizon=5)
    assert plan.tolist() == [[0, 0, 0, 0, 10]]


def test_negative_model_output_counts_as_no_demand():
    plan, _ = plan_min_scale(np.array([[-0.01, 60.0]]), None, undamped(lead_minutes=0, hold_minutes=0))
    assert plan.tolist() == [[0, 1]]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"capacity_per_instance": 0}, "capacity_per_instance must be > 0"),
        ({"capacity_per_instance": float("nan")}, "capacity_per_instance must be finite"),
        ({"lead_minutes": -1}, "lead_minutes must be >= 0"),
        ({"lead_minutes": 1.5}, "lead_minutes must be an integer"),
        ({"hold_minutes": -2}, "hold_minutes must be >= 0"),
        ({"user_min_scale": -1}, "user_min_scale must be >= 0"),
        ({"max_scale": 0}, "max_scale must be >= 1"),
        ({"user_min_scale": 5, "max_scale": 3}, r"max_scale \(3\) must be >= user_min_scale \(5\)"),
        ({"scale_down_hysteresis": -1}, "scale_down_hysteresis must be >= 0"),
        ({"cooldown_minutes": True}, "cooldown_minutes must be an integer"),
        ({"quantile": 1.0}, r"quantile must be in \(0, 1\)"),
        ({"quantile": 0.0}, "quantile must be > 0"),
        ({"min_demand": 0.0}, "min_demand must be > 0"),
        ({"capacity_per_instance": "60"}, "capacity_per_instance must be a number"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PolicyConfig(**kwargs)


@pytest.mark.parametrize(
    "point, upper, previous, plan_horizon, message",
    [
        (np.zeros(5), None, None, None, "must be 2-D"),
        (np.zeros((1, 2, 3)), None, None, None, "must be 2-D"),
        (np.array([[1.0, np.nan]]), None, None, None, "NaN or infinite"),
        (np.zeros((2, 4)), np.zeros((3, 4)), None, None, "upper_forecast has 3 rows, expected 2"),
        (np.zeros((2, 4)), np.zeros((2, 5)), None, None, "upper_forecast has 5 columns"),
        (np.zeros((2, 4)), None, None, 5, r"plan_horizon \(5\) exceeds the forecast horizon \(4\)"),
        (np.zeros((2, 4)), None, PlanState(np.zeros(3, int), np.ones(3, int)), None, "previous state is for 3"),
    ],
)
def test_bad_forecasts_are_clear_errors(point, upper, previous, plan_horizon, message):
    with pytest.raises(ValueError, match=message):
        plan_min_scale(point, upper, PolicyConfig(), previous, plan_horizon=plan_horizon)


@pytest.mark.parametrize(
    "concurrency, duration_ms, utilization, expected",
    [
        (1, 1000.0, 1.0, 60.0),
        (10, 500.0, 0.7, 840.0),
        (0, 60000.0, 0.7, 70.0),  # 0 = unlimited: Knative's soft target of 100
        (4, 250.0, 0.5, 480.0),
    ],
)
def test_capacity_from_concurrency(concurrency, duration_ms, utilization, expected):
    assert capacity_from_concurrency(concurrency, duration_ms, utilization) == pytest.approx(expected)


@pytest.mark.parametrize(
    "args, message",
    [
        ((-1, 100.0), "container_concurrency must be >= 0"),
        ((1, 0.0), "duration_ms must be > 0"),
        ((1.5, 100.0), "container_concurrency must be an integer"),
        ((1, 100.0, 1.5), r"target_utilization must be in \(0, 1\]"),
    ],
)
def test_capacity_from_concurrency_errors(args, message):
    with pytest.raises(ValueError, match=message):
        capacity_from_concurrency(*args)


def test_defaults_damp_a_short_dip_without_pre_warming_early():
    # Defaults: no extra hold (pre-warm exactly `lead` ahead) and a 2-minute cooldown.
    forecast = np.array([[0.0, 0.0, 0.0, 120.0, 0.0, 0.0, 120.0, 0.0, 0.0, 0.0]])
    plan, reasons = plan_min_scale(forecast, None, PolicyConfig())
    assert plan.tolist() == [[0, 0, 2, 2, 2, 2, 2, 2, 0, 0]]
    assert (4, "hold 2 (cooldown 2 min; forecast needs 0)") in reasons[0]
    assert (2, "raise to 2 ahead of forecast peak 120/min at +3 min") in reasons[0]
    assert (8, "lower to user min-scale 0 (forecast peak 0.0/min over the next 2 min)") in reasons[0]


def test_single_function_state_round_trip_as_an_operator_would_keep_it():
    config = undamped(lead_minutes=0, hold_minutes=0, cooldown_minutes=3)
    forecast = np.array([[180.0, 0.0, 0.0, 0.0, 0.0]])
    _, _, state = plan_min_scale(forecast[:, :2], None, config, plan_horizon=2, return_state=True)
    kept = state.for_function(0)
    assert kept == {"current": 3, "minutes_since_needed": 2}
    # Next reconcile: rebuilt from the stored status, the cooldown continues where it stopped.
    plan, reasons, _ = plan_min_scale(forecast[:, 2:], None, config, PlanState.single(**kept),
                                      return_state=True)
    assert plan.tolist() == [[3, 0, 0]]
    assert reasons[0][0] == (0, "hold 3 (cooldown 3 min; forecast needs 0)")
    with pytest.raises(ValueError, match="minutes_since_needed must be >= 1"):
        PlanState.single(2, 0)


def test_per_function_capacity_sizes_each_row_as_its_own_scalar_plan():
    forecast = np.array([[0.0, 50.0, 130.0, 400.0, 0.3], [10.0, 10.0, 61.0, 0.0, 0.0], [5.0, 900.0, 0.0, 0.0, 2.0]])
    config = PolicyConfig(lead_minutes=1, cooldown_minutes=0)
    capacities = [60.0, 10.0, 300.0]
    plan, _ = plan_min_scale(forecast, None, config, capacity=capacities)
    for k, capacity in enumerate(capacities):
        alone, _ = plan_min_scale(forecast[k:k + 1], None, replace(config, capacity_per_instance=capacity))
        np.testing.assert_array_equal(plan[k], alone[0])
    assert plan[1].max() == 7  # ceil(61 / 10)


@pytest.mark.parametrize("capacity, message", [([60.0, 60.0], "one per function (3)"), ([60.0, -1.0, 2.0], "finite and > 0"),
                                               (0.0, "capacity must be > 0")])
def test_bad_per_function_capacity_in_the_plan(capacity, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        plan_min_scale(np.ones((3, 4)), None, PolicyConfig(), capacity=capacity)


def test_newsvendor_level_is_the_critical_fractile():
    from mesp_core.policy import DEFAULT_COLD_START_COST, newsvendor_level
    assert newsvendor_level(1.0) == 0.5
    assert newsvendor_level(9.0) == pytest.approx(0.9)
    assert 0.9 < newsvendor_level(DEFAULT_COLD_START_COST) < 0.95
    for bad in (0, -1.0, float("nan"), float("inf"), "10", True):
        with pytest.raises(ValueError, match="cold_start_cost"):
            newsvendor_level(bad)


def test_newsvendor_level_minimises_expected_cost_brute_force():
    # Demand in instances from a known discrete distribution: the floor at the level's quantile has
    # the least expected cost (C per instance short, 1 per instance idle) among all integer floors.
    from mesp_core.policy import newsvendor_level
    rng = np.random.default_rng(3)
    for cost in (0.5, 2.0, 9.0, 30.0):
        support = np.arange(8)
        p = rng.dirichlet(np.ones(8))
        expected = [sum(pk * (cost * max(d - f, 0) + max(f - d, 0)) for d, pk in zip(support, p))
                    for f in support]
        level = newsvendor_level(cost)
        quantile_floor = int(support[np.searchsorted(np.cumsum(p), level)])
        assert expected[quantile_floor] == pytest.approx(min(expected))


def test_plan_from_instances_is_plan_min_scale_on_a_target_in_instances():
    """A floor stage's target goes through the same user floor, cap and damping as a forecast
    whose every minute needs exactly that many instances (no lead or hold window)."""
    target = np.array([[0, 3, 7, 2, 2, 0, 5, 1]])
    config = PolicyConfig(capacity_per_instance=10.0, lead_minutes=0, hold_minutes=0, user_min_scale=1, max_scale=6,
                          scale_down_hysteresis=1, cooldown_minutes=2)
    plan, reasons, state = plan_from_instances(target, config, return_state=True)
    same, _, same_state = plan_min_scale(target * 10.0, None, config, return_state=True)
    np.testing.assert_array_equal(plan, same)
    np.testing.assert_array_equal(state.current, same_state.current)
    assert plan.tolist() == [[1, 3, 6, 6, 2, 2, 5, 5]]  # floor, cap, then held decreases in the cooldown
    assert [text for _, text in reasons[0]][:2] == ["raise to 3 (learned floor needs 3)",
                                                    "cap max-scale 6 (learned floor needs 7)"]
    # hold_minutes keeps each column at the target's peak over [i, i + hold] (the lead is the target's own).
    held = plan_from_instances(np.array([[0, 0, 4, 0, 0]]), replace(config, hold_minutes=1, cooldown_minutes=0,
                                                                    scale_down_hysteresis=0), explain=False)[0]
    assert held.tolist() == [[1, 4, 4, 1, 1]]


@pytest.mark.parametrize("target, message", [
    (np.array([1, 2]), "2-D"),
    (np.array([[1.5, 2.0]]), "whole numbers"),
    (np.array([[np.nan, 2.0]]), "whole numbers"),
    (np.array([[-1, 2]]), ">= 0"),
])
def test_plan_from_instances_refuses_bad_targets(target, message):
    with pytest.raises(ValueError, match=message):
        plan_from_instances(target)
