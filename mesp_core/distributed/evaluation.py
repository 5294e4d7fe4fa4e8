"""`mesp evaluate --ray` and `mesp simulate --ray`: the backtest and the replay over function shards.

Each shard task runs the single-process code (`backtest_forecasts`, `replay_tallies`) on its shard's
selected functions with the model from the object store (put there once). The driver joins what the
tasks return, functions in order, and computes the figures with the single-process code:
- the backtest's per-origin actuals, forecasts, routes and scales (every metric is pooled over
  (function, origin) pairs, so the joined arrays give exactly the one-process figures);
- the replay's per-policy, per-function counts (cold starts, idle, coverage...: integers, and the
  p75 of per-function cold-start rates over the joined per-function array).
Tasks are pure functions of their arguments: a task whose worker dies is rerun with the same result.
"""

from __future__ import annotations

import numpy as np

from mesp_core.distributed.engine import get_results, remote, require_ray
from mesp_core.offline.evaluation import (
    DEFAULT_ORIGINS,
    approach_names,
    backtest_forecasts,
    join_forecasts,
    origin_minutes,
    summarise_backtest,
)
from mesp_core.replay.simulate import join_tallies, report_from_tallies
from mesp_core.replay.standard import replay_tallies


def _backtest_shard(model, shard, rows, absolute, horizon, approaches):
    return backtest_forecasts(model, shard.counts[rows], absolute, horizon, approaches)


def backtest_on_ray(model, sharded, rows, origins=DEFAULT_ORIGINS, horizon: int = 60, approaches=None, n_samples: int = 6):
    """`backtest(model, trace.counts[rows], origins, horizon)` with the trace in shards (a ShardedTrace)."""
    if len(rows) == 0:
        raise ValueError("backtest needs a non-empty [n_functions, minutes] array")
    origins, absolute = origin_minutes(sharded.n_minutes, origins, horizon)
    approaches = approaches or approach_names(model)
    model_ref = require_ray().put(model)
    task = remote(_backtest_shard)
    parts = [task.remote(model_ref, ref, local, absolute, horizon, approaches) for ref, local in sharded.select(rows)]
    return summarise_backtest(model, join_forecasts(get_results(parts)), origins, horizon, approaches, n_samples)


def _replay_shard(model, shard, rows, capacity, kwargs):
    return replay_tallies(model, shard.counts[rows], capacity=capacity, progress=False, **kwargs)


def replay_on_ray(model, sharded, rows, capacity=60.0, **kwargs):
    """`run_replay(model, trace.counts[rows], capacity=capacity, **kwargs)` with the trace in shards.

    `capacity`: one number, or one per function of `rows`."""
    model_ref = require_ray().put(model)
    per_function = np.ndim(capacity) > 0
    task = remote(_replay_shard)
    parts, done = [], 0
    for ref, local in sharded.select(rows):
        own = np.asarray(capacity)[done : done + len(local)] if per_function else capacity
        parts.append(task.remote(model_ref, ref, local, own, kwargs))
        done += len(local)
    if not parts:
        raise ValueError("no functions to replay")
    return report_from_tallies(join_tallies(get_results(parts)))
