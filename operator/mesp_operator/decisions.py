"""The operator's pure decisions: plain values in, plain values out, no API and no clock.

The reconcile loop gathers the inputs (spec, Knative annotations, what it remembers), asks these
functions, and applies the answers.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from mesp_core.policy import PlanState, PolicyConfig, capacity_from_concurrency, plan_from_instances, plan_min_scale
from mesp_operator import knative as kn
from mesp_operator.forecast import Sizing
from mesp_operator.prometheus import STEP_SECONDS
from mesp_operator.spec import PolicyObject, PolicySpec
from mesp_operator.store import PolicyMemory

# Used when a policy names neither capacityPerInstance nor requestDurationMs and Prometheus has no
# latency for the Service yet (no requests in the last hour).
DEFAULT_REQUEST_DURATION_MS = 1000.0
# A damping state that never changed behaves as if its value had been in place forever.
_LONG_AGO_MINUTES = 10**9


def resolve_capacity(spec_capacity: float | None, spec_duration_ms: float | None, measured_duration_ms: float | None,
                     container_concurrency: int | None, autoscaling_target: float | None) -> tuple[float, str, float | None]:
    """Invocations per minute one instance serves, where the figure came from, and the duration used.

    Precedence: the policy's capacityPerInstance; else Knative's concurrency (containerConcurrency,
    or the autoscaling target when that is 0 = unlimited) with the policy's requestDurationMs, the
    mean duration Prometheus measured over the last hour, or DEFAULT_REQUEST_DURATION_MS, in that order.
    """
    if spec_capacity is not None:
        return float(spec_capacity), "spec", None
    if spec_duration_ms is not None:
        duration, source = float(spec_duration_ms), "requestDurationMs"
    elif measured_duration_ms is not None:
        duration, source = float(measured_duration_ms), "measuredDuration"
    else:
        duration, source = DEFAULT_REQUEST_DURATION_MS, "defaultDuration"
    concurrency = container_concurrency or 0
    if concurrency == 0:
        concurrency = int(autoscaling_target or 0)
    return capacity_from_concurrency(concurrency, duration), source, duration


def floor_and_cap(spec_min_scale: int | None, spec_max_scale: int | None, recorded_min_scale: int | None,
                  template_annotations: Mapping[str, str], target_annotations: Mapping[str, str],
                  default_cap: int) -> tuple[int, int]:
    """The user's floor and the cap MESP stays within.

    The floor is the policy's minScale, else the user's own min-scale as recorded before MESP's first
    write (`recorded_min_scale`, None when nothing is recorded), else the Service template's. The cap
    is the smallest of the policy's maxScale and the Service's own max-scale and activation-scale
    (Knative's webhook refuses a min-scale above either; `target_annotations` are those of the object
    written to), else `default_cap`; never below the floor or 1.
    """
    if spec_min_scale is not None:
        floor = spec_min_scale
    elif recorded_min_scale is not None:
        floor = recorded_min_scale
    else:
        floor = kn.read_min_scale(template_annotations) or 0
    caps = [value for value, _ in _caps(spec_max_scale, template_annotations, target_annotations)]
    return floor, max(min(caps) if caps else default_cap, floor, 1)


_REFUSED = " (Knative refuses a min-scale above it)"


def _caps(spec_max_scale: int | None, template_annotations: Mapping[str, str],
          target_annotations: Mapping[str, str]) -> list[tuple[int, str]]:
    """The bounds on MESP's min-scale, each with what it is."""
    service_max = kn.read_max_scale(target_annotations) or kn.read_max_scale(template_annotations)
    activation = kn.read_activation_scale(target_annotations) or kn.read_activation_scale(template_annotations)
    named = [(spec_max_scale, f"the policy's maxScale {spec_max_scale}"),
             (service_max, f"the Service's max-scale {service_max}{_REFUSED}"),
             (activation, f"the Service's activation-scale {activation}{_REFUSED}")]
    return [(value, what) for value, what in named if value]


def cap_reason(spec_max_scale: int | None, template_annotations: Mapping[str, str],
               target_annotations: Mapping[str, str], cap: int) -> str:
    """What sets the cap `cap` (from floor_and_cap), for the status."""
    for value, what in _caps(spec_max_scale, template_annotations, target_annotations):
        if value == cap:
            return what
    return f"the operator's --max-scale-cap {cap}"


def damp_template_change(current: int, wanted: int, floor: int, cap: int, minutes_since_change: float,
                         cooldown: int, hysteresis: int, raise_headroom: float = 0.0) -> tuple[int, str]:
    """What to write into a Service template, where every change is a rollout (a new Revision).

    Raises are applied with headroom, the larger of `hysteresis` instances and `raise_headroom`
    times the wanted value, so the next rises of a ramp need no new Revision (per-function
    quantiles widen only as a ramp shows in the function's own errors); a raise of at most
    `hysteresis` waits for the cooldown. Decreases wait for the cooldown and must exceed the
    hysteresis (unless they go down to the user's floor).
    """
    wanted = min(max(wanted, floor), cap)
    if not floor <= current <= cap:  # the floor or cap moved past what is set: bounds come before damping
        return wanted, f"set {wanted}: {current} is outside [{floor}, {cap}]"
    if wanted > current:
        if wanted - current <= hysteresis and minutes_since_change < cooldown:
            return current, f"hold {current}: raise to {wanted} is within the hysteresis during the cooldown"
        target = min(wanted + max(hysteresis, math.ceil(wanted * raise_headroom)), cap)
        return target, f"raise to {target} ({wanted} + {target - wanted} headroom)"
    if wanted < current:
        if minutes_since_change < cooldown:
            return current, f"hold {current}: template cooldown ({minutes_since_change:.0f}/{cooldown} min)"
        if current - wanted <= hysteresis and wanted > floor:
            return current, f"hold {current}: decrease to {wanted} is within the hysteresis"
        return wanted, f"lower to {wanted}"
    return current, f"keep {current}"


def model_context_minutes(manifest: Mapping[str, Any] | None) -> int:
    """History the model can use: the widest expert input in the artifact, at least one day
    (the router compares daily shapes; a daily seasonal expert needs more)."""
    widest = 1440

    def visit(node):
        nonlocal widest
        if isinstance(node, Mapping):
            size = node.get("input_size")
            if isinstance(size, int) and not isinstance(size, bool):
                widest = max(widest, size)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(manifest or {})
    return min(widest, 14 * 1440)


def choose_actuation(requested: str, operator_setting: str,
                     cluster_support: Callable[[], tuple[bool, str]]) -> tuple[str, str]:
    """Revision or Template, and why: the policy's spec.actuation, else the operator's
    --revision-annotations, else (Auto) whether the cluster propagates Revision annotations, asked
    of `cluster_support` only then (it may raise)."""
    if requested == "Revision":
        return "Revision", "spec.actuation is Revision"
    if requested == "Template":
        return "Template", "spec.actuation is Template"
    if operator_setting == "revision":
        return "Revision", "operator setting --revision-annotations=revision"
    if operator_setting == "template":
        return "Template", "operator setting --revision-annotations=template"
    supported, why = cluster_support()
    return ("Revision" if supported else "Template"), f"Auto: {why}"


def service_writers(candidates: Iterable[tuple[PolicyObject, PolicySpec]]) -> dict[tuple[str, str], PolicyObject]:
    """The one policy allowed to write each Service's min-scale: the oldest of its Active ones.

    Two writers would each take the other's writes for the user's and ratchet each other's floor."""
    owners: dict[tuple[str, str], PolicyObject] = {}
    for policy, spec in sorted(candidates, key=lambda c: (c[0].created, c[0].name)):
        owners.setdefault((policy.namespace, spec.service), policy)
    return owners


def sizing(spec: PolicySpec, operator_cost: float) -> Sizing:
    """What the policy's floor is sized from: its coldStartCost, else the operator's --cold-start-cost;
    its quantile, when set, overrides either."""
    if spec.cold_start_cost is not None:
        return Sizing(spec.cold_start_cost, spec.quantile)
    return Sizing(operator_cost, spec.quantile, operator_default=True)


def plan_config(spec: PolicySpec, capacity: float, floor: int, cap: int, template: bool,
                sized: Sizing, learned_floor: bool = False) -> PolicyConfig:
    """The policy's planning knobs; writes to a template are planned with its own damping.

    With `learned_floor` (the model's floor stage sets the target) holdMinutes is not added: the
    floor stage's candidates choose their own look-ahead and keep-alive by decision cost, and an
    extra hold would only add idle. Template writes still cover their cooldown ahead."""
    cooldown = spec.template_cooldown if template else spec.cooldown
    hold = 0 if learned_floor else spec.hold
    return PolicyConfig(
        capacity_per_instance=capacity,
        lead_minutes=spec.lead,
        # Template changes cost a rollout each: one raise covers the whole cooldown ahead.
        hold_minutes=max(hold, cooldown) if template else hold,
        user_min_scale=floor,
        max_scale=cap,
        scale_down_hysteresis=spec.template_hysteresis if template else spec.hysteresis,
        cooldown_minutes=cooldown,
        quantile=sized.level,
    )


def plan_batch(point: list[np.ndarray], upper: list[np.ndarray | None], configs: list[PolicyConfig],
               horizons: list[int], previous: list[PlanState],
               targets: list[np.ndarray | None] | None = None) -> list[tuple[list[int], list[str], PlanState]]:
    """Plan row i from point[i] (and upper[i]) with configs[i] over horizons[i] minutes, starting from
    previous[i]: (plan, its first three reasons, the damping state after the first minute, which the
    next loop starts from). A row with targets[i] (instances from the model's floor stage) is planned
    from those instead, through the same floor, cap and damping. Rows with the same knobs are
    planned together, one vectorised call each."""
    targets = targets or [None] * len(configs)
    by_config: dict[tuple, list[int]] = {}
    for i, config in enumerate(configs):
        by_config.setdefault((config, horizons[i], upper[i] is None, targets[i] is None), []).append(i)
    results: list = [None] * len(configs)
    for (config, horizon, no_upper, no_target), members in by_config.items():
        start = PlanState(current=np.concatenate([previous[i].current for i in members]),
                          minutes_since_needed=np.concatenate([previous[i].minutes_since_needed for i in members]))
        if no_target:
            points = np.stack([point[i] for i in members])
            uppers = None if no_upper else np.stack([upper[i] for i in members])
            plans, reasons = plan_min_scale(points, uppers, config, start, plan_horizon=horizon)
            _, _, after_first = plan_min_scale(points, uppers, config, start, plan_horizon=1, explain=False,
                                               return_state=True)
        else:
            wanted = np.stack([targets[i] for i in members])
            plans, reasons = plan_from_instances(wanted, config, start, plan_horizon=horizon)
            _, _, after_first = plan_from_instances(wanted, config, start, plan_horizon=1, explain=False,
                                                    return_state=True)
        for row, i in enumerate(members):
            results[i] = ([int(v) for v in plans[row]], [text for _, text in reasons[row][:3]],
                          PlanState.single(int(after_first.current[row]), int(after_first.minutes_since_needed[row])))
    return results


def held_plan(memory: PolicyMemory, now: float, max_age_seconds: float) -> tuple[list[int], int] | None:
    """The rest of the last fresh plan from the current minute on, and its start, while it is at most
    `max_age_seconds` old; None when there is nothing left to hold."""
    age = None if memory.planned_at is None else now - memory.planned_at
    if not memory.plan or age is None or age > max_age_seconds:
        return None
    index = max(int((int(now // STEP_SECONDS) * STEP_SECONDS - memory.plan_start) // STEP_SECONDS), 0)
    rest = memory.plan[index:]
    return (rest, memory.plan_start + index * STEP_SECONDS) if rest else None


def previous_state(memory: PolicyMemory, plan_start: int, now: float, applied: int | None, floor: int) -> PlanState:
    """The policy's damping state entering minute `plan_start` (see mesp_core.policy.PlanState).

    `applied` is the min-scale MESP has in place (None when it writes nothing); a first plan since
    start-up continues from it, aged by its last change."""
    if memory.state_minute == plan_start and memory.state_in is not None:  # same minute planned again
        return memory.state_in
    if memory.state_minute is not None and memory.state_out is not None and plan_start > memory.state_minute:
        skipped = (plan_start - memory.state_minute) // STEP_SECONDS - 1  # loops missed in between
        return PlanState(current=memory.state_out.current.copy(),
                         minutes_since_needed=memory.state_out.minutes_since_needed + max(skipped, 0))
    current = floor if applied is None else applied
    since = _LONG_AGO_MINUTES if memory.changed_at is None else max(1, int((now - memory.changed_at) // 60))
    return PlanState(current=np.array([max(current, floor)], dtype=np.int64),
                     minutes_since_needed=np.array([since], dtype=np.int64))
