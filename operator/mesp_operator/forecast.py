"""The model, as one loop uses it: every fresh policy forecast in as few model runs as possible, and
the forecast each policy's floor is sized from.

`model` follows mesp_core's model interface (mesp_core.forecasting.model.MespModel:
forecast_distribution, explain_routes, and floor_plan when it has a floor stage); the operator only
loads it, never trains it.
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np

from mesp_core.policy import newsvendor_level

# A sanity bound on coldStartCost (the spec, the CRD and --cold-start-cost share it): its critical
# fractile is then 0.999999; far beyond, C/(1+C) rounds to 1, a quantile no forecast has.
MAX_COLD_START_COST = 1e6


@dataclasses.dataclass(frozen=True)
class Sizing:
    """How a policy's floor is sized: at the critical fractile C/(1+C) of its cold-start cost C
    (mesp_core.policy.newsvendor_level), unless the policy names a quantile, which overrides the cost
    as in MespModel.plan_min_scale."""

    cold_start_cost: float
    quantile: float | None = None      # the policy's own spec.quantile
    operator_default: bool = False     # the cost is the operator's --cold-start-cost, not the policy's

    @property
    def level(self) -> float:
        """The forecast quantile instances are sized from."""
        return self.quantile if self.quantile is not None else newsvendor_level(self.cold_start_cost)

    def describe(self, learned_floor: str | None = None) -> str:
        """status.sizing: `coldStartCost 10 (q0.909)`, `coldStartCost 10 (learned floor: q=0.9)` when
        the model's floor stage chose the floor, or `quantile 0.9 (override)`."""
        if self.quantile is not None:
            return f"quantile {self.quantile:g} (override)"
        source = ", operator default" if self.operator_default else ""
        if learned_floor is not None:
            return f"coldStartCost {self.cold_start_cost:g} (learned floor: {learned_floor}{source})"
        return f"coldStartCost {self.cold_start_cost:g} (q{self.level:.3f}{source})"


def uses_floor_stage(model, sizing: Sizing) -> bool:
    """Whether a policy's floor comes from the model's floor stage: the model has one and the policy
    sizes by cost (a quantile override sizes from the experts' forecast, as in MespModel.plan_min_scale)."""
    return getattr(model, "floor", None) is not None and sizing.quantile is None


@dataclasses.dataclass(frozen=True)
class FloorChoice:
    """The floor policy the floor stage chose for one policy at one reselect boundary, and what it
    was chosen for. Kept in PolicyMemory: until the next boundary the loop plans with it instead of
    choosing again (a missing or outdated record just means the choice is made again). The capacity is
    not part of it: a capacity that moves between boundaries (a measured request duration does, every
    loop) sizes the plan at once and the choice at the next boundary."""

    boundary: int           # the unix minute of the reselect boundary it was chosen at
    name: str               # e.g. "q=0.9", "keep-alive 10"
    cold_start_cost: float
    lead_minutes: int


@dataclasses.dataclass
class LearnedFloors:
    """Per context row: the floor stage's target instances (None for rows sized from the forecast),
    the name of the floor policy it chose (e.g. "q=0.9", "keep-alive 10") and the FloorChoice to keep."""

    targets: list
    names: list
    records: list = dataclasses.field(default_factory=list)


def choice_phase(key: str, every: int) -> int:
    """A policy's reselect phase in [0, every): its boundaries are the unix minutes m with
    (m - phase) % every == 0. A stable hash of its key spreads the full choices of many policies over
    the loops of each `every` minutes instead of making them all in one loop."""
    return zlib.crc32(key.encode()) % every


def floor_batch(model, contexts: np.ndarray, requests: list[tuple[int, int, float, Sizing]], minute: int | None = None,
                keys: list[str] | None = None, records: list | None = None) -> LearnedFloors:
    """The floor stage's plan for row i of `contexts` as requests[i] = (length in minutes, lead
    minutes, capacity per instance, sizing) asks; rows that do not use the floor stage get None.

    With `minute` (the unix minute right after the contexts' last one) and `keys` (one per row: the
    policy's uid), each row's floor policy is the one chosen at its last reselect boundary
    (choice_phase), taken from records[i] (a FloorChoice or None) when that record is of this
    boundary, cost and lead, else chosen now (model.floor_choose; rows of one lead and cost in one
    call). The plan is then exactly what model.floor_plan(..., since=...) would make from the same
    contexts, but only the chosen policies' floors are built. Without `minute`, every row's floor is
    chosen now from its whole context (model.floor_plan).

    One floor-stage plan call per (length, lead, cold-start cost), each row with its own capacity."""
    groups: dict[tuple[int, int, float], list[int]] = {}
    for i, (length, lead, _, sized) in enumerate(requests):
        if uses_floor_stage(model, sized):
            groups.setdefault((length, lead, sized.cold_start_cost), []).append(i)
    targets: list = [None] * len(requests)
    names: list = [None] * len(requests)
    kept: list = [None] * len(requests)
    if minute is not None and groups:  # (no group: no floor stage, or every row overrides the quantile)
        kept = _kept_choices(model, contexts, requests, groups, int(minute), keys, records)
    for (length, lead, cost), members in groups.items():
        capacity = np.array([requests[i][2] for i in members], dtype=np.float64)
        floors = None if minute is None else [kept[i].name for i in members]
        result = model.floor_plan(contexts[members], horizon=length, capacity_per_instance=capacity,
                                  lead_minutes=lead, cold_start_cost=cost, floors=floors)
        for j, i in enumerate(members):
            targets[i], names[i] = np.asarray(result.plan[j], dtype=np.int64), result.floors[j]
    return LearnedFloors(targets, names, kept)


def _kept_choices(model, contexts, requests, groups, minute: int, keys, records) -> list:
    """Per row, the FloorChoice of its current reselect boundary: the kept record when it still holds,
    else a new choice (rows of one lead and cost chosen in one call)."""
    if keys is None or len(keys) != len(requests):
        raise ValueError("floor_batch needs one key per request to keep choices between loops")
    records = records if records is not None else [None] * len(requests)
    every = model.floor.reselect_every
    known = {c.name for c in model.floor.candidates}
    out: list = [None] * len(requests)
    choose: dict[tuple[int, float], list[tuple[int, int]]] = {}
    for (_, lead, cost), members in groups.items():
        for i in members:
            since = (minute - choice_phase(keys[i], every)) % every
            record = records[i]
            if (isinstance(record, FloorChoice) and record.boundary == minute - since and record.name in known
                    and record.cold_start_cost == cost and record.lead_minutes == lead):
                out[i] = record
            else:
                choose.setdefault((lead, cost), []).append((i, since))
    for (lead, cost), rows in choose.items():
        idx = [i for i, _ in rows]
        since = np.array([s for _, s in rows], dtype=np.int64)
        capacity = np.array([requests[i][2] for i in idx], dtype=np.float64)
        chosen = model.floor_choose(contexts[idx], capacity_per_instance=capacity, lead_minutes=lead,
                                    cold_start_cost=cost, since=since)
        for i, s, name in zip(idx, since, chosen):
            out[i] = FloorChoice(boundary=minute - int(s), name=name, cold_start_cost=cost, lead_minutes=lead)
    return out


@dataclasses.dataclass
class BatchForecast:
    """Per context row: the point forecast, the forecast at its sizing quantile and the route that
    explains it (cluster, distance, description, expert)."""

    point: list[np.ndarray]
    upper: list[np.ndarray]
    routes: list[dict]


def forecast_batch(model, contexts: np.ndarray, requests: list[tuple[str, int, Sizing]]) -> BatchForecast:
    """Forecast row i of `contexts` as requests[i] = (approach, length in minutes, sizing) asks.

    One model run per (approach, length), whatever the rows' sizings: each sizing quantile is derived
    from that run, once per distinct level. The routes name repeat-last-hour where the model's
    recent-error check replaced the routed expert."""
    groups: dict[tuple[str, int], list[int]] = {}
    for i, (approach, length, _) in enumerate(requests):
        groups.setdefault((approach, length), []).append(i)
    point: list = [None] * len(requests)
    upper: list = [None] * len(requests)
    switched = [False] * len(requests)  # per row, gathered from the groups for explain_routes
    for (approach, length), members in groups.items():
        distribution = model.forecast_distribution(contexts[members], horizon=length, approach=approach)
        by_level: dict[float, list[int]] = {}
        for j, i in enumerate(members):
            point[i] = distribution.point[j]
            switched[i] = bool(distribution.switched[j])
            by_level.setdefault(requests[i][2].level, []).append(j)
        for level, rows in by_level.items():
            quant = distribution.quantile(level)
            for j in rows:
                upper[members[j]] = quant[j]
    return BatchForecast(point, upper, model.explain_routes(contexts, switched=switched))
