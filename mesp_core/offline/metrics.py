"""Forecast accuracy metrics for per-minute invocation counts.

Every function takes ``y`` (actual) and ``yhat`` (forecast) of the same shape: ``[n, h]`` (n
forecasts of h minutes) or 1-D. Aggregation: the point metrics (MAE, RMSE, MAPE on non-zero
minutes, sMAPE) average over *all* n*h points together, WAPE divides the summed absolute error by
the summed absolute actuals over all points, and MASE averages the per-forecast MASE over the n
rows (each row scaled by its own context). So a forecast of a busy function weighs more than a
quiet one in MAE/RMSE/WAPE, and equally in MASE.

Undefined values are NaN, never an exception: MAPE with no non-zero actual, WAPE with all actuals
zero, MASE with no usable scale.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from mesp_core.constants import MINUTES_PER_DAY

__all__ = [
    "METRIC_NAMES",
    "mae",
    "rmse",
    "mape_nonzero",
    "smape",
    "wape",
    "mase",
    "mase_scale",
    "all_metrics",
]

METRIC_NAMES = ("mae", "rmse", "mape_nonzero", "smape", "wape", "mase")


def _pair(y, yhat) -> tuple[np.ndarray, np.ndarray]:
    y_arr = np.asarray(y, dtype=np.float64)
    f_arr = np.asarray(yhat, dtype=np.float64)
    if y_arr.shape != f_arr.shape:
        raise ValueError(f"actual and forecast shapes differ: {y_arr.shape} vs {f_arr.shape}")
    if y_arr.ndim not in (1, 2):
        raise ValueError(f"expected 1-D or [n, horizon] arrays, got {y_arr.ndim}-D")
    if y_arr.size == 0:
        raise ValueError("empty arrays: nothing to score")
    if not (np.isfinite(y_arr).all() and np.isfinite(f_arr).all()):
        raise ValueError("actual and forecast must be finite numbers")
    return y_arr, f_arr


def mae(y, yhat) -> float:
    """Mean absolute error over all points."""
    y, f = _pair(y, yhat)
    return float(np.mean(np.abs(y - f)))


def rmse(y, yhat) -> float:
    """Root mean squared error over all points."""
    y, f = _pair(y, yhat)
    return float(np.sqrt(np.mean((y - f) ** 2)))


def mape_nonzero(y, yhat) -> float:
    """MAPE in % over the points whose actual is > 0; NaN if there is none."""
    y, f = _pair(y, yhat)
    nonzero = y > 0
    if not nonzero.any():
        return math.nan
    return float(100.0 * np.mean(np.abs(y[nonzero] - f[nonzero]) / y[nonzero]))


def smape(y, yhat) -> float:
    """Symmetric MAPE in % (0..200): mean of 200*|y-f|/(|y|+|f|); 0/0 points count as 0."""
    y, f = _pair(y, yhat)
    denominator = np.abs(y) + np.abs(f)
    terms = np.divide(2.0 * np.abs(y - f), denominator, out=np.zeros_like(y), where=denominator > 0)
    return float(100.0 * np.mean(terms))


def wape(y, yhat) -> float:
    """Weighted absolute percentage error as a fraction: sum|y-f| / sum|y|; NaN if sum|y| == 0."""
    y, f = _pair(y, yhat)
    total = np.sum(np.abs(y))
    if total == 0:
        return math.nan
    return float(np.sum(np.abs(y - f)) / total)


def mase_scale(context, season: int = MINUTES_PER_DAY) -> float:
    """In-sample MAE of the seasonal-naive forecast on one context: mean |x_t - x_{t-m}|.

    Falls back to lag 1 when the context is not longer than ``season`` (e.g. one-day traces with
    m = 1440) or when the seasonal differences are all zero. Returns 0.0 for a constant context
    and NaN for a context shorter than 2 points.
    """
    x = np.asarray(context, dtype=np.float64).reshape(-1)
    if not np.isfinite(x).all():
        raise ValueError("context must be finite numbers")
    if season < 1:
        raise ValueError(f"season must be >= 1, got {season}")
    if x.size < 2:
        return math.nan
    if x.size > season:
        scale = float(np.mean(np.abs(x[season:] - x[:-season])))
        if scale > 0 or season == 1:
            return scale
    return float(np.mean(np.abs(np.diff(x))))


def _scales_from(insample, n_rows: int, season: int) -> np.ndarray:
    """Per-row scales from contexts (list of 1-D / 2-D array) or given scales (scalar / 1-D)."""
    if isinstance(insample, (list, tuple)):
        if len(insample) != n_rows:
            raise ValueError(f"{len(insample)} contexts for {n_rows} forecasts")
        return np.array([mase_scale(c, season) for c in insample], dtype=np.float64)
    arr = np.asarray(insample, dtype=np.float64)
    if arr.ndim == 2:
        if arr.shape[0] != n_rows:
            raise ValueError(f"{arr.shape[0]} contexts for {n_rows} forecasts")
        return np.array([mase_scale(row, season) for row in arr], dtype=np.float64)
    if arr.ndim == 0:
        return np.full(n_rows, float(arr))
    if arr.ndim == 1 and arr.shape[0] == n_rows:
        return arr.copy()
    raise ValueError(
        "MASE needs per-forecast contexts (a list of 1-D arrays or an [n, t] array) or scales "
        f"(a number or [n] array); got shape {arr.shape} for {n_rows} forecasts"
    )


def mase(y, yhat, insample_list_or_scale: Sequence | np.ndarray | float, season: int = MINUTES_PER_DAY) -> float:
    """Mean absolute scaled error, averaged over forecasts (rows).

    Row i's MASE is mean_h |y_ih - f_ih| / scale_i, where scale_i = :func:`mase_scale` of its own
    context with seasonal lag ``season`` (or the given scale). Rows whose scale is zero or NaN
    (constant or too-short context) are left out, because their error cannot be scaled; NaN if no
    row is left. ``insample_list_or_scale``: a list of 1-D contexts, an ``[n, t]`` array of
    contexts, a number, or an ``[n]`` array of scales. A single 1-D forecast is one row, so pass
    its context as ``[context]``.
    """
    y, f = _pair(y, yhat)
    y2, f2 = np.atleast_2d(y), np.atleast_2d(f)
    scales = _scales_from(insample_list_or_scale, y2.shape[0], season)
    usable = np.isfinite(scales) & (scales > 0)
    if not usable.any():
        return math.nan
    row_mae = np.mean(np.abs(y2 - f2), axis=1)
    return float(np.mean(row_mae[usable] / scales[usable]))


def all_metrics(y, yhat, contexts=None, season: int = MINUTES_PER_DAY, scale=None) -> dict[str, float]:
    """All metrics in one dict (keys ``METRIC_NAMES``); MASE is NaN unless contexts or scale given."""
    y_arr, f_arr = _pair(y, yhat)
    insample = contexts if contexts is not None else scale
    return {
        "mae": mae(y_arr, f_arr),
        "rmse": rmse(y_arr, f_arr),
        "mape_nonzero": mape_nonzero(y_arr, f_arr),
        "smape": smape(y_arr, f_arr),
        "wape": wape(y_arr, f_arr),
        "mase": math.nan if insample is None else mase(y_arr, f_arr, insample, season=season),
    }
