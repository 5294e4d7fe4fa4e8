"""The replay engine (mesp_core.replay.simulate): the recurrence by hand, lead times, what policies may
see, per-function capacities, and clear errors for bad input."""

import json
import re

import numpy as np
import pytest

from mesp_core.policy import PolicyConfig
from mesp_core.replay.baselines import FixedKeepAlivePolicy, HybridHistogramPolicy, OraclePolicy
from mesp_core.replay.policies import KNATIVE_DEFAULT, ForecastFloorPolicy, Policy, demand_instances
from mesp_core.replay.report import format_table
from mesp_core.replay.simulate import replay_floors, simulate

from .support import all_policies, all_policy_kinds, periodic_trace, random_trace, repeat_period, totals


def test_knative_default_and_keep_alive_by_hand():
    counts = np.array([[0, 5, 0, 0, 0, 5, 5, 0, 0, 0]], dtype=np.float32)
    report = simulate(counts, {"ka4": FixedKeepAlivePolicy(4)}, start_minute=1, lead_minutes=0, progress=False)
    # Knative keeps 2 minutes: cold at 1 and 5 (gap of 4), warm at 6; idle at 2, 3, 7, 8.
    assert totals(report, KNATIVE_DEFAULT) == (2, 4)
    # Keep-alive 4 bridges the gap: only minute 1 is cold; idle 2-4 and 7-9.
    assert totals(report, "ka4") == (1, 6)
    r = report.result(KNATIVE_DEFAULT)
    assert r.cold_start_rate == pytest.approx(2 / 3)
    assert r.cold_minute_rate == pytest.approx(2 / 3)
    assert report.result("ka4").cold_vs_default == pytest.approx(0.5)
    assert report.result("ka4").idle_vs_default == pytest.approx(1.5)
    assert report.totals["demand_instance_minutes"] == 3


@pytest.mark.parametrize(
    "floor_settings, lead, keep_warm, expected_cold, expected_idle",
    [
        ([0, 0, 0, 2], 2, 0, [0, 0, 0, 2], [0, 0, 0, 0]),  # asked too late: both instances cold
        ([0, 2, 2, 2], 2, 0, [0, 0, 0, 0], [0, 2, 2, 0]),  # asked lead minutes ahead: ready, starting costs
        ([0, 0, 2, 2], 2, 0, [0, 0, 0, 2], [0, 0, 2, 0]),  # one minute short of the lead
        ([0, 0, 2, 2], 1, 0, [0, 0, 0, 0], [0, 0, 2, 0]),
        ([0, 0, 1, 1], 1, 0, [0, 0, 0, 1], [0, 0, 1, 0]),  # floor below demand: the rest is cold
        ([0, 0, 0, 0], 0, 3, [0, 0, 0, 2], [0, 0, 0, 0]),
    ],
)
def test_replay_recurrence_lead_time(floor_settings, lead, keep_warm, expected_cold, expected_idle):
    demand = np.array([[0, 0, 0, 0, 2]])
    floors = np.array([[floor_settings]])
    cold, idle, _ = replay_floors(demand, floors, start_minute=1, keep_warm_minutes=keep_warm,
                                  lead_minutes=lead)
    assert cold[0, 0].tolist() == expected_cold
    assert idle[0, 0].tolist() == expected_idle


def test_floor_keeps_warm_instances_without_waiting_for_the_lead():
    # Demand of 3 at minute 1; a floor of 3 from minute 2 keeps those instances (no start-up needed).
    demand = np.array([[0, 3, 0, 0, 3]])
    floors = np.array([[[0, 3, 3, 3]]])
    cold, idle, _ = replay_floors(demand, floors, start_minute=1, keep_warm_minutes=0, lead_minutes=5)
    assert cold[0, 0].tolist() == [3, 0, 0, 0]
    assert idle[0, 0].tolist() == [0, 3, 3, 0]


@pytest.mark.parametrize("replan_every", [1, 5])
def test_no_policy_sees_the_future(replan_every):
    counts = random_trace(n=30, T=300, seed=1)
    changed = counts.copy()
    cut = 203
    changed[:, cut:] = np.random.default_rng(9).poisson(50.0, size=changed[:, cut:].shape)
    runs = []
    for trace in (counts, changed):
        report = simulate(trace, all_policy_kinds(repeat_period(60)), start_minute=150,
                          replan_every=replan_every, progress=False, record_settings=True)
        runs.append(report.recorded_settings)
    for name in ("ka10", "hybrid", "point", "q0.9"):
        before_cut = slice(0, cut - 150)
        assert np.array_equal(runs[0][name][:, before_cut], runs[1][name][:, before_cut]), name
        # The change is visible afterwards (the comparison can fail).
        assert not np.array_equal(runs[0][name], runs[1][name]), name


def test_forecasters_receive_only_the_past():
    counts = random_trace(n=5, T=200, seed=2)
    seen = []

    def spy(contexts, horizon):
        ctx = np.asarray(contexts)
        seen.append(ctx.copy())
        return np.zeros((ctx.shape[0], horizon))

    simulate(counts, {"spy": ForecastFloorPolicy(spy)}, start_minute=150, lead_minutes=1, replan_every=7,
             context_minutes=64, progress=False)
    # Planning starts `lead` minutes before counting; each context ends at the minute before it.
    plan_minutes = list(range(149, 200, 7))
    assert len(seen) == len(plan_minutes)
    for t, ctx in zip(plan_minutes, seen):
        assert ctx.shape == (5, 64)
        assert np.array_equal(ctx, counts[:, t - 64: t])


def test_history_is_read_only_for_policies():
    class Tamper(Policy):
        def plan(self, step):
            step.history[:, -1] = 0
            return np.zeros((step.history.shape[0], step.steps), dtype=int)

    with pytest.raises(ValueError, match="read-only"):
        simulate(random_trace(n=3, T=50), {"tamper": Tamper()}, start_minute=20, progress=False)


def test_replan_every_and_horizon_are_honoured():
    counts = periodic_trace(n=2, T=400, period=10, value=60.0)
    calls = []
    point = repeat_period(10)

    def counting(contexts, horizon):
        calls.append(horizon)
        return point(contexts, horizon)

    report = simulate(counts, {"f": ForecastFloorPolicy(counting, config=PolicyConfig(hold_minutes=0))},
                      start_minute=100, replan_every=10, horizon=30, progress=False)
    # Planning at minutes 99, 109, ..., 399 (from `lead` minutes before the start).
    assert len(calls) == 31 and set(calls) == {30}
    assert report.result("f").cold_starts == 0
    assert report.settings["replan_every"] == 10


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"trace_counts": np.zeros(10)}, "must be 2-D"),
        ({"trace_counts": -np.ones((2, 10))}, "negative"),
        ({"trace_counts": np.full((2, 10), np.nan)}, "NaN"),
        ({"start_minute": 0}, "start_minute must be >= 2"),
        ({"start_minute": 3, "lead_minutes": 3}, "start_minute must be >= 4"),  # the oracle could not be ready
        ({"end_minute": 500}, r"end_minute \(500\) is past the end of the trace"),
        ({"start_minute": 50, "end_minute": 50}, "end_minute must be >= 51"),
        ({"replan_every": 0}, "replan_every must be >= 1"),
        ({"replan_every": 5, "horizon": 3}, "horizon must be >= 5"),
        ({"policies": {"f": ForecastFloorPolicy(lambda c, h: np.zeros((4, h)), config=PolicyConfig(hold_minutes=2))},
          "replan_every": 5, "horizon": 7}, r"horizon 7 is too short: each plan is sized from 8 forecast minutes"),
        ({"capacity_per_instance": 0.0}, "capacity_per_instance must be > 0"),
        ({"policies": {}}, "no policies"),
        ({"policies": {"x": object()}}, "not a mesp_core.replay.policies.Policy"),
        ({"policies": {"bad": ForecastFloorPolicy(lambda c, h: np.zeros((1, h)))}},
         r"returned shape \(1, 2\), expected \[4, 2\]"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs, message):
    args = {"trace_counts": np.ones((4, 100)), "policies": {"ka": FixedKeepAlivePolicy(10)},
            "start_minute": 50, "progress": False}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        simulate(**args)


@pytest.mark.parametrize("shape, start", [((0, 100), 50), ((1, 3), 2), ((3, 100), 99)])
def test_empty_and_idle_traces_give_zeros_not_errors(shape, start):
    zeros = lambda contexts, horizon: np.zeros((np.asarray(contexts).shape[0], horizon))
    policies = {"ka": FixedKeepAlivePolicy(10), "hybrid": HybridHistogramPolicy(),
                "forecast": ForecastFloorPolicy(zeros), "oracle": OraclePolicy()}
    report = simulate(np.zeros(shape), policies, start_minute=start, progress=False)
    for r in report.results:
        assert (r.cold_starts, r.idle_instance_minutes, r.cold_start_rate) == (0, 0, 0.0)
        assert r.cold_vs_default == r.idle_vs_default == 1.0
        assert r.coverage_busy is None
    json.loads(report.to_json())
    assert "forecast" in format_table(report)


def test_per_function_capacity_replays_each_function_as_if_alone():
    counts = random_trace(n=6, T=300, seed=3) * 7
    capacities = [60.0, 5.0, 500.0, 1.5, 60.0, 20.0]
    together = simulate(counts, all_policies(repeat_period(30)), 200, capacity_per_instance=capacities,
                        replan_every=3, progress=False)
    assert together.settings["capacity_per_instance"] is None
    assert together.settings["capacity_per_function"] == {"min": 1.5, "median": 40.0, "max": 500.0}
    for k, capacity in enumerate(capacities):
        alone = simulate(counts[k:k + 1], all_policies(repeat_period(30)), 200, capacity_per_instance=capacity,
                         replan_every=3, progress=False)
        np.testing.assert_array_equal(together.per_function_cold[:, k], alone.per_function_cold[:, 0])
        np.testing.assert_array_equal(together.per_function_idle[:, k], alone.per_function_idle[:, 0])
    demand = demand_instances(counts[:, 200:], np.asarray(capacities)[:, None]).sum()
    assert together.totals["demand_instance_minutes"] == demand
    json.loads(together.to_json())


@pytest.mark.parametrize(
    "capacity, message",
    [
        ([60.0, 60.0], "one per function (3)"),
        ([60.0, 0.0, 60.0], "function 1 has 0.0"),
        ([60.0, float("nan"), 60.0], "finite and > 0"),
        ([[60.0, 60.0, 60.0]], "one per function"),
        (["a", "b", "c"], "one number per function"),
    ],
)
def test_bad_per_function_capacity(capacity, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        simulate(random_trace(n=3, T=100), {"floor": ForecastFloorPolicy(repeat_period(10))}, 50,
                 capacity_per_instance=capacity, progress=False)


def test_keep_warm_longer_than_the_trace_and_a_default_without_idle():
    counts = np.zeros((2, 60))
    counts[:, [5, 40]] = 30.0
    report = simulate(counts, {"ka": FixedKeepAlivePolicy(10)}, start_minute=30, keep_warm_minutes=70, progress=False)
    assert report.result(KNATIVE_DEFAULT).cold_starts == 0  # warm since minute 5: 70 minutes reach past the end
    # Without Knative's own keep-warm the default has no idle at all: "vs default" is infinite, and
    # null in JSON (which has no infinity).
    report = simulate(counts, {"ka": FixedKeepAlivePolicy(10)}, start_minute=30, keep_warm_minutes=0, progress=False)
    assert report.result("ka").idle_vs_default == float("inf")
    ka = next(p for p in json.loads(report.to_json())["policies"] if p["name"] == "ka")
    assert ka["idle_vs_default"] is None and ka["idle_instance_minutes"] > 0


def test_replaying_functions_in_blocks_changes_nothing(monkeypatch):
    import mesp_core.replay.simulate as engine

    counts = random_trace(n=11, T=240, seed=8)

    def policies():  # fresh policy state for each run
        return all_policy_kinds(repeat_period(30))

    whole = simulate(counts, policies(), start_minute=120, progress=False)
    monkeypatch.setattr(engine, "_REPLAY_BLOCK", 4)  # 11 functions: blocks of 4, 4 and 3
    blocked = simulate(counts, policies(), start_minute=120, progress=False)
    np.testing.assert_array_equal(blocked.per_function_cold, whole.per_function_cold)
    np.testing.assert_array_equal(blocked.per_function_idle, whole.per_function_idle)
    assert blocked.to_dict() == whole.to_dict()
