"""Smoke scenario on real Knative Serving: a Service becomes a Revision, a PodAutoscaler and a
Deployment whose pods are Ready on a KWOK node; min-scale on the Revision (what MESP's Revision
actuation writes) moves the Deployment's replicas up and back down through Knative's own
controller and autoscaler; Knative's webhook refuses a malformed min-scale."""

from __future__ import annotations

import time

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from knative_helpers import TIMINGS, image, ready
import kube_helpers as kh  # tests/integration's, put on sys.path by knative_helpers

pytestmark = pytest.mark.knative

NS = "kn-smoke"
SERVICE = "hello"
REVISION = f"{SERVICE}-00001"
DEPLOYMENT = f"{REVISION}-deployment"
PA = ("autoscaling.internal.knative.dev", "v1alpha1")


def deployment(kube) -> client.V1Deployment | None:
    try:
        return client.AppsV1Api(kube).read_namespaced_deployment(DEPLOYMENT, NS)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def scale(kube) -> tuple[int | None, int]:
    """(spec.replicas, ready pods) of the Revision's Deployment."""
    dep = deployment(kube)
    if dep is None:
        return None, 0
    return dep.spec.replicas, dep.status.ready_replicas or 0


def patch_revision_min_scale(kube, value: str) -> None:
    kh.custom(kube).patch_namespaced_custom_object(
        *kh.KN, NS, "revisions", REVISION, {"metadata": {"annotations": {kh.MIN_SCALE: value}}})


def wait_scale(kube, replicas: int, timeout: float) -> float:
    """Seconds until spec.replicas == ready pods == `replicas`."""
    t0 = time.monotonic()
    kh.wait_for(lambda: scale(kube) == (replicas, replicas), timeout,
                message=f"Deployment {DEPLOYMENT} at {replicas} replicas, all Ready")
    return time.monotonic() - t0


@pytest.fixture(scope="module")
def hello(knative_bed, kube):
    """A Knative Service with min-scale 1, its Revision, PA and Deployment Ready."""
    kh.create(kube, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    t0 = time.monotonic()
    kh.custom(kube).create_namespaced_custom_object(*kh.KN, NS, "services", {
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": NS},
        "spec": {"template": {"metadata": {"annotations": {kh.MIN_SCALE: "1"}},
                              "spec": {"containers": [{"image": image(SERVICE)}]}}}})
    kh.wait_for(lambda: ready(_get(kube, kh.KN, "revisions", REVISION)), 120, message=f"Revision {REVISION} Ready")
    TIMINGS["service_to_ready_revision_s"] = round(time.monotonic() - t0, 2)
    return SERVICE


def _get(kube, group_version: tuple[str, str], plural: str, name: str) -> dict | None:
    try:
        return kh.custom(kube).get_namespaced_custom_object(*group_version, NS, plural, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_apiserver_version_is_stamped(knative_bed, kube):
    version = client.VersionApi(kube).get_code()
    assert version.git_version == f"v{knative_bed.kube_version}", version


def test_service_becomes_revision_podautoscaler_and_ready_pods_on_kwok(kube, hello):
    pa = kh.custom(kube).get_namespaced_custom_object(*PA, NS, "podautoscalers", REVISION)
    assert pa["metadata"]["annotations"].get(kh.MIN_SCALE) == "1"
    kh.wait_for(lambda: scale(kube) == (1, 1), 60, message="Deployment at 1 Ready replica")
    pods = client.CoreV1Api(kube).list_namespaced_pod(NS, label_selector=f"serving.knative.dev/revision={REVISION}")
    assert [p.spec.node_name for p in pods.items] == ["kwok-node-0"]
    pod = pods.items[0]
    assert pod.status.phase == "Running" and pod.status.pod_ip, pod.status
    # Knative's pod: the user's container and Knative's queue-proxy sidecar
    assert sorted(c.name for c in pod.spec.containers) == ["queue-proxy", "user-container"]
    svc = kh.get_service(kube, NS, SERVICE)
    assert svc["status"]["latestReadyRevisionName"] == REVISION


def test_revision_min_scale_moves_the_deployment_up_and_down(kube, hello):
    kh.wait_for(lambda: scale(kube) == (1, 1), 60, message="Deployment at 1 Ready replica")
    t0 = time.monotonic()
    patch_revision_min_scale(kube, "3")
    kh.wait_for(lambda: (kh.custom(kube).get_namespaced_custom_object(*PA, NS, "podautoscalers", REVISION)
                         ["metadata"]["annotations"].get(kh.MIN_SCALE) == "3"), 30,
                message="min-scale 3 propagated to the PodAutoscaler")
    TIMINGS["min_scale_1_to_3_pa_s"] = round(time.monotonic() - t0, 2)
    kh.wait_for(lambda: scale(kube)[0] == 3, 60, message="spec.replicas 3")
    TIMINGS["min_scale_1_to_3_replicas_s"] = round(time.monotonic() - t0, 2)
    wait_scale(kube, 3, 60)
    TIMINGS["min_scale_1_to_3_ready_s"] = round(time.monotonic() - t0, 2)

    # Down again: the autoscaler lowers the Deployment only on pod stats (zero load here).
    t0 = time.monotonic()
    patch_revision_min_scale(kube, "1")
    wait_scale(kube, 1, 120)
    TIMINGS["min_scale_3_to_1_s"] = round(time.monotonic() - t0, 2)


def test_webhook_rejects_malformed_min_scale(kube, hello):
    with pytest.raises(ApiException) as err:
        patch_revision_min_scale(kube, "abc")
    assert err.value.status == 400, err.value
    assert "min-scale" in err.value.body, err.value.body
    assert kh.revision_min_scale(kube, NS, REVISION) != "abc"


def test_knative_scales_on_the_load_the_pods_report(knative_bed, kube, hello):
    """The stats stand-in's load path: pods reporting 350 requests in flight (Knative's default
    target: 100 per pod at 70% utilisation) make Knative's autoscaler add pods above min-scale."""
    kh.wait_for(lambda: scale(kube) == (1, 1), 120, message="Deployment at 1 Ready replica")
    t0 = time.monotonic()
    knative_bed.set_load({f"{NS}/{REVISION}": {"concurrency": 350.0, "rps": 350.0}})
    try:
        kh.wait_for(lambda: (scale(kube)[1] or 0) >= 5, 60, message="Knative scaling out on the reported load")
        TIMINGS["reported_load_to_5_ready_s"] = round(time.monotonic() - t0, 2)
    finally:
        knative_bed.set_load({})
