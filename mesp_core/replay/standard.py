"""The standard comparison: a loaded model's forecasts as floor policies beside every baseline, replayed.

The headline is two curves over the cold-start cost C (idle instance-minutes one avoided cold start
is worth): MESP's floor at each C (`mesp_policy`) and the per-function choice among cheap policies
at each C (`mesp_core.replay.cheap_choice`).

`run_replay` is what `mesp simulate` runs; `capacities_from_durations` gives each function its own
capacity from the trace's duration files.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mesp_core.checks import check_number
from mesp_core.forecasting.approaches import APPROACH_LABELS, check_approach
from mesp_core.policy import PolicyConfig, check_cold_start_cost, newsvendor_level
from mesp_core.replay.baselines import FixedKeepAlivePolicy, HybridHistogramPolicy, OraclePolicy
from mesp_core.replay.cheap_choice import (
    CHEAP_CHOICE,
    DEFAULT_MORNING_MINUTES,
    CheapChoicePolicy,
    CheapMenu,
    cheap_candidates,
)
from mesp_core.replay.policies import (
    KNATIVE_DEFAULT,
    ForecastFloorPolicy,
    NoFloorPolicy,
    PointForecaster,
    Policy,
    QuantileForecaster,
)
from mesp_core.replay.report import SimulationReport
from mesp_core.replay.simulate import ReplayTallies, report_from_tallies
from mesp_core.replay.simulate import replay_tallies as simulate_tallies

# The cold-start costs (idle instance-minutes one avoided cold start is worth) the MESP and
# cheap-choice curves sweep by default.
CURVE_COSTS = (1, 2, 4, 8, 16, 32, 64)
# Quantiles of an experts' quantile curve, drawn when asked for (`quantiles=`, `mesp simulate --quantiles`).
CURVE_QUANTILES = (0.5, 0.8, 0.9, 0.95, 0.99)
MESP_CURVE = "MESP"


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
    check_approach(approach, allow_family=False)
    shared: dict = {}
    return ModelForecaster(model, approach, shared), ModelQuantileForecaster(model, approach, shared)


def mesp_policy(model, cold_start_cost: float, config: PolicyConfig | None = None, *,
                forecasters: tuple[PointForecaster, QuantileForecaster] | None = None) -> Policy:
    """MESP's floor policy at one cold-start cost (idle instance-minutes one avoided cold start is
    worth): the replay's MESP curve is this function swept over costs, one point per cost.

    With a floor stage it is `MespFloorPolicy`, the stage's per-function floor choice at C; without
    one, the MoE's forecast floor at the critical fractile C / (1 + C) of its quantiles, as
    `MespModel.plan_min_scale(cold_start_cost=C)` sizes it. Pass one `forecasters` pair (from
    `model_forecasters(model, "moe")`) to every cost so the sweep costs one model run per step."""
    cost = check_cold_start_cost(cold_start_cost)
    if getattr(model, "floor", None) is not None:
        from mesp_core.replay.floor_policy import MespFloorPolicy  # imports torch: only with a model

        return MespFloorPolicy(model, cost, config, group=MESP_CURVE)
    _, quantile = forecasters or model_forecasters(model, "moe")
    policy = ForecastFloorPolicy(quantile_forecaster=quantile, quantile=newsvendor_level(cost), config=config,
                                 group=MESP_CURVE)
    policy.cold_start_cost = cost
    return policy


def check_costs(cold_start_costs: Sequence[float]) -> tuple[float, ...]:
    """The costs of a sweep: each > 0, no repeats (a repeated cost would be one policy name twice)."""
    costs = tuple(check_cold_start_cost(c) for c in cold_start_costs)
    if len(set(costs)) != len(costs):
        raise ValueError(f"cold-start costs repeat: {list(cold_start_costs)}")
    return costs


def standard_policies(model, quantiles: Sequence[float] = (),
                      curve_approaches: Sequence[str] = ("moe",), policy_config: PolicyConfig | None = None,
                      *, cold_start_costs: Sequence[float] = CURVE_COSTS, cheap_choice: bool = True,
                      morning_minutes: int = DEFAULT_MORNING_MINUTES) -> dict[str, Policy]:
    """The comparison set: Knative default, keep-alive 10/20, hybrid histogram, forecast floors (point),
    the MESP curve over `cold_start_costs` (`mesp_policy`), the per-function cheap choice over the
    same costs, quantile curves of `curve_approaches` over `quantiles` (none by default), oracle."""
    config = policy_config or PolicyConfig()
    costs = check_costs(cold_start_costs)
    policies: dict[str, Policy] = {
        KNATIVE_DEFAULT: NoFloorPolicy(),
        "keep-alive 10 min": FixedKeepAlivePolicy(10),
        "keep-alive 20 min": FixedKeepAlivePolicy(20),
        "hybrid histogram": HybridHistogramPolicy(),
    }
    forecasters = {}
    for approach in APPROACH_LABELS:  # table order: naive, dense, moe
        point, quantile = forecasters[approach] = model_forecasters(model, approach)
        label = APPROACH_LABELS[approach]
        policies[label] = ForecastFloorPolicy(point, config=config, group=label)
        if approach in curve_approaches:
            for q in quantiles:
                policies[f"{label} q={q:g}"] = ForecastFloorPolicy(
                    quantile_forecaster=quantile, quantile=float(q), config=config, group=label)
    for cost in costs:
        policies[f"{MESP_CURVE} C={cost:g}"] = mesp_policy(model, cost, config, forecasters=forecasters["moe"])
    if cheap_choice and costs:
        # The seasonal-naive candidate is the model's naive expert (no training), the same forecaster
        # object as the "seasonal naive" floor above, so both share one forecast per step.
        menu = CheapMenu(cheap_candidates(seasonal_naive=forecasters["naive"][0], policy_config=config),
                         morning_minutes=morning_minutes)
        for cost in costs:
            policies[f"{CHEAP_CHOICE} C={cost:g}"] = CheapChoicePolicy(cost, menu)
    policies["oracle"] = OraclePolicy()
    return policies


def run_replay(model, counts, start_minute: int = 720, quantiles: Sequence[float] = (),
               capacity=60.0, replan_every: int = 1, lead_minutes: int = 1, horizon: int | None = None,
               *, end_minute: int | None = None, keep_warm_minutes: int = 2,
               policy_config: PolicyConfig | None = None, curve_approaches: Sequence[str] = ("moe",),
               context_minutes: int | None = None, progress: bool = True,
               cold_start_costs: Sequence[float] = CURVE_COSTS, cheap_choice: bool = True,
               morning_minutes: int = DEFAULT_MORNING_MINUTES) -> SimulationReport:
    """Replay `counts` ([n, T] array or InvocationTrace) under the standard policy set built from `model`.

    The MESP and cheap-choice curves sweep `cold_start_costs`; the cheap choice picks each function's
    policy on its `morning_minutes` before the replay. Forecasters see at most `context_minutes`
    trailing minutes (default: the model's input size, at least one day, so the router sees a full
    daily shape). `replay_tallies` is the same replay before its counts become figures.
    """
    return report_from_tallies(replay_tallies(
        model, counts, start_minute, quantiles, capacity, replan_every, lead_minutes, horizon, end_minute=end_minute,
        keep_warm_minutes=keep_warm_minutes, policy_config=policy_config, curve_approaches=curve_approaches,
        context_minutes=context_minutes, progress=progress, cold_start_costs=cold_start_costs,
        cheap_choice=cheap_choice, morning_minutes=morning_minutes))


def replay_tallies(model, counts, start_minute: int = 720, quantiles: Sequence[float] = (),
                   capacity=60.0, replan_every: int = 1, lead_minutes: int = 1, horizon: int | None = None,
                   *, end_minute: int | None = None, keep_warm_minutes: int = 2,
                   policy_config: PolicyConfig | None = None, curve_approaches: Sequence[str] = ("moe",),
                   context_minutes: int | None = None, progress: bool = True,
                   cold_start_costs: Sequence[float] = CURVE_COSTS, cheap_choice: bool = True,
                   morning_minutes: int = DEFAULT_MORNING_MINUTES) -> ReplayTallies:
    """`run_replay`'s replay, its counts per policy and function (`mesp_core.replay.simulate.ReplayTallies`):
    the tallies of shards of the functions, joined, give the report of all of them. Arguments as `run_replay`."""
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
    policies = standard_policies(model, quantiles, curve_approaches, policy_config, cold_start_costs=cold_start_costs,
                                 cheap_choice=cheap_choice, morning_minutes=morning_minutes)
    return simulate_tallies(counts, policies, start_minute, end_minute, capacity_per_instance=capacity,
                            keep_warm_minutes=keep_warm_minutes, lead_minutes=lead_minutes,
                            replan_every=replan_every, horizon=horizon, context_minutes=context_minutes,
                            progress=progress)
