"""The naive floors (mesp_core.forecasting.experts.naive): seasonal naive's period detection and
fallbacks, and repeat-last-hour."""

import numpy as np
import pytest

from mesp_core.forecasting.experts import APERIODIC, RepeatLastHour, SeasonalNaive, detect_periods

from .support import HORIZON


@pytest.mark.parametrize("period", [1, 2, 5, 10, 15, 30, 60, 120])
def test_seasonal_naive_recovers_the_exact_period(period):
    rng = np.random.default_rng(period)
    pattern = rng.integers(0, 50, size=period).astype(np.float64)
    series = np.tile(pattern, 3000 // period + 1)[:3000]
    contexts = [series[:length] for length in (3000, 600, 250)]
    assert detect_periods(contexts).tolist() == [period] * 3
    expert = SeasonalNaive()
    forecast = expert.predict([series[:2000]])[0]
    np.testing.assert_allclose(forecast, series[2000 : 2000 + HORIZON])


def test_seasonal_naive_finds_a_daily_period_only_with_enough_history():
    rng = np.random.default_rng(0)
    t = np.arange(4 * 1440)
    daily = 50 + 45 * np.sin(2 * np.pi * t / 1440) + 40 * ((t % 1440) // 60 == 9)
    series = rng.poisson(daily).astype(np.float64)
    periods = detect_periods([series[:2880], series[:1000]])
    assert periods[0] == 1440
    assert periods[1] != 1440  # a day cannot be seen in 1000 minutes


def test_seasonal_naive_falls_back_to_recent_mean_on_noise():
    rng = np.random.default_rng(1)
    noise = rng.poisson(20, size=(3, 1500)).astype(np.float64)
    assert (detect_periods(noise) == APERIODIC).all()
    forecast = SeasonalNaive().predict(noise)
    np.testing.assert_allclose(forecast, np.repeat(noise[:, -60:].mean(axis=1, keepdims=True), HORIZON, axis=1), rtol=1e-5)


def test_seasonal_naive_short_contexts_use_what_they_have():
    forecast = SeasonalNaive().predict([np.arange(60, dtype=np.float64)])
    np.testing.assert_allclose(forecast, np.full((1, HORIZON), 29.5))
    assert (SeasonalNaive().predict(np.zeros((2, 500))) == 0).all()


def test_seasonal_naive_lengths_ignore_padding():
    pattern = np.array([0.0, 0, 0, 0, 9])
    context = np.tile(pattern, 40)  # 200 minutes of a 5-minute timer
    padded = np.concatenate([np.full(300, 100.0), context])[None, :]
    assert detect_periods(padded, lengths=np.array([200]))[0] == 5


def _period_errors_by_loops(row, horizon, candidates, mean_window, span=1440):
    """The quantities _period_errors derives from FFTs and cumulative sums, computed pair by pair."""
    from mesp_core.forecasting.experts.naive import _enough_history, _lags_for

    recent = row[-span:]

    def mean_sq_diff(x, lag):
        return np.mean([(x[t] - x[t - lag]) ** 2 for t in range(lag, len(x))])

    def moment(k):
        return np.mean([recent[t] * recent[t - k] for t in range(k, len(recent))])

    out = []
    for p in candidates:
        if p < horizon:
            lags = _lags_for(p, horizon)
            ok = _enough_history(np.array([len(recent)]), int(lags.max()))[0]
            out.append(np.mean([mean_sq_diff(recent, lag) for lag in lags]) if ok else np.inf)
        elif p <= span // 4:
            out.append(mean_sq_diff(recent, p) if _enough_history(np.array([len(recent)]), p)[0] else np.inf)
        else:
            out.append(mean_sq_diff(row, p) if _enough_history(np.array([len(row)]), p)[0] else np.inf)
    w = mean_window
    if _enough_history(np.array([len(recent)]), horizon + w - 1)[0]:
        cross = np.mean([sum(moment(h + j) for j in range(w)) for h in range(1, horizon + 1)])
        level = sum((w - abs(d)) * moment(abs(d)) for d in range(-(w - 1), w)) / w**2
        out.append(max(moment(0) - 2 * cross / w + level, 0.0))
    else:
        out.append(np.inf)
    return np.array(out)


def test_seasonal_naive_period_errors_match_a_pair_by_pair_computation():
    from mesp_core.forecasting.experts.naive import _period_errors, _right_aligned

    rng = np.random.default_rng(7)
    horizon, candidates, mean_window = 12, [1, 5, 10, 30, 300, 1440], 10
    lengths = [3000, 1600, 700, 90, 40]  # day lag usable, too short for it, short lags only, mean off
    rows = [rng.poisson(rng.uniform(0.5, 40), size=n).astype(np.float64) * (rng.random(n) < 0.6) for n in lengths]
    x, length = _right_aligned(rows, 3000, None)
    fast = _period_errors(x.astype(np.float64), length, horizon, candidates, mean_window)
    slow = np.stack([_period_errors_by_loops(row, horizon, candidates, mean_window) for row in rows])
    np.testing.assert_array_equal(np.isinf(fast), np.isinf(slow))
    np.testing.assert_allclose(fast[np.isfinite(slow)], slow[np.isfinite(slow)], rtol=1e-9, atol=1e-9)


def test_repeat_last_hour_repeats_the_last_60_minutes():
    context = np.arange(100, dtype=np.float32)
    np.testing.assert_array_equal(RepeatLastHour().predict([context])[0], context[-60:])
    np.testing.assert_array_equal(RepeatLastHour(horizon=90).predict([context])[0][60:], context[-60:-30])
