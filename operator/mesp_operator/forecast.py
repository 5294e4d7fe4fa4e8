"""The model, as one loop uses it: every fresh policy forecast in as few model runs as possible.

`model` follows mesp_core's model interface (mesp_core.forecasting.model.MespModel:
forecast_distribution, explain_routes); the operator only loads it, never trains it.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class BatchForecast:
    """Per context row: the point forecast, the forecast at its quantile (None: sized from the point
    forecast) and the route that explains it (cluster, distance, description, expert)."""

    point: list[np.ndarray]
    upper: list[np.ndarray | None]
    routes: list[dict]


def forecast_batch(model, contexts: np.ndarray, requests: list[tuple[str, int, float | None]]) -> BatchForecast:
    """Forecast row i of `contexts` as requests[i] = (approach, length in minutes, quantile) asks.

    One model run per (approach, length); every quantile is derived from that run. The routes name
    repeat-last-hour where the model's recent-error check replaced the routed expert."""
    groups: dict[tuple[str, int], list[int]] = {}
    for i, (approach, length, _) in enumerate(requests):
        groups.setdefault((approach, length), []).append(i)
    point: list = [None] * len(requests)
    upper: list = [None] * len(requests)
    switched = [False] * len(requests)  # per row, gathered from the groups for explain_routes
    for (approach, length), members in groups.items():
        distribution = model.forecast_distribution(contexts[members], horizon=length, approach=approach)
        by_quantile: dict[float | None, list[int]] = {}
        for j, i in enumerate(members):
            point[i] = distribution.point[j]
            switched[i] = bool(distribution.switched[j])
            by_quantile.setdefault(requests[i][2], []).append(j)
        for q, rows in by_quantile.items():
            quant = None if q is None else distribution.quantile(q)
            for j in rows:
                upper[members[j]] = None if quant is None else quant[j]
    return BatchForecast(point, upper, model.explain_routes(contexts, switched=switched))
