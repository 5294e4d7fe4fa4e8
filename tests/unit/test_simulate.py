"""The cold-start replay (mesp_core.replay.simulate) and its baselines (mesp_core.replay.baselines)."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mesp_core.replay.baselines import FixedKeepAlivePolicy, HybridHistogramPolicy, OraclePolicy
from mesp_core.policy import PolicyConfig
from mesp_core.replay.policies import ForecastFloorPolicy, KNATIVE_DEFAULT, NoFloorPolicy, Policy, demand_instances
from mesp_core.replay.report import PolicyResult, compare_curves, format_table, plot_tradeoff
from mesp_core.replay.simulate import replay_floors, simulate
from mesp_core.replay.standard import capacities_from_durations, model_forecasters, run_replay


def repeat_period(period):
    """Seasonal-naive forecaster in numpy: the last `period` minutes, repeated."""

    def forecast(contexts, horizon):
        ctx = np.asarray(contexts, dtype=np.float64)
        reps = -(-horizon // period)
        return np.tile(ctx[:, -period:], reps)[:, :horizon]

    return forecast


def scaled_quantile(point):
    def forecast(contexts, horizon, q):
        return point(contexts, horizon) * (0.5 + q)

    return forecast


def periodic_trace(n=1, T=1440, period=30, value=5.0, phase=0):
    counts = np.zeros((n, T), dtype=np.float32)
    counts[:, phase::period] = value
    return counts


def random_trace(n=40, T=400, seed=0):
    rng = np.random.default_rng(seed)
    rate = rng.lognormal(0.0, 2.0, size=(n, 1)) * (1 + np.sin(np.arange(T) / 40.0))[None, :]
    counts = rng.poisson(rate).astype(np.float32)
    counts[: n // 4] *= rng.random((n // 4, T)) < 0.1  # a quarter sparse
    return counts


def totals(report, name):
    r = report.result(name)
    return r.cold_starts, r.idle_instance_minutes


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


def test_oracle_is_a_lower_bound_on_cold_starts():
    counts = random_trace(seed=4)
    report = simulate(counts, {"oracle": OraclePolicy(), "ka20": FixedKeepAlivePolicy(20)},
                      start_minute=100, lead_minutes=2, progress=False)
    assert report.result("oracle").cold_starts == 0
    assert report.result(KNATIVE_DEFAULT).cold_starts > 0
    # The oracle never holds less than Knative does, only earlier: its idle cost >= the default's.
    assert report.result("oracle").idle_instance_minutes >= report.result(KNATIVE_DEFAULT).idle_instance_minutes


def test_hybrid_histogram_prewarms_a_regular_function():
    counts = periodic_trace(n=1, T=1440, period=30, value=3.0)  # idle time 29 minutes, always
    hybrid = HybridHistogramPolicy()
    report = simulate(counts, {"hybrid": hybrid, "ka20": FixedKeepAlivePolicy(20)}, start_minute=720,
                      progress=False)
    assert hybrid.uses_histogram.tolist() == [True]
    # Pre-warm at 0.9 * 29 = 26 (asked 1 minute earlier), keep to 1.1 * 30 = 33: every start warm.
    assert int(hybrid._prewarm[0]) == 26 and int(hybrid._window_end[0]) == 33
    assert report.result("hybrid").cold_starts == 0
    assert report.result("ka20").cold_starts == report.result(KNATIVE_DEFAULT).cold_starts == 24
    assert report.result("hybrid").idle_instance_minutes < report.result("ka20").idle_instance_minutes


@pytest.mark.parametrize(
    "counts_row, expect_histogram",
    [
        ([0] * 700 + [1] + [0] * 19, False),  # too few idle times: fall back to keep-alive
        ([1 if m % 7 == 0 or m % 11 == 0 else 0 for m in range(720)], True),
        ([1 if (m * m) % 13 == 0 else 0 for m in range(720)], True),
    ],
)
def test_hybrid_histogram_fallback(counts_row, expect_histogram):
    counts = np.array([counts_row + [0] * 60], dtype=np.float32)
    hybrid = HybridHistogramPolicy(min_samples=10)
    simulate(counts, {"hybrid": hybrid}, start_minute=720, progress=False)
    assert hybrid.uses_histogram.tolist() == [expect_histogram]


def test_hybrid_fallback_keeps_the_function_for_the_histogram_range():
    row = np.zeros(800, dtype=np.float32)
    row[[100, 500]] = 1.0
    hybrid = HybridHistogramPolicy(fallback_keep_alive_minutes=240)
    record = simulate(row[None, :], {"hybrid": hybrid}, start_minute=501, end_minute=800,
                      progress=False, record_settings=True).recorded_settings["hybrid"]
    # Minutes 501..740 follow the invocation at 500 by fewer than 240 idle minutes; 741.. do not.
    assert record[0, : 741 - 501].min() == 1 and record[0, 741 - 501:].max() == 0


def all_policy_kinds(point):
    return {
        "ka10": FixedKeepAlivePolicy(10),
        "hybrid": HybridHistogramPolicy(min_samples=3),
        "point": ForecastFloorPolicy(point, config=PolicyConfig(cooldown_minutes=3)),
        "q0.9": ForecastFloorPolicy(quantile_forecaster=scaled_quantile(point), quantile=0.9, group="sweep"),
    }


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


def test_report_table_json_and_plot(tmp_path):
    counts = random_trace(n=20, T=300, seed=3)
    point = repeat_period(60)
    policies = all_policy_kinds(point)
    policies["q0.5"] = ForecastFloorPolicy(quantile_forecaster=scaled_quantile(point), quantile=0.5, group="sweep")
    policies["oracle"] = OraclePolicy()
    report = simulate(counts, policies, start_minute=150, progress=False)
    table = format_table(report)
    for name in (KNATIVE_DEFAULT, "ka10", "hybrid", "point", "q0.9", "q0.5", "oracle"):
        assert name in table
    data = json.loads(report.to_json())
    assert [p["name"] for p in data["policies"]][0] == KNATIVE_DEFAULT
    assert data["policies"][0]["cold_vs_default"] == 1.0
    assert data["totals"]["functions"] == 20 and data["totals"]["minutes"] == 150
    assert data["cold_start_rate_definition"] == "cold starts / demanded instance-minutes"
    png = tmp_path / "tradeoff.png"
    plot_tradeoff(report, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


class LagModel:
    """A small real forecaster with the loaded-model interface: seasonal lags per approach."""

    lags = {"naive": 60, "dense": 30, "moe": 10}
    manifest = {"input_size": 120}

    def __init__(self):
        self.calls = []

    def forecast(self, context, horizon, approach="moe"):
        self.calls.append(("forecast", approach, np.asarray(context).shape[1]))
        return repeat_period(self.lags[approach])(context, horizon)

    def forecast_quantile(self, context, horizon, q=0.9, approach="moe"):
        self.calls.append(("quantile", approach, q))
        return self.forecast(context, horizon, approach) * (0.5 + q)


def test_run_replay_builds_the_standard_policy_set():
    model = LagModel()
    counts = periodic_trace(n=4, T=1600, period=10, value=90.0)
    report = run_replay(model, counts, start_minute=1500, quantiles=(0.5, 0.9), progress=False)
    names = [r.name for r in report.results]
    assert names == [KNATIVE_DEFAULT, "keep-alive 10 min", "keep-alive 20 min", "hybrid histogram",
                     "seasonal naive", "dense", "MESP MoE", "MESP MoE q=0.5", "MESP MoE q=0.9", "oracle"]
    assert {c[1] for c in model.calls} == {"naive", "dense", "moe"}
    assert {c[2] for c in model.calls if c[0] == "quantile"} == {0.5, 0.9}
    # Context: the model's input size, at least a day.
    assert {c[2] for c in model.calls if c[0] == "forecast"} == {1440}
    assert report.result("MESP MoE").cold_starts == 0  # lag 10 is this trace's period
    assert report.result("MESP MoE q=0.9").group == "MESP MoE"


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


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: FixedKeepAlivePolicy(0), "keep-alive minutes must be >= 1"),
        (lambda: HybridHistogramPolicy(head_percentile=99, tail_percentile=5), "head_percentile < tail_percentile"),
        (lambda: HybridHistogramPolicy(margin=1.0), r"margin must be in \[0, 1\)"),
        (lambda: ForecastFloorPolicy(), "give a forecaster"),
        (lambda: ForecastFloorPolicy(quantile=0.9), "together"),
        (lambda: ForecastFloorPolicy(quantile_forecaster=lambda c, h, q: c, quantile=1.5), "quantile must be in"),
        (lambda: model_forecasters(LagModel(), "bogus"), "approach must be"),
        (lambda: run_replay(LagModel(), np.ones((2, 100)), start_minute=50, quantiles=(1.0,)), "quantiles must be in"),
    ],
)
def test_bad_policy_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


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


def _result(name, cold_rate, idle, group=None, quantile=None):
    return PolicyResult(name=name, cold_starts=0, cold_start_rate=cold_rate, cold_minutes=0, cold_minute_rate=0.0,
                        idle_instance_minutes=idle, warm_instance_minutes=idle, cold_vs_default=1.0,
                        idle_vs_default=1.0, p75_function_cold_rate=0.0, changes_per_hour=0.0,
                        group=group, quantile=quantile)


def test_curve_is_read_off_at_each_policys_idle_and_cold_rate():
    results = [
        _result("knative default", 0.10, 100),
        _result("keep-alive 10 min", 0.03, 500),
        _result("curve q=0.5", 0.04, 300, "curve", 0.5),
        _result("curve q=0.9", 0.02, 700, "curve", 0.9),
        _result("curve", 0.05, 250, "curve"),  # the group's point floor: not a curve point, not compared
        _result("oracle", 0.0, 50),
    ]
    by_policy = {c["policy"]: c for c in compare_curves(results)}
    assert set(by_policy) == {"knative default", "keep-alive 10 min"}
    keep_alive = by_policy["keep-alive 10 min"]
    assert keep_alive["curve_cold_start_rate_at_same_idle"] == pytest.approx(0.03)  # halfway 300..700
    assert keep_alive["curve_idle_at_same_cold_start_rate"] == pytest.approx(500)
    # Outside the curve's range nothing is extrapolated.
    assert by_policy["knative default"]["curve_cold_start_rate_at_same_idle"] is None
    assert by_policy["knative default"]["curve_idle_at_same_cold_start_rate"] is None
    # A single quantile point is no curve.
    assert compare_curves([results[0], results[2]]) == []


# ---------------------------------------------------------------- per-function capacity
SHARED_ORIGINAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "azure2019" / "original-schema"


def all_policies(point):
    return {
        "keep-alive 10": FixedKeepAlivePolicy(10),
        "hybrid": HybridHistogramPolicy(),
        "floor": ForecastFloorPolicy(point),
        "floor q": ForecastFloorPolicy(quantile_forecaster=scaled_quantile(point), quantile=0.9),
        "oracle": OraclePolicy(),
    }


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


def test_capacities_from_durations_uses_each_functions_mean_duration():
    durations = pd.DataFrame({
        "HashOwner": ["o", "o", "o", "o"], "HashApp": ["a", "a", "a", "a"],
        "HashFunction": ["fast", "slow", "slow", "zero"], "Average": [100.0, 1000.0, 3000.0, 0.0],
    })
    keys = [("o", "a", "fast"), ("o", "a", "slow"), ("o", "a", "zero"), ("o", "a", "absent")]
    caps, derived = capacities_from_durations(keys, durations, container_concurrency=2, target_utilization=0.5, default=7.0)
    assert derived == 2
    # 2 requests at a time x 0.5 utilisation x 60,000 ms per minute / mean duration (two days average to 2,000 ms)
    np.testing.assert_allclose(caps, [600.0, 30.0, 7.0, 7.0])
    unlimited, _ = capacities_from_durations(keys[:1], durations)
    assert unlimited[0] == pytest.approx(100 * 0.7 * 60_000 / 100.0)  # Knative's soft target of 100
    with pytest.raises(ValueError, match="container_concurrency"):
        capacities_from_durations(keys, durations, container_concurrency=-1)


@pytest.mark.skipif(not SHARED_ORIGINAL.exists(), reason="the shared Azure files are not beside the checkout")
def test_capacities_from_the_real_duration_file():
    from mesp_core.data.reader import read_invocations
    from mesp_core.data.tables import read_durations

    trace = read_invocations(SHARED_ORIGINAL / "invocations_per_function_md.top10.csv")
    durations = read_durations(SHARED_ORIGINAL / "function_durations_percentiles.top10.csv")
    caps, derived = capacities_from_durations(trace.keys, durations, container_concurrency=1)
    assert derived == 10
    by_key = dict(zip(zip(durations.HashOwner, durations.HashApp, durations.HashFunction), durations.Average))
    expected = [0.7 * 60_000 / by_key[key] for key in trace.keys]
    np.testing.assert_allclose(caps, expected)
    report = simulate(trace.counts, {"floor": ForecastFloorPolicy(repeat_period(60))}, 720,
                      capacity_per_instance=caps, replan_every=10, progress=False)
    assert report.totals["demand_instance_minutes"] == demand_instances(trace.counts[:, 720:], caps[:, None]).sum()


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
