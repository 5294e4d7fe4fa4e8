"""The standard comparison (mesp_core.replay.standard): a model's forecasts beside every baseline, and
per-function capacities from the duration files."""

import numpy as np
import pandas as pd
import pytest

from mesp_core.policy import PolicyConfig
from mesp_core.replay.baselines import FixedKeepAlivePolicy, HybridHistogramPolicy, OraclePolicy
from mesp_core.replay.policies import KNATIVE_DEFAULT, ForecastFloorPolicy, NoFloorPolicy, demand_instances
from mesp_core.replay.simulate import simulate
from mesp_core.replay.cheap_choice import CheapChoicePolicy
from mesp_core.replay.standard import (
    CURVE_COSTS,
    capacities_from_durations,
    mesp_policy,
    model_forecasters,
    run_replay,
    standard_policies,
)

from ..paths import SHARED_AZURE
from .support import LagModel, periodic_trace, repeat_period

SHARED_ORIGINAL = SHARED_AZURE / "original-schema"


def test_run_replay_builds_the_standard_policy_set():
    model = LagModel()
    counts = periodic_trace(n=4, T=1600, period=10, value=90.0)
    report = run_replay(model, counts, start_minute=1500, quantiles=(0.5, 0.9), cold_start_costs=(1, 4),
                        progress=False)
    names = [r.name for r in report.results]
    assert names == [KNATIVE_DEFAULT, "keep-alive 10 min", "keep-alive 20 min", "hybrid histogram",
                     "seasonal naive", "dense", "MESP MoE", "MESP MoE q=0.5", "MESP MoE q=0.9",
                     "MESP C=1", "MESP C=4", "cheap choice C=1", "cheap choice C=4", "oracle"]
    assert {c[1] for c in model.calls} == {"naive", "dense", "moe"}
    # The cost sweep sizes MESP at the critical fractile C / (1 + C).
    assert {c[2] for c in model.calls if c[0] == "quantile"} == {0.5, 0.9, 0.8}
    mesp = report.result("MESP C=4")
    assert (mesp.group, mesp.cold_start_cost, mesp.quantile) == ("MESP", 4.0, 0.8)
    cheap = report.result("cheap choice C=1")
    assert (cheap.group, cheap.cold_start_cost, cheap.quantile) == ("cheap choice", 1.0, None)
    readoffs = {r["curve"]: r for r in report.curve_readoffs()}
    assert set(readoffs) == {"MESP MoE", "MESP", "cheap choice"}
    assert readoffs["MESP"]["costs"] == [1.0, 4.0] and readoffs["MESP"]["at_idle_of"] == "seasonal naive"
    # Context: the model's input size, at least a day (the cheap choice's morning replay, from minute
    # 1499 - 720, planned from a lead minute earlier, gives its seasonal-naive candidate what history there was).
    assert {c[2] for c in model.calls if c[0] == "forecast" and c[1] != "naive"} == {1440}
    assert {c[2] for c in model.calls if c[1] == "naive"} == set(range(778, 1441))
    assert report.result("MESP MoE").cold_starts == 0  # lag 10 is this trace's period
    assert report.result("MESP MoE q=0.9").group == "MESP MoE"


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


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: model_forecasters(LagModel(), "bogus"), "approach must be"),
        (lambda: run_replay(LagModel(), np.ones((2, 100)), start_minute=50, quantiles=(1.0,)), "quantiles must be in"),
        (lambda: standard_policies(LagModel(), cold_start_costs=(1, 0)), "cold_start_cost must be > 0"),
        (lambda: standard_policies(LagModel(), cold_start_costs=(2, 2.0)), "cold-start costs repeat"),
        (lambda: mesp_policy(LagModel(), float("inf")), "cold_start_cost must be"),
    ],
)
def test_bad_policy_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_the_standard_set_draws_curves_only_for_the_approaches_asked():
    config = PolicyConfig(hold_minutes=4)
    policies = standard_policies(LagModel(), quantiles=(0.6, 0.9), curve_approaches=("moe", "dense"), policy_config=config,
                                 cold_start_costs=(), cheap_choice=False)
    assert list(policies) == [KNATIVE_DEFAULT, "keep-alive 10 min", "keep-alive 20 min", "hybrid histogram",
                              "seasonal naive", "dense", "dense q=0.6", "dense q=0.9",
                              "MESP MoE", "MESP MoE q=0.6", "MESP MoE q=0.9", "oracle"]
    assert isinstance(policies[KNATIVE_DEFAULT], NoFloorPolicy) and isinstance(policies["oracle"], OraclePolicy)
    assert [policies[f"keep-alive {m} min"].minutes for m in (10, 20)] == [10, 20]
    assert isinstance(policies["hybrid histogram"], HybridHistogramPolicy)
    assert isinstance(policies["keep-alive 10 min"], FixedKeepAlivePolicy)
    assert (policies["dense q=0.9"].group, policies["dense q=0.9"].quantile) == ("dense", 0.9)
    assert policies["seasonal naive"].quantile is None and policies["seasonal naive"].config is config


def test_point_and_quantile_forecasters_of_one_approach_share_one_model_run(tiny_model, tiny_trace):
    calls = []

    class Counting:
        manifest = tiny_model.manifest

        def forecast_distribution(self, context, horizon, approach="moe"):
            calls.append((np.asarray(context).shape, horizon, approach))
            return tiny_model.forecast_distribution(context, horizon, approach)

    point, quantile = model_forecasters(Counting(), "dense")
    context = tiny_trace.counts[:4, :600]
    p = point(context, 20)
    q = quantile(context, 20, 0.9)
    quantile(context, 20, 0.5)
    assert calls == [((4, 600), 20, "dense")]  # one run for the point and both quantiles
    np.testing.assert_array_equal(p, tiny_model.forecast(context, 20, approach="dense"))
    np.testing.assert_array_equal(q, tiny_model.forecast_quantile(context, 20, q=0.9, approach="dense"))
    point(tiny_trace.counts[:4, :601], 20)  # another step's context: a new run
    assert len(calls) == 2
    assert repr(point) == "ModelForecaster(approach='dense')" and repr(quantile) == "ModelQuantileForecaster(approach='dense')"


def test_run_replay_checks_its_curve_and_sees_at_least_a_day(tiny_model, tiny_trace):
    with pytest.raises(ValueError, match="curve approach must be one of"):
        run_replay(LagModel(), np.ones((2, 100)), start_minute=50, curve_approaches=("oracle",))
    seen = []

    class Spy(LagModel):
        manifest = {"input_size_max": 480}  # what mesp train records

        def forecast(self, context, horizon, approach="moe"):
            seen.append(np.asarray(context).shape[1])
            return super().forecast(context, horizon, approach)

    run_replay(Spy(), tiny_trace.counts[:2], start_minute=2870, quantiles=(0.5,), progress=False)
    assert max(seen) == 1440  # the larger of the model's input and one day


def test_the_default_capacity_must_be_positive():
    empty = pd.DataFrame(columns=["HashOwner", "HashApp", "HashFunction", "Average"])
    caps, derived = capacities_from_durations([("o", "a", "f")], empty, default=12.5)
    assert caps.tolist() == [12.5] and derived == 0
    with pytest.raises(ValueError, match="default capacity must be > 0.0"):
        capacities_from_durations([("o", "a", "f")], empty, default=0.0)


def test_the_default_set_sweeps_the_cold_start_cost_for_mesp_and_the_cheap_choice():
    policies = standard_policies(LagModel())
    assert CURVE_COSTS == (1, 2, 4, 8, 16, 32, 64)
    mesp = [policies[f"MESP C={c}"] for c in CURVE_COSTS]
    assert [p.quantile for p in mesp] == pytest.approx([c / (1 + c) for c in CURVE_COSTS])
    assert {p.group for p in mesp} == {"MESP"} and [p.cold_start_cost for p in mesp] == list(CURVE_COSTS)
    # One forecaster pair for the whole sweep: one model run per step, whatever the number of costs.
    assert len({id(p.quantile_forecaster) for p in mesp}) == 1
    cheap = [policies[f"cheap choice C={c}"] for c in CURVE_COSTS]
    assert all(isinstance(p, CheapChoicePolicy) for p in cheap) and len({id(p.menu) for p in cheap}) == 1
    # Its seasonal-naive candidate shares the "seasonal naive" floor's forecaster.
    assert cheap[0].menu.candidates["seasonal-naive floor"].forecaster is policies["seasonal naive"].forecaster
    assert not any(" q=" in name for name in policies)  # no quantile curve unless asked


def test_a_mesp_point_plans_what_the_model_api_plans_at_that_cost(tiny_model, tiny_trace):
    counts = tiny_trace.counts[:40, :1502]
    policy = mesp_policy(tiny_model, 4.0)
    # Lead 0: the first counted minute is the first plan, made from minutes < 1500 with no earlier state.
    report = simulate(counts, {"MESP C=4": policy}, start_minute=1500, lead_minutes=0, context_minutes=1440,
                      capacity_per_instance=5.0, progress=False, record_settings=True)
    first = report.recorded_settings["MESP C=4"][:, 0]
    expected = tiny_model.plan_min_scale(counts[:, 60:1500], 1, capacity_per_instance=5.0, lead_minutes=0,
                                         cold_start_cost=4.0)
    assert expected.max() > 1  # a real floor, not all zeros
    np.testing.assert_array_equal(first, expected[:, 0])
    assert not np.array_equal(expected, tiny_model.plan_min_scale(counts[:, 60:1500], 1, capacity_per_instance=5.0,
                                                                  lead_minutes=0, cold_start_cost=64.0))


def test_with_a_floor_stage_the_mesp_curve_is_the_floor_stage_at_each_cost(tiny_floor_model_dir, tiny_model):
    from mesp_core import load_model
    from mesp_core.replay.floor_policy import MespFloorPolicy

    with_stage = mesp_policy(load_model(tiny_floor_model_dir), 8.0)
    assert isinstance(with_stage, MespFloorPolicy) and with_stage.has_floor_stage
    assert with_stage.cold_start_cost == 8.0 and with_stage.group == "MESP"
    assert isinstance(mesp_policy(tiny_model, 8.0), ForecastFloorPolicy)  # no stage: the experts' C/(1+C)
