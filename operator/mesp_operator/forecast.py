"""The model, as one loop uses it: every fresh policy forecast in as few model runs as possible, and
the forecast each policy's floor is sized from.

`model` follows mesp_core's model interface (mesp_core.forecasting.model.MespModel:
forecast_distribution, explain_routes); the operator only loads it, never trains it.
"""

from __future__ import annotations

import dataclasses

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

    def describe(self) -> str:
        """status.sizing: `coldStartCost 10 (q0.909)`, or `quantile 0.9 (override)`."""
        if self.quantile is not None:
            return f"quantile {self.quantile:g} (override)"
        source = ", operator default" if self.operator_default else ""
        return f"coldStartCost {self.cold_start_cost:g} (q{self.level:.3f}{source})"


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
