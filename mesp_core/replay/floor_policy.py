"""MESP's floor stage as a replay policy: each function's floor chosen by cold-start cost.

`MespFloorPolicy(model, cold_start_cost)` plans through the model's FloorPlanner on its stateful
path: every minute it computes each candidate's floor once, records it, and every 30 minutes
switches each function to the candidate with the lowest C * cold + idle over its last 240
minutes (mesp_core.forecasting.floors). A model without floor stage is sized, as
`model.plan_min_scale` does, at the experts' quantile C / (1 + C). Sweeping the cost traces MESP's
trade-off curve.
"""

from __future__ import annotations

import numpy as np
import torch

from mesp_core.policy import PolicyConfig, check_cold_start_cost, newsvendor_level
from mesp_core.replay.policies import ForecastFloorPolicy, Policy


class MespFloorPolicy(Policy):
    """The floor stage of `model` at `cold_start_cost` idle instance-minutes per avoided cold start.

    The planner reads the whole past of each function (days when the trace has them, as the
    operator reads Prometheus), never the planning minute or later. `config` is used by the
    fallback for models without floor stage (hold, cooldown, ...)."""

    def __init__(self, model, cold_start_cost: float, config: PolicyConfig | None = None, group: str | None = "MESP"):
        self.model = model
        self.cold_start_cost = check_cold_start_cost(cold_start_cost)
        self.group = group
        self.config = config or PolicyConfig()
        self.has_floor_stage = getattr(model, "floor", None) is not None
        self._fallback: ForecastFloorPolicy | None = None
        if not self.has_floor_stage:
            self._fallback = ForecastFloorPolicy(quantile_forecaster=_ExpertsQuantile(model),
                                                 quantile=newsvendor_level(self.cold_start_cost),
                                                 config=self.config, group=group)
        self.quantile = None if self.has_floor_stage else self._fallback.quantile
        self.planner = None

    @property
    def predicted(self):
        """The fallback's sized forecast (for the replay's coverage); None for the floor stage."""
        return None if self._fallback is None else self._fallback.predicted

    def reset(self, settings) -> None:
        if self._fallback is not None:
            self._fallback.reset(settings)
            return
        capacity = settings.capacity_per_instance
        if capacity is None:
            capacity = settings.capacity_per_function
        self.planner = self.model.floor_planner(self.cold_start_cost, capacity, settings.lead_minutes,
                                                settings.keep_warm_minutes)
        self.planner.reset(settings.n_functions)

    def plan(self, step) -> np.ndarray:
        if self._fallback is not None:
            return self._fallback.plan(step)
        # Policies of one demand head at several costs share its quantiles and the naive floor.
        key = ("mesp-floor-inputs", id(self.model.floor.head), step.steps)
        with torch.inference_mode():
            if key not in step._cache:
                step._cache[key] = self.planner.shared_inputs(step.history, step.t, step.steps)
            return self.planner.advance(step.history, step.t, step.steps, shared=step._cache[key])

    def chosen_floors(self) -> list[str]:
        """The floor policy each function uses now (after a replay: at its last minute)."""
        return [] if self.planner is None else self.planner.chosen_names


class _ExpertsQuantile:
    """The mixture's q-quantile forecast (standard.py's adapter is not imported: it may list this
    policy among its own, and siblings must not import each other back)."""

    def __init__(self, model):
        self.model = model

    def __call__(self, contexts, horizon: int, q: float) -> np.ndarray:
        return self.model.forecast_distribution(contexts, horizon, approach="moe").quantile(q)

    def __repr__(self):
        return "ExpertsQuantile(moe)"
