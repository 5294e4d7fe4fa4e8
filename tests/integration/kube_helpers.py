"""Small helpers over the kubernetes client for the integration tests (no kubectl on this machine)."""

from __future__ import annotations

import importlib.util
import math
import sys
import time
from pathlib import Path

from kubernetes import client, utils
from kubernetes.client.exceptions import ApiException

KN = ("serving.knative.dev", "v1")
MESP = ("mesp.dev", "v1alpha1")
MIN_SCALE = "autoscaling.knative.dev/min-scale"
# Services whose latency histograms the Prometheus fixture backfills: every request takes exactly
# this long (ms), so the mean over any hour with requests is this figure.
DURATIONS_MS = {("it-presets", "legacy-svc"): 250.0, ("it-forecast", "fo-svc"): 400.0,
                ("it-presets", "otel-svc"): 120.0, ("it-capacity", "timed-svc"): 300.0}


def create(api_client, doc: dict) -> None:
    """Create one object; an existing one is left as it is (session fixtures may run twice)."""
    try:
        utils.create_from_dict(api_client, doc)
    except utils.FailToCreateError as exc:
        if not all(getattr(e, "status", None) == 409 for e in exc.api_exceptions):
            raise


def wait_crds_established(api_client, names, timeout: float = 30.0) -> None:
    api = client.ApiextensionsV1Api(api_client)
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            crd = api.read_custom_resource_definition(name)
            if any(c.type == "Established" and c.status == "True" for c in (crd.status.conditions or [])):
                pending.discard(name)
        time.sleep(0.2)
    assert not pending, f"CRDs not established: {pending}"


def custom(api_client) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


def create_knative_service(api_client, namespace: str, name: str, annotations: dict | None = None,
                           container_concurrency: int | None = None, revision: str | None = None) -> dict:
    """A Knative Service plus the Revision Knative would create for it, marked ready (no Knative
    controller runs here, so the test plays its part: Revision object and Service status)."""
    revision = revision or f"{name}-00001"
    template_spec = {"containers": [{"image": "registry.example/fn:1"}]}
    if container_concurrency is not None:
        template_spec["containerConcurrency"] = container_concurrency
    template = {"metadata": {"annotations": dict(annotations or {})}, "spec": template_spec}
    api = custom(api_client)
    api.create_namespaced_custom_object(*KN, namespace, "services", {
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace}, "spec": {"template": template}})
    api.create_namespaced_custom_object(*KN, namespace, "revisions", {
        "apiVersion": "serving.knative.dev/v1", "kind": "Revision",
        "metadata": {"name": revision, "namespace": namespace, "annotations": dict(annotations or {}),
                     "labels": {"serving.knative.dev/service": name, "serving.knative.dev/configuration": name}},
        "spec": template_spec})
    ready = [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    api.patch_namespaced_custom_object_status(*KN, namespace, "revisions", revision, {"status": {"conditions": ready}})
    api.patch_namespaced_custom_object_status(*KN, namespace, "services", name, {"status": {
        "latestReadyRevisionName": revision, "latestCreatedRevisionName": revision, "conditions": ready}})
    return get_service(api_client, namespace, name)


def roll_out(api_client, namespace: str, service: str, revision: str) -> None:
    """What Knative does on a new template: a new Revision (annotations copied from the template)
    that becomes the latest ready one."""
    api = custom(api_client)
    svc = get_service(api_client, namespace, service)
    template = svc["spec"]["template"]
    api.create_namespaced_custom_object(*KN, namespace, "revisions", {
        "apiVersion": "serving.knative.dev/v1", "kind": "Revision",
        "metadata": {"name": revision, "namespace": namespace,
                     "annotations": dict((template.get("metadata") or {}).get("annotations") or {}),
                     "labels": {"serving.knative.dev/service": service,
                                "serving.knative.dev/configuration": service}},
        "spec": template["spec"]})
    api.patch_namespaced_custom_object_status(*KN, namespace, "services", service, {"status": {
        "latestReadyRevisionName": revision, "latestCreatedRevisionName": revision}})


def get_service(api_client, namespace, name) -> dict:
    return custom(api_client).get_namespaced_custom_object(*KN, namespace, "services", name)


def get_revision(api_client, namespace, name) -> dict:
    return custom(api_client).get_namespaced_custom_object(*KN, namespace, "revisions", name)


def revision_min_scale(api_client, namespace, name) -> str | None:
    return (get_revision(api_client, namespace, name)["metadata"].get("annotations") or {}).get(MIN_SCALE)


def template_min_scale(api_client, namespace, name) -> str | None:
    tmeta = get_service(api_client, namespace, name)["spec"]["template"].get("metadata") or {}
    return (tmeta.get("annotations") or {}).get(MIN_SCALE)


def create_policy(api_client, namespace: str, name: str, spec: dict) -> dict:
    return custom(api_client).create_namespaced_custom_object(*MESP, namespace, "mesppolicies", {
        "apiVersion": "mesp.dev/v1alpha1", "kind": "MespPolicy",
        "metadata": {"name": name, "namespace": namespace}, "spec": spec})


def get_policy(api_client, namespace, name) -> dict | None:
    try:
        return custom(api_client).get_namespaced_custom_object(*MESP, namespace, "mesppolicies", name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def patch_policy_spec(api_client, namespace, name, spec: dict) -> dict:
    return custom(api_client).patch_namespaced_custom_object(*MESP, namespace, "mesppolicies", name, {"spec": spec})


def delete_policy(api_client, namespace, name) -> None:
    custom(api_client).delete_namespaced_custom_object(*MESP, namespace, "mesppolicies", name)


def status(api_client, namespace, name) -> dict:
    policy = get_policy(api_client, namespace, name)
    return (policy or {}).get("status") or {}


def condition(api_client, namespace, name, type_: str) -> dict | None:
    for c in status(api_client, namespace, name).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def events(api_client, namespace, involved_name: str | None = None) -> list:
    items = client.CoreV1Api(api_client).list_namespaced_event(namespace).items
    return [e for e in items if involved_name is None or e.involved_object.name == involved_name]


def event_reasons(api_client, namespace, involved_name: str) -> list[str]:
    return [e.reason for e in events(api_client, namespace, involved_name)]


REPO = Path(__file__).resolve().parents[2]


def _load_control_plane_module():
    spec = importlib.util.spec_from_file_location("mesp_control_plane", REPO / "hack" / "control-plane.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["mesp_control_plane"] = module
    spec.loader.exec_module(module)
    return module


control_plane_module = _load_control_plane_module()


class SimClock:
    """Simulated wall clock: starts at `start` and runs `speed` times faster than real time."""

    def __init__(self, start: float, speed: float):
        self.start, self.speed = float(start), float(speed)
        self.real0 = time.monotonic()

    def __call__(self) -> float:
        return self.start + (time.monotonic() - self.real0) * self.speed

    def sleep_until(self, sim_time: float) -> None:
        delay = (sim_time - self()) / self.speed
        if delay > 0:
            time.sleep(delay)


def wait_for(predicate, timeout: float, interval: float = 0.2, message: str = "condition"):
    """Poll until predicate() is truthy; return its value or fail with `message`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message} (last: {last!r})")


def instances(count_per_minute: float, capacity: float) -> int:
    return int(math.ceil(count_per_minute / capacity))
