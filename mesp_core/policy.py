"""Forecast -> min-scale plan: pure functions, vectorised over functions.

Timing convention (shared with `mesp_core.replay.simulate`):

- Forecast column ``j`` is the demand (invocations/minute) of minute ``now + j``; column 0 is the
  minute that starts now.
- Plan column ``i`` is the min-scale *setting* written at minute ``now + i``. Instances it asks for
  are ready ``lead_minutes`` later, so it is sized from the (upper) forecast over the window
  ``[i, i + lead + hold]``: it covers the demand at ``i + lead`` (when its instances are ready), it
  does not drop while demand that started earlier is still running, and it rises ``hold`` minutes
  earlier than strictly needed to absorb errors in the forecast's timing.
- Raises are applied at once (a late raise is a cold start). Decreases are damped: none while the
  current value is younger than ``cooldown_minutes``, and a decrease of at most
  ``scale_down_hysteresis`` instances is ignored unless it goes down to the user's floor (so a
  function can always return to zero once its cooldown has passed). The cooldown clock restarts
  whenever the current value is needed again, so demand that comes and goes within the cooldown
  keeps the plan steady (like the HPA's scale-down stabilisation window).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from mesp_core.checks import check_int, check_number

# Rounding guard: 120.0000001 invocations at capacity 60 are 2 instances, not 3.
_ROUNDING_EPS = 1e-6
# A plan with no previous state behaves as if the current value had been in place forever.
_LONG_AGO = 10**9
# How many idle instance-minutes one avoided cold start is worth when the user says nothing.
DEFAULT_COLD_START_COST = 10.0


def check_cold_start_cost(cost) -> float:
    """A cold-start cost must be a finite number > 0 (idle instance-minutes per avoided cold start)."""
    check_number("cold_start_cost", cost, low=0.0, low_inclusive=False)
    return float(cost)


def newsvendor_level(cold_start_cost: float) -> float:
    """The critical fractile C / (1 + C): keeping an instance one more minute costs 1 idle
    instance-minute when unused, and not keeping it costs C when a request comes. The floor
    that minimises expected cost is this quantile of the minute's instance demand."""
    cost = check_cold_start_cost(cold_start_cost)
    return cost / (1.0 + cost)


@dataclass(frozen=True)
class PolicyConfig:
    """How a forecast becomes a min-scale plan.

    capacity_per_instance: invocations per minute one instance serves (see capacity_from_concurrency).
    lead_minutes: minutes from writing min-scale to the instance being ready.
    hold_minutes: extra minutes of look-ahead on top of the lead (pre-warm earlier, absorb timing error).
    user_min_scale: the user's own min-scale; the plan never goes below it.
    max_scale: the user's max-scale; the plan never exceeds it (None = no cap).
    scale_down_hysteresis: decreases of at most this many instances are ignored (except down to the floor).
    cooldown_minutes: no decrease until the current value has gone unneeded this many minutes.
    quantile: the forecast quantile the upper forecast is taken at (used by callers that build it).
    min_demand: forecast invocations/minute below which no instance is kept for that minute
        (a forecast of 0.2/min rounds to "no invocation"; at or above it, at least one instance).
    """

    capacity_per_instance: float = 60.0
    lead_minutes: int = 1
    hold_minutes: int = 0
    user_min_scale: int = 0
    max_scale: int | None = None
    scale_down_hysteresis: int = 0
    cooldown_minutes: int = 2
    quantile: float | None = 0.9
    min_demand: float = 0.5

    def __post_init__(self):
        check_number("capacity_per_instance", self.capacity_per_instance, low=0.0, low_inclusive=False)
        check_int("lead_minutes", self.lead_minutes, low=0)
        check_int("hold_minutes", self.hold_minutes, low=0)
        check_int("user_min_scale", self.user_min_scale, low=0)
        if self.max_scale is not None:
            check_int("max_scale", self.max_scale, low=1)
            if self.max_scale < self.user_min_scale:
                raise ValueError(
                    f"max_scale ({self.max_scale}) must be >= user_min_scale ({self.user_min_scale})"
                )
        check_int("scale_down_hysteresis", self.scale_down_hysteresis, low=0)
        check_int("cooldown_minutes", self.cooldown_minutes, low=0)
        if self.quantile is not None:
            check_number("quantile", self.quantile, low=0.0, low_inclusive=False)
            if not self.quantile < 1.0:
                raise ValueError(f"quantile must be in (0, 1), got {self.quantile}")
        check_number("min_demand", self.min_demand, low=0.0, low_inclusive=False)

    @property
    def lookahead(self) -> int:
        """Forecast minutes past a plan column that its size depends on."""
        return self.lead_minutes + self.hold_minutes

    def to_dict(self) -> dict:
        return asdict(self)


def capacity_from_concurrency(
    container_concurrency: int, duration_ms: float, target_utilization: float = 0.7
) -> float:
    """Invocations per minute one instance serves, from Knative's concurrency settings.

    An instance runs `container_concurrency` requests at a time, each taking `duration_ms`; Knative
    scales out when it is `target_utilization` busy (container-concurrency-target-percentage, 70 %
    by default), so the usable rate is concurrency * utilization * 60000 / duration. A concurrency of
    0 means "unlimited" in Knative, where the soft target of 100 applies.
    """
    if isinstance(container_concurrency, bool) or not isinstance(container_concurrency, (int, np.integer)):
        raise ValueError(f"container_concurrency must be an integer, got {container_concurrency!r}")
    if container_concurrency < 0:
        raise ValueError(f"container_concurrency must be >= 0 (0 = unlimited), got {container_concurrency}")
    check_number("duration_ms", duration_ms, low=0.0, low_inclusive=False)
    check_number("target_utilization", target_utilization, low=0.0, low_inclusive=False)
    if target_utilization > 1.0:
        raise ValueError(f"target_utilization must be in (0, 1], got {target_utilization}")
    concurrency = container_concurrency if container_concurrency > 0 else 100
    return float(concurrency) * float(target_utilization) * 60_000.0 / float(duration_ms)


def instances_for_demand(demand: np.ndarray, capacity_per_instance: float, min_demand: float) -> np.ndarray:
    """Instances needed to serve `demand` invocations/minute: ceil(demand / capacity), 0 below min_demand."""
    demand = np.asarray(demand, dtype=np.float64)
    needed = np.ceil(demand / capacity_per_instance - _ROUNDING_EPS)
    needed = np.where(demand >= min_demand, np.maximum(needed, 1.0), 0.0)
    return needed.astype(np.int64)


@dataclass
class PlanState:
    """What the plan was when the previous planning step left off, per function.

    current: the min-scale in force in the minute before the plan starts.
    minutes_since_needed: minutes since that value was set or last wanted by the forecast (>= 1).
    """

    current: np.ndarray
    minutes_since_needed: np.ndarray

    @classmethod
    def initial(cls, n: int, config: PolicyConfig) -> "PlanState":
        return cls(
            current=np.full(n, config.user_min_scale, dtype=np.int64),
            minutes_since_needed=np.full(n, _LONG_AGO, dtype=np.int64),
        )

    @classmethod
    def single(cls, current: int, minutes_since_needed: int) -> "PlanState":
        """The state of one function, e.g. as the operator keeps it in a resource's status."""
        check_int("current", current, low=0)
        check_int("minutes_since_needed", minutes_since_needed, low=1)
        return cls(current=np.array([current], dtype=np.int64),
                   minutes_since_needed=np.array([min(minutes_since_needed, _LONG_AGO)], dtype=np.int64))

    def for_function(self, k: int) -> dict:
        """JSON-able state of function k (inverse of PlanState.single)."""
        return {"current": int(self.current[k]), "minutes_since_needed": int(self.minutes_since_needed[k])}


def _as_forecast(name: str, forecast, n_expected: int | None = None) -> np.ndarray:
    array = np.asarray(forecast, dtype=np.float64)
    if array.ndim == 1:
        raise ValueError(f"{name} must be 2-D [n_functions, horizon]; for one function pass forecast[None, :]")
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n_functions, horizon], got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if n_expected is not None and array.shape[0] != n_expected:
        raise ValueError(f"{name} has {array.shape[0]} rows, expected {n_expected}")
    # Forecasts are counts; a slightly negative model output means "nothing expected".
    return np.maximum(array, 0.0)


def window_max(values: np.ndarray, width: int) -> np.ndarray:
    """Forward max over [i, i + width) along the last axis, truncated at the end."""
    peak = values.copy()
    for k in range(1, min(width, values.shape[-1])):
        np.maximum(peak[..., :-k], values[..., k:], out=peak[..., :-k])
    return peak


def _window_argmax(values: np.ndarray, width: int) -> np.ndarray:
    """Offset of the first maximum within [i, i + width) (for the reasons only)."""
    n, h = values.shape
    if h == 0:
        return np.zeros((n, 0), dtype=np.int64)
    padded = np.concatenate([values, np.full((n, width - 1), -np.inf)], axis=1)
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=1)  # [n, h, width]
    return np.argmax(windows, axis=2)


def plan_min_scale(
    point_forecast,
    upper_forecast=None,
    config: PolicyConfig | None = None,
    previous: PlanState | None = None,
    *,
    plan_horizon: int | None = None,
    explain: bool = True,
    return_state: bool = False,
    capacity=None,
):
    """Turn forecasts [n, h] into a min-scale plan int [n, plan_horizon or h] plus reasons.

    `capacity` optionally gives each function its own invocations per minute per instance
    (n positive numbers); it replaces `config.capacity_per_instance`.

    The size of column i comes from `upper_forecast` (or the point forecast when no upper one is
    given) over [i, i + lead + hold]; pass a forecast of at least plan_horizon + lead + hold
    columns so the last planned minutes see their whole window (shorter windows are truncated).
    `previous` carries the current min-scale and its age from the last planning step (for
    hysteresis and cooldown); None starts from the user's floor with no cooldown pending.

    Returns (plan, reasons): reasons[k] lists (column, text) for every change of function k's plan
    and for each start of a held decrease, capped value or floor. With explain=False reasons is
    an empty list (the replay plans millions of minutes and does not need the text). With
    return_state=True a third item is the PlanState after the last planned column, to pass as
    `previous` to the next planning step that starts right after it.
    """
    config = config or PolicyConfig()
    point = _as_forecast("point_forecast", point_forecast)
    n, h = point.shape
    upper = None if upper_forecast is None else _as_forecast("upper_forecast", upper_forecast, n)
    if upper is not None and upper.shape[1] != h:
        raise ValueError(f"upper_forecast has {upper.shape[1]} columns, point_forecast has {h}")
    plan_horizon, previous = _checked_start(plan_horizon, previous, n, h, config, "forecast")

    capacity_column = _capacity_column(capacity, n, config)
    sizing = upper if upper is not None else point
    peak = window_max(sizing, config.lookahead + 1)[:, :plan_horizon]
    needed = instances_for_demand(peak, capacity_column, config.min_demand)
    peak_offset = _window_argmax(sizing, config.lookahead + 1)[:, :plan_horizon] if explain else None
    return _damp(needed, config, previous, explain, return_state, peak, peak_offset)



def _checked_start(plan_horizon, previous, n: int, h: int, config: PolicyConfig, what: str):
    """(plan_horizon, previous state) checked against a [n, h] forecast or target; defaults filled."""
    if plan_horizon is None:
        plan_horizon = h
    check_int("plan_horizon", plan_horizon, low=0)
    if plan_horizon > h:
        raise ValueError(f"plan_horizon ({plan_horizon}) exceeds the {what} horizon ({h})")
    if previous is None:
        previous = PlanState.initial(n, config)
    elif previous.current.shape != (n,) or previous.minutes_since_needed.shape != (n,):
        raise ValueError(f"previous state is for {previous.current.shape[0]} functions, {what} has {n}")
    return plan_horizon, previous

def plan_from_instances(
    target_instances,
    config: PolicyConfig | None = None,
    previous: PlanState | None = None,
    *,
    plan_horizon: int | None = None,
    explain: bool = True,
    return_state: bool = False,
    source: str = "learned floor",
):
    """plan_min_scale for a target already in instances [n, h] (e.g. a model's floor stage, whose
    candidates already cover the lead): the same user floor, max-scale cap, hysteresis, cooldown,
    reasons and state. Column i wants the peak of the target over [i, i + hold_minutes] (no lead:
    the target has it); reasons name `source` as what asks for the instances."""
    config = config or PolicyConfig()
    target = np.asarray(target_instances)
    if target.ndim != 2:
        raise ValueError(f"target_instances must be 2-D [n_functions, horizon], got shape {target.shape}")
    if not np.issubdtype(target.dtype, np.integer) and (
            not np.all(np.isfinite(target)) or np.any(target != np.round(target))):
        raise ValueError("target_instances must be whole numbers of instances")
    if np.any(target < 0):
        raise ValueError("target_instances must be >= 0")
    target = target.astype(np.int64)
    n, h = target.shape
    plan_horizon, previous = _checked_start(plan_horizon, previous, n, h, config, "target")
    needed = window_max(target, config.hold_minutes + 1)[:, :plan_horizon]
    return _damp(needed, config, previous, explain, return_state, None, None, source)


def _damp(needed, config: PolicyConfig, previous: PlanState, explain: bool, return_state: bool,
          peak, peak_offset, source: str | None = None):
    """The user's floor and cap, then hysteresis and cooldown, over the instances each column needs."""
    n, plan_horizon = needed.shape
    floor = config.user_min_scale
    target = np.maximum(needed, floor)
    capped = np.zeros_like(target, dtype=bool)
    if config.max_scale is not None:
        capped = target > config.max_scale
        target = np.minimum(target, config.max_scale)

    plan = np.empty((n, plan_horizon), dtype=np.int64)
    held_cooldown = np.zeros((n, plan_horizon), dtype=bool)
    held_hysteresis = np.zeros((n, plan_horizon), dtype=bool)
    current = previous.current.astype(np.int64).copy()
    since_needed = previous.minutes_since_needed.astype(np.int64).copy()
    for i in range(plan_horizon):
        want = target[:, i]
        lower = want < current
        cooling = lower & (since_needed < config.cooldown_minutes)
        small_step = lower & ((current - want) <= config.scale_down_hysteresis) & (want > floor)
        blocked = cooling | small_step
        new = np.where(blocked, current, want)
        held_cooldown[:, i] = cooling
        held_hysteresis[:, i] = small_step & ~cooling
        needed_now = (new != current) | (want >= new)
        since_needed = np.where(needed_now, 1, np.minimum(since_needed + 1, _LONG_AGO))
        current = new
        plan[:, i] = new

    reasons: list[list[tuple[int, str]]] = []
    if explain:
        reasons = [[] for _ in range(n)]
    if explain and plan_horizon:
        _explain(reasons, plan, previous.current, target, needed, capped, held_cooldown, held_hysteresis,
                 peak, peak_offset, config, source)
    if return_state:
        return plan, reasons, PlanState(current=current, minutes_since_needed=since_needed)
    return plan, reasons




def per_function_capacity(capacity, n: int, name: str = "capacity"):
    """A positive capacity as a float, or n of them (one per function) as float [n]; checked."""
    if np.ndim(capacity) == 0:
        check_number(name, capacity, low=0.0, low_inclusive=False)
        return float(capacity)
    try:
        values = np.asarray(capacity, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number or one number per function: {exc}") from None
    if values.shape != (n,):
        raise ValueError(f"{name} has shape {values.shape}; give one number or one per function ({n})")
    bad = ~np.isfinite(values) | (values <= 0)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} must be finite and > 0; function {k} has {values[k]}")
    return values


def _capacity_column(capacity, n: int, config: PolicyConfig):
    """config's capacity, or the given one; per-function capacities as an [n, 1] column."""
    if capacity is None:
        return config.capacity_per_instance
    value = per_function_capacity(capacity, n)
    return value if isinstance(value, float) else value[:, None]


def _explain(reasons, plan, start, target, needed, capped, held_cooldown, held_hysteresis,
             peak, peak_offset, config, source=None):
    """Reasons from a forecast (peak, peak_offset), or, when peak is None, from `source`'s instances."""
    n, h = plan.shape
    before = np.concatenate([start[:, None], plan[:, :-1]], axis=1)
    prev_cool = np.concatenate([np.zeros((n, 1), bool), held_cooldown[:, :-1]], axis=1)
    prev_hyst = np.concatenate([np.zeros((n, 1), bool), held_hysteresis[:, :-1]], axis=1)
    prev_cap = np.concatenate([np.zeros((n, 1), bool), capped[:, :-1]], axis=1)
    events = (plan != before) | (held_cooldown & ~prev_cool) | (held_hysteresis & ~prev_hyst) | (capped & ~prev_cap)
    window = config.lookahead
    for k, i in zip(*np.nonzero(events)):
        value, old = int(plan[k, i]), int(before[k, i])
        if peak is None:
            text = _explain_target(value, old, int(needed[k, i]), int(target[k, i]), bool(capped[k, i]),
                                   bool(held_cooldown[k, i]), bool(held_hysteresis[k, i]), config, source)
            if text:
                reasons[k].append((int(i), text))
            continue
        demand = float(peak[k, i])
        at = int(i + peak_offset[k, i])
        if held_cooldown[k, i]:
            text = f"hold {old} (cooldown {config.cooldown_minutes} min; forecast needs {int(target[k, i])})"
        elif held_hysteresis[k, i]:
            text = (f"hold {old} (hysteresis: target {int(target[k, i])} is within "
                    f"{config.scale_down_hysteresis} instance(s))")
        elif capped[k, i] and value == config.max_scale and value >= old:
            text = f"cap max-scale {config.max_scale} (forecast peak {demand:.0f}/min at +{at} min needs {int(needed[k, i])})"
        elif value > old:
            text = f"raise to {value} ahead of forecast peak {demand:.0f}/min at +{at} min"
            if value == config.user_min_scale and needed[k, i] < value:
                text = f"raise to user min-scale {value}"
        elif value < old:
            if value == config.user_min_scale and needed[k, i] <= value:
                text = (f"lower to user min-scale {value} (forecast peak {demand:.1f}/min "
                        f"over the next {window + 1} min)")
            else:
                text = f"lower to {value} (forecast peak {demand:.0f}/min at +{at} min)"
        else:
            continue
        reasons[k].append((int(i), text))


def _explain_target(value, old, needed, target, capped, cooling, hysteresis, config, source) -> str | None:
    """One reason of plan_from_instances (as _explain's, naming the source instead of a forecast)."""
    if cooling:
        return f"hold {old} (cooldown {config.cooldown_minutes} min; {source} needs {target})"
    if hysteresis:
        return f"hold {old} (hysteresis: target {target} is within {config.scale_down_hysteresis} instance(s))"
    if capped and value == config.max_scale and value >= old:
        return f"cap max-scale {config.max_scale} ({source} needs {needed})"
    if value > old:
        if value == config.user_min_scale and needed < value:
            return f"raise to user min-scale {value}"
        return f"raise to {value} ({source} needs {needed})"
    if value < old:
        if value == config.user_min_scale and needed <= value:
            return f"lower to user min-scale {value} ({source} needs {needed})"
        return f"lower to {value} ({source} needs {needed})"
    return None
