"""The seeded synthetic trace generator: determinism, layout and realism of the mix."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mesp_core.constants import MINUTES_PER_DAY
from mesp_core.data.synthetic import ARCHETYPES, LevelShift, generate_trace, generate_with_archetypes, generate_with_events

AZURE_TRIGGERS = {"http", "timer", "queue", "event", "storage", "orchestration", "others"}


@pytest.fixture(scope="module")
def week():
    return generate_with_archetypes(n_functions=600, days=7, seed=0, start_weekday=0)


def periodic_score(days: np.ndarray) -> np.ndarray:
    """Best autocorrelation of the first differences at the timer lags (~1 for clean timers)."""
    d = np.diff(days, axis=1)
    d = d - d.mean(axis=1, keepdims=True)
    energy = np.maximum((d * d).sum(axis=1), 1e-12)
    return np.max([(d[:, :-lag] * d[:, lag:]).sum(axis=1) / energy for lag in (2, 5, 10, 15, 30, 60)], axis=0)


def test_deterministic_per_seed():
    a = generate_trace(n_functions=80, days=2, seed=7)
    b = generate_trace(n_functions=80, days=2, seed=7)
    c = generate_trace(n_functions=80, days=2, seed=8)
    assert a == b and a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()
    assert not set(a.keys) & set(c.keys)
    # each function has its own stream: a larger trace starts with the smaller one
    assert generate_trace(n_functions=120, days=2, seed=7).subset(np.arange(80)) == a


def test_layout(week):
    trace, archetypes = week
    assert trace.counts.shape == (600, 7 * MINUTES_PER_DAY) and trace.counts.dtype == np.float32
    assert trace.days == [f"d0{d}" for d in range(1, 8)] and trace.present.all()
    assert (trace.counts >= 0).all() and np.array_equal(trace.counts, np.round(trace.counts))
    per_day = trace.counts.reshape(600, 7, MINUTES_PER_DAY).sum(axis=2)
    assert (per_day > 0).all(), "no function-day may be all zero"
    assert len(set(trace.keys)) == 600
    assert all(re.fullmatch(r"[0-9a-f]{64}", part) for key in trace.keys for part in key)
    assert set(trace.triggers) <= AZURE_TRIGGERS and len(set(trace.triggers)) >= 5
    assert set(archetypes) == set(ARCHETYPES)


def test_mix_resembles_the_real_sample(week):
    trace, _ = week
    first_day = trace.counts[:, :MINUTES_PER_DAY].astype(np.float64)
    mostly_zero = ((first_day == 0).mean(axis=1) > 0.5).mean()
    periodic = (periodic_score(first_day) > 0.5).mean()
    assert 0.4 <= mostly_zero <= 0.65, mostly_zero
    assert 0.25 <= periodic <= 0.5, periodic
    totals = first_day.sum(axis=1)
    assert np.log10(np.percentile(totals, 99.5) / np.percentile(totals, 0.5)) >= 4.5


def test_archetypes_behave(week):
    trace, archetypes = week
    arche = np.array(archetypes)
    days = trace.counts.reshape(600, 7, MINUTES_PER_DAY).astype(np.float64)

    timers = np.flatnonzero(arche == "timer")
    scores = periodic_score(days[timers, 0])
    constant = days[timers, 0].std(axis=1) < 0.05 * days[timers, 0].mean(axis=1) + 1
    assert np.mean(scores[~constant] > 0.5) > 0.85

    # diurnal: weekend days (d06, d07 with Monday start) differ from weekdays
    diurnal = np.flatnonzero(arche == "diurnal")
    totals = days[diurnal].sum(axis=2)
    ratio = totals[:, 5:].mean(axis=1) / totals[:, :5].mean(axis=1)
    assert np.mean(np.abs(np.log(ratio)) > np.log(1.08)) > 0.8
    # and peak at a stable hour of the day
    peak_hour = days[diurnal, :5].mean(axis=1).reshape(len(diurnal), 24, 60).sum(axis=2).argmax(axis=1)
    assert np.mean(np.abs(peak_hour - days[diurnal, 0].reshape(len(diurnal), 24, 60).sum(axis=2).argmax(axis=1)) <= 2) > 0.7

    # batch: the day's busiest minute is at the same time of day on (most) days
    batch = np.flatnonzero(arche == "batch")
    busiest = days[batch].argmax(axis=2)
    same = (np.abs(busiest - busiest[:, :1]) <= 5).mean(axis=1)
    assert np.mean(same >= 5 / 7) > 0.8

    sparse = np.flatnonzero(arche == "sparse")
    assert ((days[sparse] == 0).mean(axis=2) > 0.6).all()


def test_start_weekday_moves_the_weekend():
    monday, arche = generate_with_archetypes(n_functions=150, days=7, seed=3, start_weekday=0)
    saturday, _ = generate_with_archetypes(n_functions=150, days=7, seed=3, start_weekday=5)
    diurnal = np.array(arche) == "diurnal"
    totals_mon = monday.counts[diurnal].reshape(diurnal.sum(), 7, MINUTES_PER_DAY).sum(axis=2)
    totals_sat = saturday.counts[diurnal].reshape(diurnal.sum(), 7, MINUTES_PER_DAY).sum(axis=2)
    business = totals_mon[:, 5:].mean(axis=1) < totals_mon[:, :5].mean(axis=1)
    # business functions are quiet on d06/d07 from a Monday start, on d01/d02 from a Saturday start
    assert (totals_sat[business, :2].mean(axis=1) < totals_sat[business, 2:].mean(axis=1)).mean() > 0.9


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_functions"):
        generate_trace(n_functions=0)
    with pytest.raises(ValueError, match="days"):
        generate_trace(days=0)
    with pytest.raises(ValueError, match="start_weekday"):
        generate_trace(start_weekday=7)


def _day_totals(counts: np.ndarray) -> np.ndarray:
    return counts.reshape(counts.shape[0], -1, MINUTES_PER_DAY).sum(axis=2).astype(np.float64)


def test_without_events_the_trace_is_unchanged_and_the_events_are_seeded():
    plain = generate_trace(n_functions=40, days=8, seed=2)
    none, _, events = generate_with_events(n_functions=40, days=8, seed=2)
    assert none == plain and events.holidays == () and events.level_shifts == {}
    _, _, a = generate_with_events(n_functions=40, days=8, seed=2, holidays=2, level_shifts=0.3)
    _, _, b = generate_with_events(n_functions=40, days=8, seed=2, holidays=2, level_shifts=0.3)
    assert a == b and len(a.holidays) == 2 and 0 < len(a.level_shifts) < 40
    assert all(d % 7 not in (5, 6) for d in a.holidays)  # holidays fall on weekdays (d01 a Monday)


def test_a_holiday_has_weekend_traffic_and_leaves_calendar_free_functions_alone():
    n, days, holiday = 300, 14, 9  # d10, a Wednesday
    base, archetypes = generate_with_archetypes(n_functions=n, days=days, seed=5)
    trace, _, events = generate_with_events(n_functions=n, days=days, seed=5, holidays=[holiday])
    assert events.holidays == (holiday,)
    diurnal = np.array([a == "diurnal" for a in archetypes])
    calendar_free = np.array([a in ("timer", "bursty", "sparse") for a in archetypes])
    np.testing.assert_array_equal(trace.counts[calendar_free], base.counts[calendar_free])  # cron takes no holidays
    totals = _day_totals(trace.counts[diurnal])
    # The holiday over the weekday before it follows the Saturday over the Friday, function by function.
    on_holiday = np.log(totals[:, holiday] / totals[:, holiday - 1])
    on_weekend = np.log(totals[:, 12] / totals[:, 11])
    assert np.corrcoef(on_holiday, on_weekend)[0, 1] > 0.9
    assert np.abs(on_holiday).mean() > 0.3  # and it is not an ordinary day


def test_a_level_shift_scales_the_level_from_its_minute_on():
    n, days = 200, 4
    base = generate_trace(n_functions=n, days=days, seed=6)
    trace, _, events = generate_with_events(n_functions=n, days=days, seed=6, level_shifts=1.0)
    assert set(events.level_shifts) == set(range(n))
    checked = 0
    for i, shift in events.level_shifts.items():
        assert isinstance(shift, LevelShift) and MINUTES_PER_DAY <= shift.minute < days * MINUTES_PER_DAY
        assert max(shift.factor, 1 / shift.factor) >= 1.5 - 1e-3
        np.testing.assert_array_equal(trace.counts[i, : shift.minute], base.counts[i, : shift.minute])
        before, after = base.counts[i, shift.minute:].sum(), trace.counts[i, shift.minute:].sum()
        if before > 5000:  # busy enough for the ratio to show the factor
            assert after / before == pytest.approx(shift.factor, rel=0.1)
            checked += 1
    assert checked > 20
    assert (_day_totals(trace.counts) > 0).all()  # still no all-zero function-day


@pytest.mark.parametrize("kwargs, message", [
    ({"holidays": -1}, "holidays must be >= 0"),
    ({"holidays": 6, "days": 7}, "only 5 weekdays"),
    ({"holidays": [7], "days": 7}, "holiday days must be between 0 and 6"),
    ({"level_shifts": 1.5}, r"level_shifts must be a share in \[0, 1\]"),
])
def test_bad_event_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_with_events(n_functions=3, **{"days": 7, **kwargs})
