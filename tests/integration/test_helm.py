"""The chart against the real kube-apiserver (+ etcd) that tests/integration/conftest.py starts on 127.0.0.1:
`helm install/upgrade/uninstall` with the pinned helm, and a strict server-side dry-run of every object
the chart and manifests/ can produce (schema, defaulting, admission, Pod Security "restricted").

There is no kubelet or controller-manager, so Pods never start and `helm test` cannot run here; the
test Pod is dry-run instead (hack/e2e-kind.sh runs `helm test` on kind).
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "mesp"
MANIFESTS = REPO / "manifests"


# Only so ServiceMonitor objects can be dry-run: the Prometheus Operator's CRD is not vendored, so this
# stand-in accepts any spec. The apiserver still checks apiVersion, kind, metadata and namespace.
SERVICE_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {"kind": "ServiceMonitor", "listKind": "ServiceMonitorList", "plural": "servicemonitors",
                  "singular": "servicemonitor"},
        "versions": [{"name": "v1", "served": True, "storage": True,
                      "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
    },
}


class ApiError(AssertionError):
    pass


class Api:
    """Minimal JSON client for the test apiserver (admin token), with discovery of resource paths."""

    def __init__(self, base_url: str, token: str, ca_file: Path):
        self.base = base_url
        self.token = token
        self.ctx = ssl.create_default_context(cafile=str(ca_file))
        self._discovery: dict[str, list[dict]] = {}

    def request(self, method: str, path: str, body: dict | None = None, query: dict | None = None):
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"{}"), resp.headers.get_all("Warning") or []
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}"), err.headers.get_all("Warning") or []

    def _resources(self, api_version: str, refresh: bool = False) -> list[dict]:
        if refresh or api_version not in self._discovery:
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            status, body, _ = self.request("GET", path)
            self._discovery[api_version] = body.get("resources", []) if status == 200 else []
        return self._discovery[api_version]

    def path(self, api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
        for refresh in (False, True):  # CRDs created meanwhile are only in a fresh discovery
            found = [r for r in self._resources(api_version, refresh) if r["kind"] == kind and "/" not in r["name"]]
            if found:
                break
        else:
            raise ApiError(f"{api_version} {kind} is not served by the apiserver")
        resource = found[0]
        prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        if resource["namespaced"]:
            assert namespace, f"{kind} is namespaced but has no namespace"
            prefix += f"/namespaces/{namespace}"
        return f"{prefix}/{resource['name']}" + (f"/{name}" if name else "")

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None):
        status, body, _ = self.request("GET", self.path(api_version, kind, namespace, name))
        return body if status == 200 else None

    def apply(self, obj: dict) -> None:
        """Create for real (tolerating AlreadyExists): namespaces and fixture CRDs."""
        status, body, _ = self.request("POST", self.path(obj["apiVersion"], obj["kind"], obj["metadata"].get("namespace")), obj)
        if status not in (200, 201, 409):
            raise ApiError(f"creating {obj['kind']} {obj['metadata']['name']}: {status} {body.get('message')}")

    def dry_run(self, obj: dict, namespace: str | None = None) -> list[str]:
        """Server-side dry-run with strict field validation; returns the apiserver's warnings."""
        ns = obj["metadata"].get("namespace") or namespace
        query = {"dryRun": "All", "fieldValidation": "Strict"}
        coll = self.path(obj["apiVersion"], obj["kind"], ns)
        body = dict(obj, metadata=dict(obj["metadata"], **({"namespace": ns} if ns and "/namespaces/" in coll else {})))
        status, answer, warnings = self.request("POST", coll, body, query)
        if status == 409:  # exists already (CRDs are cluster-wide): dry-run the update instead
            current = self.get(obj["apiVersion"], obj["kind"], obj["metadata"]["name"], ns)
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            status, answer, warnings = self.request(
                "PUT", self.path(obj["apiVersion"], obj["kind"], ns, obj["metadata"]["name"]), body, query)
        if status not in (200, 201):
            raise ApiError(f"{obj['kind']} {obj['metadata']['name']}: {status} {answer.get('message')}")
        return warnings

    def wait_established(self, crd_name: str, timeout: float = 30) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            crd = self.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd_name)
            # Just after creation the apiserver may answer with status.conditions null, not absent.
            status = (crd or {}).get("status") or {}
            conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
            if conditions.get("Established") == "True":
                return
            time.sleep(0.2)
        raise ApiError(f"CRD {crd_name} not established after {timeout}s")


@pytest.fixture(scope="module")
def cluster(control_plane):
    """The session's etcd + kube-apiserver (tests/integration/conftest.py), plus the ServiceMonitor CRD."""
    api = Api(control_plane.apiserver_url, control_plane.admin_token, control_plane.ca_file)
    api.apply(SERVICE_MONITOR_CRD)
    api.wait_established(SERVICE_MONITOR_CRD["metadata"]["name"])
    return control_plane, api


@pytest.fixture(scope="module")
def helm() -> str:
    path = os.environ.get("HELM")
    if not path:
        done = subprocess.run(["bash", str(REPO / "hack" / "install-helm.sh")], capture_output=True, text=True,
                              timeout=1800)
        assert done.returncode == 0, f"hack/install-helm.sh failed:\n{done.stderr[-3000:]}"
        path = done.stdout.strip().splitlines()[-1]
    return path


def run_helm(helm: str, cp, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, KUBECONFIG=str(cp.admin_kubeconfig), HELM_CACHE_HOME=str(cp.workdir / "helm-cache"),
               HELM_CONFIG_HOME=str(cp.workdir / "helm-config"), HELM_DATA_HOME=str(cp.workdir / "helm-data"))
    done = subprocess.run([helm, *args], capture_output=True, text=True, timeout=180, env=env)
    if check:
        assert done.returncode == 0, f"helm {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def namespace(api: Api, name: str) -> str:
    api.apply({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    return name


def deployment_args(api: Api, name: str, ns: str) -> list[str]:
    deployment = api.get("apps/v1", "Deployment", name, ns)
    assert deployment is not None, f"Deployment {ns}/{name} missing"
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "operator"]
    return container["args"]


def test_helm_install_upgrade_uninstall(cluster, helm):
    cp, api = cluster
    ns = namespace(api, "mesp-helm")
    release = "mesp-it"
    done = run_helm(helm, cp, "install", release, str(CHART), "--namespace", ns,
                    "--set", "dashboard.enabled=true", "--set", "metrics.serviceMonitor.enabled=true")
    # NOTES name the CRD's real group/version and the Service to scrape.
    assert "MespPolicy (mesp.dev/v1alpha1)" in done.stdout
    assert f"http://{release}-metrics.{ns}.svc:9102/metrics" in done.stdout
    assert "Cold-start cost: 10 idle instance-minutes per avoided cold start" in done.stdout

    status = json.loads(run_helm(helm, cp, "status", release, "-n", ns, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    api.wait_established("mesppolicies.mesp.dev")
    for api_version, kind, name, obj_ns in [
        ("apps/v1", "Deployment", release, ns),
        ("v1", "Service", f"{release}-metrics", ns),
        ("v1", "ServiceAccount", release, ns),
        ("v1", "ConfigMap", f"{release}-dashboard", ns),
        ("monitoring.coreos.com/v1", "ServiceMonitor", release, ns),
        ("rbac.authorization.k8s.io/v1", "ClusterRole", release, None),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", release, None),
    ]:
        assert api.get(api_version, kind, name, obj_ns) is not None, f"{kind} {name} not installed"
    # The hook Pod is only created by `helm test`.
    assert api.get("v1", "Pod", f"{release}-test-metrics", ns) is None
    assert "--loop-interval-seconds=60" in deployment_args(api, release, ns)

    run_helm(helm, cp, "upgrade", release, str(CHART), "--namespace", ns, "--reuse-values",
             "--set", "operator.loopIntervalSeconds=30", "--set", "operator.watchNamespaces={team-a}")
    args = deployment_args(api, release, ns)
    assert "--loop-interval-seconds=30" in args and "--namespace=team-a" in args

    # A bad value is refused before anything reaches the cluster; the release stays as it was.
    bad = run_helm(helm, cp, "upgrade", release, str(CHART), "--namespace", ns, "--reuse-values",
                   "--set", "operator.prometheus.preset=nope", check=False)
    assert bad.returncode != 0 and "schema" in bad.stderr
    assert "--loop-interval-seconds=30" in deployment_args(api, release, ns)

    run_helm(helm, cp, "uninstall", release, "--namespace", ns, "--wait")
    assert api.get("apps/v1", "Deployment", release, ns) is None
    assert api.get("rbac.authorization.k8s.io/v1", "ClusterRole", release) is None
    # Helm never deletes CRDs from crds/ (it would delete every user's MespPolicies with them).
    assert api.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", "mesppolicies.mesp.dev") is not None


VARIANTS = {
    "defaults": [],
    "everything on": ["metrics.serviceMonitor.enabled=true", "dashboard.enabled=true",
                      "operator.watchNamespaces={team-a,team-b}", "operator.contextMinutes=240",
                      "model.source=initContainer", "model.initContainer.image=busybox:1.37",
                      "model.initContainer.command={sh,-c,cp -r /artifact/. $MESP_MODEL_DIR/}"],
    "pvc model, external service account": ["model.source=pvc", "model.pvc.claimName=models", "model.pvc.subPath=v2",
                                            "serviceAccount.create=false", "serviceAccount.name=default"],
}


@pytest.mark.parametrize("sets", VARIANTS.values(), ids=VARIANTS.keys())
def test_every_rendered_object_passes_a_strict_server_side_dry_run(cluster, helm, sets):
    cp, api = cluster
    ns = namespace(api, "mesp-dryrun")
    args = ["template", "dryrun", str(CHART), "--namespace", ns, "--include-crds"]
    for s in sets:
        args += ["--set", s]
    objects = [o for o in yaml.safe_load_all(run_helm(helm, cp, *args).stdout) if o]
    kinds = {o["kind"] for o in objects}
    assert {"CustomResourceDefinition", "Deployment", "Service", "ClusterRole", "Pod"} <= kinds
    _dry_run_all(api, objects, ns)


def test_generated_manifests_pass_a_strict_server_side_dry_run(cluster):
    _, api = cluster
    crds = [d for d in yaml.safe_load_all((MANIFESTS / "crds.yaml").read_text()) if d]
    install = [d for d in yaml.safe_load_all((MANIFESTS / "install.yaml").read_text()) if d]
    (ns_obj,) = [d for d in install if d["kind"] == "Namespace"]
    assert ns_obj["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    api.apply(ns_obj)  # namespaced objects can only be dry-run into a namespace that exists
    _dry_run_all(api, crds + [d for d in install if d["kind"] != "Namespace"], ns_obj["metadata"]["name"])


def _dry_run_all(api: Api, objects: list[dict], ns: str) -> None:
    failures, warned = [], []
    for obj in objects:
        try:
            warnings = api.dry_run(obj, ns)
        except ApiError as err:
            failures.append(str(err))
            continue
        if warnings:
            warned.append(f"{obj['kind']} {obj['metadata']['name']}: {warnings}")
        if obj["kind"] == "Deployment":
            # Pod Security admission only enforces on Pods: dry-run the Deployment's Pod as a Pod
            # in the namespace that enforces the "restricted" standard.
            template = obj["spec"]["template"]
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": obj["metadata"]["name"] + "-pod", "namespace": ns,
                                "labels": template["metadata"]["labels"]},
                   "spec": template["spec"]}
            try:
                api.dry_run(pod, ns)
            except ApiError as err:
                failures.append(f"operator Pod under Pod Security 'restricted': {err}")
    assert not failures, "\n".join(failures)
    assert not warned, "apiserver warnings:\n" + "\n".join(warned)
