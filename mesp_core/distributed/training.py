"""`mesp train --ray`: the trace read in shards, the expert search as Ray tasks.

`ShardedTraceAccess` gives `train` its reads of a `ShardedTrace` (mesp_core.offline.trace_access):
the day sample for K-Shape, the windows with their routes, the demand head's examples and the
validation series are each cut in the shards' own tasks, so the driver holds capped samples, never
the trace.

`run_on_ray` is a runner for `mesp_core.offline.training.train(run_tasks=...)`: the stage's shared
data (windows, routes, baselines, dense models) goes into the object store once, and each unit
(`mesp_core.offline.expert_search`: one family's Optuna study, one cluster's search) runs as a
task on one torch thread, as it does in one process, so the model is the same. A unit is a pure
function of its arguments, so a task whose worker dies is rerun elsewhere with the same result.
"""

from __future__ import annotations

import copy

import numpy as np

from mesp_core.data.trace import trace_digest
from mesp_core.distributed.engine import remote, require_ray
from mesp_core.offline.trace_access import TraceAccess


def _expert_task(unit, item, shared):
    """One unit of the expert search in a Ray worker, on the fit's one torch thread."""
    from mesp_core.offline.training import FIT_THREADS, torch_threads

    with torch_threads(FIT_THREADS):
        return unit(item, shared, None)


def run_on_ray(unit, items, shared, bar=None, units_per_item: int = 1) -> list:
    """`unit(item, shared)` for every item as Ray tasks in parallel; the results in item order.

    `shared` is put into the object store once; every task reads that one copy. `bar` advances
    by `units_per_item` as each task ends (in whatever order they end)."""
    ray = require_ray()
    shared_ref = ray.put(shared)
    task = remote(_expert_task)
    pending = {task.remote(unit, item, shared_ref): i for i, item in enumerate(items)}
    results: list = [None] * len(items)
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            # a private copy: arrays read from the object store are read-only, in-process results are not
            results[pending.pop(ref)] = copy.deepcopy(ray.get(ref))
            if bar is not None:
                bar.update(units_per_item)
    return results


def _map_shard(shard, fn, rows, per_item, kwargs):
    """`fn` on one shard's counts, on the fit's one torch thread (routing is a torch kernel)."""
    from mesp_core.offline.training import FIT_THREADS, torch_threads

    with torch_threads(FIT_THREADS):
        return fn(shard.counts, rows, *per_item, **kwargs)


def _present(shard):
    return shard.present


class ShardedTraceAccess(TraceAccess):
    """Training's reads of a `ShardedTrace`: each map runs as one Ray task per shard that holds
    some of the rows, and only the results (capped samples) come back to the driver."""

    def __init__(self, sharded):
        self.sharded = sharded
        self.keys = sharded.keys
        self.days = list(sharded.days)
        self._present = None

    @property
    def present(self) -> np.ndarray:
        if self._present is None:  # one bool per function-day: 700 kB at 50,000 functions x 14 days
            ray = require_ray()
            self._present = np.concatenate(ray.get([remote(_present).remote(ref) for ref in self.sharded.refs]))
        return self._present

    def fingerprint(self) -> str:
        """`InvocationTrace.fingerprint` of the gathered trace, read one shard at a time."""
        ray = require_ray()
        digest = trace_digest(self.keys, self.n_minutes)
        for ref in self.sharded.refs:
            digest.update(np.ascontiguousarray(ray.get(ref).counts, dtype="<f4").tobytes())
        return digest.hexdigest()

    def _calls(self, fn, rows, per_item, kwargs):
        """(item positions, task reference) per shard holding some of `rows`, items sorted by row."""
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        task = remote(_map_shard)
        calls = []
        for ref, (start, stop) in zip(self.sharded.refs, self.sharded.bounds):
            lo, hi = np.searchsorted(sorted_rows, [start, stop])
            if hi > lo:
                at = order[lo:hi]
                calls.append((at, task.remote(ref, fn, sorted_rows[lo:hi] - start,
                                              tuple(np.asarray(a)[at] for a in per_item), kwargs)))
        return calls

    def map_rows(self, fn, rows, *per_item, **kwargs):
        ray = require_ray()
        calls = self._calls(fn, rows, per_item, kwargs)
        if not calls:
            return fn(np.zeros((0, self.n_minutes), dtype=np.float32), np.zeros(0, dtype=np.int64),
                      *(np.asarray(a)[:0] for a in per_item), **kwargs)
        n = len(rows)
        out = None
        for at, ref in calls:  # one shard's result at a time: the driver holds the joined result only
            part = ray.get(ref)
            single = not isinstance(part, tuple)
            parts = (part,) if single else part
            if out is None:
                out = tuple(np.empty((n, *p.shape[1:]), dtype=p.dtype) for p in parts)
            for o, p in zip(out, parts):
                o[at] = p
        return out[0] if single else out

    def map_rows_in_place(self, fn, rows, *per_item, **kwargs) -> list:
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and np.any(np.diff(rows) < 0):
            raise ValueError("map_rows_in_place needs rows in order")
        return [ref for _, ref in self._calls(fn, rows, per_item, kwargs)]

    def cluster_days(self, blocks: list, **kwargs):
        from mesp_core.distributed.patterns import cluster_days_sharded

        return cluster_days_sharded(blocks, **kwargs)[0]
