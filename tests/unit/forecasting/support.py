"""Series with known shapes for the K-Shape, SBD and day-pattern tests (and the cluster plots)."""

from __future__ import annotations

import numpy as np

from mesp_core.forecasting.sbd import znormalize


T_DAY = 1440


def three_shapes(n: int, T: int, seed: int) -> np.ndarray:
    """Shifted two-cycle sines, periodic pulses and random walks, with noise."""
    rng = np.random.RandomState(seed)
    t = np.arange(T)
    rows = []
    for i in range(n):
        shift = rng.randint(0, T)
        if i % 3 == 0:
            x = np.sin(2 * np.pi * 2 * (t + shift) / T)
        elif i % 3 == 1:
            x = ((t + shift) % 16 < 2).astype(float)
        else:
            x = np.cumsum(rng.randn(T))
        rows.append(x + 0.3 * rng.randn(T))
    return znormalize(np.array(rows))


def diurnal_day(peak_hour: float, rng, scale=100.0) -> np.ndarray:
    t = np.arange(T_DAY) / 60.0
    base = np.exp(-0.5 * ((t - peak_hour) / 2.0) ** 2) * scale + 2
    return rng.poisson(base).astype(float)


def timer_day(period: int, rng, phase=0) -> np.ndarray:
    x = ((np.arange(T_DAY) + phase) % period == 0) * 30.0
    return x + rng.poisson(0.2, T_DAY)


def spike_day(minute: int, rng) -> np.ndarray:
    x = rng.poisson(0.3, T_DAY).astype(float)
    x[minute : minute + 10] += 400
    return x


def mixed_days(seed=0):
    rng = np.random.RandomState(seed)
    days = []
    truth = []
    for i in range(45):
        kind = i % 3
        if kind == 0:
            days.append(diurnal_day(rng.uniform(13, 16), rng))
        elif kind == 1:
            days.append(timer_day(10, rng, phase=rng.randint(10)))
        else:
            days.append(spike_day(rng.randint(0, 30), rng))
        truth.append(kind)
    days += [np.zeros(T_DAY), np.full(T_DAY, 3.0)]
    truth += [-1, -1]
    return np.array(days), np.array(truth)
