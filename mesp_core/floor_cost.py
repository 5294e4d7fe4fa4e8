"""What a min-scale floor costs: instance demand, the replay's recurrence, and C * cold + idle.

Pure numpy, shared by the floor stage of the model (which scores candidate floors on each
function's recent minutes), its training (which scores them on validation functions) and tests
(which check it against `mesp_core.replay.simulate`). The recurrence is the replay's, see
`mesp_core.replay.simulate` for the model of a function:

- demand ``d[m] = ceil(count / capacity)``, at least 1 whenever count > 0;
- Knative keeps an instance ``keep_alive`` minutes after it was last needed: ``R[m] = max d[m-K .. m-1]``;
- a setting ``S[m]`` keeps instances that are alive and gets new ones ``lead`` minutes after it was
  asked for: ``F[m] = min(S[m], max(A[m-1], min S[m-lead .. m]))``;
- ready ``W[m] = max(F[m], R[m])``; cold starts ``max(0, d[m] - W[m])``; alive ``A[m] = max(W[m], d[m])``;
  idle ``max(A[m], S[m]) - d[m]`` (instances held or starting for the floor cost as well).
"""

from __future__ import annotations

import numpy as np

from mesp_core.checks import check_int, check_number


def demand_instances(counts, capacity) -> np.ndarray:
    """Instances needed per minute: ceil(count / capacity), and 1 whenever count > 0.

    `capacity` is a number or an array broadcasting against `counts` (an [n, 1] column for [n, T])."""
    counts = np.asarray(counts, dtype=np.float64)
    # Relative slack: an exact multiple stays k instances at any capacity (counts are whole numbers).
    needed = np.ceil(counts / capacity * (1.0 - 1e-12))
    return np.where(counts > 0, np.maximum(needed, 1.0), 0.0).astype(np.int64)


def trailing_max(values: np.ndarray, width: int) -> np.ndarray:
    """out[..., m] = max(values[..., m-width .. m-1]), 0 where that window is empty."""
    values = np.asarray(values)
    out = np.zeros(values.shape, dtype=values.dtype)
    T = values.shape[-1]
    for k in range(1, min(width, T) + 1):
        np.maximum(out[..., k:], values[..., : T - k], out=out[..., k:])
    return out


def replay_floors(demand, floors, keep_alive: int = 2, lead_minutes: int = 1, start: int = 0):
    """Cold starts and idle instance-minutes of floor settings, minute by minute.

    demand: int [n, T] instance demand (minutes before `start` warm Knative's reactive layer).
    floors: int [..., n, T - start] min-scale settings for minutes start .. T-1 (any leading axes,
        e.g. one per candidate policy). Before `start` no floor was set.
    Returns (cold, idle), each int64 [..., n, T - start].
    """
    check_int("keep_alive", keep_alive, low=0)
    check_int("lead_minutes", lead_minutes, low=0)
    demand = np.asarray(demand, dtype=np.int64)
    floors = np.asarray(floors, dtype=np.int64)
    n, T = demand.shape
    check_int("start", start, low=0)
    span = T - start
    if floors.shape[-2:] != (n, span):
        raise ValueError(f"floors end in shape {floors.shape[-2:]}, expected {(n, span)}")
    reactive = trailing_max(demand, keep_alive)
    cold = np.empty(floors.shape, dtype=np.int64)
    idle = np.empty(floors.shape, dtype=np.int64)
    if start > 0:  # before the floors Knative ran alone: its warm instances plus that minute's demand
        alive = np.maximum(demand[:, start - 1], reactive[:, start - 1])
    else:
        alive = np.zeros(n, dtype=np.int64)
    alive = np.broadcast_to(alive, floors.shape[:-1]).copy()
    for i in range(span):
        m = start + i
        setting = floors[..., i]
        if i < lead_minutes:  # nothing asked for before the first setting can be ready yet
            ready = np.zeros_like(setting)
        else:
            ready = floors[..., i - lead_minutes: i + 1].min(axis=-1)
        floor = np.minimum(setting, np.maximum(alive, ready))
        warm = np.maximum(floor, reactive[:, m])
        need = demand[:, m]
        cold[..., i] = np.maximum(need - warm, 0)
        alive = np.maximum(warm, need)
        idle[..., i] = np.maximum(alive, setting) - need
    return cold, idle


def floor_cost(cold, idle, cold_start_cost: float):
    """The decision cost: C * cold starts + idle instance-minutes (elementwise, or of sums)."""
    check_number("cold_start_cost", cold_start_cost, low=0.0, low_inclusive=False)
    return cold_start_cost * np.asarray(cold, dtype=np.float64) + np.asarray(idle, dtype=np.float64)
