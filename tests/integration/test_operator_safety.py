"""Safety on a real API server: restore on delete/Off, Prometheus outage, malformed policies."""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

import kube_helpers as kh
from kube_helpers import SimClock, wait_for

pytestmark = pytest.mark.integration

ORIGINAL = "mesp.dev/original-min-scale"
FINALIZER = "mesp.dev/restore-min-scale"


def test_delete_and_off_give_back_the_users_own_min_scale(admin_client, make_namespace, run_operator, history):
    ns = make_namespace("it-restore")
    kh.create_knative_service(admin_client, ns, "with-floor", annotations={kh.MIN_SCALE: "2"})
    kh.create_knative_service(admin_client, ns, "no-floor")
    for name in ("with-floor", "no-floor"):
        kh.create_policy(admin_client, ns, name, {"service": name, "mode": "Active", "actuation": "Revision",
                                                  "capacityPerInstance": 50})
    clock = SimClock(start=history.peak_time("a") - 20 * 60, speed=60)
    run_operator(ns, clock=clock)

    wait_for(lambda: int(kh.revision_min_scale(admin_client, ns, "with-floor-00001") or 0) > 2, 60,
             message="with-floor raised above the user's 2")
    wait_for(lambda: kh.revision_min_scale(admin_client, ns, "no-floor-00001") is not None, 60,
             message="no-floor given a min-scale")
    wait_for(lambda: kh.status(admin_client, ns, "with-floor").get("appliedMinScale"), 30, message="status written")
    policy = kh.get_policy(admin_client, ns, "with-floor")
    assert FINALIZER in policy["metadata"]["finalizers"]
    assert '"value": "2"' in policy["metadata"]["annotations"][ORIGINAL]
    assert policy["status"]["originalMinScale"] == "2" and policy["status"]["userFloor"] == 2

    # Deleting the policy gives the Revision its own value back, then the finalizer lets go.
    kh.delete_policy(admin_client, ns, "with-floor")
    wait_for(lambda: kh.get_policy(admin_client, ns, "with-floor") is None, 60, message="policy deleted")
    assert kh.revision_min_scale(admin_client, ns, "with-floor-00001") == "2"

    # Mode Off removes what MESP added (there was no annotation before) and keeps the policy.
    kh.patch_policy_spec(admin_client, ns, "no-floor", {"mode": "Off"})
    wait_for(lambda: kh.revision_min_scale(admin_client, ns, "no-floor-00001") is None, 60,
             message="no-floor annotation removed")
    wait_for(lambda: (kh.condition(admin_client, ns, "no-floor", "Ready") or {}).get("reason") == "Off", 30,
             message="Ready reason Off")
    policy = kh.get_policy(admin_client, ns, "no-floor")
    assert ORIGINAL not in (policy["metadata"].get("annotations") or {})
    assert policy["status"].get("appliedMinScale") is None
    assert "MinScaleRestored" in kh.event_reasons(admin_client, ns, "no-floor")
    clock.sleep_until(clock() + 5 * 60)  # several more loops: Off stays off
    assert kh.revision_min_scale(admin_client, ns, "no-floor-00001") is None
    revision = kh.get_revision(admin_client, ns, "no-floor-00001")
    assert not revision["metadata"].get("annotations") and not revision["metadata"].get("finalizers")


def test_prometheus_outage_holds_the_plan_then_falls_back_and_recovers(
        admin_client, make_namespace, run_operator, history, control_plane):
    ns = make_namespace("it-outage")
    kh.create_knative_service(admin_client, ns, "outage-svc", annotations={kh.MIN_SCALE: "1"})
    kh.create_policy(admin_client, ns, "outage", {"service": "outage-svc", "mode": "Active", "actuation": "Revision",
                                                  "capacityPerInstance": 100, "horizonMinutes": 60})
    stale_minutes = 8
    clock = SimClock(start=history.peak_time("a") - 25 * 60, speed=60)
    run_operator(ns, clock=clock, stale_plan_seconds=stale_minutes * 60.0, prometheus_timeout_seconds=1.0)
    status = lambda: kh.status(admin_client, ns, "outage")  # noqa: E731
    wait_for(lambda: status().get("planSource") == "fresh" and (status().get("appliedMinScale") or 0) >= 3, 60,
             message="a fresh plan above the floor")
    try:
        control_plane.stop_prometheus(kill=True)
        killed_at = clock()
        held = wait_for(lambda: status() if status().get("planSource") == "held" else None, 30,
                        message="plan held while Prometheus is down")
        metrics_condition = kh.condition(admin_client, ns, "outage", "MetricsAvailable")
        assert metrics_condition["status"] == "False" and metrics_condition["reason"] == "PrometheusUnavailable"
        assert held["appliedMinScale"] >= 2, held  # still the plan, not the floor
        wait_for(lambda: status().get("planSource") == "floor", 60, message="fallback to the user's floor")
        assert clock() - killed_at >= stale_minutes * 60 - 60
        wait_for(lambda: kh.revision_min_scale(admin_client, ns, "outage-svc-00001") == "1", 30,
                 message="Revision back at the user's floor")
        assert "PrometheusUnavailable" in kh.event_reasons(admin_client, ns, "outage")
    finally:
        if "prometheus" not in control_plane.processes:
            control_plane.start_prometheus()
    wait_for(lambda: status().get("planSource") == "fresh", 60, message="recovery after Prometheus returns")
    assert kh.condition(admin_client, ns, "outage", "MetricsAvailable")["status"] == "True"
    wait_for(lambda: "MetricsAvailableRecovered" in kh.event_reasons(admin_client, ns, "outage"), 20,
             message="recovery Event")


@pytest.mark.parametrize("spec,field", [
    ({"mode": "Active"}, "spec.service"),
    ({"service": "good-svc", "mode": "Sometimes"}, "spec.mode"),
    ({"service": "good-svc", "quantile": 1.5}, "spec.quantile"),
    ({"service": "good-svc", "minScale": 5, "maxScale": 2}, "minScale must not exceed maxScale"),
    ({"service": "Not_A_Name"}, "spec.service"),
    ({"service": "good-svc", "horizonMinutes": 0}, "spec.horizonMinutes"),
    ({"service": "good-svc", "actuation": "Pods"}, "spec.actuation"),
])
def test_schema_rejects_malformed_policies(admin_client, make_namespace, spec, field):
    ns = make_namespace("it-bad")
    with pytest.raises(ApiException) as info:
        kh.create_policy(admin_client, ns, "rejected", spec)
    assert info.value.status == 422 and field in info.value.body


def test_bad_policies_are_reported_and_good_ones_keep_working(admin_client, make_namespace, run_operator, history):
    ns = make_namespace("it-bad")
    kh.create_knative_service(admin_client, ns, "good-svc")
    kh.create_knative_service(admin_client, ns, "override-svc")
    good_query = ('sum(increase(revision_request_count{namespace_name="$namespace",'
                  'service_name="$service"}[1m]))')
    policies = {
        "missing-service": {"service": "does-not-exist", "mode": "Active"},
        "bad-promql": {"service": "override-svc", "mode": "Active", "promql": "sum(rate(revision_request_count[1m]"},
        "bad-placeholder": {"service": "override-svc", "mode": "Active", "promql": 'sum(x{a="$nope"})'},
        "good": {"service": "good-svc", "mode": "ForecastOnly", "horizonMinutes": 15},
        "good-override": {"service": "override-svc", "mode": "Active", "actuation": "Revision",
                          "capacityPerInstance": 100, "promql": good_query},
    }
    for name, spec in policies.items():
        kh.create_policy(admin_client, ns, name, spec)
    clock = SimClock(start=history.peak_time("b") - 10 * 60, speed=60)
    run_operator(ns, clock=clock)

    def ready(name):
        return kh.condition(admin_client, ns, name, "Ready") or {}

    wait_for(lambda: ready("good").get("status") == "True", 60, message="good policy planned")
    wait_for(lambda: kh.status(admin_client, ns, "good-override").get("appliedMinScale"), 60,
             message="good override policy actuated")
    assert ready("missing-service")["reason"] == "ServiceNotFound"
    assert ready("bad-promql")["reason"] == "InvalidSpec" and "PromQL" in ready("bad-promql")["message"]
    assert ready("bad-placeholder")["reason"] == "InvalidSpec" and "$namespace" in ready("bad-placeholder")["message"]
    assert len(kh.status(admin_client, ns, "good")["plan"]) == 15
    assert "InvalidSpec" in kh.event_reasons(admin_client, ns, "bad-promql")
    # The bad ones touched nothing; the override policy's counts came from its own query.
    assert kh.revision_min_scale(admin_client, ns, "good-svc-00001") is None
    assert int(kh.revision_min_scale(admin_client, ns, "override-svc-00001")) >= 1


def test_a_new_ready_revision_takes_over_and_the_old_one_gets_its_value_back(
        admin_client, make_namespace, run_operator, history):
    ns = make_namespace("it-rollout")
    kh.create_knative_service(admin_client, ns, "roll-svc", annotations={kh.MIN_SCALE: "1"})
    kh.create_policy(admin_client, ns, "roll", {"service": "roll-svc", "mode": "Active", "actuation": "Revision",
                                                "capacityPerInstance": 50})
    run_operator(ns, clock=SimClock(start=history.peak_time("a") - 20 * 60, speed=60))
    wait_for(lambda: int(kh.revision_min_scale(admin_client, ns, "roll-svc-00001") or 0) > 1, 60,
             message="first Revision raised")
    kh.roll_out(admin_client, ns, "roll-svc", "roll-svc-00002")
    wait_for(lambda: int(kh.revision_min_scale(admin_client, ns, "roll-svc-00002") or 0) > 1, 60,
             message="new Revision raised")
    wait_for(lambda: kh.revision_min_scale(admin_client, ns, "roll-svc-00001") == "1", 30,
             message="old Revision back at its own value")
    record = kh.get_policy(admin_client, ns, "roll")["metadata"]["annotations"][ORIGINAL]
    assert '"name": "roll-svc-00002"' in record and '"value": "1"' in record
    st = kh.status(admin_client, ns, "roll")
    assert st["actuation"] == "Revision" and st["actuationReason"] == "spec.actuation is Revision"


def test_auto_reads_the_installed_knatives_release_label_and_says_why(
        admin_client, make_namespace, run_operator, history):
    """Auto decides from the Revision CRD's version label: a release >= 1.21 is the Revision path; the
    'devel' of CRDs taken from Knative's source (../shared/knative) is decided as unknown on purpose,
    the Template path, which works on every Knative, and the status says so."""
    ns = make_namespace("it-auto")
    kh.create_knative_service(admin_client, ns, "auto-svc", annotations={kh.MIN_SCALE: "1"})
    kh.create_policy(admin_client, ns, "auto", {"service": "auto-svc", "mode": "Active", "capacityPerInstance": 1e8})
    run_operator(ns, clock=SimClock(start=history.peak_time("a") - 30 * 60, speed=60))
    st = wait_for(lambda: kh.status(admin_client, ns, "auto") if kh.status(admin_client, ns, "auto").get("actuation")
                  else None, 60, message="an actuation in status")
    crd = client.ApiextensionsV1Api(admin_client).read_custom_resource_definition("revisions.serving.knative.dev")
    label = (crd.metadata.labels or {}).get("app.kubernetes.io/version")
    if label == "devel":
        assert st["actuation"] == "Template", st
        assert st["actuationReason"].startswith("Auto: Knative 'devel' (installed from source, release unknown)")
    else:
        assert st["actuation"] == "Revision" and st["actuationReason"].startswith(f"Auto: Knative {label}"), st


def test_capacity_from_the_measured_request_duration(admin_client, make_namespace, run_operator, history):
    """Without capacityPerInstance, capacity comes from Knative's concurrency and the mean request
    duration Prometheus measured over the last hour; a requestDurationMs in the spec wins over it."""
    ns = make_namespace("it-capacity")
    kh.create_knative_service(admin_client, ns, "timed-svc", container_concurrency=2)
    kh.create_knative_service(admin_client, ns, "declared-svc", container_concurrency=2)
    kh.create_policy(admin_client, ns, "timed", {"service": "timed-svc", "horizonMinutes": 10})
    kh.create_policy(admin_client, ns, "declared", {"service": "declared-svc", "horizonMinutes": 10,
                                                    "requestDurationMs": 500})
    run_operator(ns, clock=SimClock(start=history.peak_time("a"), speed=60))

    def status_of(name):
        st = kh.status(admin_client, ns, name)
        return st if st.get("capacitySource") else None

    timed = wait_for(lambda: status_of("timed"), 60, message="timed: capacity in status")
    assert timed["capacitySource"] == "measuredDuration"
    assert timed["requestDurationMs"] == pytest.approx(kh.DURATIONS_MS[(ns, "timed-svc")], rel=1e-3)
    assert timed["capacityPerInstance"] == pytest.approx(2 * 0.7 * 60_000 / 300.0, rel=1e-3)
    declared = wait_for(lambda: status_of("declared"), 60, message="declared: capacity in status")
    assert declared["capacitySource"] == "requestDurationMs" and declared["requestDurationMs"] == 500
    assert declared["capacityPerInstance"] == pytest.approx(2 * 0.7 * 60_000 / 500.0)


def floor_only_policy(admin_client, ns, run_operator, history, users_value: int) -> SimClock:
    """Service "svc" with the user's min-scale and an Active policy whose capacity no traffic reaches
    (so the plan is the user's floor), running until MESP has applied that value."""
    kh.create_knative_service(admin_client, ns, "svc", annotations={kh.MIN_SCALE: str(users_value)})
    kh.create_policy(admin_client, ns, "svc", {"service": "svc", "mode": "Active", "actuation": "Revision",
                                               "capacityPerInstance": 1e8})
    clock = SimClock(start=history.peak_time("a") - 30 * 60, speed=60)
    run_operator(ns, clock=clock)
    wait_for(lambda: kh.status(admin_client, ns, "svc").get("appliedMinScale") == users_value, 60,
             message=f"MESP applied {users_value}")
    return clock


def test_the_users_new_min_scale_is_the_floor_at_once_and_an_invalid_spec_gives_it_back(
        admin_client, make_namespace, run_operator, history):
    ns = make_namespace("it-user-change")
    clock = floor_only_policy(admin_client, ns, run_operator, history, users_value=1)

    # The user raises min-scale on the Revision by hand: from the loop that sees it, that is the floor.
    kh.custom(admin_client).patch_namespaced_custom_object(
        "serving.knative.dev", "v1", ns, "revisions", "svc-00001", {"metadata": {"annotations": {kh.MIN_SCALE: "4"}}})
    wait_for(lambda: kh.status(admin_client, ns, "svc").get("userFloor") == 4, 60, message="user's 4 taken as floor")
    clock.sleep_until(clock() + 3 * 60)
    assert kh.revision_min_scale(admin_client, ns, "svc-00001") == "4"
    lowered = [e.message for e in kh.events(admin_client, ns, "svc")
               if e.reason == "MinScaleSet" and "min-scale 4 ->" in e.message]
    assert not lowered, lowered  # never written below the user's new value, not even for one loop
    assert kh.status(admin_client, ns, "svc")["originalMinScale"] == "4"

    # The policy's own floor lifts it; then the spec turns invalid (passes the schema, not the
    # operator): with no valid policy, the user's 4 is put back instead of MESP's 7 staying.
    kh.patch_policy_spec(admin_client, ns, "svc", {"minScale": 7})
    wait_for(lambda: kh.revision_min_scale(admin_client, ns, "svc-00001") == "7", 60, message="policy floor 7 applied")
    kh.patch_policy_spec(admin_client, ns, "svc", {"promql": 'sum(x{service="$svc"})'})
    wait_for(lambda: (kh.condition(admin_client, ns, "svc", "Ready") or {}).get("reason") == "InvalidSpec", 60,
             message="InvalidSpec reported")
    wait_for(lambda: kh.revision_min_scale(admin_client, ns, "svc-00001") == "4", 60, message="user's 4 restored")
    assert ORIGINAL not in (kh.get_policy(admin_client, ns, "svc")["metadata"].get("annotations") or {})


def test_the_services_own_max_scale_caps_a_larger_policy_max_scale(admin_client, make_namespace, run_operator, history):
    ns = make_namespace("it-cap")
    kh.create_knative_service(admin_client, ns, "capped-svc", annotations={"autoscaling.knative.dev/max-scale": "3"})
    # Any traffic asks for far more than 3 instances at this capacity.
    kh.create_policy(admin_client, ns, "capped-svc", {"service": "capped-svc", "mode": "Active",
                                                      "actuation": "Revision", "capacityPerInstance": 0.01,
                                                      "maxScale": 20})
    clock = SimClock(start=history.peak_time("a") - 10 * 60, speed=60)
    run_operator(ns, clock=clock)
    wait_for(lambda: kh.status(admin_client, ns, "capped-svc").get("appliedMinScale") is not None, 60, message="applied")
    st = kh.status(admin_client, ns, "capped-svc")
    assert st["maxScale"] == 3 and st["appliedMinScale"] == 3, st
    assert kh.revision_min_scale(admin_client, ns, "capped-svc-00001") == "3"


def test_two_active_policies_on_one_service_the_older_one_writes(admin_client, make_namespace, run_operator, history):
    ns = make_namespace("it-duplicate")
    kh.create_knative_service(admin_client, ns, "shared-svc", annotations={kh.MIN_SCALE: "1"})
    spec = {"service": "shared-svc", "mode": "Active", "actuation": "Revision", "capacityPerInstance": 1e8}
    kh.create_policy(admin_client, ns, "first", {**spec, "minScale": 3})
    kh.create_policy(admin_client, ns, "second", {**spec, "minScale": 5})
    clock = SimClock(start=history.peak_time("a") - 30 * 60, speed=60)
    run_operator(ns, clock=clock)

    wait_for(lambda: (kh.condition(admin_client, ns, "second", "Ready") or {}).get("reason") == "DuplicateTarget", 60,
             message="second told it is a duplicate")
    wait_for(lambda: kh.revision_min_scale(admin_client, ns, "shared-svc-00001") == "3", 60, message="first applied 3")
    clock.sleep_until(clock() + 4 * 60)  # several loops: no flip-flop between the two floors
    seen = [e.message for e in kh.events(admin_client, ns) if e.reason == "MinScaleSet"]
    assert kh.revision_min_scale(admin_client, ns, "shared-svc-00001") == "3" and len(seen) == 1, seen
    assert "first" in kh.condition(admin_client, ns, "second", "Ready")["message"]
    assert kh.status(admin_client, ns, "second").get("appliedMinScale") is None

    # The older one goes (and gives back the user's 1); the other one takes over with its own floor.
    kh.delete_policy(admin_client, ns, "first")
    wait_for(lambda: kh.revision_min_scale(admin_client, ns, "shared-svc-00001") == "5", 60, message="second applied 5")
    assert '"value": "1"' in kh.get_policy(admin_client, ns, "second")["metadata"]["annotations"][ORIGINAL]


def test_a_hand_edited_original_record_is_reported_and_replaced(admin_client, make_namespace, run_operator, history):
    ns = make_namespace("it-record")
    floor_only_policy(admin_client, ns, run_operator, history, users_value=2)
    kh.custom(admin_client).patch_namespaced_custom_object(
        "mesp.dev", "v1alpha1", ns, "mesppolicies", "svc", {"metadata": {"annotations": {ORIGINAL: "{broken"}}})
    wait_for(lambda: "OriginalRecordUnreadable" in kh.event_reasons(admin_client, ns, "svc"), 60,
             message="unreadable record reported")
    wait_for(lambda: '"value": "2"' in kh.get_policy(admin_client, ns, "svc")["metadata"]["annotations"][ORIGINAL],
             30, message="record rewritten")
