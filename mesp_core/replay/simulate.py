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

import math
from dataclasses import dataclass, replace
from typing import Mapping

import numpy as np

from mesp_core import floor_cost
from mesp_core.checks import check_int
from mesp_core.policy import per_function_capacity
from mesp_core.replay.policies import KNATIVE_DEFAULT, NoFloorPolicy, PlanningStep, Policy, ReplaySettings, demand_instances
from mesp_core.replay.report import PolicyResult, SimulationReport

_REPLAY_BLOCK = 512  # functions replayed at once after planning


def _capacities(capacity_per_instance, n: int) -> tuple[float | None, np.ndarray]:
    """(the one capacity or None, capacity per function [n]) from a number or n numbers."""
    value = per_function_capacity(capacity_per_instance, n, "capacity_per_instance")
    if isinstance(value, float):
        return value, np.full(n, value)
    return None, value


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


def replay_floors(demand: np.ndarray, floors: np.ndarray, start_minute: int, keep_warm_minutes: int,
                  lead_minutes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The replay recurrence (see module doc) for settings `floors` int [P, n, span].

    `demand` is int [n, T] over the whole trace (minutes before `start_minute` warm the reactive
    layer); returns (cold, idle, held) each [P, n, span]: cold starts, idle instance-minutes and
    instances held (alive or starting) per minute.
    """
    span = floors.shape[2]
    window = np.asarray(demand)[:, : start_minute + span]
    cold, idle = floor_cost.replay_floors(window, floors, keep_alive=keep_warm_minutes, lead_minutes=lead_minutes,
                                          start=start_minute)
    return cold, idle, idle + window[None, :, start_minute:]


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
    return report_from_tallies(replay_tallies(
        trace_counts, policies, start_minute, end_minute, capacity_per_instance=capacity_per_instance,
        keep_warm_minutes=keep_warm_minutes, lead_minutes=lead_minutes, replan_every=replan_every, horizon=horizon,
        context_minutes=context_minutes, progress=progress, record_settings=record_settings))


@dataclass
class ReplayTallies:
    """A replay's counts per policy and function, from which every figure of its report follows.

    Arrays are [n_policies, n_functions] (or [n_functions]) integer counts, so the tallies of shards of
    the functions, joined in order (`join_tallies`), are those of all of them: the report is the same."""

    names: list[str]
    reference: str
    curve: dict          # policy name -> (group, quantile, cold_start_cost)
    settings: ReplaySettings
    cold: np.ndarray     # cold starts
    idle: np.ndarray     # idle instance-minutes
    held: np.ndarray     # instance-minutes held
    cold_minutes: np.ndarray
    changes: np.ndarray  # min-scale changes
    coverage: dict       # policy name -> {covered, known, covered_busy, busy} [n] (forecast floors only)
    demand: np.ndarray   # [n] demanded instance-minutes
    busy: np.ndarray     # [n] minutes with demand
    invocations: np.ndarray  # [n] invocations, float64
    floors: np.ndarray | None = None  # [n_policies, n, span] settings (record_settings=True)


def join_tallies(parts: list[ReplayTallies]) -> ReplayTallies:
    """The tallies of shards of functions as one replay, the functions in shard order."""
    if not parts:
        raise ValueError("no replay tallies to join")
    first = parts[0]

    def joined(name, axis=1):
        return np.concatenate([getattr(p, name) for p in parts], axis=axis)

    capacities = np.concatenate([p.settings.capacity_per_function for p in parts])
    settings = replace(first.settings, n_functions=len(capacities), capacity_per_function=capacities)
    coverage = {name: {key: np.concatenate([p.coverage[name][key] for p in parts]) for key in counts}
                for name, counts in first.coverage.items()}
    return ReplayTallies(first.names, first.reference, first.curve, settings, joined("cold"), joined("idle"),
                         joined("held"), joined("cold_minutes"), joined("changes"), coverage, joined("demand", 0),
                         joined("busy", 0), joined("invocations", 0),
                         None if first.floors is None else joined("floors"))


def replay_tallies(trace_counts, policies: Mapping[str, Policy], start_minute: int = 720,
                   end_minute: int | None = None, *, capacity_per_instance=60.0,
                   keep_warm_minutes: int = 2, lead_minutes: int = 1, replan_every: int = 1,
                   horizon: int | None = None, context_minutes: int | None = None, progress: bool = True,
                   record_settings: bool = False) -> ReplayTallies:
    """`simulate`'s replay (same arguments): its counts per policy and function, not yet figures."""
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
            raise ValueError(f"policy {name!r} is a {type(policy).__name__}, not a mesp_core.replay.policies.Policy")
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
    floors = floors[:, :, warmup:]
    s, e = start_minute, end_minute
    window_demand = demand[:, s:e]
    return ReplayTallies(
        names=names, reference=reference, settings=settings,
        curve={name: (named[name].group, named[name].quantile, named[name].cold_start_cost) for name in names},
        cold=sums["cold"], idle=sums["idle"], held=sums["held"], cold_minutes=sums["cold_minutes"],
        changes=np.count_nonzero(np.diff(floors, axis=2), axis=2),
        coverage={name: counts_ for name in names if (counts_ := _coverage_counts(named[name], counts, settings)) is not None},
        demand=window_demand.sum(axis=1, dtype=np.int64), busy=np.count_nonzero(window_demand, axis=1),
        invocations=counts[:, s:e].sum(axis=1, dtype=np.float64),
        floors=floors.copy() if record_settings else None,
    )


def report_from_tallies(tallies: ReplayTallies) -> SimulationReport:
    """The figures of a replay (one process's, or shards' joined) from its counts."""
    settings = tallies.settings
    names = tallies.names
    s, e = settings.start_minute, settings.end_minute
    n = settings.n_functions
    demand_minutes = int(tallies.demand.sum())
    busy_minutes = int(tallies.busy.sum())
    per_function_cold = tallies.cold
    per_function_idle = tallies.idle
    function_demand = tallies.demand
    active = function_demand > 0
    ref = names.index(tallies.reference)
    ref_cold = int(per_function_cold[ref].sum())
    ref_idle = int(per_function_idle[ref].sum())
    results = []
    for p, name in enumerate(names):
        cold_starts = int(per_function_cold[p].sum())
        idle_minutes = int(per_function_idle[p].sum())
        cold_minutes = int(tallies.cold_minutes[p].sum())
        rates = per_function_cold[p][active] / function_demand[active]
        group, quantile, cost = tallies.curve[name]
        results.append(PolicyResult(
            name=name,
            cold_starts=cold_starts,
            cold_start_rate=_ratio(cold_starts, demand_minutes),
            cold_minutes=cold_minutes,
            cold_minute_rate=_ratio(cold_minutes, busy_minutes),
            idle_instance_minutes=idle_minutes,
            warm_instance_minutes=int(tallies.held[p].sum()),
            cold_vs_default=_relative(cold_starts, ref_cold),
            idle_vs_default=_relative(idle_minutes, ref_idle),
            p75_function_cold_rate=float(np.percentile(rates, 75)) if rates.size else 0.0,
            changes_per_hour=_ratio(int(tallies.changes[p].sum()), n * (e - s) / 60.0),
            **_coverage(tallies.coverage.get(name)),
            group=group,
            quantile=quantile,
            cold_start_cost=cost,
        ))
    totals = {"functions": int(n), "minutes": e - s,
              "invocations": float(tallies.invocations.sum()),
              "demand_instance_minutes": demand_minutes, "busy_minutes": busy_minutes,
              "reference_policy": tallies.reference}
    recorded = None if tallies.floors is None else {name: tallies.floors[p].copy() for p, name in enumerate(names)}
    return SimulationReport(results=results, settings=settings.to_dict(), totals=totals,
                            per_function_cold=per_function_cold, per_function_idle=per_function_idle,
                            recorded_settings=recorded)


def _coverage_counts(policy, counts, settings) -> dict | None:
    """Per function, how often the forecast a policy sized from (`lead` minutes ahead) covered the
    actual count: over the minutes it was known, and over those with invocations."""
    predicted = getattr(policy, "predicted", None)
    if predicted is None:
        return None
    s, e = settings.start_minute, settings.end_minute
    predicted = predicted[:, s - settings.plan_from:]
    actual = counts[:, s:e]
    known = ~np.isnan(predicted)
    covered = (actual <= predicted + 1e-6) & known
    busy = known & (actual > 0)
    return {"covered": covered.sum(axis=1), "known": known.sum(axis=1), "covered_busy": (covered & busy).sum(axis=1),
            "busy": busy.sum(axis=1)}


def _coverage(counts: dict | None) -> dict:
    """Empirical coverage of the forecast a policy sized from, from its counts (none: not a forecast floor)."""
    if counts is None:
        return {}
    n_known, n_busy = int(counts["known"].sum()), int(counts["busy"].sum())
    return {"coverage": _ratio(int(counts["covered"].sum()), n_known) if n_known else None,
            "coverage_busy": _ratio(int(counts["covered_busy"].sum()), n_busy) if n_busy else None}


def _ratio(a, b):
    return float(a) / float(b) if b else 0.0


def _relative(a, reference):
    """a / reference; 1.0 when both are zero (same as the default), inf when only the default is zero."""
    if reference == 0:
        return 1.0 if a == 0 else math.inf
    return float(a) / float(reference)
