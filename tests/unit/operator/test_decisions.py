"""The operator's pure decisions: capacity, floor and cap, template damping, context length, actuation,
one writer per Service, plan knobs, held plans, damping state and batched planning."""

from __future__ import annotations

import numpy as np
import pytest

from mesp_core.policy import PlanState, PolicyConfig, plan_min_scale
from mesp_operator import knative as kn
from mesp_operator.decisions import (DEFAULT_REQUEST_DURATION_MS, cap_reason, choose_actuation, damp_template_change,
                                     floor_and_cap, held_plan, model_context_minutes, plan_batch, plan_config,
                                     previous_state, resolve_capacity, service_writers, sizing)
from mesp_operator.forecast import Sizing
from mesp_operator.settings import OperatorSettings
from mesp_operator.spec import PolicyObject, parse_spec
from mesp_operator.store import PolicyMemory

SETTINGS = OperatorSettings()


@pytest.mark.parametrize("spec_capacity,spec_ms,measured_ms,concurrency,target,expected", [
    # The policy's own capacity wins over everything.
    (250.0, 100.0, 50.0, 4, None, (250.0, "spec", None)),
    # Else concurrency x 0.7 x 60,000 / duration, the duration from the spec first ...
    (None, 500.0, 50.0, 4, None, (4 * 0.7 * 60_000 / 500.0, "requestDurationMs", 500.0)),
    # ... then from Prometheus ...
    (None, None, 300.0, 1, None, (0.7 * 60_000 / 300.0, "measuredDuration", 300.0)),
    # ... then the default, 1,000 ms.
    (None, None, None, 2, None, (2 * 0.7 * 60_000 / DEFAULT_REQUEST_DURATION_MS, "defaultDuration", 1000.0)),
    # containerConcurrency 0 (unlimited): the autoscaling target, else Knative's soft target of 100.
    (None, None, 300.0, 0, 10, (10 * 0.7 * 60_000 / 300.0, "measuredDuration", 300.0)),
    (None, None, 300.0, 0, None, (100 * 0.7 * 60_000 / 300.0, "measuredDuration", 300.0)),
])
def test_capacity_comes_from_the_spec_a_measured_duration_or_the_default(
        spec_capacity, spec_ms, measured_ms, concurrency, target, expected):
    capacity, source, duration = resolve_capacity(spec_capacity, spec_ms, measured_ms, concurrency, target)
    assert (source, duration) == expected[1:]
    assert capacity == pytest.approx(expected[0])


# current, wanted, floor, cap, minutes since change, cooldown, hysteresis -> value written
DAMPING = [
    (1, 5, 1, 50, 0, 10, 2, 7),     # a real raise goes out at once, with headroom
    (1, 5, 1, 6, 0, 10, 2, 6),      # ... never above the cap
    (5, 6, 1, 50, 3, 10, 2, 5),     # a small raise during the cooldown waits
    (5, 6, 1, 50, 12, 10, 2, 8),    # ... and goes out once the cooldown is over
    (8, 3, 1, 50, 4, 10, 2, 8),     # decreases wait for the cooldown
    (8, 7, 1, 50, 40, 10, 2, 8),    # ... and must exceed the hysteresis
    (8, 3, 1, 50, 40, 10, 2, 3),
    (3, 1, 1, 50, 40, 10, 5, 1),    # back to the floor is always allowed after the cooldown
    (4, 0, 2, 50, 40, 10, 0, 2),    # never below the floor
    (4, 4, 1, 50, 0, 10, 2, 4),
    (6, 10, 0, 5, 100, 10, 1, 5),   # the cap dropped below what is set: down to it at once
    (2, 0, 3, 50, 5, 10, 1, 3),     # the floor rose above what is set: up to it, cooldown or not
    (7, 7, 0, 6, 0, 10, 1, 6),
]


@pytest.mark.parametrize("current,wanted,floor,cap,since,cooldown,hysteresis,expected", DAMPING)
def test_template_damping(current, wanted, floor, cap, since, cooldown, hysteresis, expected):
    value, reason = damp_template_change(current, wanted, floor, cap, since, cooldown, hysteresis)
    assert value == expected, reason
    assert floor <= value <= cap


def test_template_raise_headroom_is_a_share_of_the_wanted_value():
    # current, wanted, floor, cap, since, cooldown, hysteresis, headroom
    assert damp_template_change(4, 10, 1, 80, 0, 15, 2, 0.5)[0] == 15     # 10 + 50%
    assert damp_template_change(1, 2, 1, 80, 30, 15, 2, 0.5)[0] == 4      # at least the hysteresis
    assert damp_template_change(20, 60, 1, 80, 0, 15, 2, 0.5)[0] == 80    # never above the cap
    # A ramp 2, 4, ..., 50 wanted one step a minute: with headroom a handful of Revisions.
    current, changes, last_change = 1, 0, -100
    for minute, want in enumerate(range(2, 52, 2)):
        value, _ = damp_template_change(current, want, 1, 100, minute - last_change, 15, 2, 0.5)
        if value != current:
            changes, last_change, current = changes + 1, minute, value
        assert value >= want - 2  # never more than the hysteresis below what is wanted
    assert changes <= 6


def test_template_damping_bounds_rollouts_over_a_day_of_noisy_wants():
    import numpy as np

    rng = np.random.default_rng(0)
    wants = np.clip(np.round(10 + 5 * np.sin(np.arange(1440) / 90) + rng.normal(0, 1.5, 1440)), 1, 40).astype(int)
    current, last_change, changes = 1, -10**6, 0
    for minute, want in enumerate(wants):
        value, _ = damp_template_change(current, int(want), 1, 40, minute - last_change, 15, 2)
        if value < current:
            assert minute - last_change >= 15, "a decrease inside the cooldown"
        if value != current:
            assert abs(value - current) > 2 or minute - last_change >= 15, "a small change inside the cooldown"
            current, last_change, changes = value, minute, changes + 1
        assert value >= want or want - value <= 2  # never far below what is wanted
    undamped = int(np.count_nonzero(np.diff(wants)))
    assert changes < undamped / 5


def test_context_covers_the_widest_expert_and_at_least_a_day():
    assert model_context_minutes({}) == 1440
    manifest = {"clusters": [{"expert": {"config": {"input_size": 240}}}],
                "naive": {"config": {"input_size": 2880}}}
    assert model_context_minutes(manifest) == 2880


# spec minScale, spec maxScale, recorded, template annotations, target annotations, default cap -> floor, cap
FLOORS_AND_CAPS = [
    (None, None, None, {}, {}, 100, (0, 100)),                                   # nothing set: 0 .. the operator's cap
    (None, None, None, {kn.MIN_SCALE: "2"}, {}, 100, (2, 100)),                 # the template's own min-scale
    (None, None, 3, {kn.MIN_SCALE: "9"}, {}, 100, (3, 100)),                    # ... unless one was recorded first
    (None, None, 0, {kn.MIN_SCALE: "9"}, {}, 100, (0, 100)),                    # a recorded 0 (or unset) is a floor too
    (4, None, 3, {kn.MIN_SCALE: "9"}, {}, 100, (4, 100)),                       # the policy's minScale wins
    (None, 20, None, {}, {kn.MAX_SCALE: "8"}, 100, (0, 8)),                     # the written object's max-scale binds
    (None, 5, None, {kn.MAX_SCALE: "8"}, {}, 100, (0, 5)),                      # ... the smaller one
    (None, None, None, {kn.MAX_SCALE: "0"}, {}, 100, (0, 100)),                 # max-scale 0 = no limit
    (7, 3, None, {}, {}, 100, (7, 7)),                                          # never below the floor
    (None, None, None, {}, {}, 0, (0, 1)),                                      # and at least 1
    # Knative's webhook refuses min-scale > activation-scale (seen on Knative 1.21): a bound too.
    (None, 20, None, {kn.ACTIVATION_SCALE: "3"}, {}, 100, (0, 3)),
    (None, 20, None, {kn.ACTIVATION_SCALE: "6"}, {kn.ACTIVATION_SCALE: "3", kn.MAX_SCALE: "5"}, 100, (0, 3)),
]


@pytest.mark.parametrize("min_scale,max_scale,recorded,template,target,default_cap,expected", FLOORS_AND_CAPS)
def test_floor_and_cap(min_scale, max_scale, recorded, template, target, default_cap, expected):
    assert floor_and_cap(min_scale, max_scale, recorded, template, target, default_cap) == expected


@pytest.mark.parametrize("max_scale,template,target,cap,says", [
    (20, {kn.ACTIVATION_SCALE: "3"}, {}, 3,
     "the Service's activation-scale 3 (Knative refuses a min-scale above it)"),
    (20, {}, {kn.MAX_SCALE: "8"}, 8, "the Service's max-scale 8 (Knative refuses a min-scale above it)"),
    (5, {kn.MAX_SCALE: "8"}, {}, 5, "the policy's maxScale 5"),
    (None, {}, {}, 100, "the operator's --max-scale-cap 100"),
])
def test_the_cap_says_what_sets_it(max_scale, template, target, cap, says):
    assert floor_and_cap(None, max_scale, None, template, target, 100)[1] == cap
    assert cap_reason(max_scale, template, target, cap) == says


@pytest.mark.parametrize("requested,setting,supported,expected", [
    ("Revision", "template", None, ("Revision", "spec.actuation is Revision")),
    ("Template", "revision", None, ("Template", "spec.actuation is Template")),
    ("Auto", "revision", None, ("Revision", "operator setting --revision-annotations=revision")),
    ("Auto", "template", None, ("Template", "operator setting --revision-annotations=template")),
    ("Auto", "auto", (True, "Knative v1.21.0"), ("Revision", "Auto: Knative v1.21.0")),
    ("Auto", "auto", (False, "Knative v1.18.0"), ("Template", "Auto: Knative v1.18.0")),
])
def test_actuation_choice_asks_the_cluster_only_when_nothing_else_decides(requested, setting, supported, expected):
    asked = []

    def cluster_support():
        asked.append(1)
        return supported

    assert choose_actuation(requested, setting, cluster_support) == expected
    assert len(asked) == (supported is not None)


def _policy(name: str, created: str, namespace: str = "ns") -> PolicyObject:
    return PolicyObject(namespace=namespace, name=name, uid=name, generation=1, spec={}, annotations={}, status={},
                        created=created)


def test_the_oldest_active_policy_writes_each_service():
    spec = parse_spec({"service": "fn", "mode": "Active"}, SETTINGS)
    other = parse_spec({"service": "other", "mode": "Active"}, SETTINGS)
    young, old, twin = (_policy("b", "2026-01-02T00:00:00Z"), _policy("z", "2026-01-01T00:00:00Z"),
                        _policy("a", "2026-01-01T00:00:00Z"))
    elsewhere = _policy("c", "2026-01-03T00:00:00Z", namespace="ns2")
    owners = service_writers([(young, spec), (old, spec), (twin, spec), (young, other), (elsewhere, spec)])
    assert owners == {("ns", "fn"): twin, ("ns", "other"): young, ("ns2", "fn"): elsewhere}  # same age: by name


def test_template_writes_are_planned_with_the_template_damping():
    spec = parse_spec({"service": "fn", "holdMinutes": 3, "scaleDown": {"cooldownMinutes": 4, "hysteresis": 1},
                       "template": {"cooldownMinutes": 15, "hysteresis": 2}, "quantile": 0.8}, SETTINGS)
    sized = sizing(spec, SETTINGS.cold_start_cost)
    revision = plan_config(spec, 60.0, 1, 9, template=False, sized=sized)
    assert (revision.hold_minutes, revision.cooldown_minutes, revision.scale_down_hysteresis) == (3, 4, 1)
    assert (revision.capacity_per_instance, revision.user_min_scale, revision.max_scale, revision.quantile) == \
        (60.0, 1, 9, 0.8)
    template = plan_config(spec, 60.0, 1, 9, template=True, sized=sized)
    # one raise covers the whole cooldown ahead
    assert (template.hold_minutes, template.cooldown_minutes, template.scale_down_hysteresis) == (15, 15, 2)


def test_a_learned_floor_adds_no_hold_but_template_writes_still_cover_their_cooldown():
    spec = parse_spec({"service": "fn", "holdMinutes": 3, "scaleDown": {"cooldownMinutes": 4},
                       "template": {"cooldownMinutes": 15}, "coldStartCost": 8}, SETTINGS)
    sized = sizing(spec, SETTINGS.cold_start_cost)
    revision = plan_config(spec, 60.0, 1, 9, template=False, sized=sized, learned_floor=True)
    assert (revision.hold_minutes, revision.lead_minutes, revision.cooldown_minutes) == (0, spec.lead, 4)
    template = plan_config(spec, 60.0, 1, 9, template=True, sized=sized, learned_floor=True)
    assert (template.hold_minutes, template.cooldown_minutes) == (15, 15)


@pytest.mark.parametrize("fields,operator_cost,expected", [
    # Nothing set: the operator's cost, at its critical fractile.
    ({}, 10.0, Sizing(10.0, None, operator_default=True)),
    ({}, 4.0, Sizing(4.0, None, operator_default=True)),
    # The policy's own cost wins over the operator's.
    ({"coldStartCost": 99}, 10.0, Sizing(99.0)),
    # A quantile overrides whichever cost there is (the cost is kept for the record).
    ({"quantile": 0.7}, 10.0, Sizing(10.0, 0.7, operator_default=True)),
    ({"coldStartCost": 99, "quantile": 0.7}, 10.0, Sizing(99.0, 0.7)),
])
def test_the_policys_cost_else_the_operators_and_a_quantile_overrides_both(fields, operator_cost, expected):
    spec = parse_spec({"service": "fn", **fields}, SETTINGS)
    sized = sizing(spec, operator_cost)
    assert sized == expected
    config = plan_config(spec, 60.0, 0, 9, template=False, sized=sized)
    assert config.quantile == pytest.approx(fields.get("quantile", sized.cold_start_cost / (1 + sized.cold_start_cost)))


MINUTE = 60
START = 1_767_225_600  # a whole minute


def test_a_held_plan_continues_from_the_current_minute_until_it_is_too_old():
    memory = PolicyMemory(plan=[5, 4, 3, 2], plan_start=START, planned_at=START)
    assert held_plan(memory, START + 30, 600) == ([5, 4, 3, 2], START)
    assert held_plan(memory, START + 2 * MINUTE + 5, 600) == ([3, 2], START + 2 * MINUTE)
    assert held_plan(memory, START + 4 * MINUTE, 600) is None      # the plan ran out
    assert held_plan(memory, START + 601, 600) is None             # too old
    assert held_plan(PolicyMemory(), START, 600) is None           # nothing planned yet


def test_the_damping_state_continues_across_loops_and_restarts():
    state_in, state_out = PlanState.single(2, 3), PlanState.single(4, 1)
    memory = PolicyMemory(state_minute=START, state_in=state_in, state_out=state_out, changed_at=START - 10 * MINUTE)
    assert previous_state(memory, START, START, applied=None, floor=0) is state_in       # the same minute again
    later = previous_state(memory, START + 3 * MINUTE, START, applied=None, floor=0)     # two loops missed
    assert later.for_function(0) == {"current": 4, "minutes_since_needed": 3}
    # First plan since start-up: what is in place, aged by its last change; never below the floor.
    fresh = PolicyMemory(changed_at=START - 10 * MINUTE)
    assert previous_state(fresh, START, START, applied=6, floor=1).for_function(0) == \
        {"current": 6, "minutes_since_needed": 10}
    assert previous_state(fresh, START, START, applied=None, floor=2).for_function(0)["current"] == 2
    assert previous_state(PolicyMemory(), START, START, applied=1, floor=3).for_function(0) == \
        {"current": 3, "minutes_since_needed": 10**9}


def test_the_batch_plans_each_row_as_if_alone():
    rng = np.random.default_rng(5)
    point = [rng.uniform(0, 300, 12) for _ in range(4)]
    upper = [p * 1.2 for p in point[:3]] + [None]
    configs = [PolicyConfig(capacity_per_instance=60.0, lead_minutes=1, cooldown_minutes=2)] * 2 + \
        [PolicyConfig(capacity_per_instance=30.0, lead_minutes=1, hold_minutes=0, cooldown_minutes=0)] * 2
    previous = [PlanState.single(1, 1), PlanState.single(5, 2), PlanState.single(0, 10**9), PlanState.single(2, 1)]
    batch = plan_batch(point, upper, configs, [8, 8, 8, 6], previous)
    for i, (plan, reasons, after_first) in enumerate(batch):
        uppers = None if upper[i] is None else upper[i][None, :]
        alone, why = plan_min_scale(point[i][None, :], uppers, configs[i], previous[i], plan_horizon=len(plan))
        _, _, state = plan_min_scale(point[i][None, :], uppers, configs[i], previous[i], plan_horizon=1,
                                     explain=False, return_state=True)
        assert plan == alone[0].tolist() and reasons == [text for _, text in why[0][:3]]
        assert after_first.for_function(0) == state.for_function(0)
    assert [len(plan) for plan, _, _ in batch] == [8, 8, 8, 6]
