"""`mesp operator`, started as a user starts it, on real Knative Serving (issue 15).

Each scenario has its own Service whose real Azure day Prometheus holds (knative-otel layout). The
bed starts MINUTES_BEFORE_PEAK minutes before the day's peak, the day's traffic goes on in real time,
and the operator runs in real time (2 s loops), so "before the peak" is measured against the wall clock.
What happens after the peak (the floor falling back) would take real minutes here: the operator on
a replayed clock walks through it (test_knative_replayed_clock.py).
"""

from __future__ import annotations

import time

import pytest

from knative_helpers import (MAX_SCALE, PA, REPLAYED, TIMINGS, USER_FLOOR, Kn, Sampler, Timeline, image, lead_minutes,
                             out_dir, policy, start_operator, wait_applied)
import kube_helpers as kh  # tests/integration's, put on sys.path by knative_helpers

pytestmark = pytest.mark.knative


def test_revision_actuation_floor_reaches_knative_pods_before_the_replayed_peak(kube, replay, mesp_operator, tmp_path):
    ns, name = REPLAYED["revision"]
    kn = Kn(kube, ns, name).create({kh.MIN_SCALE: str(USER_FLOOR)})
    revision = kn.latest()
    kn.wait_knative_at(revision, USER_FLOOR)
    with Timeline(kn, name, replay) as timeline:
        floor, log = _revision_scenario(kube, kn, revision, replay, mesp_operator, timeline)
        time.sleep(3)  # Knative settling at the user's floor, on the timeline
    lead = lead_minutes(timeline, floor)
    TIMINGS["revision_actuation_ready_lead_min"] = lead
    path = timeline.save(out_dir(tmp_path) / "timeline-revision.json", floor=floor, lead_min=lead, revisions_created=0)
    print(f"\nRevision actuation: floor {floor}, Ready pods {lead} min before the replayed peak, "
          f"0 Revisions created; timeline {path}")
    assert lead is not None and lead > 0, "the floor's pods were Ready only after the replayed peak"


def _revision_scenario(kube, kn: Kn, revision: str, replay, mesp_operator, timeline: Timeline):
    ns, name = kn.ns, kn.service
    kh.create_policy(kube, ns, name, policy(replay, service=name))
    timeline.mark("policy created")
    t0 = time.monotonic()
    log = start_operator(mesp_operator, ns)
    floor = wait_applied(kube, ns, name, log)
    timeline.mark(f"MESP applied {floor}")
    t_applied = time.monotonic()
    TIMINGS["operator_start_to_applied_s"] = round(t_applied - t0, 2)
    st = kh.status(kube, ns, name)
    assert min(st["plan"]) >= USER_FLOOR and st["userFloor"] == USER_FLOOR, st  # the user's floor holds
    # Auto read Knative 1.21 from the real cluster (the Revision CRD's release label) and took the
    # Revision path: the annotation is on the Revision, and Knative's own controllers carry it on.
    assert kh.status(kube, ns, name)["actuation"] == "Revision"
    # The default preset (auto) found the family Knative 1.21's queue-proxy exports.
    metrics = kh.condition(kube, ns, name, "MetricsAvailable")
    assert metrics["status"] == "True" and metrics["message"].endswith("(preset knative-otel, chosen by auto)"), metrics
    assert kn.min_scale(kh.KN, "revisions", revision) == str(floor)
    kn.wait_knative_at(revision, floor)
    ready_at = time.time()
    TIMINGS["operator_applied_to_ready_pods_s"] = round(time.monotonic() - t_applied, 2)
    TIMINGS["revision_actuation_floor"] = floor
    assert ready_at < replay.peak_at, "the floor's pods were Ready only after the replayed peak"
    # Five more loops: the floor holds (the plan's first minutes ask the same), Knative keeps it.
    timeline.mark("Ready")
    time.sleep(10)
    held = [s for s in timeline.samples if s["t"] > ready_at + 1]
    assert held and {(s["revision_min_scale"], s["ready"]) for s in held} == {(floor, floor)}, held[-3:]
    # No new Revision (churn 0), the user's template untouched.
    assert kn.revisions() == [revision]
    TIMINGS["revision_actuation_revisions_created"] = 0
    assert kh.template_min_scale(kube, ns, name) == str(USER_FLOOR)

    # Deleting the policy gives the user's own min-scale back, and Knative follows it down (the
    # pods' stats report no load, so the autoscaler may lower the Deployment).
    t1 = time.monotonic()
    kh.delete_policy(kube, ns, name)
    timeline.mark("policy deleted")
    kh.wait_for(lambda: kn.min_scale(kh.KN, "revisions", revision) == str(USER_FLOOR), 60,
                message=f"the user's min-scale {USER_FLOOR} back on the Revision (log: {log})")
    kn.wait_knative_at(revision, USER_FLOOR, timeout=120)
    TIMINGS["policy_deleted_to_user_floor_pods_s"] = round(time.monotonic() - t1, 2)
    return floor, log


def test_template_actuation_creates_revisions_that_knative_scales(kube, replay, mesp_operator, tmp_path):
    ns, name = REPLAYED["template"]
    kn = Kn(kube, ns, name).create({kh.MIN_SCALE: str(USER_FLOOR)})
    with Timeline(kn, name, replay) as timeline:
        floor, created = _template_scenario(kube, kn, replay, mesp_operator, timeline)
        time.sleep(3)  # the give-back's Revision settling, on the timeline
    lead = lead_minutes(timeline, floor)
    TIMINGS["template_actuation_ready_lead_min"] = lead
    path = timeline.save(out_dir(tmp_path) / "timeline-template.json", floor=floor, lead_min=lead,
                         revisions_created=created)
    print(f"\nTemplate actuation: floor {floor}, Ready pods {lead} min before the replayed peak, "
          f"{created} Revisions created; timeline {path}")
    assert lead is not None and lead > 0, "the floor's pods were Ready only after the replayed peak"


def _template_scenario(kube, kn: Kn, replay, mesp_operator, timeline: Timeline) -> tuple[int, int]:
    ns, name = kn.ns, kn.service
    first = kn.latest()
    kh.create_policy(kube, ns, name, policy(replay, service=name, actuation="Template"))
    timeline.mark("policy created")
    log = start_operator(mesp_operator, ns)
    floor = wait_applied(kube, ns, name, log)
    timeline.mark(f"MESP applied {floor}")
    assert kh.status(kube, ns, name)["actuation"] == "Template"
    assert kh.template_min_scale(kube, ns, name) == str(floor)
    # Knative rolls the template change out as a new Revision, and scales that one.
    kh.wait_for(lambda: kn.latest() not in (None, first), 60, message="a new Ready Revision")
    second = kn.latest()
    assert kn.min_scale(kh.KN, "revisions", second) == str(floor)
    kn.wait_knative_at(second, floor)
    timeline.mark("Ready")
    assert time.time() < replay.peak_at, "the floor's pods were Ready only after the replayed peak"
    time.sleep(6)  # three more loops: the damped template floor holds, no new Revision
    assert kn.latest() == second and kh.template_min_scale(kube, ns, name) == str(floor)

    kh.delete_policy(kube, ns, name)
    timeline.mark("policy deleted")
    kh.wait_for(lambda: kh.template_min_scale(kube, ns, name) == str(USER_FLOOR), 60,
                message=f"the user's min-scale {USER_FLOOR} back on the template (log: {log})")
    kh.wait_for(lambda: kn.latest() not in (None, first, second), 60, message="the give-back's Revision Ready")
    kn.wait_knative_at(kn.latest(), USER_FLOOR)
    # One raise and one give-back: two Revisions made (Revision actuation: none).
    created = len(kn.revisions()) - 1
    TIMINGS["template_actuation_revisions_created"] = created
    assert created == 2, kn.revisions()
    return floor, created


def test_forecast_only_writes_nothing_knative_acts_on(kube, replay, mesp_operator):
    ns, name = REPLAYED["forecast"]
    kn = Kn(kube, ns, name).create({kh.MIN_SCALE: str(USER_FLOOR)})
    revision = kn.latest()
    kn.wait_knative_at(revision, USER_FLOOR)
    before = kn.get(kh.KN, "revisions", revision)["metadata"]["resourceVersion"]
    service_before = kn.get(kh.KN, "services", name)["metadata"]["generation"]
    kh.create_policy(kube, ns, name, policy(replay, service=name, mode="ForecastOnly"))
    log = start_operator(mesp_operator, ns)

    def planned():
        st = kh.status(kube, ns, name)
        return st if st.get("plan") and max(st["plan"]) > USER_FLOOR else None

    st = kh.wait_for(planned, 180, interval=0.5, message=f"a plan above the user's floor in status (log: {log})")
    assert st.get("appliedMinScale") is None
    time.sleep(5)  # two more loops: still nothing written
    assert kn.get(kh.KN, "revisions", revision)["metadata"]["resourceVersion"] == before
    assert kn.get(kh.KN, "services", name)["metadata"]["generation"] == service_before
    assert kn.min_scale(PA, "podautoscalers", revision) == str(USER_FLOOR)
    assert kn.scale(revision) == (USER_FLOOR, USER_FLOOR)
    assert kn.revisions() == [revision]


def test_floor_above_the_users_max_scale_is_capped_not_refused(kube, replay, mesp_operator):
    """The Service's own max-scale (4) is below what the peak needs: Knative's webhook refuses a
    min-scale above max-scale, so MESP must cap its floor there instead of losing the write."""
    ns, name = REPLAYED["capped"]
    kn = Kn(kube, ns, name).create({kh.MIN_SCALE: "1", MAX_SCALE: "4"})
    revision = kn.latest()
    kh.create_policy(kube, ns, name, policy(replay, service=name))
    log = start_operator(mesp_operator, ns)
    floor = wait_applied(kube, ns, name, log, above=1)
    kh.wait_for(lambda: kh.status(kube, ns, name).get("appliedMinScale") == 4, 60,
                message=f"the floor capped at the Service's max-scale 4 (log: {log})")
    assert floor <= 4
    assert kn.min_scale(kh.KN, "revisions", revision) == "4"
    kn.wait_knative_at(revision, 4)
    ready_cond = kh.condition(kube, ns, name, "Ready") or {}
    assert ready_cond.get("status") == "True", kh.status(kube, ns, name).get("conditions")


def test_knative_autoscaler_outage_mesp_holds_and_knative_catches_up(kube, knative_bed, replay, mesp_operator):
    """Knative's autoscaler (which owns the PodAutoscalers) is killed for a few operator loops; MESP
    raises its floor meanwhile. MESP's annotation moves once and does not flap; the Deployment stays
    where it was until the autoscaler returns, then reaches the new floor."""
    ns, name = REPLAYED["outage"]
    kn = Kn(kube, ns, name).create({kh.MIN_SCALE: "1"})
    revision = kn.latest()
    spec = policy(replay, service=name)
    kh.create_policy(kube, ns, name, spec)
    log = start_operator(mesp_operator, ns)
    first = wait_applied(kube, ns, name, log, above=1)
    kn.wait_knative_at(revision, first)

    knative_bed.kill("knative-autoscaler")
    try:
        with Sampler(lambda: kn.min_scale(kh.KN, "revisions", revision)) as seen:
            # Half the capacity per instance: about twice the floor, written while Knative's
            # autoscaler is away.
            kh.patch_policy_spec(kube, ns, name, {"capacityPerInstance": max(1, spec["capacityPerInstance"] // 2)})
            second = wait_applied(kube, ns, name, log, above=first, timeout=60)
            time.sleep(6)  # three more operator loops with the autoscaler still away
        assert seen.changes() == [str(first), str(second)], seen.changes()
        # The controller still carries the annotation to the PodAutoscaler; nobody scales.
        kh.wait_for(lambda: kn.min_scale(PA, "podautoscalers", revision) == str(second), 30,
                    message="the new floor on the PodAutoscaler")
        assert kn.scale(revision) == (first, first)
    finally:
        knative_bed.restart("knative-autoscaler")
    t0 = time.monotonic()
    kn.wait_knative_at(revision, second, timeout=120)
    TIMINGS["autoscaler_restart_to_new_floor_s"] = round(time.monotonic() - t0, 2)
    assert kh.status(kube, ns, name)["appliedMinScale"] == second


RELEASE_2 = [{"name": "RELEASE", "value": "2"}]  # the user's change: any template change is a rollout


def test_user_rollout_during_revision_actuation_loses_no_write(kube, replay, mesp_operator):
    """The user rolls out a new template (a new environment) while MESP holds a floor on the Revision:
    Knative makes a new Revision from the user's template; MESP moves its floor there, and the
    user's change (environment, own min-scale) stays as the user wrote it."""
    ns, name = REPLAYED["rollout"]
    kn = Kn(kube, ns, name).create({kh.MIN_SCALE: str(USER_FLOOR)})
    first = kn.latest()
    kh.create_policy(kube, ns, name, policy(replay, service=name, actuation="Revision"))
    log = start_operator(mesp_operator, ns)
    floor = wait_applied(kube, ns, name, log)
    kn.wait_knative_at(first, floor)

    t0 = time.monotonic()
    kh.custom(kube).patch_namespaced_custom_object(*kh.KN, ns, "services", name, {
        "spec": {"template": {"spec": {"containers": [{"image": image(name), "env": RELEASE_2}]}}}})
    kh.wait_for(lambda: kn.latest() not in (None, first), 60, message="the user's new Revision Ready")
    second = kn.latest()
    kh.wait_for(lambda: kn.min_scale(kh.KN, "revisions", second) == str(floor), 60,
                message=f"MESP's floor {floor} on the new Revision {second} (log: {log})")
    kn.wait_knative_at(second, floor)
    TIMINGS["rollout_to_floor_on_new_revision_pods_s"] = round(time.monotonic() - t0, 2)
    svc = kn.get(kh.KN, "services", name)
    assert svc["spec"]["template"]["spec"]["containers"][0]["env"] == RELEASE_2
    assert kh.template_min_scale(kube, ns, name) == str(USER_FLOOR)
    assert kn.revisions() == [first, second]  # only the user's rollout made a Revision
