"""`mesp train --ray`'s expert search: the dense family studies and the per-cluster searches as Ray tasks.

`run_on_ray` is a runner for `mesp_core.offline.training.train(run_tasks=...)`: the stage's shared
data (windows, routes, baselines, dense models) goes into the object store once, and each unit
(`mesp_core.offline.expert_search`: one family's Optuna study, one cluster's search) runs as a
task on one torch thread, as it does in one process, so the model is the same. A unit is a pure
function of its arguments, so a task whose worker dies is rerun elsewhere with the same result.
"""

from __future__ import annotations

import copy

from mesp_core.distributed.engine import remote, require_ray


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
