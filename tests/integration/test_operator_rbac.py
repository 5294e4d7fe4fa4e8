"""The chart's RBAC, impersonating the operator's ServiceAccount: what it needs is allowed, nothing more.

(Every scenario test also runs the operator itself under this identity, with these rules.)
"""

from __future__ import annotations

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

import kube_helpers as kh

pytestmark = pytest.mark.integration

NEEDED = [
    ("mesp.dev", "mesppolicies", "", v) for v in ("get", "list", "watch", "patch")
] + [
    ("mesp.dev", "mesppolicies", "status", v) for v in ("get", "patch")
] + [
    ("serving.knative.dev", r, "", v) for r in ("services", "revisions") for v in ("get", "list", "watch", "patch")
] + [
    ("", "events", "", "create"),
]
FORBIDDEN = [
    ("serving.knative.dev", "services", "", "delete"),
    ("serving.knative.dev", "services", "", "create"),
    ("serving.knative.dev", "revisions", "", "delete"),
    ("serving.knative.dev", "services", "", "update"),
    ("serving.knative.dev", "configurations", "", "patch"),
    ("serving.knative.dev", "routes", "", "get"),
    ("mesp.dev", "mesppolicies", "", "create"),
    ("mesp.dev", "mesppolicies", "", "delete"),
    ("", "secrets", "", "get"),
    ("", "configmaps", "", "list"),
    ("", "pods", "", "list"),
    ("", "namespaces", "", "list"),
    ("", "events", "", "delete"),
    ("apps", "deployments", "", "patch"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "", "create"),
    ("rbac.authorization.k8s.io", "clusterroles", "", "bind"),
    ("", "users", "", "impersonate"),
]


@pytest.fixture(scope="module")
def as_operator(control_plane, chart_rbac):
    """An admin client that impersonates the operator's ServiceAccount on every request."""
    api = config.new_client_from_config(str(control_plane.admin_kubeconfig))
    api.set_default_header("Impersonate-User", control_plane.operator_user)
    yield api
    api.close()


def allowed(api, group, resource, subresource, verb, name=None, namespace="default") -> bool:
    review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
        resource_attributes=client.V1ResourceAttributes(group=group, resource=resource, subresource=subresource,
                                                        verb=verb, name=name, namespace=namespace)))
    return client.AuthorizationV1Api(api).create_self_subject_access_review(review).status.allowed


@pytest.mark.parametrize("group,resource,subresource,verb", NEEDED)
def test_what_the_operator_needs_is_allowed(as_operator, group, resource, subresource, verb):
    assert allowed(as_operator, group, resource, subresource, verb)


@pytest.mark.parametrize("group,resource,subresource,verb", FORBIDDEN)
def test_nothing_more_is_allowed(as_operator, group, resource, subresource, verb):
    assert not allowed(as_operator, group, resource, subresource, verb)


def test_crd_read_is_limited_to_the_revision_crd(as_operator, crds):
    api = client.ApiextensionsV1Api(as_operator)
    assert api.read_custom_resource_definition("revisions.serving.knative.dev").metadata.name
    with pytest.raises(ApiException) as info:
        api.read_custom_resource_definition("mesppolicies.mesp.dev")
    assert info.value.status == 403


def test_real_calls_under_the_service_account(as_operator, admin_client, make_namespace):
    ns = make_namespace("it-rbac")
    kh.create_knative_service(admin_client, ns, "rbac-svc")
    api = client.CustomObjectsApi(as_operator)
    api.patch_namespaced_custom_object(*kh.KN, ns, "revisions", "rbac-svc-00001",
                                       {"metadata": {"annotations": {kh.MIN_SCALE: "2"}}})
    assert kh.revision_min_scale(admin_client, ns, "rbac-svc-00001") == "2"
    with pytest.raises(ApiException) as info:
        api.delete_namespaced_custom_object(*kh.KN, ns, "revisions", "rbac-svc-00001")
    assert info.value.status == 403
    with pytest.raises(ApiException) as info:
        client.CoreV1Api(as_operator).list_namespaced_secret(ns)
    assert info.value.status == 403
