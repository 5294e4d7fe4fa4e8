"""The recent-error check (expert vs repeat-last-hour on the function's own last hour) and the
local residual quantiles that come from the same last-hour forecasts."""

import copy
import json

import numpy as np
import pytest

from mesp_core.forecasting.distribution import RecentHour
from mesp_core.forecasting.model import RECENT_CHECK_KEY, repeat_last_hour_forecast
from mesp_core.offline.recent_check import choose_recent_check


def _recent_hour():
    # Three functions; the third has too short a context to be checked.
    actual = np.full((2, 60), 10.0, dtype=np.float32)
    model_past = np.stack([np.zeros(60), np.full(60, 9.0)]).astype(np.float32)  # errors 10 and 1
    alt_past = np.stack([np.full(60, 9.0), np.full(60, 10.9)]).astype(np.float32)  # errors 1 and 0.9
    return RecentHour(3, np.array([0, 1]), actual, model_past, alt_past)


def test_switch_needs_a_clearly_smaller_error_and_enough_history():
    recent = _recent_hour()
    model_err, alt_err = recent.errors()
    np.testing.assert_allclose(model_err[:2], [10.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(alt_err[:2], [1.0, 0.9], rtol=1e-5)
    assert np.isnan(model_err[2]) and np.isnan(alt_err[2])
    np.testing.assert_array_equal(recent.switch(0.7), [True, False, False])
    np.testing.assert_array_equal(recent.switch(1.0), [True, True, False])


def test_residuals_follow_the_forecaster_each_function_uses():
    recent = _recent_hour()
    residuals = recent.residuals(np.array([True, False, False]))
    np.testing.assert_allclose(residuals[0], 1.0)   # 10 - repeat-last-hour's 9
    np.testing.assert_allclose(residuals[1], 1.0)   # 10 - the model's 9
    assert np.isnan(residuals[2]).all()


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


def test_quantiles_come_from_the_functions_own_last_hour(tiny_model, tiny_trace):
    long = tiny_trace.counts[:8, :900]
    distribution = tiny_model.forecast_distribution(long, 60)
    local = distribution.local_residuals()
    assert local.shape == (8, 60) and np.isfinite(local).all()
    for q in (0.1, 0.5, 0.9):
        expected = np.clip(distribution.point + np.quantile(local, q, axis=1)[:, None], 0, None)
        np.testing.assert_allclose(distribution.quantile(q), expected, rtol=1e-5, atol=1e-4)

    # Under two hours of history there is no earlier hour to learn from: the cluster table is used.
    short = tiny_trace.counts[:8, :100]
    distribution = tiny_model.forecast_distribution(short, 60)
    assert np.isnan(distribution.local_residuals()).all()
    upper = distribution.quantile(0.9)
    assert upper.shape == (8, 60) and np.isfinite(upper).all() and (upper >= 0).all()


def test_training_chooses_the_ratio_on_validation_functions(tiny_model, tiny_model_dir, tiny_trace):
    entry = json.loads((tiny_model_dir / "manifest.json").read_text())["recent_check"]
    scores = entry["val_wape"]
    assert set(scores) == {"off", "0.9", "0.7", "0.5", "0.3"}
    best = min(scores.values())
    if entry["enabled"]:
        assert scores[f"{entry['switch_ratio']:g}"] == best < scores["off"]
        assert tiny_model.recent_check_ratio == entry["switch_ratio"]
    else:
        assert scores["off"] == best and tiny_model.recent_check_ratio is None

    too_short = choose_recent_check(tiny_model, tiny_trace.counts[:5, :600], (0.7,))
    assert too_short["enabled"] is False and "too short" in too_short["reason"]
    with pytest.raises(ValueError, match="recent_check_ratios"):
        from mesp_core.offline.config import TrainConfig

        TrainConfig(recent_check_ratios=(1.5,)).validate()


def test_choosing_the_ratio_scores_the_experts_alone_even_when_a_check_is_on(tiny_model, tiny_trace):
    checked = copy.copy(tiny_model)
    checked.recent_check_ratio = 1.0
    plain = copy.copy(tiny_model)
    plain.recent_check_ratio = None
    counts = tiny_trace.counts[:30]
    assert choose_recent_check(checked, counts, (0.5,))["val_wape"] == choose_recent_check(plain, counts, (0.5,))["val_wape"]
