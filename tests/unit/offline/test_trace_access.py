"""The reads `mesp train` makes of a trace (mesp_core.offline.trace_access) and the map functions
they run: the same arrays whether computed on the whole counts or row by row."""

from __future__ import annotations

import numpy as np
import pytest

from mesp_core.data.synthetic import generate_trace
from mesp_core.data.windows import make_windows, window_origins
from mesp_core.forecasting.demand import DemandHead, demand_examples
from mesp_core.forecasting.router import Router
from mesp_core.offline.selection import cut_and_route, route_windows
from mesp_core.offline.trace_access import LocalTraceAccess, as_trace_access, daily_sample, take_days


@pytest.fixture(scope="module")
def trace():
    return generate_trace(n_functions=30, days=2, seed=3)


def test_window_origins_for_equal_lengths_are_the_listed_ones():
    lengths = [2880] * 7
    for max_windows in (None, 50, 10_000):
        fast = window_origins(lengths, 60, stride=30, min_context=120, rng=4, max_windows=max_windows)
        listed = window_origins(lengths + [2881], 60, stride=30, min_context=120, rng=4, max_windows=None)
        listed = tuple(a[listed[0] < 7] for a in listed)  # the unequal extra series forces the listing path
        if max_windows is not None and len(listed[0]) > max_windows:
            keep = np.sort(np.random.default_rng(4).choice(len(listed[0]), size=max_windows, replace=False))
            listed = tuple(a[keep] for a in listed)
        np.testing.assert_array_equal(fast[0], listed[0])
        np.testing.assert_array_equal(fast[1], listed[1])
    assert [len(a) for a in window_origins([100] * 3, 60, min_context=120)] == [0, 0]


def test_cut_and_route_equals_make_windows_and_route_windows_on_any_split(trace):
    router = Router(np.stack([np.sin(np.linspace(0, 2 * np.pi, 1440)), np.cos(np.linspace(0, 6 * np.pi, 1440))]).astype(np.float32))
    functions = np.array([1, 4, 5, 9, 17, 22, 29])
    series = [trace.counts[i] for i in functions]
    windows = make_windows(series, 240, 60, stride=45, rng=2, max_windows=200)
    route, _ = route_windows(router, series, windows)
    rows = functions[windows.series]
    x, y, routed = cut_and_route(trace.counts, rows, windows.origin, 240, 60, router)
    np.testing.assert_array_equal(x, windows.x)
    np.testing.assert_array_equal(y, windows.y)
    np.testing.assert_array_equal(routed, route)
    half = rows < 10  # as two shards would compute it
    parts = [cut_and_route(trace.counts, rows[m], windows.origin[m], 240, 60, router) for m in (half, ~half)]
    np.testing.assert_array_equal(np.concatenate([p[2] for p in parts]), route)
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), windows.x)


def test_demand_examples_row_by_row_are_the_fit_sample(trace):
    head = DemandHead(hidden=8)
    rows, origins = head.sample_origins(trace.n_functions, trace.n_minutes, max_origins=300, seed=5)
    x, y = demand_examples(trace.counts, rows, origins, head.horizon)
    order = np.argsort(rows, kind="stable")
    xs, ys = demand_examples(trace.counts, rows[order], origins[order], head.horizon)
    np.testing.assert_array_equal(xs, x[order])
    np.testing.assert_array_equal(ys, y[order])
    with pytest.raises(ValueError, match="too short"):
        head.sample_origins(3, 60 + head.horizon, seed=0)


def test_daily_sample_is_daily_order_and_take_days_reads_those_days(trace):
    access = as_trace_access(trace)
    assert isinstance(access, LocalTraceAccess) and as_trace_access(access) is access
    functions = np.arange(0, trace.n_functions, 2)
    rows, day, n_days = daily_sample(access, functions, max_days=10**6, seed=0)
    expected, _ = trace.subset(functions).daily()
    assert n_days == len(expected) == len(rows)
    np.testing.assert_array_equal(take_days(trace.counts, rows, day), expected)
    rows_s, day_s, _ = daily_sample(access, functions, max_days=7, seed=0)
    keep = np.sort(np.random.default_rng(0).choice(n_days, 7, replace=False))
    np.testing.assert_array_equal(take_days(trace.counts, rows_s, day_s), expected[keep])
    np.testing.assert_array_equal(access.series([3, 1]), trace.counts[[3, 1]])
    assert access.series([]).shape == (0, trace.n_minutes)
