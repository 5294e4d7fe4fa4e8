"""A policy's status, both ways: what one loop decided (Outcome) written as the MespPolicy's status,
the PolicyMemory read back from a status after a restart, and the Events a condition change is told by.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from datetime import datetime, timezone
from typing import Any, Mapping

from mesp_core.policy import PlanState
from mesp_operator import knative as kn
from mesp_operator.forecast import FloorChoice, Sizing
from mesp_operator.spec import CONDITION_TYPES, PolicyObject, PolicySpec
from mesp_operator.store import PolicyMemory

# Conditions whose changes are told by Events here (Ready and Actuated are told where they change).
_TRANSITION_EVENTS = ("MetricsAvailable", "ModelLoaded")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclasses.dataclass
class Outcome:
    """Everything decided for one policy in one loop, applied by a worker thread."""

    policy: PolicyObject
    spec: PolicySpec | None = None
    sizing: Sizing | None = None      # what the floor is sized from (coldStartCost or a quantile override)
    service: kn.ServiceInfo | None = None
    conditions: dict = dataclasses.field(default_factory=dict)   # type -> (status, reason, message)
    plan: list[int] | None = None
    plan_start: int | None = None
    value: int | None = None          # the min-scale the plan asks for now
    floor: int = 0
    cap: int | None = None
    cap_why: str | None = None        # what sets the cap (decisions.cap_reason)
    capacity: float | None = None
    capacity_source: str | None = None  # spec | requestDurationMs | measuredDuration | defaultDuration
    duration_ms: float | None = None    # the request duration the capacity was derived from
    plan_source: str = "none"         # fresh | held | floor
    reasons: list = dataclasses.field(default_factory=list)

    def set(self, type_: str, ok: bool, reason: str, message: str) -> None:
        self.conditions[type_] = ("True" if ok else "False", reason, message)


@dataclasses.dataclass
class LoopReport:
    policies: int = 0
    planned: int = 0
    actuated: int = 0
    failed: int = 0
    duration: float = 0.0
    phases: dict = dataclasses.field(default_factory=dict)   # seconds per phase: fetch, model, plan, write
    statuses_written: int = 0     # status PATCHes sent
    statuses_unchanged: int = 0   # statuses left as they were (nothing but time moved: status_is_news)
    states: dict = dataclasses.field(default_factory=dict)


def format_time(ts: float | None) -> str | None:
    """Unix time as the status's RFC 3339 text (whole seconds, UTC)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime(_TIME_FORMAT)


def parse_time(text) -> float | None:
    """format_time's inverse; None for anything else."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None


def memory_from_status(status: Mapping[str, Any]) -> PolicyMemory:
    """What a restarted operator can take over from a status it wrote: the plan, the last change, the
    damping state and the conditions already told by Events."""
    memory = PolicyMemory()
    plan = status.get("plan")
    start = parse_time(status.get("planStart"))
    computed = parse_time(status.get("plannedAt"))
    if isinstance(plan, list) and all(isinstance(v, int) for v in plan) and start and computed:
        memory.plan, memory.plan_start, memory.planned_at = list(plan), int(start), computed
    memory.changed_at = parse_time(status.get("lastChange"))
    kept = status.get("planState")
    if isinstance(kept, dict) and parse_time(kept.get("minute")):
        try:
            memory.state_out = PlanState.single(int(kept["current"]), int(kept["minutesSinceNeeded"]))
            memory.state_minute = int(parse_time(kept["minute"]))
        except (KeyError, TypeError, ValueError):
            memory.state_out = memory.state_minute = None
    memory.route = status.get("route") if isinstance(status.get("route"), dict) else None
    memory.learned_floor = status.get("learnedFloor") if isinstance(status.get("learnedFloor"), str) else None
    memory.floor_choice = _floor_choice(status.get("floorChoice"))
    for cond in status.get("conditions") or []:
        if isinstance(cond, dict) and cond.get("status") == "False":
            memory.reported[cond.get("type")] = cond.get("reason")
    return memory


def _floor_choice(kept) -> FloorChoice | None:
    """status.floorChoice as the FloorChoice it records; None when absent or malformed (the next loop
    then makes the choice again)."""
    if not isinstance(kept, dict):
        return None
    chosen_at = parse_time(kept.get("chosenAt"))
    name, cost, lead = kept.get("floor"), kept.get("coldStartCost"), kept.get("leadMinutes")
    if (not chosen_at or not isinstance(name, str) or isinstance(cost, bool) or not isinstance(cost, (int, float))
            or isinstance(lead, bool) or not isinstance(lead, int)):
        return None
    return FloorChoice(boundary=int(chosen_at) // 60, name=name, cold_start_cost=float(cost), lead_minutes=lead)


def transition_events(o: Outcome, memory: PolicyMemory) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events to post: one when a condition turns False (or its reason
    changes) and one when it recovers. Updates memory.reported, so each transition is told once."""
    events = []
    for type_ in _TRANSITION_EVENTS:
        if type_ not in o.conditions:
            continue
        status, reason, message = o.conditions[type_]
        before = memory.reported.get(type_)
        if status == "False" and before != reason:
            memory.reported[type_] = reason
            detail = "; ".join(o.reasons)
            events.append(("Warning", reason, f"{message}; {detail}" if detail else message))
        elif status == "True" and before is not None:
            memory.reported.pop(type_, None)
            events.append(("Normal", f"{type_}Recovered", message))
    return events


def build_status(o: Outcome, memory: PolicyMemory, applied: int | None, original: str | None,
                 actuation: str | None, actuation_reason: str | None, now: float) -> dict:
    """The MespPolicy's status after this loop (a condition keeps its lastTransitionTime while its
    status stays the same)."""
    previous = {c.get("type"): c for c in (o.policy.status.get("conditions") or []) if isinstance(c, dict)}
    conditions = []
    for type_ in CONDITION_TYPES:
        if type_ not in o.conditions:
            continue
        status, reason, message = o.conditions[type_]
        old = previous.get(type_) or {}
        since = old.get("lastTransitionTime") if old.get("status") == status else None
        conditions.append({"type": type_, "status": status, "reason": reason, "message": message[:1000],
                           "lastTransitionTime": since or format_time(now),
                           "observedGeneration": o.policy.generation})
    spec = o.spec
    learned_floor = memory.learned_floor if o.plan is not None else None
    return {
        "observedGeneration": o.policy.generation,
        "conditions": conditions,
        "mode": spec.mode if spec else None,
        "actuation": actuation,
        "actuationReason": actuation_reason,
        "plan": o.plan,
        "planStart": format_time(o.plan_start),
        "plannedAt": format_time(memory.planned_at) if o.plan is not None else None,
        "planSource": o.plan_source,
        "planReasons": o.reasons[:3] or None,
        "route": memory.route if o.plan is not None else None,
        "forecastNextMinute": None if o.plan_source != "fresh" else round(memory.forecast_next, 3),
        "forecastPeak": None if o.plan_source != "fresh" else round(memory.forecast_peak, 3),
        "desiredMinScale": o.value,
        "appliedMinScale": applied,
        "originalMinScale": original,
        "userFloor": o.floor if spec else None,
        "maxScale": o.cap,
        "sizing": o.sizing.describe(learned_floor) if spec and o.sizing else None,
        # The floor policy the model's floor stage chose for this plan (None: sized from the forecast).
        "learnedFloor": learned_floor if spec else None,
        "sizingQuantile": round(o.sizing.level, 6) if spec and o.sizing else None,
        "capacityPerInstance": None if o.capacity is None else round(o.capacity, 3),
        "capacitySource": o.capacity_source,
        "requestDurationMs": None if o.duration_ms is None else round(o.duration_ms, 1),
        "lastChange": format_time(memory.changed_at),
        # Hysteresis/cooldown state after the first planned minute: a restarted operator continues from it.
        # Kept so a restarted operator plans with the same floor until the policy's next reselect boundary.
        "floorChoice": None if learned_floor is None or memory.floor_choice is None or not spec else {
            "chosenAt": format_time(memory.floor_choice.boundary * 60), "floor": memory.floor_choice.name,
            "coldStartCost": memory.floor_choice.cold_start_cost, "leadMinutes": memory.floor_choice.lead_minutes},
        "planState": None if memory.state_out is None else {
            "minute": format_time(memory.state_minute),
            "current": int(memory.state_out.current[0]),
            "minutesSinceNeeded": int(memory.state_out.minutes_since_needed[0])},
        "lastUpdate": format_time(now),
    }


# Status fields that move with the clock alone: a new value of these is no news (status_is_news).
_TIME_MOVED = frozenset({"lastUpdate", "plannedAt", "planStart", "plan", "planState", "planReasons",
                         "forecastNextMinute", "forecastPeak", "route", "conditions", "requestDurationMs",
                         "capacityPerInstance"})
# A measured request duration (and the capacity derived from it) drifts a little every loop; a change
# above this fraction is news (a smaller one shows in the plan when it matters).
_MEASURED_TOLERANCE = 0.1


def refresh_interval(uid: str, refresh_seconds: float) -> float:
    """The policy's heartbeat: between half of refresh_seconds and all of it, fixed by its uid, so the
    statuses of policies first written in the same loop fall due in different loops."""
    return refresh_seconds * (1.0 - 0.5 * (zlib.crc32(uid.encode()) % 1000) / 1000.0)


def status_is_news(new: Mapping[str, Any], old: Mapping[str, Any], now: float, refresh_seconds: float) -> bool:
    """Whether `new` (build_status) says more than `old` (the status as stored) and the passage of time.

    Not news: the same fields and conditions (Ready's message aside while Ready is True: it is the
    plan's reasons, which name minutes relative to now), the same route, a measured duration within
    10%, and a plan that equals the stored one shifted by the minutes since its start over the next
    refresh_seconds (the minutes both cover, up to that far ahead: the stored plan is right for every
    minute until the status is written again; a change further ahead waits for the heartbeat, as the
    forecast may well move again before then). Always news: an old status without lastUpdate, or one
    written refresh_seconds or more ago (refresh_seconds 0: every loop)."""
    written = parse_time(old.get("lastUpdate"))
    if written is None or now - written >= refresh_seconds:
        return True
    # On new's keys only: a field an older operator wrote and this one no longer does stays, but is no news.
    compared = [k for k in new if k not in _TIME_MOVED]
    if any(new[k] != old.get(k) for k in compared):  # the API server drops null fields: absent == None
        return True
    if _condition_meaning(new.get("conditions")) != _condition_meaning(old.get("conditions")):
        return True
    if _route_meaning(new.get("route")) != _route_meaning(old.get("route")):
        return True
    if any(_drifted(new.get(k), old.get(k)) for k in ("requestDurationMs", "capacityPerInstance")):
        return True
    return not plan_is_shifted(new.get("plan"), parse_time(new.get("planStart")),
                               old.get("plan"), parse_time(old.get("planStart")), math.ceil(refresh_seconds / 60))


def plan_is_shifted(plan, start: float | None, old_plan, old_start: float | None, within: int | None = None) -> bool:
    """Whether `plan` (from `start`) says what `old_plan` (from `old_start`) says on the minutes both
    cover, at least one, up to `within` minutes from `start` (None: all); two absent plans are the same too."""
    if not plan and not old_plan:
        return True
    if not plan or not old_plan or start is None or old_start is None:
        return False
    minutes, rest = divmod(start - old_start, 60)
    minutes = int(minutes)
    if rest or not 0 <= minutes < len(old_plan):
        return False
    overlap = min(len(old_plan) - minutes, len(plan), within or len(plan))
    return list(plan[:overlap]) == list(old_plan[minutes:minutes + overlap])


def _drifted(value, kept) -> bool:
    if value is None or kept is None or isinstance(kept, bool) or not isinstance(kept, (int, float)):
        return value != kept
    return abs(value - kept) > _MEASURED_TOLERANCE * abs(kept)


def _condition_meaning(conditions) -> list:
    meaning = []
    for c in conditions or []:
        if not isinstance(c, Mapping):
            return [conditions]  # not MESP's: news
        plan_reasons = c.get("type") == "Ready" and c.get("status") == "True"
        meaning.append((c.get("type"), c.get("status"), c.get("reason"), None if plan_reasons else c.get("message"),
                        c.get("observedGeneration")))
    return meaning


def _route_meaning(route) -> tuple | None:
    if not isinstance(route, Mapping):
        return route
    return route.get("cluster"), route.get("expert"), route.get("description")
