"""Trace-driven cold-start replay: how many cold starts and idle instance-minutes a floor policy costs.

Model of one function, minute by minute (all functions and policies at once, vectorised):

- Demand ``d[m] = ceil(invocations[m] / capacity)`` instances, at least 1 when there is any invocation.
  Capacity is one figure for every function or one per function (e.g. derived from each
  function's mean duration and the container concurrency, see `capacities_from_durations`).
- Knative's own autoscaler (the reactive layer) keeps an instance warm for ``keep_warm_minutes`` after
  the last minute it was needed (stable window + scale-to-zero grace): ``R[m] = max d[m-K .. m-1]``.
- A policy writes a min-scale setting ``S[m]``. Floor instances that were already alive are kept at
  once; new ones are ready ``lead_minutes`` after they were asked for, so the floor in force is
  ``F[m] = min(S[m], max(A[m-1], min S[m-lead .. m]))``.
- Warm at the start of the minute: ``W[m] = max(F[m], R[m])``; cold starts ``max(0, d[m] - W[m])``;
  alive ``A[m] = max(W[m], d[m])``. Instances held, or being started, for the floor cost too:
  idle ``max(A[m], S[m]) - d[m]`` instance-minutes.

Cold-start rate = cold starts / demanded instance-minutes (sum of d): the share of instance-minutes
of real work that began on a cold instance. For a function that fits one instance this is the share
of its busy minutes that started cold. Both cold starts and idle cost are also given relative to
the Knative default (no floor), which every run includes. The report also counts min-scale
changes per function-hour (API writes; revisions on the template path) and, for forecast floors,
the empirical coverage of the forecast they were sized from (how often the actual count stayed at
or below it), which is how a quantile setting is checked against what it promises.

No policy sees the future: at planning minute t a policy receives the counts of minutes < t only
(a read-only view), except policies that declare ``sees_future`` (the oracle lower bound).
Planning starts `lead_minutes` before the first counted minute (the operator was already
running), so a floor can be in place when counting starts.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Sequence

import numpy as np

from mesp_core.checks import check_int, check_number
from mesp_core.policy import PlanState, PolicyConfig, per_function_capacity, plan_min_scale

# A point forecaster maps contexts (2-D [n, t] array or list of 1-D arrays, oldest first) and a
# horizon to [n, horizon] forecast invocations per minute.
PointForecaster = Callable[[object, int], np.ndarray]
# A quantile forecaster maps (contexts, horizon, q) to the q-quantile forecast [n, horizon].
QuantileForecaster = Callable[[object, int, float], np.ndarray]

KNATIVE_DEFAULT = "knative default"
_REPLAY_BLOCK = 512  # functions replayed at once after planning


def demand_instances(counts: np.ndarray, capacity_per_instance) -> np.ndarray:
    """Instances needed per minute: ceil(invocations / capacity), at least 1 with any invocation.

    `capacity_per_instance` is a number or an array that broadcasts against `counts` (for
    per-function capacities of [n, T] counts, an [n, 1] column)."""
    counts = np.asarray(counts, dtype=np.float64)
    # Relative slack: an exact multiple stays k instances at any capacity (counts are whole numbers).
    needed = np.ceil(counts / capacity_per_instance * (1.0 - 1e-12))
    return np.where(counts > 0, np.maximum(needed, 1.0), 0.0).astype(np.int64)


@dataclass(frozen=True)
class ReplaySettings:
    capacity_per_instance: float | None  # None when functions have their own capacities
    keep_warm_minutes: int
    lead_minutes: int
    replan_every: int
    horizon: int | None
    context_minutes: int | None
    start_minute: int
    end_minute: int
    n_functions: int
    plan_from: int  # first planning minute (lead minutes before start_minute, at least 1)
    capacity_per_function: np.ndarray = field(repr=False, compare=False, default=None)  # float [n]

    @property
    def capacity_column(self) -> np.ndarray:
        """Per-function capacity as an [n, 1] column (broadcasts against [n, minutes] counts)."""
        return self.capacity_per_function[:, None]

    def to_dict(self) -> dict:
        out = {k: v for k, v in vars(self).items() if k != "capacity_per_function"}
        if self.capacity_per_instance is None:
            caps = self.capacity_per_function
            out["capacity_per_function"] = {"min": float(caps.min()), "median": float(np.median(caps)),
                                            "max": float(caps.max())}
        return out


class PlanningStep:
    """What a policy may look at when it plans at minute `t` for the next `steps` minutes."""

    def __init__(self, t: int, steps: int, history: np.ndarray, settings: ReplaySettings,
                 cache: dict, future: np.ndarray | None = None):
        self.t = t
        self.steps = steps
        self.history = history  # read-only [n, t] view: minutes 0 .. t-1
        self.settings = settings
        self.future = future
        self._cache = cache

    def contexts(self) -> np.ndarray:
        ctx = self.settings.context_minutes
        return self.history if ctx is None else self.history[:, max(0, self.t - ctx):]

    def forecast(self, forecaster: Callable, horizon: int, q: float | None = None) -> np.ndarray:
        """Call a forecaster on the history (memoised per step: policies share forecasts)."""
        key = (id(forecaster), horizon, q)
        if key not in self._cache:
            contexts = self.contexts()
            out = forecaster(contexts, horizon) if q is None else forecaster(contexts, horizon, q)
            out = np.asarray(out, dtype=np.float64)
            n = self.history.shape[0]
            if out.ndim != 2 or out.shape[0] != n or out.shape[1] < horizon:
                raise ValueError(
                    f"forecaster {forecaster!r} returned shape {out.shape}, expected [{n}, {horizon}]"
                )
            if not np.all(np.isfinite(out)):
                raise ValueError(f"forecaster {forecaster!r} returned NaN or infinite values")
            self._cache[key] = out[:, :horizon]
        return self._cache[key]


class Policy(ABC):
    """A min-scale floor policy: at planning minute t, settings for minutes t .. t+steps-1."""

    #: minutes between planning steps; None = the replay's replan_every. Reactive baselines use 1.
    cadence: int | None = None
    #: only the oracle: receives the whole trace.
    sees_future: bool = False
    #: policies with the same group are drawn as one curve (e.g. a quantile sweep).
    group: str | None = None
    quantile: float | None = None

    def reset(self, settings: ReplaySettings) -> None:
        """Forget all state before a replay."""

    @abstractmethod
    def plan(self, step: PlanningStep) -> np.ndarray:
        """Min-scale settings int [n, step.steps] for minutes step.t .. step.t + step.steps - 1."""


class NoFloorPolicy(Policy):
    """Knative as shipped: no min-scale, only the reactive autoscaler."""

    def plan(self, step):
        return np.zeros((step.history.shape[0], step.steps), dtype=np.int64)


class ForecastFloorPolicy(Policy):
    """Min-scale from a forecaster through `mesp_core.policy.plan_min_scale`.

    With `quantile_forecaster` and `quantile`, the plan is sized from that quantile; otherwise from
    the point forecast. The replay's capacity and lead time override the config's.
    """

    def __init__(self, forecaster: PointForecaster | None = None, *,
                 quantile_forecaster: QuantileForecaster | None = None, quantile: float | None = None,
                 config: PolicyConfig | None = None, group: str | None = None):
        if (quantile is None) != (quantile_forecaster is None):
            raise ValueError("give quantile_forecaster and quantile together")
        if quantile is None and forecaster is None:
            raise ValueError("give a forecaster or a quantile_forecaster with a quantile")
        if quantile is not None:
            check_number("quantile", quantile, low=0.0, low_inclusive=False)
            if quantile >= 1.0:
                raise ValueError(f"quantile must be in (0, 1), got {quantile}")
        self.forecaster = forecaster
        self.quantile_forecaster = quantile_forecaster
        self.quantile = quantile
        self.config = config or PolicyConfig()
        self.group = group
        self._state: PlanState | None = None
        self._config = self.config
        self.predicted: np.ndarray | None = None

    def reset(self, settings):
        # Capacity goes to plan_min_scale per function (the replay's, one figure or one each), so the
        # config's own capacity is not used here.
        self._config = replace(self.config, lead_minutes=settings.lead_minutes, quantile=self.quantile)
        needed = (self.cadence or settings.replan_every) + self._config.lookahead
        if settings.horizon is not None and settings.horizon < needed:
            # A shorter forecast would silently size the last minutes of each plan from nothing.
            raise ValueError(f"horizon {settings.horizon} is too short: each plan is sized from {needed} forecast "
                             f"minutes (replan interval + lead {settings.lead_minutes} + hold "
                             f"{self._config.hold_minutes})")
        self._capacity = settings.capacity_per_function
        self._state = PlanState.initial(settings.n_functions, self._config)
        # The forecast each minute was sized from, made `lead` minutes ahead where the cadence
        # allows (for the coverage of quantile forecasts); minutes from settings.plan_from on.
        self._plan_from = settings.plan_from
        self.predicted = np.full((settings.n_functions, settings.end_minute - settings.plan_from), np.nan,
                                 dtype=np.float32)

    def plan(self, step):
        horizon = step.settings.horizon or step.steps + self._config.lookahead
        if self.quantile is not None:
            sizing = step.forecast(self.quantile_forecaster, horizon, self.quantile)
        else:
            sizing = step.forecast(self.forecaster, horizon)
        plan, _, self._state = plan_min_scale(sizing, None, self._config, previous=self._state,
                                              plan_horizon=step.steps, explain=False, return_state=True,
                                              capacity=self._capacity)
        lead = self._config.lead_minutes
        offset = step.t - self._plan_from
        for j in range(lead, min(lead + step.steps, sizing.shape[1])):
            if offset + j < self.predicted.shape[1]:
                self.predicted[:, offset + j] = sizing[:, j]
        return plan


@dataclass
class PolicyResult:
    name: str
    cold_starts: int
    cold_start_rate: float        # cold starts / demanded instance-minutes
    cold_minutes: int             # minutes with at least one cold start
    cold_minute_rate: float       # cold_minutes / minutes with demand
    idle_instance_minutes: int
    warm_instance_minutes: int    # instance-minutes held (alive or starting for the floor)
    cold_vs_default: float        # cold starts relative to the Knative default (1.0 = same)
    idle_vs_default: float
    # 75th percentile over functions with demand of cold starts / demanded instance-minutes (Shahrad
    # et al. report the 75th percentile of per-function cold starts per invocation; same idea, this unit)
    p75_function_cold_rate: float
    changes_per_hour: float       # min-scale changes per function-hour (each is an API write, or a revision)
    coverage: float | None = None       # share of minutes with invocations <= the forecast sized from
    coverage_busy: float | None = None  # the same over minutes with invocations only
    group: str | None = None
    quantile: float | None = None


@dataclass
class SimulationReport:
    results: list[PolicyResult]
    settings: dict
    totals: dict                  # demand instance-minutes, busy minutes, invocations, functions
    per_function_cold: np.ndarray = field(repr=False)   # int [n_policies, n_functions]
    per_function_idle: np.ndarray = field(repr=False)
    recorded_settings: dict | None = field(default=None, repr=False)  # name -> int [n, span] (record_settings=True)

    def result(self, name: str) -> PolicyResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no policy named {name!r}; have {[r.name for r in self.results]}")

    def curve_comparisons(self) -> list[dict]:
        """Each quantile curve read off at every other policy's idle cost and cold-start rate."""
        return compare_curves(self.results)

    def to_dict(self) -> dict:
        return {
            "settings": self.settings,
            "totals": self.totals,
            "cold_start_rate_definition": "cold starts / demanded instance-minutes",
            # JSON has no infinity: "vs default" of a policy when the default had none is null.
            "policies": [{k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in vars(r).items()}
                         for r in self.results],
            "curve_comparisons": self.curve_comparisons(),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False, default=_json_default)


def compare_curves(results: Sequence[PolicyResult]) -> list[dict]:
    """A quantile curve (a group's points over q) against each single policy: the curve's cold-start
    rate at the same idle instance-minutes, and its idle at the same cold-start rate, by linear
    interpolation between the curve's points (None outside the range the curve covers; no
    extrapolation). A lower figure than the policy's own means the curve does better on that axis."""
    curves: dict[str, list[PolicyResult]] = {}
    for r in results:
        if r.group and r.quantile is not None:
            curves.setdefault(r.group, []).append(r)
    out = []
    for group, points in curves.items():
        if len(points) < 2:
            continue
        by_idle = sorted(points, key=lambda r: r.idle_instance_minutes)
        idle = np.array([r.idle_instance_minutes for r in by_idle], dtype=float)
        cold = np.array([r.cold_start_rate for r in by_idle], dtype=float)
        by_cold = np.argsort(cold, kind="stable")
        for other in results:
            if other.group == group or other.name == "oracle":
                continue
            entry = {"curve": group, "policy": other.name, "policy_cold_start_rate": other.cold_start_rate,
                     "policy_idle_instance_minutes": other.idle_instance_minutes,
                     "curve_cold_start_rate_at_same_idle": None, "curve_idle_at_same_cold_start_rate": None}
            if idle[0] <= other.idle_instance_minutes <= idle[-1]:
                entry["curve_cold_start_rate_at_same_idle"] = float(np.interp(other.idle_instance_minutes, idle, cold))
            if cold[by_cold[0]] <= other.cold_start_rate <= cold[by_cold[-1]]:
                entry["curve_idle_at_same_cold_start_rate"] = float(
                    np.interp(other.cold_start_rate, cold[by_cold], idle[by_cold]))
            out.append(entry)
    return out


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _capacities(capacity_per_instance, n: int) -> tuple[float | None, np.ndarray]:
    """(the one capacity or None, capacity per function [n]) from a number or n numbers."""
    value = per_function_capacity(capacity_per_instance, n, "capacity_per_instance")
    if isinstance(value, float):
        return value, np.full(n, value)
    return None, value


def capacities_from_durations(keys: Sequence[tuple], durations, container_concurrency: int = 0,
                              target_utilization: float = 0.7, default: float = 60.0) -> tuple[np.ndarray, int]:
    """Capacity per function (invocations/minute per instance) from the trace's duration files.

    `durations` is a frame from `mesp_core.data.trace.read_durations` (or several concatenated: a key
    seen on several days gets the mean of its daily averages). A function with a positive mean
    duration gets `capacity_from_concurrency(container_concurrency, duration, target_utilization)`;
    the others (not in the file, or 0 ms) get `default`. Returns (capacities [n], how many were derived).
    """
    from mesp_core.policy import capacity_from_concurrency
    from mesp_core.data.trace import KEY_COLUMNS

    check_number("default capacity", default, low=0.0, low_inclusive=False)
    mean_ms = durations.groupby(list(KEY_COLUMNS))["Average"].mean().to_dict()
    caps = np.full(len(keys), float(default))
    derived = 0
    for i, key in enumerate(keys):
        duration = mean_ms.get(tuple(key))
        if duration is not None and duration > 0:
            caps[i] = capacity_from_concurrency(container_concurrency, float(duration), target_utilization)
            derived += 1
    return caps, derived


def _as_counts(trace_counts) -> np.ndarray:
    counts = getattr(trace_counts, "counts", trace_counts)
    counts = np.array(counts, dtype=np.float32)  # a private copy: policies get read-only views of it
    if counts.ndim != 2:
        raise ValueError(f"trace counts must be 2-D [n_functions, minutes], got shape {counts.shape}")
    if not np.all(np.isfinite(counts)):
        raise ValueError("trace counts contain NaN or infinite values")
    if np.any(counts < 0):
        raise ValueError("trace counts contain negative values")
    counts.setflags(write=False)
    return counts


def _trailing_max(values: np.ndarray, width: int) -> np.ndarray:
    """out[:, m] = max(values[:, m-width .. m-1]) (0 where the window is empty)."""
    n, T = values.shape
    out = np.zeros((n, T), dtype=values.dtype)
    for k in range(1, min(width, T) + 1):  # a window longer than the trace reaches its start
        np.maximum(out[:, k:], values[:, : T - k], out=out[:, k:])
    return out


def replay_floors(demand: np.ndarray, floors: np.ndarray, start_minute: int, keep_warm_minutes: int,
                  lead_minutes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The replay recurrence (see module doc) for settings `floors` int [P, n, span].

    `demand` is int [n, T] over the whole trace (minutes before `start_minute` warm the reactive
    layer); returns (cold, idle, held) each [P, n, span]: cold starts, idle instance-minutes and
    instances held (alive or starting) per minute.
    """
    P, n, span = floors.shape
    reactive = _trailing_max(demand, keep_warm_minutes)
    cold = np.empty((P, n, span), dtype=np.int64)
    idle = np.empty((P, n, span), dtype=np.int64)
    alive_all = np.empty((P, n, span), dtype=np.int64)
    # Before the replay Knative ran alone: alive = its warm instances plus that minute's demand.
    before = np.maximum(demand[:, start_minute - 1], reactive[:, start_minute - 1])
    alive = np.broadcast_to(before, (P, n)).astype(np.int64)
    for i in range(span):
        m = start_minute + i
        setting = floors[:, :, i]
        ready = floors[:, :, max(0, i - lead_minutes): i + 1].min(axis=2)
        if i < lead_minutes:  # no floor was set before the replay: nothing asked for can be ready yet
            ready = np.zeros_like(ready)
        floor = np.minimum(setting, np.maximum(alive, ready))
        warm = np.maximum(floor, reactive[None, :, m])
        need = demand[None, :, m]
        cold[:, :, i] = np.maximum(need - warm, 0)
        alive = np.maximum(warm, need)
        held = np.maximum(alive, setting)  # instances still starting for the floor cost as well
        idle[:, :, i] = held - need
        alive_all[:, :, i] = held
    return cold, idle, alive_all


def simulate(trace_counts, policies: Mapping[str, Policy], start_minute: int = 720,
             end_minute: int | None = None, *, capacity_per_instance=60.0,
             keep_warm_minutes: int = 2, lead_minutes: int = 1, replan_every: int = 1,
             horizon: int | None = None, context_minutes: int | None = None, progress: bool = True,
             record_settings: bool = False) -> SimulationReport:
    """Replay minutes [start_minute, end_minute) of `trace_counts` [n, T] under every policy.

    `capacity_per_instance` is invocations per minute one instance serves: one number, or one per
    function (a sequence of n positive numbers).
    The Knative default (no floor) is always included as the reference. `replan_every` is the
    planning cadence of forecast policies (reactive baselines decide every minute); `horizon` is
    the forecast length asked for (default: replan_every + lead + the policy's hold); with
    `context_minutes` forecasters see only that many trailing minutes (default: all of the past).
    """
    counts = _as_counts(trace_counts)
    n, T = counts.shape
    uniform_capacity, capacities = _capacities(capacity_per_instance, n)
    check_int("keep_warm_minutes", keep_warm_minutes, low=0)
    check_int("lead_minutes", lead_minutes, low=0)
    check_int("replan_every", replan_every, low=1)
    # Planning starts `lead` minutes before counting, after at least one minute of history, so even
    # the oracle can have every counted minute ready.
    check_int("start_minute", start_minute, low=lead_minutes + 1)
    end_minute = T if end_minute is None else end_minute
    check_int("end_minute", end_minute, low=start_minute + 1)
    if end_minute > T:
        raise ValueError(f"end_minute ({end_minute}) is past the end of the trace ({T} minutes)")
    if horizon is not None:
        check_int("horizon", horizon, low=replan_every)
    if context_minutes is not None:
        check_int("context_minutes", context_minutes, low=1)
    if not policies:
        raise ValueError("no policies to compare")
    for name, policy in policies.items():
        if not isinstance(policy, Policy):
            raise ValueError(f"policy {name!r} is a {type(policy).__name__}, not a mesp_core.replay.simulate.Policy")
        if policy.cadence is not None:
            check_int(f"cadence of policy {name!r}", policy.cadence, low=1)

    named = dict(policies)
    if not any(isinstance(p, NoFloorPolicy) for p in named.values()):
        named = {KNATIVE_DEFAULT: NoFloorPolicy(), **named}
    reference = next(name for name, p in named.items() if isinstance(p, NoFloorPolicy))
    names = list(named)
    settings = ReplaySettings(capacity_per_instance=uniform_capacity, capacity_per_function=capacities,
                              keep_warm_minutes=keep_warm_minutes, lead_minutes=lead_minutes,
                              replan_every=replan_every, horizon=horizon, context_minutes=context_minutes,
                              start_minute=start_minute, end_minute=end_minute, n_functions=n,
                              plan_from=max(1, start_minute - lead_minutes))
    for policy in named.values():
        policy.reset(settings)

    # Planning starts `lead` minutes early (the operator was already running), so floors asked for
    # at the start are ready when counting starts; those warm-up minutes are not counted.
    plan_from = settings.plan_from
    warmup = start_minute - plan_from
    span = end_minute - plan_from
    floors = np.zeros((len(names), n, span), dtype=np.int32)
    from tqdm import tqdm  # plain (not .auto): no notebook/ipywidgets probing in the CLI

    for t in tqdm(range(plan_from, end_minute), desc="replay", unit="min", disable=not progress,
                  leave=False):
        cache: dict = {}
        history = counts[:, :t]
        for p, name in enumerate(names):
            policy = named[name]
            cadence = policy.cadence or replan_every
            if (t - plan_from) % cadence:
                continue
            steps = min(cadence, end_minute - t)
            step = PlanningStep(t, steps, history, settings, cache,
                                future=counts if policy.sees_future else None)
            planned = np.asarray(policy.plan(step))
            if planned.shape != (n, steps):
                raise ValueError(f"policy {name!r} returned shape {planned.shape}, expected {(n, steps)}")
            if np.any(planned < 0):
                raise ValueError(f"policy {name!r} returned a negative min-scale")
            floors[p, :, t - plan_from: t - plan_from + steps] = planned

    demand = demand_instances(counts, settings.capacity_column)
    # Replayed in blocks of functions so per-minute arrays stay small on big traces.
    sums = {key: np.zeros((len(names), n), dtype=np.int64) for key in ("cold", "idle", "held", "cold_minutes")}
    for lo in range(0, n, _REPLAY_BLOCK):
        rows = slice(lo, lo + _REPLAY_BLOCK)
        cold, idle, held = replay_floors(demand[rows], floors[:, rows], plan_from, keep_warm_minutes,
                                         lead_minutes)
        cold, idle, held = (a[:, :, warmup:] for a in (cold, idle, held))
        sums["cold"][:, rows] = cold.sum(axis=2)
        sums["idle"][:, rows] = idle.sum(axis=2)
        sums["held"][:, rows] = held.sum(axis=2)
        sums["cold_minutes"][:, rows] = np.count_nonzero(cold, axis=2)
    return _report(names, named, reference, counts, demand, sums, floors[:, :, warmup:], settings,
                   record_settings)


def _report(names, named, reference, counts, demand, sums, floors, settings, record):
    s, e = settings.start_minute, settings.end_minute
    window_demand = demand[:, s:e]
    demand_minutes = int(window_demand.sum())
    busy_minutes = int(np.count_nonzero(window_demand))
    per_function_cold = sums["cold"]
    per_function_idle = sums["idle"]
    function_demand = window_demand.sum(axis=1)
    active = function_demand > 0
    ref = names.index(reference)
    changes = np.count_nonzero(np.diff(floors, axis=2), axis=(1, 2))
    ref_cold = int(per_function_cold[ref].sum())
    ref_idle = int(per_function_idle[ref].sum())
    results = []
    for p, name in enumerate(names):
        cold_starts = int(per_function_cold[p].sum())
        idle_minutes = int(per_function_idle[p].sum())
        cold_minutes = int(sums["cold_minutes"][p].sum())
        rates = per_function_cold[p][active] / function_demand[active]
        results.append(PolicyResult(
            name=name,
            cold_starts=cold_starts,
            cold_start_rate=_ratio(cold_starts, demand_minutes),
            cold_minutes=cold_minutes,
            cold_minute_rate=_ratio(cold_minutes, busy_minutes),
            idle_instance_minutes=idle_minutes,
            warm_instance_minutes=int(sums["held"][p].sum()),
            cold_vs_default=_relative(cold_starts, ref_cold),
            idle_vs_default=_relative(idle_minutes, ref_idle),
            p75_function_cold_rate=float(np.percentile(rates, 75)) if rates.size else 0.0,
            changes_per_hour=_ratio(changes[p], counts.shape[0] * (e - s) / 60.0),
            **_coverage(named[name], counts, settings),
            group=named[name].group,
            quantile=named[name].quantile,
        ))
    settings_dict = settings.to_dict()
    totals = {"functions": int(counts.shape[0]), "minutes": e - s,
              "invocations": float(counts[:, s:e].sum(dtype=np.float64)),
              "demand_instance_minutes": demand_minutes, "busy_minutes": busy_minutes,
              "reference_policy": reference}
    recorded = {name: floors[p].copy() for p, name in enumerate(names)} if record else None
    return SimulationReport(results=results, settings=settings_dict, totals=totals,
                            per_function_cold=per_function_cold, per_function_idle=per_function_idle,
                            recorded_settings=recorded)


def _coverage(policy, counts, settings) -> dict:
    """Empirical coverage of the forecast a policy sized from, `lead` minutes ahead."""
    predicted = getattr(policy, "predicted", None)
    if predicted is None:
        return {}
    s, e = settings.start_minute, settings.end_minute
    predicted = predicted[:, s - settings.plan_from:]
    actual = counts[:, s:e]
    known = ~np.isnan(predicted)
    covered = (actual <= predicted + 1e-6) & known
    busy = known & (actual > 0)
    n_known, n_busy = int(known.sum()), int(busy.sum())
    return {"coverage": _ratio(int(covered.sum()), n_known) if n_known else None,
            "coverage_busy": _ratio(int((covered & busy).sum()), n_busy) if n_busy else None}


def _ratio(a, b):
    return float(a) / float(b) if b else 0.0


def _relative(a, reference):
    """a / reference; 1.0 when both are zero (same as the default), inf when only the default is zero."""
    if reference == 0:
        return 1.0 if a == 0 else math.inf
    return float(a) / float(reference)


def format_table(report: SimulationReport) -> str:
    """The comparison as a fixed-width text table."""
    header = ("policy", "cold starts", "cold rate", "vs default", "idle inst-min", "vs default",
              "p75 fn cold", "changes/h", "fc coverage (busy)")
    rows = []
    for r in report.results:
        rows.append((r.name, f"{r.cold_starts:,}", f"{100 * r.cold_start_rate:.2f}%",
                     _times(r.cold_vs_default), f"{r.idle_instance_minutes:,}", _times(r.idle_vs_default),
                     f"{100 * r.p75_function_cold_rate:.1f}%", f"{r.changes_per_hour:.2f}",
                     _coverage_text(r)))
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    comparisons = [c for c in report.curve_comparisons()
                   if c["curve_cold_start_rate_at_same_idle"] is not None or c["curve_idle_at_same_cold_start_rate"] is not None]
    if comparisons:
        lines.append("")
        lines.append("quantile curve read off at each policy's idle cost and cold-start rate (linear between its points):")
        for c in comparisons:
            parts = []
            at_idle = c["curve_cold_start_rate_at_same_idle"]
            if at_idle is not None:
                parts.append(f"cold rate {100 * at_idle:.2f}% vs {100 * c['policy_cold_start_rate']:.2f}% at the same idle")
            at_cold = c["curve_idle_at_same_cold_start_rate"]
            if at_cold is not None:
                parts.append(f"idle {at_cold:,.0f} vs {c['policy_idle_instance_minutes']:,} at the same cold rate")
            lines.append(f"  {c['curve']} vs {c['policy']}: " + "; ".join(parts))
    t = report.totals
    lines.append("")
    lines.append(f"{t['functions']} functions x {t['minutes']} minutes, {t['invocations']:,.0f} invocations, "
                 f"{t['demand_instance_minutes']:,} demanded instance-minutes; "
                 f"cold rate = cold starts / demanded instance-minutes; 'vs default' relative to "
                 f"'{t['reference_policy']}'; changes/h = min-scale changes per function-hour; fc coverage = "
                 f"share of minutes (with invocations) at or below the forecast sized from, {report.settings['lead_minutes']} "
                 f"min ahead.")
    return "\n".join(lines)


def _coverage_text(r: PolicyResult) -> str:
    if r.coverage is None:
        return "-"
    busy = "-" if r.coverage_busy is None else f"{100 * r.coverage_busy:.1f}%"
    return f"{100 * r.coverage:.1f}% ({busy})"


def _times(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.2f}x"


def plot_tradeoff(report: SimulationReport, path) -> None:
    """PNG: cold-start rate vs idle instance-minutes, one point per policy, sweeps as curves."""
    # matplotlib is heavy and optional at run time: import it only here, without pyplot's global state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 6), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    groups: dict[str, list[PolicyResult]] = {}
    singles = []
    for r in report.results:
        if r.group and r.quantile is not None:
            groups.setdefault(r.group, []).append(r)
        else:
            singles.append(r)
    for g, members in list(groups.items()):
        if len(members) < 2:
            singles.extend(members)
            del groups[g]
    colors = [f"C{i % 10}" for i in range(len(singles) + len(groups))]
    markers = "osD^v<>phX*"
    for i, r in enumerate(singles):
        ax.scatter(r.idle_instance_minutes, 100 * r.cold_start_rate, marker=markers[i % len(markers)],
                   s=60, color=colors[i], label=r.name, zorder=3, clip_on=False)
    for j, (g, members) in enumerate(groups.items()):
        members = sorted(members, key=lambda r: r.quantile)
        xs = [r.idle_instance_minutes for r in members]
        ys = [100 * r.cold_start_rate for r in members]
        ax.plot(xs, ys, "-o", lw=1.5, ms=4, color=colors[len(singles) + j],
                label=f"{g}, quantile sweep", zorder=4, clip_on=False)
        for k, (r, x, y) in enumerate(zip(members, xs, ys)):
            ax.annotate(f"q={r.quantile:g}", (x, y), textcoords="offset points",
                        xytext=(6, 6 if k % 2 == 0 else -12), fontsize=7)
    ax.set_xlabel("idle instance-minutes (lower is cheaper)")
    ax.set_ylabel("cold-start rate, % of demanded instance-minutes")
    t = report.totals
    ax.set_title(f"Cold starts vs idle cost: {t['functions']} functions x {t['minutes']} min replayed")
    ax.grid(True, alpha=0.3)
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)


class ModelForecaster:
    """Adapter from a loaded MESP model (mesp_core.load_model) to the forecaster protocol.

    The point and quantile adapters of one approach share the model's forecast of the last
    contexts they saw, so a quantile sweep costs one forward pass per planning step, not one per q.
    """

    def __init__(self, model, approach: str, shared: dict | None = None):
        self.model = model
        self.approach = approach
        self._shared = {} if shared is None else shared

    def _distribution(self, contexts, horizon: int):
        array = np.asarray(contexts)
        key = (array.__array_interface__["data"][0], array.shape, array.strides, horizon)
        if self._shared.get("key") != key:
            self._shared["key"] = key
            self._shared["value"] = self.model.forecast_distribution(array, horizon, approach=self.approach)
        return self._shared["value"]

    def __call__(self, contexts, horizon: int) -> np.ndarray:
        if not hasattr(self.model, "forecast_distribution"):
            return self.model.forecast(contexts, horizon=horizon, approach=self.approach)
        return self._distribution(contexts, horizon).point

    def __repr__(self):
        return f"ModelForecaster(approach={self.approach!r})"


class ModelQuantileForecaster(ModelForecaster):
    def __call__(self, contexts, horizon: int, q: float) -> np.ndarray:
        if not hasattr(self.model, "forecast_distribution"):
            return self.model.forecast_quantile(contexts, horizon, q=q, approach=self.approach)
        return self._distribution(contexts, horizon).quantile(q)

    def __repr__(self):
        return f"ModelQuantileForecaster(approach={self.approach!r})"


def model_forecasters(model, approach: str) -> tuple[PointForecaster, QuantileForecaster]:
    """(point, quantile) forecasters for one approach ("moe", "dense" or "naive") of a loaded model."""
    if approach not in ("moe", "dense", "naive"):
        raise ValueError(f"approach must be 'moe', 'dense' or 'naive', got {approach!r}")
    shared: dict = {}
    return ModelForecaster(model, approach, shared), ModelQuantileForecaster(model, approach, shared)


APPROACH_LABELS = {"naive": "seasonal naive", "dense": "dense", "moe": "MESP MoE"}


def standard_policies(model, quantiles: Sequence[float] = (0.5, 0.8, 0.9, 0.95, 0.99),
                      curve_approaches: Sequence[str] = ("moe",), policy_config: PolicyConfig | None = None,
                      ) -> dict[str, Policy]:
    """The comparison set: Knative default, keep-alive 10/20, hybrid histogram, forecast floors, oracle."""
    from mesp_core.replay.baselines import FixedKeepAlivePolicy, HybridHistogramPolicy, OraclePolicy

    config = policy_config or PolicyConfig()
    policies: dict[str, Policy] = {
        KNATIVE_DEFAULT: NoFloorPolicy(),
        "keep-alive 10 min": FixedKeepAlivePolicy(10),
        "keep-alive 20 min": FixedKeepAlivePolicy(20),
        "hybrid histogram": HybridHistogramPolicy(),
    }
    for approach in ("naive", "dense", "moe"):
        point, quantile = model_forecasters(model, approach)
        label = APPROACH_LABELS[approach]
        policies[label] = ForecastFloorPolicy(point, config=config, group=label)
        if approach in curve_approaches:
            for q in quantiles:
                policies[f"{label} q={q:g}"] = ForecastFloorPolicy(
                    quantile_forecaster=quantile, quantile=float(q), config=config, group=label)
    policies["oracle"] = OraclePolicy()
    return policies


def run_replay(model, counts, start_minute: int = 720, quantiles: Sequence[float] = (0.5, 0.8, 0.9, 0.95, 0.99),
               capacity=60.0, replan_every: int = 1, lead_minutes: int = 1, horizon: int | None = None,
               *, end_minute: int | None = None, keep_warm_minutes: int = 2,
               policy_config: PolicyConfig | None = None, curve_approaches: Sequence[str] = ("moe",),
               context_minutes: int | None = None, progress: bool = True) -> SimulationReport:
    """Replay `counts` ([n, T] array or InvocationTrace) under the standard policy set built from `model`.

    Forecasters see at most `context_minutes` trailing minutes (default: the model's input size, at
    least one day, so the router sees a full daily shape).
    """
    for q in quantiles:
        check_number("quantile", q, low=0.0, low_inclusive=False)
        if q >= 1.0:
            raise ValueError(f"quantiles must be in (0, 1), got {q}")
    for approach in curve_approaches:
        if approach not in APPROACH_LABELS:
            raise ValueError(f"curve approach must be one of {sorted(APPROACH_LABELS)}, got {approach!r}")
    if context_minutes is None:
        manifest = getattr(model, "manifest", None) or {}
        input_size = (manifest.get("input_size") or manifest.get("input_size_max")) if isinstance(manifest, dict) else None
        context_minutes = max(int(input_size or 0), 1440)
    policies = standard_policies(model, quantiles, curve_approaches, policy_config)
    return simulate(counts, policies, start_minute, end_minute, capacity_per_instance=capacity,
                    keep_warm_minutes=keep_warm_minutes, lead_minutes=lead_minutes,
                    replan_every=replan_every, horizon=horizon, context_minutes=context_minutes,
                    progress=progress)
