"""How `mesp train` reads its trace: every read is a per-function map, so the trace may live in shards.

Training needs little of the trace at once: keys and which days each function has, a capped sample
of daily patterns (K-Shape), capped samples of windows and of demand-head origins, and the series of
a capped number of validation functions. Each of these is a function of some rows of the counts,
computed row by row. `TraceAccess.map_rows(fn, rows, *per_item)` runs such a function:

- `LocalTraceAccess` (this module) over a trace held in this process: one call on the whole counts;
- `mesp_core.distributed.training.ShardedTraceAccess` over a `ShardedTrace` on Ray: one task per
  shard on that shard's rows, the results joined in item order. No process then holds the trace.

A map function is `fn(counts [n, T], rows [m], *per_item [m, ...]) -> array or tuple of arrays [m, ...]`
whose item i depends only on `counts[rows[i]]` and its own per-item values, so both give the same
arrays bit for bit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from mesp_core.constants import MINUTES_PER_DAY


class TraceAccess(ABC):
    """What training reads of a trace (see the module docstring); subclasses say where it lives."""

    keys: list
    days: list

    @property
    def n_functions(self) -> int:
        return len(self.keys)

    @property
    def n_minutes(self) -> int:
        return len(self.days) * MINUTES_PER_DAY

    @property
    @abstractmethod
    def present(self) -> np.ndarray:
        """[n_functions, n_days] bool: the days each function has a row in."""

    @abstractmethod
    def fingerprint(self) -> str:
        """`InvocationTrace.fingerprint` of the whole trace."""

    @abstractmethod
    def map_rows(self, fn, rows, *per_item, **kwargs):
        """fn(counts, rows, *per_item, **kwargs) over the functions `rows` (any order, repeats allowed)."""

    @abstractmethod
    def map_rows_in_place(self, fn, rows, *per_item, **kwargs) -> list:
        """map_rows whose result stays where it was computed: a list of blocks (in item order, `rows`
        sorted) that `cluster_days` of the same access reads."""

    @abstractmethod
    def cluster_days(self, blocks: list, **kwargs):
        """`cluster_days` on the concatenated day blocks of `map_rows_in_place`."""

    def series(self, rows) -> np.ndarray:
        """The whole series of the functions `rows`: [len(rows), n_minutes] float32."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return np.zeros((0, self.n_minutes), dtype=np.float32)
        return self.map_rows(take_rows, rows)


class LocalTraceAccess(TraceAccess):
    """Training's reads of an `InvocationTrace` held in this process."""

    def __init__(self, trace):
        self.trace = trace
        self.keys = list(trace.keys)
        self.days = list(trace.days)

    @property
    def present(self) -> np.ndarray:
        return np.asarray(self.trace.present, dtype=bool)

    def fingerprint(self) -> str:
        return self.trace.fingerprint()

    def map_rows(self, fn, rows, *per_item, **kwargs):
        return fn(self.trace.counts, np.asarray(rows, dtype=np.int64), *per_item, **kwargs)

    def map_rows_in_place(self, fn, rows, *per_item, **kwargs) -> list:
        return [self.map_rows(fn, rows, *per_item, **kwargs)]

    def cluster_days(self, blocks: list, **kwargs):
        from mesp_core.forecasting.patterns import cluster_days

        return cluster_days(blocks[0] if len(blocks) == 1 else np.concatenate(blocks), **kwargs)


def as_trace_access(trace) -> TraceAccess:
    """A TraceAccess as it is, an InvocationTrace wrapped as a LocalTraceAccess."""
    return trace if isinstance(trace, TraceAccess) else LocalTraceAccess(trace)


def take_rows(counts, rows) -> np.ndarray:
    """Map function: the series of `rows`."""
    return np.asarray(counts[rows], dtype=np.float32)


def take_days(counts, rows, day) -> np.ndarray:
    """Map function: the day `day[i]` (its 1440 minutes) of function `rows[i]`."""
    minutes = np.asarray(day, dtype=np.int64)[:, None] * MINUTES_PER_DAY + np.arange(MINUTES_PER_DAY)
    return np.asarray(counts[rows[:, None], minutes], dtype=np.float32)


def daily_sample(access: TraceAccess, functions: np.ndarray, max_days: int, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The present days of `functions` (sorted) in `InvocationTrace.daily()` order, a seeded sample
    of `max_days` when there are more: (function row, day index) per sampled day, and how many
    days there were. Reads `present` only."""
    func_idx, day_idx = np.nonzero(access.present[np.asarray(functions, dtype=np.int64)])
    n_days = len(func_idx)
    if n_days > max_days:
        keep = np.sort(np.random.default_rng(seed).choice(n_days, max_days, replace=False))
        func_idx, day_idx = func_idx[keep], day_idx[keep]
    return np.asarray(functions, dtype=np.int64)[func_idx], day_idx, n_days
