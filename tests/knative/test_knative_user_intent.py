"""The user's own settings on real Knative Serving: MESP's floor never goes below the user's
min-scale, keeps the user's spelling of it, stays within the bounds Knative's webhook enforces, and
a write the webhook refuses because of one of the user's annotations is reported, then made once
the cluster accepts it (issue 15)."""

from __future__ import annotations

import contextlib

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from knative_helpers import (ACTIVATION_SCALE, INITIAL_SCALE, MIN_SCALE_LEGACY, REPLAYED, Kn, Sampler, policy,
                             start_operator, wait_applied)
import kube_helpers as kh  # tests/integration's, put on sys.path by knative_helpers

pytestmark = pytest.mark.knative

KNATIVE_NAMESPACE = "knative-serving"


def test_the_users_rollout_above_mesps_floor_is_never_written_below(kube, replay, mesp_operator):
    """While MESP holds a floor on the Revision, the user rolls out a min-scale above it: Knative
    makes a new Revision with the user's value; MESP never writes below it (not for one loop), the
    old Revision gets its own value back, and deleting the policy leaves the user's value, which
    Knative's PodAutoscaler and Deployment hold."""
    ns, name = REPLAYED["user-floor"]
    kn = Kn(kube, ns, name).create({kh.MIN_SCALE: "3"})
    first = kn.latest()
    kh.create_policy(kube, ns, name, policy(replay, service=name, actuation="Revision"))
    log = start_operator(mesp_operator, ns)
    floor = wait_applied(kube, ns, name, log, above=3)
    kn.wait_knative_at(first, floor)

    high = max(floor, kh.status(kube, ns, name)["plan"][0]) + 8  # above anything MESP plans now
    with Sampler(lambda: (kn.latest(), kn.min_scale(kh.KN, "revisions", kn.latest() or "-"))) as seen:
        kh.custom(kube).patch_namespaced_custom_object(*kh.KN, ns, "services", name, {
            "spec": {"template": {"metadata": {"annotations": {kh.MIN_SCALE: str(high)}}}}})
        kh.wait_for(lambda: kn.latest() not in (None, first), 60, message="the user's new Revision Ready")
        second = kn.latest()
        kh.wait_for(lambda: kh.status(kube, ns, name).get("userFloor") == high, 60,
                    message=f"the user's {high} as MESP's floor (log: {log})")
        kn.wait_knative_at(second, high)
    on_second = {value for revision, value in seen.values if revision == second}
    assert on_second == {str(high)}, f"min-scale on {second} went below the user's {high}: {seen.changes()}"
    assert kh.status(kube, ns, name)["appliedMinScale"] >= high
    kh.wait_for(lambda: kn.min_scale(kh.KN, "revisions", first) == "3", 60, message="the old Revision's own 3 back")

    kh.delete_policy(kube, ns, name)
    kh.wait_for(lambda: kh.get_policy(kube, ns, name) is None, 60, message="policy deleted (restore done)")
    assert kn.min_scale(kh.KN, "revisions", second) == str(high)
    kn.wait_knative_at(second, high)


def test_the_users_legacy_spelling_is_kept_and_knatives_webhook_accepts_it(kube, replay, mesp_operator):
    """The user writes min-scale as `minScale` (Knative still accepts it, and refuses both spellings
    at once): MESP writes that key, Knative's webhook accepts every write, its PodAutoscaler and
    Deployment follow, and deleting the policy gives the user's value back under the same key."""
    ns, name = REPLAYED["legacy-key"]
    kn = Kn(kube, ns, name).create({MIN_SCALE_LEGACY: "2"})
    revision = kn.latest()
    kh.create_policy(kube, ns, name, policy(replay, service=name, actuation="Revision"))
    log = start_operator(mesp_operator, ns)
    floor = wait_applied(kube, ns, name, log, above=2)
    annotations = kn.annotations(kh.KN, "revisions", revision)
    assert annotations.get(MIN_SCALE_LEGACY) == str(floor) and kh.MIN_SCALE not in annotations, annotations
    kn.wait_knative_at(revision, floor, key=MIN_SCALE_LEGACY)
    assert (kh.condition(kube, ns, name, "Actuated") or {}).get("status") == "True"

    kh.delete_policy(kube, ns, name)
    kh.wait_for(lambda: kn.min_scale(kh.KN, "revisions", revision, MIN_SCALE_LEGACY) == "2", 60,
                message=f"the user's minScale 2 back (log: {log})")
    assert kh.MIN_SCALE not in kn.annotations(kh.KN, "revisions", revision)
    kn.wait_knative_at(revision, 2, timeout=120, key=MIN_SCALE_LEGACY)


def test_the_users_activation_scale_caps_the_floor_instead_of_a_refused_write(kube, replay, mesp_operator):
    """Knative's webhook refuses a min-scale above the Revision's activation-scale (a bound the
    operator did not know before it ran on real Knative: every write was refused). MESP now caps its
    floor there, says so, and Knative scales to it."""
    ns, name = REPLAYED["activation"]
    kn = Kn(kube, ns, name).create({kh.MIN_SCALE: "1", ACTIVATION_SCALE: "3"})
    revision = kn.latest()
    kh.create_policy(kube, ns, name, policy(replay, service=name, actuation="Revision"))
    log = start_operator(mesp_operator, ns)
    assert wait_applied(kube, ns, name, log, above=1) == 3
    st = kh.status(kube, ns, name)
    assert st["maxScale"] == 3, st
    actuated = kh.condition(kube, ns, name, "Actuated")
    assert actuated["status"] == "True" and "activation-scale 3" in actuated["message"], actuated
    assert kh.condition(kube, ns, name, "Ready")["status"] == "True"
    kn.wait_knative_at(revision, 3)


@contextlib.contextmanager
def autoscaler_config(kube, **data: str | None):
    """Knative's config-autoscaler with `data` changed (keys with underscores for dashes), put back
    as it was afterwards."""
    core = client.CoreV1Api(kube)
    before = core.read_namespaced_config_map("config-autoscaler", KNATIVE_NAMESPACE).data or {}
    changes = {key.replace("_", "-"): value for key, value in data.items()}
    core.patch_namespaced_config_map("config-autoscaler", KNATIVE_NAMESPACE, {"data": changes})
    try:
        yield
    finally:
        core.patch_namespaced_config_map("config-autoscaler", KNATIVE_NAMESPACE,
                                         {"data": {key: before.get(key) for key in changes}})


def webhook_refuses_a_write(kube, kn: Kn, revision: str) -> bool:
    """Whether Knative's webhook (with the configuration it has loaded) refuses a min-scale write on
    the Revision, asked with a dry run."""
    try:
        kh.custom(kube).patch_namespaced_custom_object(
            *kh.KN, kn.ns, "revisions", revision, {"metadata": {"annotations": {kh.MIN_SCALE: "2"}}}, dry_run="All")
    except ApiException as exc:
        if exc.status in (400, 422):
            return True
        raise
    return False


def test_a_write_refused_for_the_users_own_annotation_is_reported_and_made_once_allowed(
        kube, replay, mesp_operator):
    """The user's Service asks for initial-scale 0, which the cluster allowed when it was created;
    then the admin disallows it. Knative's webhook now refuses every update of that Revision, MESP's
    min-scale too: MESP says why in its status (Actuated=False with the webhook's message), writes
    nothing else, and makes the write on the first loop after the cluster allows it again."""
    ns, name = REPLAYED["refused"]
    with autoscaler_config(kube, allow_zero_initial_scale="true"):
        kn = Kn(kube, ns, name).create({kh.MIN_SCALE: "1", INITIAL_SCALE: "0"})
        revision = kn.latest()
        with autoscaler_config(kube, allow_zero_initial_scale="false"):
            kh.wait_for(lambda: webhook_refuses_a_write(kube, kn, revision), 30,
                        message="Knative's webhook refusing the Revision's initial-scale 0")
            kh.create_policy(kube, ns, name, policy(replay, service=name, actuation="Revision"))
            log = start_operator(mesp_operator, ns)

            def refused():
                actuated = kh.condition(kube, ns, name, "Actuated") or {}
                return actuated if actuated.get("status") == "False" else None

            actuated = kh.wait_for(refused, 120, interval=0.5, message=f"Actuated=False in status (log: {log})")
            assert "initial-scale" in actuated["message"], actuated
            assert kh.condition(kube, ns, name, "Ready")["reason"] == "ActuationFailed"
            assert kn.min_scale(kh.KN, "revisions", revision) == "1"
        # Allowed again: the next loop's write goes through, and Knative scales to it.
        kh.wait_for(lambda: not webhook_refuses_a_write(kube, kn, revision), 30, message="webhook accepting again")
        floor = wait_applied(kube, ns, name, log, above=1, timeout=60)
        assert kn.min_scale(kh.KN, "revisions", revision) == str(floor)
        kn.wait_knative_at(revision, floor)
        assert (kh.condition(kube, ns, name, "Actuated") or {}).get("status") == "True"
        kh.delete_policy(kube, ns, name)  # while the cluster still accepts the restore
        kh.wait_for(lambda: kh.get_policy(kube, ns, name) is None, 60, message="policy deleted (restore done)")
        assert kn.min_scale(kh.KN, "revisions", revision) == "1"
    kn.wait_knative_at(revision, 1, timeout=120)
