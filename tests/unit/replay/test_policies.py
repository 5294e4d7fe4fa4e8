"""Floor policies (mesp_core.replay.policies): demand in instances, and MESP's forecast floor."""

import numpy as np
import pytest

from mesp_core.policy import PolicyConfig
from mesp_core.replay.baselines import FixedKeepAlivePolicy, OraclePolicy
from mesp_core.replay.policies import KNATIVE_DEFAULT, ForecastFloorPolicy, demand_instances
from mesp_core.replay.simulate import simulate

from . import support
from .support import periodic_trace, random_trace, repeat_period, scaled_quantile


@pytest.mark.parametrize(
    "counts, capacity, expected",
    [
        ([0, 1, 59, 60, 61, 600, 0.5], 60.0, [0, 1, 1, 1, 2, 10, 1]),
        ([3, 0], 0.5, [6, 0]),
        ([4_200_001, 4_200_000, 1], 4.2e6, [2, 1, 1]),  # exact at any capacity (unlimited concurrency)
    ],
)
def test_demand_instances(counts, capacity, expected):
    assert demand_instances(np.array([counts]), capacity).tolist() == [expected]


def test_forecast_floor_removes_cold_starts_of_a_periodic_function():
    counts = periodic_trace(n=3, T=600, period=10, value=120.0)  # 2 instances every 10 minutes
    point = repeat_period(10)
    policies = {
        "ka10": FixedKeepAlivePolicy(10),
        "forecast": ForecastFloorPolicy(point, config=PolicyConfig(hold_minutes=0)),
        "oracle": OraclePolicy(),
    }
    for lead in (1, 3):
        # End before the next spike so no policy pre-warms for a minute the replay does not count.
        report = simulate(counts, policies, start_minute=100, end_minute=595, lead_minutes=lead,
                          progress=False)
        assert report.result(KNATIVE_DEFAULT).cold_starts == 3 * 50 * 2
        assert report.result("forecast").cold_starts == 0
        assert report.result("forecast").coverage == report.result("forecast").coverage_busy == 1.0
        assert report.result("oracle").cold_starts == 0
        assert report.result("oracle").coverage is None
        # Pre-warming costs only the lead time per spike, far less than keeping warm for 10 minutes.
        assert report.result("forecast").idle_instance_minutes == report.result("oracle").idle_instance_minutes
        assert report.result("forecast").idle_instance_minutes < report.result("ka10").idle_instance_minutes


def test_forecast_curve_moves_along_the_trade_off():
    counts = random_trace(n=60, T=500, seed=5)
    point = repeat_period(60)
    quantile = scaled_quantile(point)
    policies = {f"q{q}": ForecastFloorPolicy(quantile_forecaster=quantile, quantile=q, group="sweep")
                for q in (0.1, 0.5, 0.9)}
    report = simulate(counts, policies, start_minute=200, progress=False)
    idle = [report.result(f"q{q}").idle_instance_minutes for q in (0.1, 0.5, 0.9)]
    cold = [report.result(f"q{q}").cold_starts for q in (0.1, 0.5, 0.9)]
    assert idle == sorted(idle) and idle[0] < idle[-1]
    assert cold == sorted(cold, reverse=True) and cold[0] > cold[-1]
    coverage = [report.result(f"q{q}").coverage_busy for q in (0.1, 0.5, 0.9)]
    assert coverage == sorted(coverage) and 0.0 < coverage[0] < coverage[-1] < 1.0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ForecastFloorPolicy(), "give a forecaster"),
        (lambda: ForecastFloorPolicy(quantile=0.9), "together"),
        (lambda: ForecastFloorPolicy(quantile_forecaster=lambda c, h, q: c, quantile=1.5), "quantile must be in"),
    ],
)
def test_bad_policy_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_demand_instances_takes_one_capacity_per_function_as_a_column():
    counts = np.array([[0, 30, 31, 90], [0, 30, 31, 90]])
    np.testing.assert_array_equal(demand_instances(counts, np.array([[30.0], [10.0]])), [[0, 1, 2, 3], [0, 3, 4, 9]])


def test_a_planning_step_sees_the_trailing_context_and_shares_each_forecast(rng):
    from mesp_core.replay.policies import PlanningStep

    history = rng.poisson(5.0, size=(2, 30)).astype(np.float32)
    calls = []

    def spy(contexts, horizon):
        calls.append(np.asarray(contexts).shape)
        return np.ones((2, horizon + 5))  # longer than asked: cut to the horizon

    cache = {}
    step = PlanningStep(30, 1, history, support.replay_settings(context_minutes=12), cache)
    np.testing.assert_array_equal(step.contexts(), history[:, -12:])
    first = step.forecast(spy, 4)
    again = PlanningStep(30, 1, history, support.replay_settings(context_minutes=12), cache).forecast(spy, 4)
    assert calls == [(2, 12)] and first.shape == (2, 4) and again is first  # one call per step and horizon
    step.forecast(spy, 6)
    assert len(calls) == 2
    assert PlanningStep(30, 1, history, support.replay_settings(), {}).contexts() is history  # no limit: all of it


@pytest.mark.parametrize(
    "output, message",
    [
        (np.ones((2, 3)), r"returned shape \(2, 3\), expected \[2, 4\]"),
        (np.ones((3, 4)), r"returned shape \(3, 4\), expected \[2, 4\]"),
        (np.ones(8), r"returned shape \(8,\)"),
        (np.full((2, 4), np.nan), "returned NaN or infinite values"),
    ],
)
def test_a_forecaster_that_returns_the_wrong_thing_is_named(output, message):
    from mesp_core.replay.policies import PlanningStep

    step = PlanningStep(30, 1, np.ones((2, 30)), support.replay_settings(), {})
    with pytest.raises(ValueError, match=message):
        step.forecast(lambda contexts, horizon: output, 4)


def test_no_floor_is_zero_everywhere():
    from mesp_core.replay.policies import NoFloorPolicy, PlanningStep

    plan = NoFloorPolicy().plan(PlanningStep(30, 5, np.full((3, 30), 100.0), support.replay_settings(n=3), {}))
    assert plan.shape == (3, 5) and not plan.any()


def test_coverage_is_the_share_of_minutes_at_or_below_the_forecast_sized_from():
    counts = random_trace(n=8, T=200, seed=6)
    level = 3.0

    def flat(contexts, horizon):
        return np.full((np.asarray(contexts).shape[0], horizon), level)

    policy = ForecastFloorPolicy(flat)
    result = simulate(counts, {"flat": policy}, start_minute=100, progress=False).result("flat")
    counted = counts[:, 100:]
    assert result.coverage == pytest.approx(np.mean(counted <= level))
    assert result.coverage_busy == pytest.approx(np.mean(counted[counted > 0] <= level))
    assert policy.predicted.shape == (8, 101) and np.all(policy.predicted[:, 1:] == level)  # from plan_from = 99
