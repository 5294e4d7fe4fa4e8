"""The whole offline pipeline on a generated trace: train -> artifact -> load -> forecast/route/plan,
extend without retraining, and the backtest. One tiny model is trained per test session."""

import json

import numpy as np
import pytest

from mesp_core import load_model
from mesp_core.offline.evaluation import backtest, format_table
from mesp_core.offline.split import held_out_functions
from mesp_core.forecasting.model import plan_from_distribution, policy_config
from mesp_core.forecasting.router import IDLE_CLUSTER
from mesp_core.offline.extend import extend


def test_manifest_records_what_the_model_is(tiny_model_dir, tiny_trace):
    manifest = json.loads((tiny_model_dir / "manifest.json").read_text())
    assert manifest["format"] == "mesp-model" and manifest["format_version"] == 1
    assert manifest["training_data"]["fingerprint"] == tiny_trace.fingerprint()
    assert len(manifest["clusters"]) == 3
    for entry in manifest["clusters"]:
        assert entry["ranking"][0]["candidate"] == entry["chosen"]
        assert entry["description"]["label"]
    for relative in manifest["files"]:
        assert (tiny_model_dir / relative).is_file()
    assert not list(tiny_model_dir.rglob("*.pt")) and not list(tiny_model_dir.rglob("*.pkl"))


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


def test_held_out_functions_are_exactly_the_unseen_ones(tiny_model, tiny_trace):
    held = held_out_functions(tiny_model, tiny_trace)
    manifest = tiny_model.manifest["training_data"]
    assert len(held) == manifest["n_test_functions"]
    assert len(held) + manifest["n_fit_functions"] + manifest["n_val_functions"] == len(tiny_trace.keys)


def test_holdout_zero_trains_on_every_function_within_the_window_caps(tiny_trace, tmp_path):
    from mesp_core import load_model
    from mesp_core.offline.config import TrainConfig
    from mesp_core.offline.training import train

    # 64 fit functions x 2 days at stride 60 give ~2,900 fit windows and 128 days: the caps cut
    # them before routing and clustering.
    config = TrainConfig(k=3, families=("dlinear",), dense_trials=1, dense_top_n=1, trial_seconds=3.0, cluster_seconds=1.5,
                         max_dense_windows=3000, max_cluster_windows=1500, min_cluster_windows=50, stride=60,
                         test_fraction=0.0, max_fit_windows=400, max_val_windows=60, max_cluster_days=90)
    train(tiny_trace, tmp_path / "all", config, progress=False)
    model = load_model(tmp_path / "all")
    data = model.manifest["training_data"]
    assert data["n_test_functions"] == 0 and data["n_fit_functions"] + data["n_val_functions"] == len(tiny_trace.keys)
    assert len(held_out_functions(model, tiny_trace)) == 0
    assert (data["n_fit_windows"], data["n_val_windows"]) == (400, 60)
    clustering = model.manifest["clustering"]
    assert clustering["n_days"] == 90 and clustering["n_fit_days"] == 2 * data["n_fit_functions"]
    with pytest.raises(ValueError, match="window caps"):
        TrainConfig(max_val_windows=0).validate()


def test_backtest_compares_every_approach_on_the_same_forecasts(tiny_model, tiny_trace):
    held = held_out_functions(tiny_model, tiny_trace)
    result = backtest(tiny_model, tiny_trace.counts[held], origins=range(720, 1381, 120), horizon=60)
    assert result.approaches[0] == "moe" and "seasonal_naive" in result.approaches
    assert result.n_forecasts == len(held) * 6
    for name in result.approaches:
        metrics = result.overall[name]
        assert np.isfinite(metrics["wape"]) and metrics["wape"] >= 0 and metrics["rmse"] >= metrics["mae"] - 1e-9
    assert sum(result.cluster_sizes.values()) == result.n_forecasts
    table = format_table(result)
    assert "moe" in table and "wape" in table


def _novel_trace(n=12, seed=5):
    """Square waves with a 3-hour period: a shape the generator never makes."""
    from mesp_core.data.trace import InvocationTrace

    rng = np.random.default_rng(seed)
    minutes = np.arange(2 * 1440)
    counts = []
    for i in range(n):
        wave = ((minutes + 7 * i) // 90) % 2 * 200.0 + 1.0
        counts.append(rng.poisson(wave).astype(np.float32))
    keys = [(f"own{i}", f"app{i}", f"fn{i}") for i in range(n)]
    return InvocationTrace(
        keys=keys,
        triggers=["timer"] * n,
        counts=np.stack(counts),
        days=["d01", "d02"],
        present=np.ones((n, 2), bool),
    )


def test_extend_adds_a_cluster_and_leaves_existing_experts_byte_identical(tiny_model_dir, tmp_path):
    before = {p.relative_to(tiny_model_dir): p.read_bytes() for p in tiny_model_dir.rglob("*") if p.is_file()}
    out = tmp_path / "extended"
    report = extend(tiny_model_dir, _novel_trace(), out, threshold=0.2, k=1, progress=False)
    assert len(report["added"]) == 1
    extended = load_model(out)
    assert len(extended.clusters) == 4
    for relative, data in before.items():  # the source folder is untouched
        assert (tiny_model_dir / relative).read_bytes() == data
    for relative in before:
        if str(relative).startswith(("experts/", "dense/")):
            assert (out / relative).read_bytes() == before[relative], relative
    novel = _novel_trace(n=3, seed=9).counts[:, :1440]
    assert (extended.route(novel) == 3).all()


def test_extend_without_new_patterns_copies_the_model(tiny_model_dir, tiny_trace, tmp_path):
    out = tmp_path / "same"
    report = extend(tiny_model_dir, tiny_trace.subset(np.arange(5)), out, threshold=5.0, progress=False)
    assert report["added"] == [] and len(load_model(out).clusters) == 3


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
