"""Forecast metrics against hand-computed tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mesp_core.offline.metrics import (
    METRIC_NAMES,
    all_metrics,
    mae,
    mape_nonzero,
    mase,
    mase_scale,
    rmse,
    smape,
    wape,
)

# Two forecasts of three minutes. |errors| = [[1, 0, 2], [0, 1, 1]].
Y = np.array([[1.0, 0.0, 3.0], [2.0, 2.0, 0.0]])
F = np.array([[2.0, 0.0, 1.0], [2.0, 1.0, 1.0]])


@pytest.mark.parametrize(
    "metric, expected",
    [
        (mae, 5 / 6),
        (rmse, math.sqrt(7 / 6)),
        # non-zero actuals: 1->2 (100%), 3->1 (66.7%), 2->2 (0%), 2->1 (50%)
        (mape_nonzero, 100 * (1 + 2 / 3 + 0 + 0.5) / 4),
        # 2|e|/(|y|+|f|): 2/3, 0/0->0, 4/4, 0, 2/3, 2/1
        (smape, 100 * (2 / 3 + 0 + 1 + 0 + 2 / 3 + 2) / 6),
        (wape, 5 / 8),
    ],
)
def test_point_metrics_table(metric, expected):
    assert metric(Y, F) == pytest.approx(expected, rel=1e-12)
    # 1-D input scores the same points
    assert metric(Y.ravel(), F.ravel()) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "y, f, expected",
    [
        ([0, 0], [0, 0], {"mae": 0.0, "rmse": 0.0, "mape_nonzero": math.nan, "smape": 0.0, "wape": math.nan}),
        ([0, 0], [1, 3], {"mae": 2.0, "rmse": math.sqrt(5), "mape_nonzero": math.nan, "smape": 200.0, "wape": math.nan}),
        ([4, 4], [4, 4], {"mae": 0.0, "rmse": 0.0, "mape_nonzero": 0.0, "smape": 0.0, "wape": 0.0}),
        ([10, 0], [5, 5], {"mae": 5.0, "rmse": 5.0, "mape_nonzero": 50.0, "smape": 100 * (10 / 15 + 2) / 2, "wape": 1.0}),
    ],
)
def test_edge_cases_table(y, f, expected):
    got = all_metrics(y, f)
    for name, value in expected.items():
        if math.isnan(value):
            assert math.isnan(got[name]), name
        else:
            assert got[name] == pytest.approx(value), name
    assert math.isnan(got["mase"])  # no contexts given


@pytest.mark.parametrize(
    "context, season, expected",
    [
        ([1, 5, 1, 5, 2, 6], 2, (0 + 0 + 1 + 1) / 4),  # seasonal differences
        ([0, 1, 3], 1, 1.5),
        ([0, 2, 0, 2], 2, 2.0),  # seasonal differences all zero -> lag 1
        ([3, 1, 4], 1440, (2 + 3) / 2),  # shorter than the season -> lag 1
        ([7, 7, 7], 1, 0.0),  # constant: no usable scale
    ],
)
def test_mase_scale_table(context, season, expected):
    assert mase_scale(context, season) == pytest.approx(expected)


def test_mase_table():
    # row 0: scale 1.5 (lag-1 diffs 1, 2), MAE 1 -> 2/3; row 1: scale 1 (diffs 0, 2), MAE 2/3 -> 2/3
    contexts = [np.array([0.0, 1.0, 3.0]), np.array([4.0, 4.0, 2.0])]
    assert mase(Y, F, contexts, season=1) == pytest.approx(2 / 3)
    assert mase(Y, F, np.array([[0.0, 1.0, 3.0], [4.0, 4.0, 2.0]]), season=1) == pytest.approx(2 / 3)
    # contexts of different lengths; the constant one has no scale and is left out
    ragged = [np.array([0.0, 2.0, 0.0, 2.0, 0.0]), np.array([5.0, 5.0])]
    assert mase(Y, F, ragged, season=2) == pytest.approx(1 / 2)
    # scales given directly: a number, or one per row
    assert mase(Y, F, 2.0) == pytest.approx((1 / 2 + (2 / 3) / 2) / 2)
    assert mase(Y, F, np.array([1.0, 0.5])) == pytest.approx((1 + (2 / 3) / 0.5) / 2)
    assert math.isnan(mase(Y, F, [np.array([1.0, 1.0]), np.array([2.0, 2.0])], season=1))
    got = all_metrics(Y, F, contexts=contexts, season=1)
    assert tuple(got) == METRIC_NAMES and got["mase"] == pytest.approx(2 / 3)
    assert all_metrics(Y, F, scale=2.0)["mase"] == pytest.approx(mase(Y, F, 2.0))


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="shapes differ"):
        mae([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="finite"):
        rmse([1, np.nan], [1, 2])
    with pytest.raises(ValueError, match="empty"):
        wape([], [])
    with pytest.raises(ValueError, match="1-D or"):
        smape(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="3 contexts for 2 forecasts"):
        mase(Y, F, [np.zeros(5)] * 3)
    with pytest.raises(ValueError, match="MASE needs"):
        mase(Y, F, np.zeros(5))
