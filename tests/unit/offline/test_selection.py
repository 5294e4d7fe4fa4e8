"""Experiment 2's machinery (mesp_core.offline.selection): scoring on windows, residual quantiles,
routing windows, an Optuna search, and ranking a cluster's candidates."""

import math
from dataclasses import replace

import numpy as np
import pytest

from mesp_core.data.synthetic import generate_trace
from mesp_core.data.windows import make_windows
from mesp_core.forecasting.experts import Blend, build_expert
from mesp_core.forecasting.model import SCALE_MINUTES, window_scale
from mesp_core.offline.config import BASELINE_FAMILIES, QUANTILE_LEVELS, TrainConfig
from mesp_core.offline.metrics import wape
from mesp_core.offline.progress import Progress
from mesp_core.offline.selection import (
    fit_candidate,
    fit_summary,
    predict_windows,
    residual_quantiles,
    route_windows,
    score,
    select_expert,
    tune_family,
)

HORIZON = 30
INPUT = 240


@pytest.fixture(scope="module")
def data():
    """Fit and validation windows cut from three generated days, with the series they come from."""
    series = list(generate_trace(n_functions=16, days=3, seed=11).counts)
    fit = make_windows(series[:10], INPUT, HORIZON, stride=180, min_context=60)
    val = make_windows(series[10:], INPUT, HORIZON, stride=180, min_context=720)
    return series[:10], fit, series[10:], val


def _floors():
    return {f: build_expert({"family": f, "horizon": HORIZON}) for f in BASELINE_FAMILIES}


def _dense(seed=0):
    return build_expert({"family": "dlinear", "horizon": HORIZON, "input_size": INPUT, "seed": seed})


def test_score_is_the_wape_of_the_clipped_forecasts_and_infinite_without_windows(data):
    _, _, val_series, val = data
    repeat = _floors()["repeat_last_hour"]
    by_hand = np.clip(repeat.predict([val_series[s][:o] for s, o in zip(val.series, val.origin)]), 0, None)
    np.testing.assert_array_equal(predict_windows(repeat, val, val_series), by_hand)
    assert score(repeat, val, val_series) == pytest.approx(float(wape(val.y, by_hand)))
    assert score(repeat, val.subset(np.array([], dtype=np.int64))) == math.inf


def test_floors_read_the_whole_history_and_networks_their_window(data):
    _, _, val_series, val = data
    naive = _floors()["seasonal_naive"]
    with_history = predict_windows(naive, val, val_series)
    np.testing.assert_array_equal(with_history, naive.predict([val_series[s][:o] for s, o in zip(val.series, val.origin)]))
    window_only = predict_windows(naive, val)  # no series: the window is all it gets
    np.testing.assert_array_equal(window_only, np.clip(naive.predict(val.x[:, -naive.input_size:]), 0, None))
    assert not np.array_equal(with_history, window_only)  # a day of history changes what it sees
    net = _dense()
    np.testing.assert_array_equal(predict_windows(net, val, val_series), predict_windows(net, val))


def test_residual_quantiles_are_ordered_per_lead_minute_in_window_scale_units(data):
    _, _, val_series, val = data
    repeat = _floors()["repeat_last_hour"]
    table = residual_quantiles(repeat, val, val_series)
    assert table.shape == (len(QUANTILE_LEVELS), HORIZON) and table.dtype == np.float32
    assert (np.diff(table, axis=0) >= 0).all()
    residual = (val.y - predict_windows(repeat, val, val_series)) / window_scale(val.x[:, -SCALE_MINUTES:])[:, None]
    np.testing.assert_allclose(table, np.quantile(residual, QUANTILE_LEVELS, axis=0), rtol=1e-6, atol=1e-6)
    assert residual_quantiles(repeat, val, val_series, levels=(0.1, 0.9)).shape == (2, HORIZON)


def test_windows_are_routed_by_the_day_before_their_origin(data, tiny_model):
    fit_series, fit, _, _ = data
    clusters, distances = route_windows(tiny_model.router, fit_series, fit)
    by_hand = tiny_model.router.route([fit_series[s][max(0, o - 1440):o] for s, o in zip(fit.series, fit.origin)])
    np.testing.assert_array_equal(clusters, by_hand[0])
    np.testing.assert_array_equal(distances, by_hand[1])
    assert len(clusters) == len(fit) and len(np.unique(clusters)) > 1


def test_a_cluster_without_validation_windows_keeps_the_floor(data):
    _, fit, _, val = data
    floors = _floors()
    ranking, chosen = select_expert(fit, val.subset(np.array([], dtype=np.int64)), floors, {"dlinear": _dense()},
                                    ["dlinear"], TrainConfig(horizon=HORIZON), seed=0)
    assert ranking == [{"candidate": "seasonal_naive", "family": "seasonal_naive", "val_wape": None}]
    assert chosen is floors["seasonal_naive"]


def _check_ranking(ranking, chosen, val, val_series):
    scores = [r["val_wape"] for r in ranking]
    assert scores == sorted(scores)
    singles = [r["candidate"] for r in ranking if r["family"] != "blend"]
    # Blends mix the two best single candidates, as ranked before any blend was tried.
    first, second = sorted((r for r in ranking if r["family"] != "blend"), key=lambda r: r["val_wape"])[:2]
    blends = [r["candidate"] for r in ranking if r["family"] == "blend"]
    assert blends and all(b.startswith(f"blend({first['candidate']} ") and f", {second['candidate']} " in b for b in blends)
    if ranking[0]["family"] == "blend":
        assert isinstance(chosen, Blend)
    else:
        assert chosen.family == ranking[0]["family"]
    # What is returned scores what the ranking says.
    assert float(wape(val.y, predict_windows(chosen, val, val_series))) == pytest.approx(ranking[0]["val_wape"], rel=1e-5)
    return singles


def test_a_small_cluster_ranks_the_floors_and_the_dense_model_and_their_blends(data):
    _, fit, val_series, val = data
    config = TrainConfig(horizon=HORIZON, min_cluster_windows=len(fit) + 1)  # too few to train on
    ranking, chosen = select_expert(fit, val, _floors(), {"dlinear": _dense()}, ["dlinear"], config, seed=0,
                                    val_series=val_series)
    singles = _check_ranking(ranking, chosen, val, val_series)
    assert sorted(singles) == ["dlinear/dense", "repeat_last_hour", "seasonal_naive"]
    assert len(ranking) == 3 + len(config.blend_weights)


def test_a_large_cluster_also_tries_the_dense_family_fine_tuned_and_from_scratch(data):
    _, fit, val_series, val = data
    config = TrainConfig(horizon=HORIZON, min_cluster_windows=1, cluster_epochs=2, scratch_trials=2,
                         blend_weights=(0.5,))
    dense = _dense()
    ranking, chosen = select_expert(fit, val, _floors(), {"dlinear": dense}, ["dlinear"], config, seed=0,
                                    val_series=val_series)
    singles = _check_ranking(ranking, chosen, val, val_series)
    assert sorted(singles) == ["dlinear/finetuned", "dlinear/scratch0", "dlinear/scratch1", "repeat_last_hour",
                               "seasonal_naive"]
    assert len(ranking) == 6 and chosen is not dense


def test_tune_family_keeps_the_best_trial_within_the_input_size_cap(data):
    _, fit, _, val = data
    config = TrainConfig(horizon=HORIZON, input_size_max=INPUT, seed=0, dense_epochs=2)
    bar = Progress(True).bar(2, "dense HPO")  # on stderr, captured
    expert, best, trials = tune_family("dlinear", fit, val, config, n_trials=2, progress=bar)
    assert bar.n == 2 and [t["trial"] for t in trials] == [0, 1]
    assert all(t["epochs"] <= 2 and t["cut_short"] is False for t in trials)
    assert best == min(t["val_wape"] for t in trials) == pytest.approx(score(expert, val))
    assert expert.family == "dlinear" and expert.input_size <= INPUT
    assert all(t["params"].get("input_size", INPUT) <= INPUT for t in trials)


def test_a_fit_trains_on_its_familys_window_cap_and_a_clock_cap_says_it_cut_the_fit_short(data):
    _, fit, _, val = data
    config = TrainConfig(horizon=HORIZON, family_max_windows={"dlinear": 50})
    expert = fit_candidate("dlinear", {"input_size": INPUT}, fit, val, config, seed=0, epochs=1)
    assert len(fit) > 50 and expert.fit_report_["train_windows"] == 50
    assert fit_summary(expert) == {"epochs": 1, "stopped": "max_epochs", "cut_short": False}
    # The same sample each time: a seeded choice of windows, not the clock's.
    again = fit_candidate("dlinear", {"input_size": INPUT}, fit, val, config, seed=0, epochs=1)
    np.testing.assert_array_equal(again.predict(val.x[:4]), expert.predict(val.x[:4]))
    clocked = fit_candidate("dlinear", {"input_size": INPUT}, fit, val, replace(config, max_fit_seconds=1e-9), seed=0, epochs=3)
    assert fit_summary(clocked)["cut_short"] is True and clocked.fit_report_["stopped"] == "max_seconds"


def test_autoformer_is_tuned_like_the_others_on_its_capped_windows(data):
    _, fit, _, val = data
    config = TrainConfig(horizon=HORIZON, input_size_max=INPUT, dense_epochs=1, family_max_windows={"autoformer": 64})
    expert, best, trials = tune_family("autoformer", fit, val, config, n_trials=2)
    assert expert.family == "autoformer" and len(trials) == 2 and best == pytest.approx(score(expert, val))
    assert expert.fit_report_["train_windows"] == 64 < len(fit)
