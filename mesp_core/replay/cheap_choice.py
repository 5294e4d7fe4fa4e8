"""The per-function choice among cheap policies: a baseline a user could write without MESP.

Each function gets the cheap policy (keep-alive 2 to 30 minutes, a seasonal-naive floor, the hybrid
histogram) that would have cost it least over its own morning, the `morning_minutes` before the
replay's first plan (fewer when the trace holds less, since the morning's first plan needs
MIN_CONTEXT minutes of history): ``cold_start_cost x cold starts + idle instance-minutes``, both
from the same replay model as everything else. The chosen policy is then replayed on the afternoon. Nothing
after the first planning minute is looked at to choose, and the plans themselves see only the past.

`CheapMenu` holds the candidate policies and is shared: a sweep over several cold-start costs
replays the morning once and plans each candidate once per minute, every cost picking its own
candidate per function from the same plans.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from mesp_core.checks import check_int
from mesp_core.constants import MIN_CONTEXT
from mesp_core.policy import PolicyConfig, check_cold_start_cost
from mesp_core.replay.baselines import FixedKeepAlivePolicy, HybridHistogramPolicy
from mesp_core.replay.policies import ForecastFloorPolicy, PlanningStep, PointForecaster, Policy, ReplaySettings
from mesp_core.replay.simulate import simulate

CHEAP_CHOICE = "cheap choice"
CHEAP_KEEP_ALIVE_MINUTES = (2, 3, 5, 10, 15, 20, 30)
SEASONAL_NAIVE_FLOOR = "seasonal-naive floor"
DEFAULT_MORNING_MINUTES = 720


class SeasonalNaiveForecaster:
    """Point forecaster from the seasonal-naive rule alone (no trained model): each context repeats
    its own best period among `candidates`, the weekly one included when the context holds 1.5 weeks."""

    def __init__(self, input_size: int = 3 * 7 * 1440, candidates: Sequence[int] | None = None):
        check_int("input_size", input_size, low=1)
        self.input_size = int(input_size)
        self.candidates = None if candidates is None else list(candidates)  # None: the expert's default
        self._experts: dict = {}

    def __call__(self, contexts, horizon: int) -> np.ndarray:
        # Imported here: the expert needs torch, which `mesp --help` must not load.
        from mesp_core.forecasting.experts.naive import DEFAULT_PERIOD_CANDIDATES, SeasonalNaive

        if horizon not in self._experts:
            self._experts[horizon] = SeasonalNaive(horizon=horizon, input_size=self.input_size,
                                                   candidates=self.candidates or list(DEFAULT_PERIOD_CANDIDATES))
        return self._experts[horizon].predict(contexts)

    def __repr__(self):
        return f"SeasonalNaiveForecaster(input_size={self.input_size})"


def cheap_candidates(seasonal_naive: PointForecaster | None = None,
                     keep_alive_minutes: Sequence[int] = CHEAP_KEEP_ALIVE_MINUTES,
                     policy_config: PolicyConfig | None = None) -> dict[str, Policy]:
    """The menu: keep-alive for each of `keep_alive_minutes`, a seasonal-naive floor (sized from
    `seasonal_naive`'s point forecast, by default `SeasonalNaiveForecaster()`), the hybrid histogram."""
    candidates: dict[str, Policy] = {f"keep-alive {m} min": FixedKeepAlivePolicy(m) for m in keep_alive_minutes}
    candidates[SEASONAL_NAIVE_FLOOR] = ForecastFloorPolicy(seasonal_naive or SeasonalNaiveForecaster(),
                                                           config=policy_config)
    candidates["hybrid histogram"] = HybridHistogramPolicy()
    return candidates


def choose(cold: np.ndarray, idle: np.ndarray, cold_start_cost: float) -> np.ndarray:
    """Per function, the index of the candidate with the least ``cost x cold + idle`` ([k, n] -> [n]);
    ties go to the earlier candidate."""
    return np.argmin(cold_start_cost * np.asarray(cold, dtype=np.float64) + np.asarray(idle, dtype=np.float64),
                     axis=0)


class CheapMenu:
    """Candidate policies, their morning costs per function and their plans, shared by every cost."""

    def __init__(self, candidates: Mapping[str, Policy] | None = None, morning_minutes: int = DEFAULT_MORNING_MINUTES):
        self.candidates = dict(cheap_candidates() if candidates is None else candidates)
        if not self.candidates:
            raise ValueError("the cheap choice needs at least one candidate policy")
        for name, policy in self.candidates.items():
            if not isinstance(policy, Policy) or policy.sees_future:
                raise ValueError(f"candidate {name!r} must be a Policy that does not see the future")
        self.names = list(self.candidates)
        check_int("morning_minutes", morning_minutes, low=1)
        self.morning_minutes = int(morning_minutes)
        self._forget(None)

    def reset(self, settings: ReplaySettings) -> None:
        if settings is not self._settings:  # once per replay, however many costs share the menu
            self._forget(settings)

    def _forget(self, settings: ReplaySettings | None) -> None:
        self._settings = settings
        self.morning_cold: np.ndarray | None = None  # int [k, n]
        self.morning_idle: np.ndarray | None = None
        self.morning_window: tuple[int, int] | None = None
        self._plans: dict[int, tuple[int, np.ndarray]] = {}  # candidate -> (planned at, plan [n, steps])

    def morning(self, step: PlanningStep) -> tuple[np.ndarray, np.ndarray]:
        """(cold starts, idle instance-minutes) [k, n] of each candidate over the morning before the
        first planning minute, replayed on the history that minute sees."""
        if self.morning_cold is None:
            self._replay_morning(step)
        return self.morning_cold, self.morning_idle

    def _replay_morning(self, step: PlanningStep) -> None:
        settings = self._settings
        end = step.t
        # The morning's first plan needs MIN_CONTEXT minutes of history, as forecasters do.
        earliest = MIN_CONTEXT + settings.lead_minutes
        start = max(earliest, end - self.morning_minutes)
        if start >= end:
            raise ValueError(f"the cheap choice needs history before the replay to choose on: the first plan is at "
                             f"minute {end}, at least {earliest + 1} are needed")
        report = simulate(step.history, self.candidates, start, end,
                          capacity_per_instance=settings.capacity_per_function,
                          keep_warm_minutes=settings.keep_warm_minutes, lead_minutes=settings.lead_minutes,
                          replan_every=settings.replan_every, horizon=settings.horizon,
                          context_minutes=settings.context_minutes, progress=False)
        rows = [[r.name for r in report.results].index(name) for name in self.names]
        self.morning_cold = report.per_function_cold[rows]
        self.morning_idle = report.per_function_idle[rows]
        self.morning_window = (start, end)
        for policy in self.candidates.values():  # the morning replay left them set up for itself
            policy.reset(settings)

    def plans(self, step: PlanningStep) -> np.ndarray:
        """Every candidate's settings for minute step.t, int [k, n] (each planned at its own cadence)."""
        return step.shared(id(self), lambda: self._plan_minute(step))

    def _plan_minute(self, step: PlanningStep) -> np.ndarray:
        settings = self._settings
        out = np.empty((len(self.names), step.history.shape[0]), dtype=np.int64)
        for k, name in enumerate(self.names):
            cadence = self.candidates[name].cadence or settings.replan_every
            if k not in self._plans or step.t - self._plans[k][0] >= self._plans[k][1].shape[1]:
                steps = min(cadence, settings.end_minute - step.t)
                self._plans[k] = (step.t, np.asarray(self.candidates[name].plan(step.with_steps(steps))))
            planned_at, plan = self._plans[k]
            out[k] = plan[:, step.t - planned_at]
        return out


class CheapChoicePolicy(Policy):
    """Per function, the cheap policy with the least ``cold_start_cost x cold starts + idle`` over its
    morning (see the module doc), replayed from then on. Give several costs one `menu` to share work."""

    cadence = 1  # the menu's keep-alive and histogram candidates decide every minute

    def __init__(self, cold_start_cost: float, menu: CheapMenu | None = None, group: str | None = CHEAP_CHOICE):
        self.cold_start_cost = check_cold_start_cost(cold_start_cost)
        self.menu = menu or CheapMenu()
        self.group = group
        self.choice: np.ndarray | None = None  # candidate index per function, once chosen

    def reset(self, settings):
        self.menu.reset(settings)
        self.choice = None

    def chosen_names(self) -> list[str]:
        """The candidate chosen for each function (after the first plan)."""
        if self.choice is None:
            raise ValueError("nothing chosen yet: the choice is made at the replay's first plan")
        return [self.menu.names[k] for k in self.choice]

    def plan(self, step):
        if self.choice is None:
            cold, idle = self.menu.morning(step)
            self.choice = choose(cold, idle, self.cold_start_cost)
        settings = self.menu.plans(step)
        column = settings[self.choice, np.arange(settings.shape[1])]
        return np.repeat(column[:, None], step.steps, axis=1)
