"""How a forecast becomes a floor, chosen by decision cost: candidate floor policies and FloorPlanner.

A candidate turns what is known at minute t into min-scale settings for t, t+1, ...:

- ``q=0.9``: the demand head's 0.9-quantile of instance demand over [i, i + lead] (the setting at
  minute i must cover the demand when its instances are ready, and what already runs);
- ``newsvendor``: the same at the critical fractile C / (1 + C) of the user's cold-start cost;
- ``keep-alive 10``: the peak demand of the last 10 minutes (what AWS/Azure do, made explicit);
- ``seasonal naive``: the instances the seasonal-naive forecast asks for;
- ``q=0.8+ka3``: the larger of a quantile floor and a short keep-alive.

`FloorPlanner` keeps, per function, the floors every candidate would have set over the last
`window` minutes, scores them with the replay's recurrence (mesp_core.floor_cost) at
C * cold starts + idle instance-minutes, and every `reselect_every` minutes switches each function
to its cheapest candidate. Ties and functions without enough history keep their cluster's default
candidate, which training chose on validation functions (mesp_core.offline.floor_training). Nothing
reads a minute at or after the planning minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from mesp_core.floor_cost import demand_instances, floor_cost, replay_floors
from mesp_core.forecasting.artifact import ArtifactError, load_arrays, load_tensors
from mesp_core.forecasting.demand import DemandHead, pad_contexts
from mesp_core.policy import instances_for_demand, newsvendor_level, window_max

SCORE_WINDOW = 240
RESELECT_EVERY = 30
MIN_SCORED_MINUTES = 60  # fewer recorded minutes than this: too little to overrule the default
COST_GRID = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
ALL_CLUSTERS = "all"
# A quantile below half an invocation means "no invocation expected" (as the policy's min_demand).
_MIN_DEMAND = 0.5
_NAIVE_MIN_HISTORY = 60  # the seasonal-naive expert needs an hour of context (MIN_CONTEXT)
CHOICE_ROWS = 256  # functions whose choice is made in one block (see FloorPlanner.choose_at)


@dataclass(frozen=True)
class Candidate:
    """One way to set a floor: the max of a head quantile, a keep-alive and the seasonal-naive floor.
    q == "newsvendor" means the critical fractile of the planner's cold-start cost."""

    name: str
    q: float | str | None = None
    keep_alive: int = 0
    naive: bool = False

    def to_dict(self) -> dict:
        return {"name": self.name, "q": self.q, "keep_alive": self.keep_alive, "naive": self.naive}

    @classmethod
    def from_dict(cls, entry: dict) -> "Candidate":
        q = entry.get("q")
        if not (q is None or q == "newsvendor" or (isinstance(q, (int, float)) and 0.0 < q < 1.0)):
            raise ValueError(f"candidate {entry.get('name')!r}: q must be in (0, 1), 'newsvendor' or null, got {q!r}")
        keep = entry.get("keep_alive", 0)
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise ValueError(f"candidate {entry.get('name')!r}: keep_alive must be an integer >= 0, got {keep!r}")
        if q is None and keep == 0 and not entry.get("naive"):
            raise ValueError(f"candidate {entry.get('name')!r} sets no floor at all")
        return cls(str(entry["name"]), q, keep, bool(entry.get("naive", False)))


def default_candidates() -> list[Candidate]:
    out = [Candidate("newsvendor", q="newsvendor")]
    out += [Candidate(f"q={q:g}", q=q) for q in (0.5, 0.7, 0.8, 0.9, 0.95, 0.975)]
    out += [Candidate(f"keep-alive {k}", keep_alive=k) for k in (2, 3, 5, 10, 15, 20, 30)]
    out.append(Candidate("seasonal naive", naive=True))
    out += [Candidate(f"q={q:g}+ka{k}", q=q, keep_alive=k) for q in (0.7, 0.9) for k in (3, 5)]
    return out


def newsvendor_floor(pmf: np.ndarray, cold_start_cost: float) -> np.ndarray:
    """The floor minimising C * E[cold] + E[idle] for one minute whose instance demand has
    probabilities pmf [..., K+1] over 0..K: the smallest f with P(demand <= f) >= C / (1 + C)
    (the critical fractile; the planner's "newsvendor" candidate takes the head's quantile there)."""
    level = newsvendor_level(cold_start_cost)
    cdf = np.cumsum(np.asarray(pmf, dtype=np.float64), axis=-1)
    return np.argmax(cdf >= level - 1e-12, axis=-1)


def head_quantile(levels: Sequence[float], quantiles: np.ndarray, q: float) -> np.ndarray:
    """Quantiles [..., L] at `levels`, interpolated (held at the ends) to level q: [...]."""
    levels = np.asarray(levels, dtype=np.float64)
    j = int(np.clip(np.searchsorted(levels, q), 1, len(levels) - 1))
    lo, hi = levels[j - 1], levels[j]
    w = float(np.clip((q - lo) / (hi - lo), 0.0, 1.0))
    return (1.0 - w) * quantiles[..., j - 1] + w * quantiles[..., j]


class FloorPlanner:
    """Chooses per function among candidate floors by recent decision cost (see the module doc).

    head: the trained DemandHead. candidates: the Candidate list. defaults: cluster id (or
    ALL_CLUSTERS) -> the candidate name used on ties, for this cold-start cost. capacity: invocations
    per minute per instance, one number or one per function. naive: callable (contexts [n, t],
    horizon) -> seasonal-naive counts [n, horizon], needed by candidates with naive=True. route:
    callable (contexts) -> cluster per function; None uses the ALL_CLUSTERS default everywhere.
    """

    def __init__(self, head: DemandHead, candidates: Sequence[Candidate], defaults: dict, cold_start_cost: float,
                 capacity=60.0, *, lead_minutes: int = 1, keep_warm_minutes: int = 2, window: int = SCORE_WINDOW,
                 reselect_every: int = RESELECT_EVERY, naive: Callable | None = None, route: Callable | None = None):
        self.head = head
        self.candidates = list(candidates)
        self.names = [c.name for c in self.candidates]
        if not self.candidates:
            raise ValueError("a floor planner needs at least one candidate")
        unknown = sorted({v for v in defaults.values()} - set(self.names))
        if unknown:
            raise ValueError(f"default candidates {unknown} are not among the candidates {self.names}")
        if any(c.naive for c in self.candidates) and naive is None:
            raise ValueError("a seasonal-naive candidate needs a naive forecaster")
        self.defaults = {str(k): self.names.index(v) for k, v in defaults.items()}
        self.cost = float(cold_start_cost)
        self.newsvendor_q = newsvendor_level(self.cost)
        self.capacity = capacity
        self.lead, self.keep_warm = int(lead_minutes), int(keep_warm_minutes)
        self.window, self.reselect_every = int(window), int(reselect_every)
        self.naive, self.route = naive, route
        self._n: int | None = None

    # ------------------------------------------------------------------ candidate floors
    def _capacity_column(self, n: int):
        return np.asarray(self.capacity, dtype=np.float64).reshape(-1, 1) if np.ndim(self.capacity) else float(self.capacity)

    def candidate_plans(self, counts: np.ndarray, rows: np.ndarray, origins: np.ndarray, steps: int,
                        starts: np.ndarray | None = None, capacity=None, quantiles=None,
                        naive_floor=None) -> np.ndarray:
        """Settings int [P, m, steps] of every candidate planning at minute origins[i] of row rows[i]
        of counts [n, T], from minutes < origin only. `capacity`: a number or one per origin [m];
        `quantiles`, `naive_floor`: `shared_inputs` for these origins when the caller already has them
        (planners of several costs share them)."""
        capacity = self.capacity if capacity is None else capacity
        cap = np.asarray(capacity, dtype=np.float64).reshape(-1, 1, 1) if np.ndim(capacity) else float(capacity)
        m = len(rows)
        width = steps + self.lead
        plans = np.zeros((len(self.candidates), m, steps), dtype=np.int64)
        need_q = sorted({self._q(c) for c in self.candidates if c.q is not None})
        if need_q and quantiles is None:
            quantiles = self.head.quantiles_at(counts, rows, origins, starts)  # [m, H, L] counts
        q_floor = {q: self._quantile_floor(quantiles, q, cap, steps) for q in need_q}
        ka_floor = {k: self._keep_alive_floor(counts, rows, origins, starts, k, cap, steps)
                    for k in sorted({c.keep_alive for c in self.candidates if c.keep_alive})}
        if naive_floor is None and any(c.naive for c in self.candidates):
            naive_floor = self._naive_floor(counts, rows, origins, starts, width, cap)
        if naive_floor is not None:
            naive_floor = naive_floor[:, :steps]
        for p, c in enumerate(self.candidates):
            if c.q is not None:
                np.maximum(plans[p], q_floor[self._q(c)], out=plans[p])
            if c.keep_alive:
                np.maximum(plans[p], ka_floor[c.keep_alive], out=plans[p])
            if c.naive:
                np.maximum(plans[p], naive_floor, out=plans[p])
        return plans

    def _quantile_floor(self, quantiles: np.ndarray, q: float, cap, steps: int) -> np.ndarray:
        """Instances [m, steps] covering the head's q-quantile over [i, i + lead] (cap: number or [m, 1, 1])."""
        width = steps + self.lead
        if quantiles.shape[1] < width:  # beyond the head's horizon: hold its last minute
            pad = np.repeat(quantiles[:, -1:], width - quantiles.shape[1], axis=1)
            quantiles = np.concatenate([quantiles, pad], axis=1)
        count = head_quantile(self.head.levels, quantiles[:, :width], q)
        inst = instances_for_demand(count, cap[..., 0] if np.ndim(cap) else cap, _MIN_DEMAND)
        return window_max(inst, self.lead + 1)[:, :steps]

    @staticmethod
    def _keep_alive_floor(counts, rows, origins, starts, k: int, cap, steps: int) -> np.ndarray:
        """The peak instance demand [m, steps] of the k minutes before each origin."""
        cols = origins[:, None] + np.arange(-k, 0)[None, :]
        ok = cols >= (0 if starts is None else starts[rows][:, None])
        recent = np.where(ok, counts[rows[:, None], np.clip(cols, 0, None)], 0.0)
        peak = demand_instances(recent, cap[..., 0] if np.ndim(cap) else cap).max(axis=1)
        return np.repeat(peak[:, None], steps, axis=1)

    def shared_inputs(self, counts: np.ndarray, t: int, steps: int) -> dict:
        """What candidate_plans needs at minute t for every row, independent of the cost: the head's
        quantiles and the seasonal-naive floor (the replay computes them once for a cost sweep)."""
        n = counts.shape[0]
        rows, origins = np.arange(n), np.full(n, t)
        out = {"quantiles": self.head.quantiles_at(counts, rows, origins)}
        if any(c.naive for c in self.candidates):
            cap = np.asarray(self.capacity, dtype=np.float64).reshape(-1, 1, 1) if np.ndim(self.capacity) else float(self.capacity)
            out["naive_floor"] = self._naive_floor(counts, rows, origins, None, steps + self.lead, cap)
        return out

    def _q(self, c: Candidate) -> float:
        return self.newsvendor_q if c.q == "newsvendor" else float(c.q)

    def _naive_floor(self, counts, rows, origins, starts, width, cap):
        out = np.zeros((len(rows), width), dtype=np.int64)
        # The naive rule reads whole days: group origins by minute so each call gets one 2-D block.
        history = origins - (0 if starts is None else starts[rows])
        for origin in np.unique(origins):
            idx = np.flatnonzero((origins == origin) & (history >= _NAIVE_MIN_HISTORY))
            if not idx.size:  # too little history for the naive rule: no naive floor
                continue
            block = counts[rows[idx], :origin]
            if starts is not None and starts[rows[idx]].max() > 0:
                block = [counts[r, s:origin] for r, s in zip(rows[idx], starts[rows[idx]])]
            forecast = np.asarray(self.naive(block, width), dtype=np.float64)
            inst = instances_for_demand(forecast, cap[idx, :, 0] if np.ndim(cap) else cap, _MIN_DEMAND)
            out[idx] = window_max(inst, self.lead + 1)
        return out

    # ------------------------------------------------------------------ choosing
    def choose(self, demand: np.ndarray, floors: np.ndarray, clusters=None) -> np.ndarray:
        """Per function, the candidate index with the lowest C * cold + idle over the recorded
        minutes; ties keep the cluster's default. demand int [n, pre + W] (pre minutes warm the
        reactive layer), floors int [P, n, W]."""
        n = demand.shape[0]
        default = self.default_index(clusters, n)
        W = floors.shape[-1]
        if W < MIN_SCORED_MINUTES:
            return default
        cold, idle = replay_floors(demand, floors, self.keep_warm, self.lead, start=demand.shape[1] - W)
        cost = floor_cost(cold.sum(axis=-1), idle.sum(axis=-1), self.cost)  # [P, n]
        best = np.argmin(cost, axis=0)
        default_cost = cost[default, np.arange(n)]
        return np.where(cost[best, np.arange(n)] < default_cost - 1e-9, best, default)

    def default_index(self, clusters, n: int) -> np.ndarray:
        fallback = self.defaults.get(ALL_CLUSTERS, 0)
        if clusters is None:
            return np.full(n, fallback, dtype=np.int64)
        return np.array([self.defaults.get(str(int(c)), fallback) for c in clusters], dtype=np.int64)

    # ------------------------------------------------------------------ stateless (plan_min_scale, the operator)
    def plan(self, contexts, horizon: int, since=None) -> tuple[np.ndarray, np.ndarray]:
        """(plan int [n, horizon], chosen candidate index [n]) for the minutes right after each
        context: `choose_at` the choice, then `plan_chosen` with it."""
        chosen = self.choose_at(contexts, since)
        return self.plan_chosen(contexts, horizon, chosen), chosen

    def choose_at(self, contexts, since=None) -> np.ndarray:
        """The candidate index [n] each function uses for the minutes right after its context.

        since None: chosen at the context's end from the whole context (the last `window` minutes'
        candidate floors are rebuilt from the context itself). since [n] (or one int), 0 <= since <
        reselect_every: chosen at the reselect boundary `since` minutes before the end, from
        `before_boundary(contexts, since)`: a loop that keeps this choice until the next boundary
        and only calls `plan_chosen` plans exactly what calling this every minute would."""
        if since is not None:
            contexts = self.before_boundary(contexts, since)
        n = len(contexts)
        longest = contexts.shape[1] if isinstance(contexts, np.ndarray) else max(len(row) for row in contexts)
        W = int(min(self.window, max(0, longest - 60)))  # leave the head an hour of history
        # Each row scores W origins: in blocks of rows, so 10,000 functions do not hold 2.4 million
        # origins' features and quantiles at once.
        return np.concatenate([
            self._choose_rows(contexts[lo: lo + CHOICE_ROWS], W,
                              self.capacity[lo: lo + CHOICE_ROWS] if np.ndim(self.capacity) else self.capacity)
            for lo in range(0, n, CHOICE_ROWS)])

    def _choose_rows(self, contexts, W: int, capacity) -> np.ndarray:
        counts, starts = pad_contexts(contexts)
        n, T = counts.shape
        clusters = self.route(contexts) if self.route is not None else None
        if W < MIN_SCORED_MINUTES or T < W + _NAIVE_MIN_HISTORY:  # (the latter: every row is short, below)
            return self.default_index(clusters, n)
        rows = np.repeat(np.arange(n), W)
        origins = np.tile(np.arange(T - W, T), n)
        per_origin = np.repeat(np.asarray(capacity, dtype=np.float64), W) if np.ndim(capacity) else capacity
        past = self.candidate_plans(counts, rows, origins, 1, starts, per_origin)[:, :, 0]
        floors = past.reshape(len(self.candidates), n, W)
        pre = self.keep_warm + 1
        lo = T - W - pre
        window = counts[:, max(lo, 0):]
        if lo < 0:
            window = np.concatenate([np.zeros((n, -lo), dtype=counts.dtype), window], axis=1)
        column = np.asarray(capacity, dtype=np.float64).reshape(-1, 1) if np.ndim(capacity) else float(capacity)
        demand = demand_instances(window, column)
        chosen = self.choose(demand, floors, clusters)
        # Rows whose own history does not reach back over the scored minutes keep their default.
        short = (T - starts) < W + _NAIVE_MIN_HISTORY
        return np.where(short, self.default_index(clusters, n), chosen)

    def before_boundary(self, contexts, since):
        """What the choice at each row's last reselect boundary reads: its context without the last
        since[i] minutes (those come after the boundary) and without the first reselect_every - 1 -
        since[i] (so every context of the same length ending up to reselect_every - 1 minutes after
        that boundary gives it the same minutes). A 2-D array for a 2-D array, else a list."""
        counts, starts = pad_contexts(contexts)
        n, T = counts.shape
        since = np.broadcast_to(np.asarray(since, dtype=np.int64), (n,))
        if (since < 0).any() or (since >= self.reselect_every).any():
            raise ValueError(f"since must be in [0, {self.reselect_every}), got {since.min()} .. {since.max()}")
        width = T - (self.reselect_every - 1)
        if width < 1:
            raise ValueError(f"contexts of {T} minutes are too short to choose at a boundary "
                             f"(at least {self.reselect_every} are needed)")
        first = (self.reselect_every - 1) - since
        cut = np.take_along_axis(counts, first[:, None] + np.arange(width)[None, :], axis=1)
        cut_starts = np.maximum(starts - first, 0)
        if not cut_starts.any():
            return cut
        return [cut[i, s:] for i, s in enumerate(cut_starts)]

    def plan_chosen(self, contexts, horizon: int, chosen) -> np.ndarray:
        """Settings int [n, horizon] for the minutes right after each context, of candidate chosen[i]
        for row i: what `candidate_plans` gives that candidate, building only what the chosen ones need."""
        counts, starts = pad_contexts(contexts)
        n, T = counts.shape
        chosen = np.broadcast_to(np.asarray(chosen, dtype=np.int64), (n,))
        if (chosen < 0).any() or (chosen >= len(self.candidates)).any():
            raise ValueError(f"chosen candidates must be indices in [0, {len(self.candidates)})")
        capacity = self.capacity
        cap = np.asarray(capacity, dtype=np.float64).reshape(-1, 1, 1) if np.ndim(capacity) else float(capacity)
        rows, origins = np.arange(n), np.full(n, T)
        used = {int(p): self.candidates[p] for p in np.unique(chosen)}
        plan = np.zeros((n, horizon), dtype=np.int64)
        quantiles = None
        if any(c.q is not None for c in used.values()):  # every row, as candidate_plans batches the head
            quantiles = self.head.quantiles_at(counts, rows, origins, starts)
        naive_rows = np.flatnonzero(np.isin(chosen, [p for p, c in used.items() if c.naive]))
        naive_floor = np.zeros((n, horizon), dtype=np.int64)
        if naive_rows.size:
            sub_cap = cap[naive_rows] if np.ndim(cap) else cap
            naive_floor[naive_rows] = self._naive_floor(counts, naive_rows, origins[naive_rows], starts,
                                                        horizon + self.lead, sub_cap)[:, :horizon]
        for p, c in used.items():
            members = np.flatnonzero(chosen == p)
            part = plan[members]
            member_cap = cap[members] if np.ndim(cap) else cap
            if c.q is not None:
                np.maximum(part, self._quantile_floor(quantiles[members], self._q(c), member_cap, horizon), out=part)
            if c.keep_alive:
                np.maximum(part, self._keep_alive_floor(counts, members, origins[members], starts, c.keep_alive,
                                                        member_cap, horizon), out=part)
            if c.naive:
                np.maximum(part, naive_floor[members], out=part)
            plan[members] = part
        return plan

    def index_of(self, names: Sequence[str]) -> np.ndarray:
        """Candidate indices of candidate names (ValueError for a name this planner does not have)."""
        unknown = sorted(set(names) - set(self.names))
        if unknown:
            raise ValueError(f"unknown floor candidates {unknown}; this planner has {self.names}")
        return np.array([self.names.index(name) for name in names], dtype=np.int64)

    # ------------------------------------------------------------------ stateful (the replay)
    def reset(self, n: int) -> None:
        self._n = n
        self._ring = np.zeros((len(self.candidates), n, self.window), dtype=np.int32)
        self._recorded_from: int | None = None
        self._chosen = self.default_index(None, n)
        self._last_reselect: int | None = None

    def backfill_inputs(self, history: np.ndarray, t: int) -> list:
        """shared_inputs for each of the `window` minutes before t that has an hour of history
        before it (what the first `advance` rebuilds the record from; shareable across costs)."""
        return [(m, self.shared_inputs(history, m, 1)) for m in range(max(t - self.window, _NAIVE_MIN_HISTORY), t)]

    def advance(self, history: np.ndarray, t: int, steps: int = 1, shared: dict | None = None,
                backfill: list | None = None) -> np.ndarray:
        """Settings int [n, steps] for minutes t .. t+steps-1 from history [n, >= t] (minutes < t
        are read). Call with increasing t; `reset(n)` first. `shared`: shared_inputs(history, t, steps).
        The first call rebuilds the last `window` minutes' candidate floors from the history, as the
        stateless `plan` does (`backfill`: backfill_inputs(history, t), when already computed)."""
        if self._n is None:
            raise RuntimeError("call reset(n) before advance()")
        n = self._n
        if self._recorded_from is None:
            for m, inputs in (self.backfill_inputs(history, t) if backfill is None else backfill):
                past = self.candidate_plans(history, np.arange(n), np.full(n, m), 1, **inputs)
                self._ring[:, :, m % self.window] = past[:, :, 0]
                if self._recorded_from is None:
                    self._recorded_from = m
        plans = self.candidate_plans(history, np.arange(n), np.full(n, t), steps, **(shared or {}))
        if self._last_reselect is None or t - self._last_reselect >= self.reselect_every:
            self._reselect(history, t)
        for i in range(steps):  # what every candidate would have set at minute t + i
            self._ring[:, :, (t + i) % self.window] = plans[:, :, i]
        if self._recorded_from is None:
            self._recorded_from = t
        return plans[self._chosen, np.arange(n)]

    def _reselect(self, history: np.ndarray, t: int) -> None:
        self._last_reselect = t
        clusters = None
        if self.route is not None:
            clusters = self.route(history[:, max(0, t - 1440):t])
        recorded = 0 if self._recorded_from is None else min(self.window, t - self._recorded_from)
        if recorded < MIN_SCORED_MINUTES:
            self._chosen = self.default_index(clusters, self._n)
            return
        minutes = np.arange(t - recorded, t)
        floors = self._ring[:, :, minutes % self.window]
        pre = self.keep_warm + 1
        lo = max(0, t - recorded - pre)
        window = history[:, lo:t]
        if t - recorded - pre < 0:
            window = np.concatenate([np.zeros((self._n, pre - (t - recorded)), dtype=window.dtype), window], axis=1)
        demand = demand_instances(window, self._capacity_column(self._n))
        self._chosen = self.choose(demand, floors, clusters)

    @property
    def chosen_names(self) -> list[str]:
        """The candidate each function uses now (stateful path)."""
        return [self.names[i] for i in self._chosen]


# ---------------------------------------------------------------------- the model's floor stage
FLOOR_HEAD_FILE = "floor/demand_head.safetensors"


def nearest_cost(costs: Sequence[float], cost: float) -> float:
    """The grid cost nearest to `cost` on a log scale (tables are chosen at grid costs)."""
    grid = np.asarray(costs, dtype=np.float64)
    return float(grid[int(np.argmin(np.abs(np.log(grid) - np.log(cost))))])


@dataclass
class FloorStage:
    """A model's floor stage: the demand head, the candidates and, per cluster, the default
    candidate at each grid cost (chosen on validation functions by training)."""

    head: DemandHead
    candidates: list
    costs: list
    defaults: dict  # cluster id (str) or ALL_CLUSTERS -> {grid cost (str): candidate name}
    default_cold_start_cost: float
    window: int = SCORE_WINDOW
    reselect_every: int = RESELECT_EVERY

    def defaults_for(self, cold_start_cost: float) -> dict:
        grid = nearest_cost(self.costs, cold_start_cost)
        key = cost_key(grid)
        return {cluster: table[key] for cluster, table in self.defaults.items() if key in table}

    def planner(self, cold_start_cost: float, capacity=60.0, lead_minutes: int = 1, keep_warm_minutes: int = 2,
                naive: Callable | None = None, route: Callable | None = None) -> FloorPlanner:
        return FloorPlanner(self.head, self.candidates, self.defaults_for(cold_start_cost), cold_start_cost, capacity,
                            lead_minutes=lead_minutes, keep_warm_minutes=keep_warm_minutes, window=self.window,
                            reselect_every=self.reselect_every, naive=naive, route=route)

    def manifest_entry(self, extra: dict | None = None) -> dict:
        return {"head": {"config": self.head.config(), "weights": FLOOR_HEAD_FILE},
                "candidates": [c.to_dict() for c in self.candidates], "costs": list(self.costs),
                "defaults": self.defaults, "default_cold_start_cost": self.default_cold_start_cost,
                "window": self.window, "reselect_every": self.reselect_every, **(extra or {})}

    @classmethod
    def from_manifest(cls, section: dict, state, backend: str = "torch") -> "FloorStage":
        """Rebuild from a manifest's "floor" section and the head's tensors (served by `backend`);
        ValueError says what is wrong."""
        if not isinstance(section, dict):
            raise ValueError("the floor section must be an object")
        try:
            head = DemandHead.from_config(section["head"]["config"], state, backend=backend)
            candidates = [Candidate.from_dict(c) for c in section["candidates"]]
            costs = [float(c) for c in section["costs"]]
            defaults = {str(k): {str(c): str(name) for c, name in v.items()} for k, v in section["defaults"].items()}
            default_cost = float(section["default_cold_start_cost"])
            window, every = int(section.get("window", SCORE_WINDOW)), int(section.get("reselect_every", RESELECT_EVERY))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"the floor section is incomplete ({type(exc).__name__}: {exc})") from None
        names = {c.name for c in candidates}
        if not costs or any(not np.isfinite(c) or c <= 0 for c in costs) or not default_cost > 0:
            raise ValueError("the floor section's costs must be positive numbers")
        for cluster, table in defaults.items():
            unknown = sorted(set(table.values()) - names)
            if unknown:
                raise ValueError(f"the floor section's defaults for cluster {cluster} name unknown candidates {unknown}")
        if ALL_CLUSTERS not in defaults:
            raise ValueError(f"the floor section has no {ALL_CLUSTERS!r} default")
        if window < MIN_SCORED_MINUTES or every < 1:
            raise ValueError(f"the floor section's window must be >= {MIN_SCORED_MINUTES} and reselect_every >= 1")
        return cls(head, candidates, costs, defaults, default_cost, window, every)


def cost_key(cost: float) -> str:
    return f"{float(cost):g}"


def load_floor_stage(model_dir, manifest: dict, files: dict, backend: str = "torch") -> "FloorStage | None":
    """The manifest's floor stage (its head served by `backend`), None when it has none; ArtifactError
    when it is corrupt."""
    section = manifest.get("floor")
    if section is None:
        return None
    weights = section.get("head", {}).get("weights") if isinstance(section, dict) else None
    if not isinstance(weights, str):
        raise ArtifactError(f"{model_dir}: the manifest's floor section names no demand-head weights")
    state = (load_arrays if backend == "numpy" else load_tensors)(model_dir, weights, files.get(weights))
    try:
        return FloorStage.from_manifest(section, state, backend)
    except ValueError as exc:
        raise ArtifactError(f"{model_dir}: floor stage: {exc}") from None
