"""A forecast with its uncertainty (mesp_core.forecasting.distribution): the last-hour errors that drive
the recent-error check, the local residual quantiles, and the per-column interpolation of the tables."""

import numpy as np
import pytest

from mesp_core.forecasting.distribution import RecentHour


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


def test_quantile_interpolation_over_every_lead_step_is_numpys():
    from mesp_core.forecasting.distribution import interp_columns

    levels = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99])
    table = np.random.default_rng(3).normal(size=(len(levels), 60)) * 50
    for q in [0.0, 0.01, 0.05, 0.07, 0.1, 0.333, 0.5, 0.9, 0.93, 0.99, 0.999]:
        expected = np.array([np.interp(q, levels, table[:, j]) for j in range(table.shape[1])])
        np.testing.assert_array_equal(interp_columns(q, levels, table), expected)


def test_a_function_without_an_hour_of_history_is_never_switched():
    empty = np.zeros((0, 60), dtype=np.float32)
    recent = RecentHour(2, np.array([], dtype=np.int64), empty, empty, empty)
    model_err, alt_err = recent.errors()
    assert np.isnan(model_err).all() and np.isnan(alt_err).all()
    np.testing.assert_array_equal(recent.switch(1.0), [False, False])
    residuals = recent.residuals(np.array([False, False]))
    assert residuals.shape == (2, 60) and np.isnan(residuals).all()


def test_interp_columns_holds_the_end_rows_outside_the_levels_and_hits_the_knots():
    from mesp_core.forecasting.distribution import interp_columns

    levels = np.array([0.1, 0.5, 0.9])
    table = np.array([[-3.0, -1.0], [0.0, 0.0], [2.0, 5.0]])
    np.testing.assert_array_equal(interp_columns(0.01, levels, table), [-3.0, -1.0])
    np.testing.assert_array_equal(interp_columns(0.99, levels, table), [2.0, 5.0])
    np.testing.assert_array_equal(interp_columns(0.5, levels, table), [0.0, 0.0])
    np.testing.assert_allclose(interp_columns(0.7, levels, table), [1.0, 2.5])
    held = interp_columns(0.99, levels, table)
    held[0] = 99.0  # a copy: the model's table is not touched
    assert table[2, 0] == 2.0


@pytest.mark.parametrize("minutes", [100, 900])  # cluster tables only / the functions' own last hour
def test_quantiles_never_decrease_with_q_and_stay_non_negative(tiny_model, tiny_trace, minutes):
    distribution = tiny_model.forecast_distribution(tiny_trace.counts[:, :minutes], 60)
    previous = None
    for q in np.linspace(0.02, 0.98, 25):
        current = distribution.quantile(float(q))
        assert current.shape == distribution.point.shape and (current >= 0).all()
        if previous is not None:
            assert (current >= previous - 1e-5).all(), q
        previous = current
    assert (previous > distribution.quantile(0.02) + 1e-3).any()  # the band has a width


@pytest.mark.parametrize("q", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_quantile_outside_the_open_unit_interval_is_refused(tiny_model, tiny_trace, q):
    distribution = tiny_model.forecast_distribution(tiny_trace.counts[:2, :300], 10)
    with pytest.raises(ValueError, match=r"quantile must be in \(0, 1\)"):
        distribution.quantile(q)


def test_without_contexts_the_cluster_tables_size_every_row(tiny_model, tiny_trace):
    from mesp_core.forecasting.distribution import ForecastDistribution

    full = tiny_model.forecast_distribution(tiny_trace.counts[:12, :900], 30)
    negative = ForecastDistribution(tiny_model, -1.0 - full.point, full._scale, full._groups)
    assert (negative.point == 0).all() and not negative.switched.any()  # clipped; nothing switched
    shared_only = ForecastDistribution(tiny_model, full.point, full._scale, full._groups)
    assert shared_only.local_residuals() is None
    by_hand = full.point.copy()
    for key, members in full._groups:
        by_hand[members] += full._scale[members, None] * tiny_model._residual_quantile(key, 0.9, 30)[None, :]
    np.testing.assert_allclose(shared_only.quantile(0.9), np.clip(by_hand, 0, None), rtol=1e-6, atol=1e-5)
    # With its contexts the same forecast is sized from each function's own last hour instead.
    assert not np.allclose(full.quantile(0.9), shared_only.quantile(0.9))
