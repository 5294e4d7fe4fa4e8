"""The seeded synthetic trace generator: determinism, layout and realism of the mix."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mesp_core.constants import MINUTES_PER_DAY
from mesp_core.data.synthetic import ARCHETYPES, generate_trace, generate_with_archetypes

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
