"""Just enough of the Kubernetes API, in memory, for the operator's writers (KnativeClient, PolicyStore)
to run unchanged in unit tests: custom objects with JSON merge patches and resourceVersion checks,
and Events. The integration tests run the same code against a real API server."""

from __future__ import annotations

import copy

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mesp_operator import knative as kn
from mesp_operator.knative import KnativeClient
from mesp_operator.spec import GROUP, PLURAL, VERSION
from mesp_operator.store import PolicyStore


def _merge(target: dict, patch: dict) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            _merge(target.setdefault(key, {}), value)
        else:
            target[key] = copy.deepcopy(value)


class FakeCluster:
    def __init__(self):
        self.objects: dict[tuple[str, str, str], dict] = {}   # (plural, namespace, name) -> body
        self.events: list = []
        self._version = 0

    # -- what tests set up and look at ------------------------------------------------------------
    def add(self, plural: str, body: dict) -> None:
        meta = body["metadata"]
        self._version += 1
        meta["resourceVersion"] = str(self._version)
        self.objects[(plural, meta["namespace"], meta["name"])] = copy.deepcopy(body)

    def add_service(self, namespace: str, name: str, annotations: dict, ready_revision: str | None) -> None:
        self.add("services", {"metadata": {"namespace": namespace, "name": name},
                              "spec": {"template": {"metadata": {"annotations": dict(annotations)}}},
                              "status": {"latestReadyRevisionName": ready_revision}})

    def add_revision(self, namespace: str, name: str, service: str, annotations: dict) -> None:
        self.add("revisions", {"metadata": {"namespace": namespace, "name": name, "annotations": dict(annotations),
                                            "labels": {kn.SERVICE_LABEL: service}}})

    def body(self, plural: str, namespace: str, name: str) -> dict:
        return self.objects[(plural, namespace, name)]

    def revision_min_scale(self, namespace: str, name: str) -> str | None:
        return (self.body("revisions", namespace, name)["metadata"].get("annotations") or {}).get(kn.MIN_SCALE)

    def template_min_scale(self, namespace: str, name: str) -> str | None:
        return self.body("services", namespace, name)["spec"]["template"]["metadata"]["annotations"].get(kn.MIN_SCALE)

    def event_reasons(self) -> list[str]:
        return [event.reason for event in self.events]

    # -- the API the operator calls ---------------------------------------------------------------
    def get_namespaced_custom_object(self, group, version, namespace, plural, name, **_):
        try:
            return copy.deepcopy(self.objects[(plural, namespace, name)])
        except KeyError:
            raise ApiException(status=404, reason="Not Found") from None

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body, **_):
        current = self.objects.get((plural, namespace, name))
        if current is None:
            raise ApiException(status=404, reason="Not Found")
        patch = copy.deepcopy(body)
        expected = patch.get("metadata", {}).pop("resourceVersion", None)
        if expected is not None and expected != current["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        _merge(current, patch)
        self._version += 1
        current["metadata"]["resourceVersion"] = str(self._version)
        return copy.deepcopy(current)

    def patch_namespaced_custom_object_status(self, group, version, namespace, plural, name, body, **kwargs):
        return self.patch_namespaced_custom_object(group, version, namespace, plural, name, body, **kwargs)

    def create_namespaced_event(self, namespace, body, **_):
        self.events.append(body)


def clients(cluster: FakeCluster, knative_version: str = "v1.21.0") -> tuple[KnativeClient, PolicyStore]:
    """The operator's real writers, talking to `cluster`."""
    api_client = client.ApiClient(client.Configuration())
    knative, store = KnativeClient(api_client), PolicyStore(api_client)
    knative.custom = store.custom = store.core = cluster
    knative.revision_annotations_supported = lambda: (True, f"Knative {knative_version}")
    return knative, store


def policy_body(namespace: str, name: str, spec: dict, created: str = "2026-01-01T00:00:00Z") -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MespPolicy",
            "metadata": {"namespace": namespace, "name": name, "uid": f"uid-{name}", "generation": 1,
                         "creationTimestamp": created},
            "spec": spec}


def add_policy(cluster: FakeCluster, namespace: str, name: str, spec: dict) -> None:
    cluster.add(PLURAL, policy_body(namespace, name, spec))
