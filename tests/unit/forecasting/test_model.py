"""The trained mixture as one object (mesp_core.forecasting.model), on the session's tiny model:
forecasts for arrays and ragged lists, routes explained, quantiles, plans, the recent-error check and
the dense hand-off of short contexts."""

import copy
from pathlib import Path

import numpy as np
import pytest

from mesp_core.forecasting.model import (
    RECENT_CHECK_KEY,
    plan_from_distribution,
    policy_config,
    repeat_last_hour_forecast,
)
from mesp_core.forecasting.router import IDLE_CLUSTER


def test_forecast_shapes_for_arrays_and_ragged_lists(tiny_model, tiny_trace):
    counts = tiny_trace.counts
    dense = tiny_model.forecast(counts[:7, :600], 60)
    assert dense.shape == (7, 60) and dense.dtype == np.float32 and (dense >= 0).all()
    ragged = [counts[0, :60], counts[1, :1000], counts[2, :2880]]
    for approach in ("moe", "dense", "naive", *[f"dense:{f}" for f in tiny_model.dense_experts]):
        out = tiny_model.forecast(ragged, 25, approach=approach)
        assert out.shape == (3, 25) and np.isfinite(out).all() and (out >= 0).all()
    longer = tiny_model.forecast(counts[:4, :700], 150)
    assert longer.shape == (4, 150)
    np.testing.assert_allclose(longer[:, :60], tiny_model.forecast(counts[:4, :700], 60), rtol=1e-5, atol=1e-4)


def test_forecasts_use_only_the_given_context_and_are_deterministic(tiny_model, tiny_trace):
    context = tiny_trace.counts[:10, :900]
    first = tiny_model.forecast(context, 60)
    np.testing.assert_array_equal(first, tiny_model.forecast(context.copy(), 60))
    np.testing.assert_array_equal(first[3:4], tiny_model.forecast(context[3:4], 60))


@pytest.mark.parametrize("minutes", [100, 900, 2880])
def test_an_array_and_its_rows_as_a_list_get_the_same_forecast(tiny_model, tiny_trace, minutes):
    # A 2-D context stays one array through routing and the experts; a list takes the row-wise path.
    context = tiny_trace.counts[:, :minutes].astype(np.float32)
    for approach in ("moe", "dense", "naive"):
        as_array = tiny_model.forecast_distribution(context, 60, approach=approach)
        as_list = tiny_model.forecast_distribution(list(context), 60, approach=approach)
        np.testing.assert_array_equal(as_array.point, as_list.point)
        np.testing.assert_array_equal(as_array.quantile(0.9), as_list.quantile(0.9))
        np.testing.assert_array_equal(as_array.switched, as_list.switched)


def test_bad_contexts_get_clear_errors(tiny_model):
    with pytest.raises(ValueError, match="at least 60"):
        tiny_model.forecast(np.ones((2, 30)), 10)
    with pytest.raises(ValueError, match="negative"):
        tiny_model.forecast(-np.ones((1, 100)), 10)
    with pytest.raises(ValueError, match="NaN"):
        tiny_model.forecast(np.full((1, 100), np.nan), 10)
    with pytest.raises(ValueError, match="approach"):
        tiny_model.forecast(np.ones((1, 100)), 10, approach="magic")
    with pytest.raises(ValueError, match="horizon"):
        tiny_model.forecast(np.ones((1, 100)), 0)


def test_routes_are_explained(tiny_model, tiny_trace):
    context = np.concatenate([tiny_trace.counts[:5, :800], np.zeros((1, 800), np.float32)])
    routes = tiny_model.explain_routes(context)
    np.testing.assert_array_equal([r["cluster"] for r in routes], tiny_model.route(context))
    assert routes[-1]["cluster"] == IDLE_CLUSTER and routes[-1]["expert"] == "seasonal_naive"
    for r in routes[:-1]:
        assert 0 <= r["cluster"] < 3 and 0.0 <= r["distance"] <= 2.0 and r["description"] and r["expert"]


def test_quantile_forecasts_are_ordered_by_level(tiny_model, tiny_trace):
    # A cluster whose expert over-forecasts can have its 0.95 residual quantile below zero, so the
    # guarantee is the order of the levels, not that every upper value exceeds the point forecast.
    context = tiny_trace.counts[:, :900]
    distribution = tiny_model.forecast_distribution(context, 60)
    levels = [distribution.quantile(q) for q in (0.05, 0.5, 0.9, 0.95)]
    for low, high in zip(levels, levels[1:]):
        assert (high >= low - 1e-4).all()
    assert levels[-1].sum() > distribution.point.sum() > levels[0].sum()
    np.testing.assert_allclose(levels[2], tiny_model.forecast_quantile(context, 60, q=0.9), rtol=1e-6)


def test_min_scale_plan_is_integer_and_bounded(tiny_model, tiny_trace):
    plan = tiny_model.plan_min_scale(tiny_trace.counts[:6, :900], 30, capacity_per_instance=20.0, lead_minutes=2, max_scale=5)
    assert plan.shape == (6, 30) and np.issubdtype(plan.dtype, np.integer)
    assert plan.min() >= 0 and plan.max() <= 5


def test_a_plan_from_one_forecast_needs_lead_and_hold_minutes_beyond_the_plan(tiny_model, tiny_trace):
    context = tiny_trace.counts[:6, :900]
    config, _ = policy_config(20.0, 2, {"quantile": 0.9})
    expected = tiny_model.plan_min_scale(context, 30, capacity_per_instance=20.0, lead_minutes=2, quantile=0.9)
    longer = tiny_model.forecast_distribution(context, 30 + config.lookahead)
    assert np.array_equal(plan_from_distribution(longer, 30, config), expected)
    with pytest.raises(ValueError, match="needs"):
        plan_from_distribution(tiny_model.forecast_distribution(context, 30), 30, config)


def test_short_contexts_go_to_the_dense_model(tiny_model, tiny_trace):
    from mesp_core.forecasting.model import MOE_MIN_CONTEXT

    short = tiny_trace.counts[:8, 900: 900 + MOE_MIN_CONTEXT - 1]
    np.testing.assert_array_equal(tiny_model.forecast(short, 30, approach="moe"),
                                  tiny_model.forecast(short, 30, approach="dense"))
    assert all(r["expert"].startswith(f"dense:{tiny_model.dense_best}") for r in tiny_model.explain_routes(short))
    # A ragged batch splits row by row: the long rows keep their cluster experts.
    long = tiny_trace.counts[:8, 900: 900 + 600]
    mixed = tiny_model.forecast([*short, *long], 30, approach="moe")
    np.testing.assert_array_equal(mixed[:8], tiny_model.forecast(short, 30, approach="dense"))
    np.testing.assert_allclose(mixed[8:], tiny_model.forecast(long, 30, approach="moe"), rtol=1e-5, atol=1e-5)
    assert not any(r["expert"].startswith("dense:") for r in tiny_model.explain_routes(long))


def test_repeat_last_hour_forecast_repeats_the_last_sixty_minutes():
    row = np.arange(200, dtype=np.float32)
    out = repeat_last_hour_forecast([row, row[:60]], 90)
    np.testing.assert_array_equal(out[0, :60], row[-60:])
    np.testing.assert_array_equal(out[0, 60:], row[-60:-30])
    np.testing.assert_array_equal(out[1, :60], row[:60])


def test_check_replaces_exactly_the_functions_it_flags(tiny_model, tiny_trace):
    context = tiny_trace.counts[:, :900]
    checked = copy.copy(tiny_model)
    checked.recent_check_ratio = 1.0
    plain = copy.copy(tiny_model)
    plain.recent_check_ratio = None
    model_err, alt_err = plain.recent_hour(context).errors()
    expected = alt_err < model_err
    assert expected.any() and not expected.all(), "the generated trace should have both kinds"

    distribution = checked.forecast_distribution(context, 60)
    np.testing.assert_array_equal(distribution.switched, expected)
    np.testing.assert_allclose(distribution.point[expected], repeat_last_hour_forecast(list(context[expected]), 60))
    np.testing.assert_allclose(distribution.point[~expected], plain.forecast(context, 60)[~expected], rtol=1e-6)
    keys = [key for key, members in distribution._groups if len(members)]
    assert RECENT_CHECK_KEY in keys
    # dense and naive approaches are never switched.
    np.testing.assert_array_equal(checked.forecast(context, 60, approach="naive"), plain.forecast(context, 60, approach="naive"))


def _checked(model, ratio=1.0):
    checked = copy.copy(model)
    checked.recent_check_ratio = ratio
    return checked


def test_explain_routes_names_repeat_last_hour_exactly_where_the_check_took_over(tiny_model, tiny_trace):
    context = tiny_trace.counts[:, :900]
    switched = _checked(tiny_model).forecast_distribution(context, 30).switched
    assert switched.any() and not switched.all()
    plain = tiny_model.explain_routes(context)
    relabelled = tiny_model.explain_routes(context, switched=switched)
    for before, after, lost in zip(plain, relabelled, switched):
        if lost:
            assert after["expert"] == f"repeat_last_hour (recent-error check; routed to {before['expert']})"
            assert {k: v for k, v in after.items() if k != "expert"} == {k: v for k, v in before.items() if k != "expert"}
        else:
            assert after == before


def test_outlook_is_the_forecast_its_quantile_routes_and_plan_of_one_model_run(tiny_model, tiny_trace):
    model = _checked(tiny_model)
    context = tiny_trace.counts[:, :900]
    outlook = model.outlook(context, 30, quantile=0.8)
    distribution = model.forecast_distribution(context, 30)
    np.testing.assert_array_equal(outlook.point, distribution.point)
    np.testing.assert_array_equal(outlook.upper, distribution.quantile(0.8))
    assert outlook.plan is None
    assert outlook.routes == model.explain_routes(context, switched=distribution.switched)

    planned = model.outlook(context, 30, quantile=0.8, capacity_per_instance=20.0, lead_minutes=2)
    assert planned.point.shape == planned.upper.shape == planned.plan.shape == (80, 30)
    np.testing.assert_array_equal(planned.plan, model.plan_min_scale(context, 30, capacity_per_instance=20.0,
                                                                     lead_minutes=2, quantile=0.8))
    # The longer forecast behind the plan starts with the same minutes.
    np.testing.assert_allclose(planned.point, outlook.point, rtol=1e-5, atol=1e-4)


def test_policy_config_carries_per_function_capacities_beside_the_config():
    config, capacity = policy_config(25.0, 3, {"quantile": 0.8, "hold_minutes": 4})
    assert (config.capacity_per_instance, config.lead_minutes, config.quantile, config.hold_minutes) == (25.0, 3, 0.8, 4)
    assert capacity is None
    config, capacity = policy_config([10.0, 30.0], 1, {})
    assert config.capacity_per_instance == 60.0 and capacity == [10.0, 30.0]  # the placeholder is never used
    with pytest.raises(ValueError, match="capacity_per_instance"):
        policy_config(0.0, 1, {})


def test_a_plan_with_one_capacity_per_function_is_each_rows_own_plan(tiny_model, tiny_trace):
    context = tiny_trace.counts[:3, :900]
    capacities = [5.0, 40.0, 400.0]
    together = tiny_model.plan_min_scale(context, 20, capacity_per_instance=capacities, lead_minutes=2)
    for i, capacity in enumerate(capacities):
        alone = tiny_model.plan_min_scale(context[i:i + 1], 20, capacity_per_instance=capacity, lead_minutes=2)
        np.testing.assert_array_equal(together[i], alone[0])
    assert len({tuple(row) for row in together}) > 1  # the capacities really differ in effect


def test_horizon_must_be_a_whole_number_of_minutes(tiny_model, tiny_trace):
    context = tiny_trace.counts[:2, :300]
    assert tiny_model.forecast(context, 12.0).shape == (2, 12)
    for bad in (2.5, -3, 0):
        with pytest.raises(ValueError, match="horizon must be a positive integer"):
            tiny_model.forecast(context, bad)


def test_idle_and_unknown_clusters_are_described_and_fall_back_to_the_floor(tiny_model):
    assert tiny_model.describe_cluster(IDLE_CLUSTER) == "idle/flat window (seasonal-naive floor)"
    assert tiny_model.expert_name(IDLE_CLUSTER) == "seasonal_naive"
    assert tiny_model.expert_name(99) == "seasonal_naive" and tiny_model.describe_cluster(99) == "cluster 99"
    for entry in tiny_model.clusters:
        assert tiny_model.describe_cluster(entry["id"]) == entry["description"]["label"]


def test_validate_contexts_keeps_one_array_and_names_the_bad_row():
    from mesp_core.forecasting.model import validate_contexts

    block = np.ones((3, 80), dtype=np.float64)
    checked = validate_contexts(block)
    assert isinstance(checked, np.ndarray) and checked.dtype == np.float32 and checked.shape == (3, 80)
    ragged = validate_contexts([np.ones(60), np.ones(90)])
    assert isinstance(ragged, list) and [len(r) for r in ragged] == [60, 90]
    with pytest.raises(ValueError, match="context is empty"):
        validate_contexts([])
    bad = np.ones((3, 80))
    bad[2, 5] = -1
    with pytest.raises(ValueError, match=r"context\[2\] contains negative counts"):
        validate_contexts(bad)


def test_the_packaged_model_ships_inside_the_package():
    import mesp_core
    from mesp_core.forecasting.model import default_model_path, load_model

    path = default_model_path()
    assert path == mesp_core.default_model_path() and path.parent == Path(mesp_core.__file__).parent
    model = load_model(str(path))  # a str path works as well as a Path
    assert model.path == path and model.manifest["format"] == "mesp-model"


def test_cold_start_cost_sizes_at_the_critical_fractile_and_quantile_overrides_it(tiny_model, tiny_trace):
    context = tiny_trace.counts[:6, :900]
    by_cost = tiny_model.plan_min_scale(context, 30, capacity_per_instance=20.0, cold_start_cost=4.0)
    at_level = tiny_model.plan_min_scale(context, 30, capacity_per_instance=20.0, quantile=0.8)
    np.testing.assert_array_equal(by_cost, at_level)
    override = tiny_model.plan_min_scale(context, 30, capacity_per_instance=20.0, cold_start_cost=4.0,
                                         quantile=0.95)
    np.testing.assert_array_equal(override, tiny_model.plan_min_scale(context, 30, capacity_per_instance=20.0,
                                                                      quantile=0.95))
    cheap = tiny_model.plan_min_scale(context, 30, capacity_per_instance=20.0, cold_start_cost=0.25)
    dear = tiny_model.plan_min_scale(context, 30, capacity_per_instance=20.0, cold_start_cost=60.0)
    assert (cheap <= dear).all() and cheap.sum() < dear.sum()
    with pytest.raises(ValueError, match="cold_start_cost"):
        tiny_model.plan_min_scale(context, 30, cold_start_cost=-1.0)


def test_floor_choices_kept_from_a_boundary_plan_what_choosing_there_plans():
    """floor_choose at a boundary, then floor_plan(floors=...) = floor_plan(since=...) (the packaged model)."""
    import torch

    from mesp_core.forecasting.model import default_model_path, load_model

    model = load_model(default_model_path())
    rng = np.random.default_rng(5)
    series = (rng.poisson(3.0, size=(3, 900)) * (rng.random((3, 900)) < 0.5)).astype(np.float32)
    capacity = np.array([60.0, 10.0, 30.0])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        kept = model.floor_choose(series[:, 200:800], capacity, 2, 8.0, since=[0, 4, 11])
        for later in (0, 3):  # minutes after the first row's boundary; the others' are further back
            contexts = series[:, 200 + later:800 + later]
            since = np.array([0, 4, 11]) + later
            kept_plan = model.floor_plan(contexts, 20, capacity, 2, 8.0, floors=kept, max_scale=9)
            chosen_plan = model.floor_plan(contexts, 20, capacity, 2, 8.0, since=since, max_scale=9)
            assert kept_plan.floors == chosen_plan.floors == kept
            assert np.array_equal(kept_plan.plan, chosen_plan.plan) and kept_plan.plan.max() <= 9
        with pytest.raises(ValueError, match="not both"):
            model.floor_plan(contexts, 20, capacity, 2, 8.0, floors=kept, since=since)
        with pytest.raises(ValueError, match="3 contexts"):
            model.floor_plan(contexts, 20, capacity, 2, 8.0, floors=kept[:2])
        with pytest.raises(ValueError, match="unknown floor candidates"):
            model.floor_plan(contexts, 20, capacity, 2, 8.0, floors=["q=0.9", "q=0.9", "sometimes"])
    finally:
        torch.set_num_threads(before)
