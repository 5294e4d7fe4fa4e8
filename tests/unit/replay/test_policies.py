"""Floor policies (mesp_core.replay.policies): demand in instances, and MESP's forecast floor."""

import numpy as np
import pytest

from mesp_core.policy import PolicyConfig
from mesp_core.replay.baselines import FixedKeepAlivePolicy, OraclePolicy
from mesp_core.replay.policies import KNATIVE_DEFAULT, ForecastFloorPolicy, demand_instances
from mesp_core.replay.simulate import simulate

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
