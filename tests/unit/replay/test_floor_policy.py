"""MESP's floor stage in the replay (mesp_core.replay.floor_policy)."""

import numpy as np
import pytest

from mesp_core import load_model
from mesp_core.policy import newsvendor_level
from mesp_core.replay.floor_policy import MespFloorPolicy
from mesp_core.replay.policies import ForecastFloorPolicy
from mesp_core.replay.simulate import simulate


@pytest.fixture(scope="module")
def floor_model(tiny_floor_model_dir):
    return load_model(tiny_floor_model_dir)


def test_replays_the_floor_stage_and_names_the_chosen_floors(floor_model, tiny_trace):
    counts = tiny_trace.counts[:12, :1000]
    policies = {f"MESP C={c:g}": MespFloorPolicy(floor_model, c) for c in (1.0, 64.0)}
    report = simulate(counts, policies, start_minute=700, progress=False, record_settings=True)
    results = {r.name: r for r in report.results}
    cheap, dear = results["MESP C=1"], results["MESP C=64"]
    assert cheap.group == dear.group == "MESP"
    # A dearer cold start buys fewer of them with more idle instance-minutes.
    assert dear.cold_starts <= cheap.cold_starts and dear.idle_instance_minutes >= cheap.idle_instance_minutes
    names = {c.name for c in floor_model.floor.candidates}
    assert len(policies["MESP C=64"].chosen_floors()) == 12
    assert set(policies["MESP C=64"].chosen_floors()) <= names


def test_the_replay_matches_the_stateless_plan_at_a_reselection(floor_model, tiny_trace):
    counts = tiny_trace.counts[:8, :1000]
    policy = MespFloorPolicy(floor_model, 8.0)
    report = simulate(counts, {"MESP": policy}, start_minute=600, end_minute=932, progress=False,
                      record_settings=True)
    settings = report.recorded_settings["MESP"]  # minutes 600 .. 931
    # Planning started at minute 599 (lead 1); 599 + 11 * 30 = 929 is a reselection with 240 minutes recorded.
    planned = floor_model.floor_plan(counts[:, :929], 1, capacity_per_instance=60.0, cold_start_cost=8.0)
    np.testing.assert_array_equal(settings[:, 929 - 600], planned.plan[:, 0])


def test_without_floor_stage_it_sizes_the_experts_at_the_critical_fractile(tiny_model, tiny_trace):
    counts = tiny_trace.counts[:6, :800]
    policy = MespFloorPolicy(tiny_model, 4.0, group="x")
    assert policy.quantile == pytest.approx(newsvendor_level(4.0))
    reference = ForecastFloorPolicy(
        quantile_forecaster=lambda c, h, q: tiny_model.forecast_distribution(c, h).quantile(q),
        quantile=newsvendor_level(4.0))
    report = simulate(counts, {"fallback": policy, "reference": reference}, start_minute=700,
                      progress=False, record_settings=True)
    np.testing.assert_array_equal(report.recorded_settings["fallback"], report.recorded_settings["reference"])
    assert policy.chosen_floors() == []


def test_bad_cost_is_refused(tiny_model):
    with pytest.raises(ValueError, match="cold_start_cost"):
        MespFloorPolicy(tiny_model, -1.0)
