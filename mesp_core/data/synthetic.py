"""Seeded generator of realistic multi-day invocation traces (Azure Functions 2019 layout).

The project must not depend on the real sample at run time, so tests and the demo use this
generator. Each function is one of these archetypes (shares chosen so that, as in the real
sample, about half the series have more than half their minutes at zero and about 40% are strongly
periodic):

- ``timer``: fixed period (1, 2, 5, 10, 15, 30 or 60 min) and phase, a fixed count per tick, rare
  one-minute jitter and missed ticks;
- ``diurnal``: one or two daily peaks at fixed hours, weekday/weekend difference (business
  functions drop at weekends, consumer ones rise), day-to-day amplitude drift;
- ``bursty``: ON/OFF (two-state Markov) traffic with overdispersed counts while ON;
- ``sparse``: mostly zeros, a few invocations a day, sometimes following office hours;
- ``batch``: a nightly (or fixed-hour) spike that decays over a few minutes, sometimes weekdays only;
- ``mixture``: a diurnal or bursty component plus a timer (e.g. a health check on top of traffic).

Rates have a per-function scale drawn log-uniformly so that daily totals span about five orders
of magnitude; counts are integers from Poisson / gamma-Poisson (negative binomial) noise. No
function-day is all zero. Every function has its own random stream derived from ``(seed, index)``,
so the result is deterministic per seed and the first ``n`` functions of a larger trace equal a
trace of ``n`` functions with the same seed.

Multi-day events, off by default (and then the trace is exactly as without them):

- ``holidays``: weekdays on which traffic follows the weekend (diurnal functions take their
  weekend level, weekday-only batches skip), trace-wide as public holidays are. A holiday only
  relabels a day: timer, bursty and sparse functions are exactly as without it, the others are
  drawn from the same law apart from that day (not from the same draws: a Poisson sample takes a
  rate-dependent number of random numbers);
- ``level_shifts``: the share of functions whose level changes once, at a random minute after
  the first day, by a factor drawn log-uniformly from [1/4, 4] (at least x1.5 or /1.5), e.g. a
  customer moving on or off. Minutes before the shift are unchanged (own random stream).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from mesp_core.constants import MINUTES_PER_DAY
from mesp_core.data.trace import InvocationTrace

__all__ = ["ARCHETYPES", "LevelShift", "MultiDayEvents", "generate_trace", "generate_with_archetypes", "generate_with_events"]

ARCHETYPES = ("timer", "diurnal", "bursty", "sparse", "batch", "mixture")
_ARCHETYPE_SHARES = np.array([0.38, 0.22, 0.10, 0.12, 0.08, 0.10])
_TIMER_PERIODS = np.array([1, 2, 5, 10, 15, 30, 60])
_TIMER_PERIOD_SHARES = np.array([0.08, 0.12, 0.17, 0.17, 0.14, 0.14, 0.18])
_TRIGGERS = {
    "timer": (["timer", "queue", "event", "others"], [0.80, 0.08, 0.07, 0.05]),
    "diurnal": (["http", "queue", "event", "storage", "orchestration"], [0.60, 0.15, 0.10, 0.08, 0.07]),
    "bursty": (["queue", "event", "http", "storage", "orchestration"], [0.30, 0.25, 0.20, 0.15, 0.10]),
    "sparse": (["http", "storage", "orchestration", "others", "queue"], [0.45, 0.20, 0.15, 0.10, 0.10]),
    "batch": (["timer", "orchestration", "queue", "others"], [0.55, 0.20, 0.15, 0.10]),
    "mixture": (["http", "timer", "event", "queue"], [0.50, 0.25, 0.15, 0.10]),
}
_WEEKEND = (5, 6)  # Saturday, Sunday with Monday = 0
_HOLIDAY_STREAM = 0x484F4C  # extra seed words: the event streams never touch the functions' own
_SHIFT_STREAM = 0x534846
_SHIFT_RANGE = (0.25, 4.0)
_SHIFT_MIN_CHANGE = 1.5


@dataclass(frozen=True)
class LevelShift:
    minute: int    # first minute at the new level
    factor: float  # new level / old level


@dataclass(frozen=True)
class MultiDayEvents:
    holidays: tuple[int, ...] = ()  # day indices (0 = d01) with weekend-like traffic
    level_shifts: dict[int, LevelShift] = field(default_factory=dict)  # function index -> its shift


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(10 ** rng.uniform(np.log10(low), np.log10(high)))


def _gamma_poisson(rng: np.random.Generator, rate: np.ndarray, shape: float) -> np.ndarray:
    """Negative-binomial counts with mean ``rate`` and dispersion ``shape`` (large = Poisson)."""
    return rng.poisson(rate * rng.gamma(shape, 1.0 / shape, size=rate.shape)).astype(np.float64)


def _timer(rng, minutes: int, scale_hint: float) -> np.ndarray:
    period = int(rng.choice(_TIMER_PERIODS, p=_TIMER_PERIOD_SHARES))
    counts = np.zeros(minutes)
    if period == 1:
        # Steady streams (e.g. event hubs polled every minute): near-constant count.
        level = _log_uniform(rng, 1, 2000) * scale_hint
        counts[:] = np.round(level * (1 + 0.01 * rng.standard_normal(minutes)))
        dips = rng.random(minutes) < 0.002
        counts[dips] = 0
        return np.maximum(counts, 0)
    # Either a pure cron-like timer (zeros between ticks) or a periodic spike riding on steady
    # background traffic (busy functions with a periodic job, common in the real trace).
    with_background = rng.random() < 0.45
    phase = int(rng.integers(period))
    ticks = np.arange(phase, minutes, period)
    if with_background:
        per_tick = np.round(_log_uniform(rng, 5, 3000) * scale_hint)
    else:
        per_tick = 1.0 if rng.random() < 0.4 else np.round(_log_uniform(rng, 2, 3000) * scale_hint)
    per_tick = max(per_tick, 1.0)
    jitter = rng.random(ticks.size) < 0.02
    ticks = np.clip(ticks + jitter * rng.choice([-1, 1], size=ticks.size), 0, minutes - 1)
    kept = rng.random(ticks.size) >= rng.uniform(0.0, 0.03)
    values = np.full(ticks.size, per_tick)
    if per_tick > 1:
        values = np.maximum(1, np.round(per_tick * (1 + 0.02 * rng.standard_normal(ticks.size))))
    np.add.at(counts, ticks[kept], values[kept])
    if with_background:
        counts += _gamma_poisson(rng, np.full(minutes, per_tick * rng.uniform(0.05, 0.8)), shape=50.0)
    return counts


def _diurnal_profile(rng, minute_of_day: np.ndarray) -> np.ndarray:
    hours = minute_of_day / 60.0
    n_peaks = 1 if rng.random() < 0.6 else 2
    profile = np.zeros_like(hours)
    centre = rng.uniform(8, 20)
    for p in range(n_peaks):
        c = centre if p == 0 else (centre + rng.uniform(3, 8)) % 24
        width = rng.uniform(1.5, 4.5)
        # circular distance so a peak near midnight wraps around
        d = np.minimum(np.abs(hours - c), 24 - np.abs(hours - c))
        profile += (1.0 if p == 0 else rng.uniform(0.4, 0.9)) * np.exp(-0.5 * (d / width) ** 2)
    floor = rng.uniform(0.01, 0.25)
    return floor + (1 - floor) * profile / profile.max()


def _diurnal(rng, minutes: int, weekdays: np.ndarray, scale_hint: float) -> np.ndarray:
    minute_of_day = np.arange(minutes) % MINUTES_PER_DAY
    day = np.arange(minutes) // MINUTES_PER_DAY
    profile = _diurnal_profile(rng, minute_of_day)
    business = rng.random() < 0.7
    weekend_factor = rng.uniform(0.05, 0.6) if business else rng.uniform(1.1, 1.8)
    n_days = int(day.max()) + 1
    day_factor = np.where(np.isin(weekdays[:n_days], _WEEKEND), weekend_factor, 1.0)
    day_factor = day_factor * rng.lognormal(0.0, 0.08, size=n_days)
    peak_rate = _log_uniform(rng, 0.2, 3000) * scale_hint
    # a slowly varying factor (random log-levels every 30 min, interpolated) gives structure beyond
    # the smooth profile; it is stationary, so long traces do not drift
    knots = np.arange(0, minutes + 30, 30)
    wobble = np.exp(np.interp(np.arange(minutes), knots, rng.normal(0, 0.12, size=knots.size)))
    rate = peak_rate * profile * day_factor[day] * wobble
    return _gamma_poisson(rng, rate, shape=rng.uniform(4, 40))


def _bursty(rng, minutes: int, scale_hint: float) -> np.ndarray:
    mean_on = rng.uniform(3, 60)
    mean_off = rng.uniform(20, 400)
    on = np.zeros(minutes, dtype=bool)
    t = int(rng.integers(0, int(mean_off) + 1))
    while t < minutes:
        length = int(rng.geometric(1.0 / mean_on))
        on[t : t + length] = True
        t += length + int(rng.geometric(1.0 / mean_off))
    on_rate = _log_uniform(rng, 0.5, 2000) * scale_hint
    off_rate = on_rate * 0.002 if rng.random() < 0.5 else 0.0
    rate = np.where(on, on_rate, off_rate)
    return _gamma_poisson(rng, rate, shape=rng.uniform(0.8, 4))


def _sparse(rng, minutes: int) -> np.ndarray:
    per_day = _log_uniform(rng, 8, 400)
    rate = np.full(minutes, per_day / MINUTES_PER_DAY)
    if rng.random() < 0.5:
        rate = rate * 3 * _diurnal_profile(rng, np.arange(minutes) % MINUTES_PER_DAY)
    events = rng.poisson(rate).astype(np.float64)
    # some sparse functions are called in small batches
    if rng.random() < 0.6:
        events = np.where(events > 0, events * rng.geometric(0.25, size=minutes), 0)
    return events


def _batch(rng, minutes: int, weekdays: np.ndarray, scale_hint: float) -> np.ndarray:
    hour = int(rng.choice([0, 1, 2, 3, 4, 5, 6, 22, 23])) if rng.random() < 0.8 else int(rng.integers(24))
    start_minute = hour * 60 + (0 if rng.random() < 0.7 else int(rng.integers(60)))
    duration = int(rng.integers(1, 31))
    peak = _log_uniform(rng, 5, 50000) * scale_hint
    decay = np.exp(-np.arange(duration) / max(duration / 3.0, 1.0))
    weekdays_only = rng.random() < 0.3
    rate = np.zeros(minutes)
    n_days = (minutes + MINUTES_PER_DAY - 1) // MINUTES_PER_DAY
    for d in range(n_days):
        if weekdays_only and weekdays[d] in _WEEKEND:
            continue
        start = d * MINUTES_PER_DAY + start_minute
        stop = min(start + duration, minutes)
        rate[start:stop] = peak * decay[: stop - start]
    if rng.random() < 0.4:
        rate += _log_uniform(rng, 0.002, 0.05)  # light background use
    return _gamma_poisson(rng, rate, shape=rng.uniform(5, 50))


def _mixture(rng, minutes: int, weekdays: np.ndarray, scale_hint: float) -> np.ndarray:
    base = _diurnal(rng, minutes, weekdays, scale_hint) if rng.random() < 0.7 else _bursty(rng, minutes, scale_hint)
    return base + _timer(rng, minutes, scale_hint)


def _hash(*parts) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


def _level_shift(seed: int, index: int, minutes: int, share: float) -> LevelShift | None:
    """Whether (and where, by how much) function `index` shifts level, from its own event stream."""
    if share <= 0 or minutes <= MINUTES_PER_DAY:
        return None
    rng = np.random.default_rng([seed, index, _SHIFT_STREAM])
    if rng.random() >= share:
        return None
    minute = int(rng.integers(MINUTES_PER_DAY, minutes))
    while True:
        factor = _log_uniform(rng, *_SHIFT_RANGE)
        if max(factor, 1 / factor) >= _SHIFT_MIN_CHANGE:
            return LevelShift(minute, round(factor, 3))


def _apply_shift(counts: np.ndarray, shift: LevelShift, seed: int, index: int) -> np.ndarray:
    """Counts from `shift.minute` on at `shift.factor` times their level: binomial thinning down,
    Poisson extra calls up (whole counts, the same minutes busy or busier)."""
    rng = np.random.default_rng([seed, index, _SHIFT_STREAM, 1])
    after = counts[shift.minute:]
    if shift.factor < 1:
        after = rng.binomial(after.astype(np.int64), shift.factor).astype(np.float64)
    else:
        after = after + rng.poisson(after * (shift.factor - 1.0))
    return np.concatenate([counts[: shift.minute], after])


def _holidays(seed: int, weekdays: np.ndarray, holidays) -> tuple[int, ...]:
    """Holiday day indices: the given ones, or `holidays` weekdays drawn from a trace-wide stream."""
    if isinstance(holidays, (int, np.integer)) and not isinstance(holidays, bool):
        if holidays < 0:
            raise ValueError(f"holidays must be >= 0, got {holidays}")
        workdays = np.flatnonzero(~np.isin(weekdays, _WEEKEND))
        if holidays > workdays.size:
            raise ValueError(f"{holidays} holidays asked for, but the trace has only {workdays.size} weekdays")
        rng = np.random.default_rng([seed, _HOLIDAY_STREAM])
        return tuple(sorted(int(d) for d in rng.choice(workdays, size=int(holidays), replace=False)))
    days = sorted({int(d) for d in holidays})
    if any(not 0 <= d < weekdays.size for d in days):
        raise ValueError(f"holiday days must be between 0 and {weekdays.size - 1}, got {list(holidays)}")
    return tuple(days)


def _one_function(seed: int, index: int, minutes: int, weekdays: np.ndarray, shift: LevelShift | None = None):
    rng = np.random.default_rng([seed, index])
    archetype = ARCHETYPES[int(rng.choice(len(ARCHETYPES), p=_ARCHETYPE_SHARES))]
    scale_hint = _log_uniform(rng, 0.3, 3.0)
    if archetype == "timer":
        counts = _timer(rng, minutes, scale_hint)
    elif archetype == "diurnal":
        counts = _diurnal(rng, minutes, weekdays, scale_hint)
    elif archetype == "bursty":
        counts = _bursty(rng, minutes, scale_hint)
    elif archetype == "sparse":
        counts = _sparse(rng, minutes)
    elif archetype == "batch":
        counts = _batch(rng, minutes, weekdays, scale_hint)
    else:
        counts = _mixture(rng, minutes, weekdays, scale_hint)
    if shift is not None:
        counts = _apply_shift(counts, shift, seed, index)
    # The real trace never lists a function-day with no invocation: give empty days one call.
    per_day = counts.reshape(-1, MINUTES_PER_DAY)
    for d in np.flatnonzero(per_day.sum(axis=1) == 0):
        per_day[d, int(rng.integers(MINUTES_PER_DAY))] = 1
    names, shares = _TRIGGERS[archetype]
    trigger = names[int(rng.choice(len(names), p=shares))]
    return archetype, trigger, per_day.reshape(-1)


def generate_with_archetypes(
    n_functions: int = 600, days: int = 3, seed: int = 0, start_weekday: int = 0
) -> tuple[InvocationTrace, list[str]]:
    """Like :func:`generate_trace`, also returning each function's archetype name."""
    trace, archetypes, _ = generate_with_events(n_functions, days, seed, start_weekday)
    return trace, archetypes


def generate_with_events(
    n_functions: int = 600, days: int = 3, seed: int = 0, start_weekday: int = 0,
    holidays: int | Sequence[int] = 0, level_shifts: float = 0.0,
) -> tuple[InvocationTrace, list[str], MultiDayEvents]:
    """Like :func:`generate_trace`, also returning the archetypes and the multi-day events placed.

    ``holidays``: a number of weekdays drawn per seed, or the day indices (0 = d01) themselves;
    ``level_shifts``: the share of functions whose level shifts once (see the module docstring)."""
    if int(n_functions) < 1:
        raise ValueError(f"n_functions must be >= 1, got {n_functions}")
    if not 1 <= int(days) <= 999:
        raise ValueError(f"days must be between 1 and 999, got {days}")
    if int(start_weekday) not in range(7):
        raise ValueError(f"start_weekday must be 0 (Monday) .. 6 (Sunday), got {start_weekday}")
    if isinstance(level_shifts, bool) or not 0.0 <= float(level_shifts) <= 1.0:
        raise ValueError(f"level_shifts must be a share in [0, 1], got {level_shifts!r}")
    n_functions, days, seed = int(n_functions), int(days), int(seed)
    minutes = days * MINUTES_PER_DAY
    weekdays = (int(start_weekday) + np.arange(days)) % 7
    holiday_days = _holidays(seed, weekdays, holidays)
    # A holiday is a Sunday to the functions: only what depends on the weekday changes.
    traffic_days = weekdays.copy()
    traffic_days[list(holiday_days)] = 6
    counts = np.empty((n_functions, minutes), dtype=np.float32)
    keys, triggers, archetypes = [], [], []
    shifts: dict[int, LevelShift] = {}
    # Owners hold a few apps, apps a few functions, as in the real trace.
    for i in range(n_functions):
        shift = _level_shift(seed, i, minutes, float(level_shifts))
        if shift is not None:
            shifts[i] = shift
        archetype, trigger, series = _one_function(seed, i, minutes, traffic_days, shift)
        counts[i] = series
        app = i // 3
        owner = app // 2
        keys.append(
            (
                _hash("mesp-synthetic", seed, "owner", owner),
                _hash("mesp-synthetic", seed, "app", app),
                _hash("mesp-synthetic", seed, "function", i),
            )
        )
        triggers.append(trigger)
        archetypes.append(archetype)
    trace = InvocationTrace(
        keys=keys,
        triggers=triggers,
        counts=counts,
        days=[f"d{d + 1:02d}" for d in range(days)],
        present=np.ones((n_functions, days), dtype=bool),
    )
    return trace, archetypes, MultiDayEvents(holidays=holiday_days, level_shifts=shifts)


def generate_trace(n_functions: int = 600, days: int = 3, seed: int = 0, start_weekday: int = 0,
                   holidays: int | Sequence[int] = 0, level_shifts: float = 0.0) -> InvocationTrace:
    """A realistic synthetic trace: ``n_functions`` functions x ``days`` whole days (d01, d02, ...).

    ``start_weekday`` is the weekday of d01 (0 = Monday, so d06/d07 are the weekend by default).
    Deterministic per ``seed``; see the module docstring for the archetypes and their shares, and
    for the optional ``holidays`` and ``level_shifts``.
    """
    return generate_with_events(n_functions, days, seed, start_weekday, holidays, level_shifts)[0]
