"""A policy's status: built from one loop's Outcome, read back after a restart, and the Events that
tell a condition's changes."""

from __future__ import annotations

import pytest

from mesp_core.policy import PlanState
from mesp_operator.forecast import FloorChoice, Sizing
from mesp_operator.settings import OperatorSettings
from mesp_operator.spec import CONDITION_TYPES, PolicyObject, parse_spec
from mesp_operator.status import (Outcome, build_status, format_time, memory_from_status, parse_time,
                                  plan_is_shifted, refresh_interval, status_is_news, transition_events)
from mesp_operator.store import PolicyMemory

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _policy(status=None) -> PolicyObject:
    return PolicyObject(namespace="ns", name="p", uid="u", generation=4, spec={"service": "fn"}, annotations={},
                        status=status or {})


def _planned(status=None) -> tuple[Outcome, PolicyMemory]:
    o = Outcome(_policy(status), spec=parse_spec({"service": "fn", "mode": "Active"}, OperatorSettings()))
    o.sizing = Sizing(10.0, operator_default=True)
    o.set("Ready", True, "Ready", "planned")
    o.set("MetricsAvailable", True, "Fetched", "1440 minutes of counts fetched")
    o.plan, o.plan_start, o.value, o.floor, o.cap, o.plan_source = [3, 3, 2], int(NOW), 3, 1, 10, "fresh"
    o.capacity, o.capacity_source, o.duration_ms, o.reasons = 42.0004, "measuredDuration", 1000.04, ["raise to 3"]
    memory = PolicyMemory(planned_at=NOW - 5, changed_at=NOW - 120, forecast_next=90.12345, forecast_peak=120.0,
                          route={"cluster": 2, "expert": "dlinear", "description": "d", "distance": 0.5},
                          state_minute=int(NOW), state_out=PlanState.single(3, 1))
    return o, memory


def test_times_are_rfc3339_whole_seconds_both_ways():
    assert format_time(NOW) == "2026-01-01T00:00:00Z" and format_time(None) is None
    assert parse_time(format_time(NOW + 59.7)) == NOW + 59
    assert parse_time("yesterday") is None and parse_time(None) is None and parse_time(12) is None


def test_the_status_says_what_the_loop_decided():
    o, memory = _planned()
    status = build_status(o, memory, applied=3, original="1", actuation="Revision", actuation_reason="Auto: x", now=NOW)
    assert [c["type"] for c in status["conditions"]] == [t for t in CONDITION_TYPES if t in o.conditions]
    assert all(c["observedGeneration"] == 4 and c["lastTransitionTime"] == "2026-01-01T00:00:00Z"
               for c in status["conditions"])
    assert (status["plan"], status["planStart"], status["planSource"], status["desiredMinScale"]) == \
        ([3, 3, 2], "2026-01-01T00:00:00Z", "fresh", 3)
    assert (status["appliedMinScale"], status["originalMinScale"], status["userFloor"], status["maxScale"]) == \
        (3, "1", 1, 10)
    assert (status["forecastNextMinute"], status["capacityPerInstance"], status["requestDurationMs"]) == \
        (90.123, 42.0, 1000.0)
    assert status["planState"] == {"minute": "2026-01-01T00:00:00Z", "current": 3, "minutesSinceNeeded": 1}
    assert status["planReasons"] == ["raise to 3"] and status["route"]["expert"] == "dlinear"
    assert status["sizing"] == "coldStartCost 10 (q0.909, operator default)"
    assert status["sizingQuantile"] == round(10 / 11, 6)


def test_a_learned_floor_is_named_in_sizing_and_survives_a_restart():
    o, memory = _planned()
    o.sizing = Sizing(8.0)
    memory.learned_floor = "keep-alive 10"
    status = build_status(o, memory, applied=3, original="1", actuation="Revision", actuation_reason="Auto: x", now=NOW)
    assert status["sizing"] == "coldStartCost 8 (learned floor: keep-alive 10)"
    assert status["learnedFloor"] == "keep-alive 10"
    assert memory_from_status(status).learned_floor == "keep-alive 10"
    # Without a plan there is nothing the floor was chosen for.
    o.plan, o.plan_source = None, "floor"
    status = build_status(o, memory, applied=3, original="1", actuation="Revision", actuation_reason="x", now=NOW)
    assert status["learnedFloor"] is None and status["sizing"] == "coldStartCost 8 (q0.889)"
    assert memory_from_status({"learnedFloor": 3}).learned_floor is None


def test_the_floor_choice_survives_a_restart_and_a_damaged_one_is_dropped():
    o, memory = _planned()
    o.sizing = Sizing(8.0)
    memory.learned_floor = "q=0.9"
    memory.floor_choice = FloorChoice(boundary=int(NOW) // 60 - 7, name="q=0.9", cold_start_cost=8.0, lead_minutes=2)
    status = build_status(o, memory, applied=3, original="1", actuation="Revision", actuation_reason="x", now=NOW)
    assert status["floorChoice"] == {"chosenAt": "2025-12-31T23:53:00Z", "floor": "q=0.9", "coldStartCost": 8.0,
                                     "leadMinutes": 2}
    assert memory_from_status(status).floor_choice == memory.floor_choice
    for damaged in ({**status["floorChoice"], "chosenAt": "soon"}, {**status["floorChoice"], "leadMinutes": 1.5},
                    {**status["floorChoice"], "coldStartCost": True}, {"floor": "q=0.9"}, "q=0.9"):
        assert memory_from_status({"floorChoice": damaged}).floor_choice is None
    o.plan, o.plan_source = None, "floor"  # no plan: no learned floor, no choice to keep
    assert build_status(o, memory, None, None, None, None, NOW)["floorChoice"] is None


def test_an_invalid_spec_reports_no_sizing():
    o = Outcome(_policy())
    o.set("Ready", False, "InvalidSpec", "spec.coldStartCost must be in (0.0, 1000000.0], got 0")
    status = build_status(o, PolicyMemory(), applied=None, original=None, actuation=None, actuation_reason=None,
                          now=NOW)
    assert status["sizing"] is None and status["sizingQuantile"] is None
    assert status["conditions"][0]["message"].startswith("spec.coldStartCost must be in")


def test_a_condition_keeps_its_transition_time_while_its_status_stays():
    yesterday = "2025-12-31T00:00:00Z"
    before = {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": yesterday},
                             {"type": "MetricsAvailable", "status": "False", "lastTransitionTime": yesterday}]}
    o, memory = _planned(before)
    o.set("Ready", True, "Ready", "m" * 1500)
    conditions = build_status(o, memory, None, None, None, None, NOW)["conditions"]
    times = {c["type"]: c["lastTransitionTime"] for c in conditions}
    assert times == {"Ready": yesterday, "MetricsAvailable": "2026-01-01T00:00:00Z"}  # MetricsAvailable turned True
    assert len(conditions[0]["message"]) == 1000


def test_a_held_plan_reports_no_forecast_figures():
    o, memory = _planned()
    o.plan_source = "held"
    status = build_status(o, memory, None, None, None, None, NOW)
    assert status["forecastNextMinute"] is None and status["forecastPeak"] is None
    o.plan = None
    assert build_status(o, memory, None, None, None, None, NOW)["route"] is None


def test_a_restarted_operator_takes_over_plan_damping_and_reported_conditions():
    o, memory = _planned()
    o.set("MetricsAvailable", False, "PrometheusTimeout", "slow")
    status = build_status(o, memory, applied=3, original=None, actuation=None, actuation_reason=None, now=NOW)
    back = memory_from_status(status)
    assert (back.plan, back.plan_start, back.planned_at, back.changed_at) == ([3, 3, 2], int(NOW), NOW - 5, NOW - 120)
    assert back.state_minute == int(NOW) and back.state_out.for_function(0) == memory.state_out.for_function(0)
    assert back.route == memory.route and back.reported == {"MetricsAvailable": "PrometheusTimeout"}
    assert back.state_in is None and back.written is None


@pytest.mark.parametrize("plan_state", [{"minute": "2026-01-01T00:00:00Z", "current": 2, "minutesSinceNeeded": 0},
                                        {"minute": "2026-01-01T00:00:00Z"}, {"minute": "soon", "current": 1}])
def test_a_damaged_plan_state_is_dropped(plan_state):
    memory = memory_from_status({"planState": plan_state, "plan": ["x"], "planStart": "2026-01-01T00:00:00Z"})
    assert memory.state_out is None and memory.state_minute is None and memory.plan is None


def test_each_condition_change_is_told_once_and_its_recovery_too():
    o, memory = _planned()
    o.reasons = ["holding the plan"]
    o.set("MetricsAvailable", False, "PrometheusTimeout", "slow")
    assert transition_events(o, memory) == [("Warning", "PrometheusTimeout", "slow; holding the plan")]
    assert transition_events(o, memory) == []  # same reason: already told
    o.set("MetricsAvailable", False, "MetricsGarbage", "garbage")
    o.reasons = []
    assert transition_events(o, memory) == [("Warning", "MetricsGarbage", "garbage")]
    o.set("MetricsAvailable", True, "Fetched", "ok")
    assert transition_events(o, memory) == [("Normal", "MetricsAvailableRecovered", "ok")]
    assert memory.reported == {} and transition_events(o, memory) == []
    o.set("Ready", False, "ActuationFailed", "told by the loop itself")
    assert transition_events(o, memory) == []


# -- is a new status news? ----------------------------------------------------------------------------

REFRESH = 600.0


def _stored(status: dict) -> dict:
    """A status as the API server keeps it: a merge patch's nulls remove the fields."""
    return {k: v for k, v in status.items() if v is not None}


def _loop(minutes_later: int, plan=(3, 2), **changes) -> dict:
    """The status of a loop `minutes_later` after _planned's, planned afresh: new forecast numbers,
    reasons and damping state, the plan given from that minute on."""
    o, memory = _planned()
    now = NOW + 60 * minutes_later
    o.plan, o.plan_start, o.value = list(plan), int(now), plan[0]
    o.reasons = [f"lower to 2 (forecast peak 61/min at +{2 - minutes_later} min)"]
    o.set("Ready", True, "Ready", "; ".join(o.reasons))
    memory.planned_at, memory.forecast_next, memory.forecast_peak = now - 3, 77.7, 101.5
    memory.route = dict(memory.route, distance=0.4321)
    memory.state_minute, memory.state_out = int(now), PlanState.single(3, 2)
    o.duration_ms = 1000.04 * 1.05
    for name, value in changes.items():
        setattr(o, name, value)
    return build_status(o, memory, applied=3, original="1", actuation="Revision", actuation_reason="Auto: x", now=now)


def _first(plan=(3, 3, 2)) -> dict:
    o, memory = _planned()
    o.plan = list(plan)
    return _stored(build_status(o, memory, applied=3, original="1", actuation="Revision", actuation_reason="Auto: x",
                               now=NOW))


def test_a_status_that_only_moved_with_the_clock_is_no_news():
    old = _first()
    assert not status_is_news(_loop(1), old, NOW + 60, REFRESH)  # [3, 3, 2] from NOW = [3, 2] from NOW + 60
    assert not status_is_news(_loop(0, plan=(3, 3, 2)), old, NOW + 20, REFRESH)  # same minute planned again
    assert not status_is_news(_loop(1, plan=(3, 2, 2, 5)), old, NOW + 60, REFRESH)  # minutes past the old end


def test_whatever_else_changed_is_news():
    old = _first()
    assert status_is_news(_loop(1, plan=(4, 2)), old, NOW + 60, REFRESH)  # the plan differs where both say
    assert status_is_news(_loop(2, plan=(3, 2)), old, NOW + 120, REFRESH)  # ... [2] was planned for NOW + 120
    assert status_is_news(_loop(1, plan=(3, 2), plan_source="held"), old, NOW + 60, REFRESH)
    assert status_is_news(_loop(1, plan=(3, 2), value=2), old, NOW + 60, REFRESH)  # desiredMinScale
    assert status_is_news(_loop(1, plan=(3, 2), cap=8), old, NOW + 60, REFRESH)
    assert status_is_news(_loop(1, plan=(3, 2), duration_ms=1300.0), old, NOW + 60, REFRESH)  # measured +30%
    moved = _loop(1)
    moved["route"] = dict(moved["route"], expert="nbeats")
    assert status_is_news(moved, old, NOW + 60, REFRESH)
    applied = _loop(1)
    applied["appliedMinScale"] = 2
    assert status_is_news(applied, old, NOW + 60, REFRESH)
    newer = _loop(1)
    newer["observedGeneration"] = 5
    assert status_is_news(newer, old, NOW + 60, REFRESH)
    failing = _loop(1)
    failing["conditions"][0] = dict(failing["conditions"][0], status="False", reason="ActuationFailed")
    assert status_is_news(failing, old, NOW + 60, REFRESH)


def test_a_false_conditions_message_is_news_and_a_true_readys_is_not():
    o, memory = _planned()
    o.set("MetricsAvailable", False, "PrometheusUnavailable", "connection refused")
    old = _stored(build_status(o, memory, 3, "1", "Revision", "Auto: x", NOW))
    o.set("Ready", True, "Ready", "lower to 2 (forecast peak 61/min at +1 min)")
    assert not status_is_news(build_status(o, memory, 3, "1", "Revision", "Auto: x", NOW + 20), old, NOW + 20, REFRESH)
    o.set("MetricsAvailable", False, "PrometheusUnavailable", "timed out")
    assert status_is_news(build_status(o, memory, 3, "1", "Revision", "Auto: x", NOW + 20), old, NOW + 20, REFRESH)


def test_a_status_is_written_again_at_least_every_refresh_and_first_of_all():
    old = _first(plan=[3] * 11 + [2] * 5)
    assert status_is_news(_loop(10), old, NOW + REFRESH, REFRESH)  # the heartbeat, plan unchanged
    assert not status_is_news(_loop(9, plan=(3, 3, 2)), old, NOW + REFRESH - 1, REFRESH)
    assert status_is_news(_loop(3), _first(), NOW + 180, REFRESH)  # the stored plan has run out


def test_a_plan_change_beyond_the_refresh_is_no_news_until_the_heartbeat():
    old = _first(plan=[3] * 20)
    assert not status_is_news(_loop(1, plan=[3] * 10 + [5] * 9), old, NOW + 60, REFRESH)  # +10 min and later
    assert status_is_news(_loop(1, plan=[3] * 9 + [5] * 10), old, NOW + 60, REFRESH)  # within the next 10 minutes
    assert not status_is_news(_loop(1, plan=[3, 3, 5]), old, NOW + 60, 120.0)  # the next 2 with a 2-minute refresh
    assert status_is_news(_loop(1, plan=[3, 5, 5]), old, NOW + 60, 120.0)
    assert status_is_news(_loop(1), old, NOW + 60, 0.0)  # 0: every loop
    assert status_is_news(_loop(1), {}, NOW + 60, REFRESH)
    assert status_is_news(_loop(1), {k: v for k, v in old.items() if k != "lastUpdate"}, NOW + 60, REFRESH)


def test_fields_an_older_operator_left_behind_are_no_news():
    old = dict(_first(), retiredField={"x": 1})
    assert not status_is_news(_loop(1), old, NOW + 60, REFRESH)


def test_a_plan_is_shifted_when_it_agrees_on_the_minutes_both_cover():
    assert plan_is_shifted([2, 2, 7], NOW + 120, [1, 1, 2, 2], NOW)
    assert plan_is_shifted(None, None, None, None) and plan_is_shifted([], NOW, None, None)
    assert not plan_is_shifted([1, 2], NOW + 120, [1, 1, 2, 2], NOW)
    assert not plan_is_shifted([2], NOW + 240, [1, 1, 2, 2], NOW)  # nothing in common
    assert plan_is_shifted([1, 2, 9], NOW + 60, [1, 1, 2, 2], NOW, within=2)  # only the next 2 minutes count
    assert not plan_is_shifted([1, 9, 2], NOW + 60, [1, 1, 2, 2], NOW, within=2)
    assert not plan_is_shifted([1, 1], NOW - 60, [1, 1, 2, 2], NOW)  # an older start
    assert not plan_is_shifted([1, 2, 2], NOW + 90, [1, 1, 2, 2], NOW)  # not a whole minute later
    assert not plan_is_shifted([1], NOW, None, None) and not plan_is_shifted(None, None, [1], NOW)


def test_heartbeats_are_spread_between_half_the_refresh_and_all_of_it():
    intervals = [refresh_interval(f"uid-{i}", REFRESH) for i in range(500)]
    assert all(REFRESH / 2 <= t <= REFRESH for t in intervals)
    assert max(intervals) - min(intervals) > 0.9 * REFRESH / 2
    assert refresh_interval("uid-7", REFRESH) == refresh_interval("uid-7", REFRESH)
    assert refresh_interval("uid-7", 0.0) == 0.0
