"""Floor policies: what the replay asks each minute, and MESP's own (a forecast through the policy).

A policy writes min-scale settings for the next minutes from the counts of past minutes only (a
read-only view in `PlanningStep`); the baselines it is compared with are in
`mesp_core.replay.baselines`, the replay that scores them in `mesp_core.replay.simulate`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from mesp_core.checks import check_number
from mesp_core.floor_cost import demand_instances  # noqa: F401 (the replay's name for it)
from mesp_core.policy import PlanState, PolicyConfig, plan_min_scale

# A point forecaster maps contexts (2-D [n, t] array or list of 1-D arrays, oldest first) and a
# horizon to [n, horizon] forecast invocations per minute.
PointForecaster = Callable[[object, int], np.ndarray]
# A quantile forecaster maps (contexts, horizon, q) to the q-quantile forecast [n, horizon].
QuantileForecaster = Callable[[object, int, float], np.ndarray]

KNATIVE_DEFAULT = "knative default"


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

    def with_steps(self, steps: int) -> "PlanningStep":
        """The same minute and history for a plan of another length (sharing this step's forecasts)."""
        return PlanningStep(self.t, steps, self.history, self.settings, self._cache, self.future)

    def shared(self, key, compute: Callable[[], object]):
        """`compute()` once per step for every policy asking with the same `key` (e.g. a menu of
        candidate policies that several cost settings choose from)."""
        key = ("shared", key)
        if key not in self._cache:
            self._cache[key] = compute()
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
    #: idle instance-minutes one avoided cold start is worth, for policies set by that cost.
    cold_start_cost: float | None = None

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
