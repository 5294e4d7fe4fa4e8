"""Writing min-scale on the user's objects: the user's value recorded first and given back later,
someone else's change taken as the user's new value, template writes damped."""

from __future__ import annotations

import dataclasses

from mesp_operator import knative as kn
from mesp_operator.actuation import Actuator
from mesp_operator.metrics import OperatorMetrics
from mesp_operator.settings import OperatorSettings
from mesp_operator.spec import PolicyObject, parse_spec
from mesp_operator.status import Outcome
from mesp_operator.store import OriginalRecord, PolicyMemory

from .fake_cluster import FakeCluster, add_policy, clients

NOW = 1_767_225_600.0


def _setup(template_annotations=None, revision_annotations=None):
    cluster = FakeCluster()
    cluster.add_service("ns", "fn", template_annotations or {kn.MIN_SCALE: "1"}, "fn-00001")
    cluster.add_revision("ns", "fn-00001", "fn", revision_annotations or {kn.MIN_SCALE: "1"})
    knative, store = clients(cluster)
    events = []
    actuator = Actuator(knative, store, OperatorMetrics(), lambda policy, *event: events.append(event))
    return cluster, actuator, events


def _outcome(cluster: FakeCluster, value: int, spec: dict | None = None) -> Outcome:
    """This loop's decision for policy p (created on first use) as the loop hands it to the Actuator."""
    if ("mesppolicies", "ns", "p") not in cluster.objects:
        add_policy(cluster, "ns", "p", {"service": "fn", "mode": "Active", **(spec or {})})
    policy = PolicyObject.from_body(cluster.body("mesppolicies", "ns", "p"))
    o = Outcome(policy, spec=parse_spec(policy.spec, OperatorSettings()),
                service=kn.service_info(cluster.body("services", "ns", "fn")))
    o.value, o.floor, o.cap, o.plan_source = value, 1, 20, "fresh"
    return o


def _record(cluster: FakeCluster) -> OriginalRecord | None:
    return OriginalRecord.from_annotations(cluster.body("mesppolicies", "ns", "p")["metadata"].get("annotations") or {})


def test_the_users_value_is_recorded_before_the_first_write_and_given_back():
    cluster, actuator, events = _setup()
    o, memory = _outcome(cluster, 4), PolicyMemory()
    assert actuator.apply(o, "Revision", None, None, memory, {}, NOW) == ("Actuated", 4, "1")
    assert cluster.revision_min_scale("ns", "fn-00001") == "4"
    assert _record(cluster) == OriginalRecord("Revision", "fn-00001", kn.MIN_SCALE, "1")
    assert memory.written == ("Revision", "fn-00001", 4) and memory.changed_at == NOW
    assert events == [("Normal", "MinScaleSet", "Revision fn-00001: min-scale 1 -> 4 (fresh)")]
    assert o.conditions["Actuated"] == ("True", "Applied", "Revision fn-00001 has min-scale 4")

    actuator.give_back(o.policy, _record(cluster), 4, memory, NOW + 60)
    assert cluster.revision_min_scale("ns", "fn-00001") == "1" and _record(cluster) is None
    assert memory.written is None and events[-1] == ("Normal", "MinScaleRestored",
                                                    "Revision fn-00001: min-scale restored to 1")


def test_a_value_someone_else_set_becomes_the_users_own_and_the_floor():
    cluster, actuator, _ = _setup(revision_annotations={kn.MIN_SCALE: "6"})  # MESP wrote 4, the user then 6
    o = _outcome(cluster, 2)
    record = OriginalRecord("Revision", "fn-00001", kn.MIN_SCALE, "1")
    state, applied, original = actuator.apply(o, "Revision", record, 4, PolicyMemory(), {}, NOW)
    assert (state, applied, original) == ("Actuated", 6, "6")  # never below the user's new value
    assert o.floor == 6 and _record(cluster).value == "6"


def test_a_new_revision_gets_written_and_the_old_one_its_value_back():
    cluster, actuator, events = _setup(revision_annotations={kn.MIN_SCALE: "4"})
    cluster.add_revision("ns", "fn-00002", "fn", {})
    o = _outcome(cluster, 5)
    o.service = dataclasses.replace(o.service, latest_ready_revision="fn-00002")
    old = OriginalRecord("Revision", "fn-00001", kn.MIN_SCALE, "1")
    assert actuator.apply(o, "Revision", old, 4, PolicyMemory(), {}, NOW) == ("Actuated", 5, None)
    assert cluster.revision_min_scale("ns", "fn-00001") == "1" and cluster.revision_min_scale("ns", "fn-00002") == "5"
    assert _record(cluster) == OriginalRecord("Revision", "fn-00002", kn.MIN_SCALE, None)
    assert [reason for _, reason, _ in events] == ["MinScaleRestored", "MinScaleSet"]


def test_the_users_rollout_with_a_higher_min_scale_is_never_written_below():
    """The user rolls out a Revision whose own min-scale (12) is above MESP's plan (5): the loop that
    moves to it planned with the old record's floor (1), yet writes nothing below the user's 12."""
    cluster, actuator, events = _setup(revision_annotations={kn.MIN_SCALE: "4"})
    cluster.add_revision("ns", "fn-00002", "fn", {kn.MIN_SCALE: "12"})
    o = _outcome(cluster, 5)
    o.service = dataclasses.replace(o.service, latest_ready_revision="fn-00002")
    old = OriginalRecord("Revision", "fn-00001", kn.MIN_SCALE, "1")
    assert actuator.apply(o, "Revision", old, 4, PolicyMemory(), {}, NOW) == ("Actuated", 12, "12")
    assert cluster.revision_min_scale("ns", "fn-00002") == "12" and o.floor == 12
    assert not [m for _, reason, m in events if reason == "MinScaleSet"]  # nothing written on fn-00002


def test_template_writes_are_damped():
    cluster, actuator, _ = _setup()
    o = _outcome(cluster, 4, {"template": {"cooldownMinutes": 10, "hysteresis": 1, "raiseHeadroomPercent": 50}})
    memory = PolicyMemory()
    assert actuator.apply(o, "Template", None, None, memory, {}, NOW)[1] == 6   # 4 + 50 % headroom
    assert cluster.template_min_scale("ns", "fn") == "6" and o.reasons[0] == "raise to 6 (4 + 2 headroom)"
    o = _outcome(cluster, 2)
    assert actuator.apply(o, "Template", _record(cluster), 6, memory, {}, NOW + 120)[1] == 6  # within the cooldown
    assert o.reasons[0] == "hold 6: template cooldown (2/10 min)"


def test_a_value_changed_by_someone_else_is_left_and_a_gone_object_needs_nothing():
    cluster, actuator, _ = _setup(revision_annotations={kn.MIN_SCALE: "7"})
    add_policy(cluster, "ns", "p", {"service": "fn"})
    policy = PolicyObject.from_body(cluster.body("mesppolicies", "ns", "p"))
    record = OriginalRecord("Revision", "fn-00001", kn.MIN_SCALE, "1")
    assert actuator.restore(policy, record, applied=4) == \
        "Revision fn-00001: min-scale was changed to 7 by someone else; left as is"
    assert cluster.revision_min_scale("ns", "fn-00001") == "7"
    gone = OriginalRecord("Revision", "fn-00000", kn.MIN_SCALE, "1")
    assert actuator.restore(policy, gone, applied=4) == "Revision fn-00000 is gone; nothing to restore"
