"""The Helm chart, rendered by the pinned helm: lint, strict schema, secure defaults, generated manifests
in sync, and the operator flags it writes accepted by the operator's own settings parser.

helm comes from hack/install-helm.sh (cached; compiled on first use) or $HELM, so these tests
always run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "mesp"
MANIFESTS = REPO / "manifests"
RELEASE, NAMESPACE = "mesp", "mesp-system"


@pytest.fixture(scope="session")
def helm() -> str:
    path = os.environ.get("HELM")
    if not path:
        done = subprocess.run(
            ["bash", str(REPO / "hack" / "install-helm.sh")], capture_output=True, text=True, timeout=1800
        )
        assert done.returncode == 0, f"hack/install-helm.sh failed:\n{done.stderr[-3000:]}"
        path = done.stdout.strip().splitlines()[-1]
    assert os.access(path, os.X_OK), f"helm not executable at {path}"
    return path


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)


def render(helm: str, *sets: str) -> list[dict]:
    """`helm template` with --set pairs; returns the rendered objects."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for s in sets:
        args += ["--set", s]
    done = run_helm(helm, *args)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def operator_container(objects: list[dict]) -> dict:
    (deployment,) = by_kind(objects, "Deployment")
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "operator"]
    return container


# --- lint and schema ---------------------------------------------------------------------------------

VALID_VARIANTS = {
    "defaults": [],
    "pvc model": ["model.source=pvc", "model.pvc.claimName=mesp-models", "model.pvc.subPath=v2"],
    "init container model": [
        "model.source=initContainer",
        "model.initContainer.image=registry.example/mesp-model:v2",
        "model.initContainer.command={sh,-c,cp -r /artifact/. $MESP_MODEL_DIR/}",
    ],
    "monitoring on": ["metrics.serviceMonitor.enabled=true", "dashboard.enabled=true", "metrics.serviceMonitor.labels.release=kps"],
    "namespaced": ["operator.watchNamespaces={team-a,team-b}", "operator.verbose=true", "operator.contextMinutes=240"],
    "paused, external SA": ["replicaCount=0", "serviceAccount.create=false", "serviceAccount.name=mesp-sa", "rbac.create=false"],
}


@pytest.mark.parametrize("sets", VALID_VARIANTS.values(), ids=VALID_VARIANTS.keys())
def test_helm_lint_strict_is_clean(helm, sets):
    args = ["lint", "--strict", str(CHART)]
    for s in sets:
        args += ["--set", s]
    done = run_helm(helm, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


BAD_VALUES = {
    "unknown top-level key": ("replicas=1", "replicas"),
    "misspelt nested key": ("operator.prometheus.urll=http://x:9090", "urll"),
    "unknown preset": ("operator.prometheus.preset=knative-2", "preset"),
    "more replicas than any fleet needs": ("replicaCount=65", "replicaCount"),
    "zero shards": ("operator.shards=0", "shards"),
    "lease too short to renew": ("operator.leaseDurationSeconds=1", "leaseDurationSeconds"),
    "privileged metrics port": ("metrics.port=80", "port"),
    "loop too fast": ("operator.loopIntervalSeconds=1", "loopIntervalSeconds"),
    "prometheus URL not http": ("operator.prometheus.url=ftp://prom:9090", "url"),
    "pvc without claim": ("model.source=pvc", "claimName"),
    "init container without image": ("model.source=initContainer", "initContainer"),
    "unknown model source": ("model.source=s3", "source"),
    "namespace not a DNS label": ("operator.watchNamespaces={Team_A}", "watchNamespaces"),
    "bad pull policy": ("image.pullPolicy=Sometimes", "pullPolicy"),
    "context shorter than the model's minimum": ("operator.contextMinutes=10", "contextMinutes"),
    "path traversal in PVC subPath": ("model.pvc.subPath=../etc", "subPath"),
    "unknown actuation support": ("operator.revisionAnnotations=sometimes", "revisionAnnotations"),
    "free cold starts": ("operator.coldStartCost=0", "coldStartCost"),
    "cold-start cost not a number": ("operator.coldStartCost=high", "coldStartCost"),
}


@pytest.mark.parametrize("bad,key", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_schema_rejects_bad_values(helm, bad, key):
    sets = ["--set", bad]
    for command in (["template", RELEASE, str(CHART)], ["lint", "--strict", str(CHART)]):
        done = run_helm(helm, *command, *sets)
        assert done.returncode != 0, f"{' '.join(command)} accepted {bad}"
        out = done.stdout + done.stderr
        assert "schema" in out and key in out, out


def test_equal_metrics_and_health_ports_fail_with_a_clear_message(helm):
    done = run_helm(helm, "template", RELEASE, str(CHART), "--set", "probes.port=9102")
    assert done.returncode != 0
    assert "metrics.port and probes.port must differ" in done.stderr


def test_a_cluster_query_with_the_auto_preset_fails_with_a_clear_message(helm):
    """The operator refuses --promql with auto (the labels are unknown); the chart says so first."""
    done = run_helm(helm, "template", RELEASE, str(CHART), "--set", "operator.prometheus.promql=sum(x)")
    assert done.returncode != 0
    assert "operator.prometheus.promql needs a named operator.prometheus.preset" in done.stderr


def test_schema_is_strict_at_every_level():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    # Kubernetes passthrough objects stay open; everything the chart defines itself is closed.
    passthrough = {"podSecurityContext", "securityContext", "affinity", "global"}

    def walk(node: dict, where: str, value):
        if node.get("type") == "object" and isinstance(node.get("properties"), dict):
            assert node.get("additionalProperties") is False, f"{where or '<root>'} accepts unknown keys"
            assert isinstance(value, dict), where
            assert set(value) <= set(node["properties"]), f"{where}: values.yaml keys missing from the schema"
            for key, sub in node["properties"].items():
                if key in passthrough or key not in value:
                    continue
                walk(sub, f"{where}.{key}".lstrip("."), value[key])

    walk(schema, "", values)
    assert set(values) == set(schema["properties"]) - {"global"}, "values.yaml and the schema list different keys"


# --- rendered objects ----------------------------------------------------------------------------


def _assert_hardened(container: dict, where: str):
    sc = container.get("securityContext", {})
    assert sc.get("allowPrivilegeEscalation") is False, where
    assert sc.get("readOnlyRootFilesystem") is True, where
    assert sc.get("runAsNonRoot") is True, where
    assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
    assert not sc.get("privileged", False), where
    limits = container.get("resources", {}).get("limits", {})
    requests = container.get("resources", {}).get("requests", {})
    assert "memory" in limits and "memory" in requests and "cpu" in requests, f"{where}: resources incomplete"


def test_security_defaults(helm):
    objects = render(helm, "model.source=initContainer", "model.initContainer.image=busybox:1.37",
                     "model.initContainer.command={sh,-c,exit 0}")
    (deployment,) = by_kind(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] >= 1000
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in pod["containers"] + pod["initContainers"]:
        _assert_hardened(c, c["name"])
    # Writable scratch space is an emptyDir, since the root filesystem is read-only.
    (tmp,) = [v for v in pod["volumes"] if v["name"] == "tmp"]
    assert "emptyDir" in tmp
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}

    (test_pod,) = [p for p in by_kind(objects, "Pod") if p["metadata"]["annotations"].get("helm.sh/hook") == "test"]
    assert test_pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in test_pod["spec"]["containers"]:
        _assert_hardened(c, "helm test pod")


def test_probes_target_declared_ports(helm):
    container = operator_container(render(helm))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 9102, "health": 8081}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get == {"path": "/healthz", "port": "health"}, probe
    args = container["args"]
    assert "--metrics-port=9102" in args
    assert "--liveness-endpoint=http://0.0.0.0:8081/healthz" in args


def test_service_and_service_monitor_select_the_operator(helm):
    objects = render(helm, "metrics.serviceMonitor.enabled=true")
    (deployment,) = by_kind(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    (service,) = by_kind(objects, "Service")
    assert set(service["spec"]["selector"].items()) <= set(pod_labels.items())
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert service["metadata"]["annotations"]["prometheus.io/port"] == "9102"
    (monitor,) = by_kind(objects, "ServiceMonitor")
    assert set(monitor["spec"]["selector"]["matchLabels"].items()) <= set(service["metadata"]["labels"].items())
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
    assert not by_kind(render(helm), "ServiceMonitor"), "the ServiceMonitor must be off by default"


def test_model_sources(helm):
    baked = operator_container(render(helm))
    assert not [a for a in baked["args"] if a.startswith("--model")], "the image's default model needs no --model"
    assert [m["mountPath"] for m in baked["volumeMounts"]] == ["/tmp"]

    objects = render(helm, "model.source=pvc", "model.pvc.claimName=models", "model.pvc.subPath=v2")
    container = operator_container(objects)
    assert "--model=/var/lib/mesp/model/v2" in container["args"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "model"]
    assert mount["readOnly"] is True
    (deployment,) = by_kind(objects, "Deployment")
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "model"]
    assert volume["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}

    objects = render(helm, "model.source=initContainer", "model.initContainer.image=models:v2",
                     "model.initContainer.command={sh,-c,cp -r /a/. $MESP_MODEL_DIR/}")
    (deployment,) = by_kind(objects, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    (init,) = spec["initContainers"]
    assert init["image"] == "models:v2" and init["command"][-1] == "cp -r /a/. $MESP_MODEL_DIR/"
    assert {"name": "MESP_MODEL_DIR", "value": "/var/lib/mesp/model"} in init["env"]
    assert "--model=/var/lib/mesp/model" in operator_container(objects)["args"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == "model"]
    assert "emptyDir" in volume


def test_rendered_flags_are_accepted_by_the_operator(helm):
    """The Deployment's arguments parse with the operator's own settings parser: a renamed flag or an
    out-of-range default fails here, not in a crash-looping Pod."""
    from mesp_operator.settings import parse_settings

    container = operator_container(render(helm, "operator.watchNamespaces={team-a,team-b}", "operator.contextMinutes=240",
                                          "operator.prometheus.promql=sum(rate(x[2m]))",
                                          "operator.prometheus.preset=knative-otel", "operator.verbose=true",
                                          "operator.coldStartCost=25"))
    assert container["command"] == ["mesp", "operator"]
    settings = parse_settings(container["args"], env={})
    assert settings.namespaces == ("team-a", "team-b")
    assert settings.prometheus_url == "http://prometheus-operated.monitoring.svc:9090"
    assert settings.metrics_preset == "knative-otel"
    assert settings.promql == "sum(rate(x[2m]))"
    assert settings.context_minutes == 240
    assert settings.metrics_port == 9102 and settings.metrics_address == "0.0.0.0"
    assert settings.liveness_endpoint == "http://0.0.0.0:8081/healthz"
    assert settings.loop_interval_seconds == 60 and settings.torch_threads == 1 and settings.verbose is True
    assert settings.cold_start_cost == 25
    defaults = parse_settings(operator_container(render(helm))["args"], env={})
    assert defaults.namespaces == () and defaults.model_path is None
    # The chart's default cost is the operator's own default.
    assert defaults.cold_start_cost == parse_settings([], env={}).cold_start_cost
    # One default preset, the CLI's and the chart's: auto.
    assert defaults.metrics_preset == parse_settings([], env={}).metrics_preset == "auto"


def test_one_replica_uses_no_lease_and_several_share_the_policies_through_leases(helm):
    from mesp_operator.settings import parse_settings

    single = render(helm)
    assert parse_settings(operator_container(single)["args"], env={}).shards == 0
    assert not by_kind(single, "Role")
    fleet = render(helm, "replicaCount=3", "operator.shards=12", "operator.leaseDurationSeconds=20")
    (deployment,) = by_kind(fleet, "Deployment")
    assert deployment["spec"]["replicas"] == 3 and deployment["spec"]["strategy"]["type"] == "Recreate"
    settings = parse_settings(operator_container(fleet)["args"], env={})
    assert (settings.shards, settings.lease_name, settings.lease_duration_seconds) == (12, "mesp", 20.0)
    env = {e["name"]: e for e in operator_container(fleet)["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"        # the replica id
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"  # the Leases' home
    (role,) = by_kind(fleet, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                              "verbs": ["get", "list", "create", "update", "delete"]}]
    (binding,) = by_kind(fleet, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["name"] == deployment["spec"]["template"]["spec"]["serviceAccountName"]


def test_fewer_shards_than_replicas_fail_with_a_clear_message(helm):
    done = run_helm(helm, "template", RELEASE, str(CHART), "--set", "replicaCount=3", "--set", "operator.shards=2")
    assert done.returncode != 0 and "operator.shards must be at least replicaCount" in done.stderr


def test_schema_presets_are_the_operators_presets():
    from mesp_operator.prometheus import PRESET_CHOICES

    schema = json.loads((CHART / "values.schema.json").read_text())
    enum = schema["properties"]["operator"]["properties"]["prometheus"]["properties"]["preset"]["enum"]
    assert sorted(enum) == sorted(PRESET_CHOICES)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["operator"]["prometheus"]["preset"] == "auto"


def _dashboard(helm, *sets: str) -> dict:
    objects = render(helm, "dashboard.enabled=true", *sets)
    (cm,) = [o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    return json.loads(cm["data"]["mesp.json"])


def _targets(dashboard: dict) -> list[dict]:
    return [t for p in dashboard["panels"] for t in p.get("targets", [])]


def test_dashboard_queries_use_metrics_the_operator_exports(helm):
    exprs = [t["expr"] for t in _targets(_dashboard(helm))]
    assert exprs and not [e for e in exprs if "__MESP" in e], "placeholder left in the dashboard"
    used = {re.sub(r"_(bucket|count|sum)$", "", m) for e in exprs for m in re.findall(r"\bmesp_[a-z_]+", e)}
    exported = _operator_metric_names()
    assert used <= exported, f"dashboard uses metrics the operator does not export: {sorted(used - exported)}"
    # The panels the chart promises: forecast vs actual, applied min-scale, reconcile time, errors.
    assert {"mesp_forecast_next_requests_per_minute", "mesp_applied_min_scale",
            "mesp_reconcile_duration_seconds", "mesp_errors_total"} <= used


def test_dashboard_actual_curve_is_the_operators_query(helm):
    """The "actual" curve is the operator's own PromQL preset, so the chart's copy must not drift."""
    from mesp_operator.prometheus import PRESETS

    for name, preset in PRESETS.items():
        (actual,) = [t for t in _targets(_dashboard(helm, f"operator.prometheus.preset={name}"))
                     if t.get("legendFormat", "").startswith("actual")]
        assert actual["expr"] == preset.query.replace("$selector", f'{preset.namespace_label}=~"$namespace"'), name
        assert actual["legendFormat"] == f"actual {{{{{preset.namespace_label}}}}}/{{{{{preset.service_label}}}}}"
    # auto: each family's query, in the operator's order; only the family Prometheus holds answers.
    from mesp_operator.prometheus import AUTO_ORDER

    (auto,) = [t for t in _targets(_dashboard(helm)) if t.get("legendFormat", "").startswith("actual")]
    assert auto["expr"] == " or ".join(
        "(" + PRESETS[name].query.replace("$selector", f'{PRESETS[name].namespace_label}=~"$namespace"') + ")"
        for name in AUTO_ORDER)
    (custom,) = [t for t in _targets(_dashboard(helm, "operator.prometheus.promql=sum by (namespace_name\\, service_name) (x)",
                                                "operator.prometheus.preset=knative-legacy"))
                 if t.get("legendFormat", "").startswith("actual")]
    assert custom["expr"] == "sum by (namespace_name, service_name) (x)"


def _operator_metric_names() -> set[str]:
    """Names of the series the operator's registry exposes (counters gain `_total`)."""
    from mesp_operator.metrics import OperatorMetrics

    names = set()
    for metric in OperatorMetrics().registry.collect():
        names.add(metric.name + ("_total" if metric.type == "counter" else ""))
    return names


def test_helm_test_hook_checks_the_metrics_endpoint(helm):
    objects = render(helm)
    (pod,) = [p for p in by_kind(objects, "Pod") if p["metadata"]["annotations"].get("helm.sh/hook") == "test"]
    script = pod["spec"]["containers"][0]["command"][-1]
    (service,) = by_kind(objects, "Service")
    assert f"http://{service['metadata']['name']}.{NAMESPACE}.svc:9102/metrics" in script
    assert "^mesp_" in script
    done = run_helm(helm, "template", RELEASE, str(CHART), "--skip-tests")
    assert "helm.sh/hook: test" not in done.stdout


def test_chart_app_version_is_the_package_version():
    import mesp_core

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == mesp_core.__version__
    image = yaml.safe_load((CHART / "values.yaml").read_text())["image"]
    assert image["tag"] == "", "an empty tag follows appVersion"


# --- generated manifests -----------------------------------------------------------------------------


def test_manifests_match_the_chart(helm, tmp_path):
    env = dict(os.environ, HELM=helm)
    done = subprocess.run(["bash", str(REPO / "hack" / "gen-manifests.sh"), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    fresh = sorted(p.name for p in tmp_path.iterdir())
    committed = sorted(p.name for p in MANIFESTS.glob("*.yaml"))
    assert fresh == ["crds.yaml", "install.yaml"]
    assert committed == fresh, f"manifests/ holds {committed}; run hack/gen-manifests.sh"
    for name in fresh:
        if (tmp_path / name).read_text() != (MANIFESTS / name).read_text():
            pytest.fail(f"manifests/{name} drifted from charts/mesp; run hack/gen-manifests.sh and commit")


def test_manifests_are_plain_complete_kubernetes_yaml():
    crds = [d for d in yaml.safe_load_all((MANIFESTS / "crds.yaml").read_text()) if d]
    assert crds and all(d["kind"] == "CustomResourceDefinition" for d in crds)
    assert "MespPolicy" in {d["spec"]["names"]["kind"] for d in crds}
    install = [d for d in yaml.safe_load_all((MANIFESTS / "install.yaml").read_text()) if d]
    kinds = [d["kind"] for d in install]
    assert kinds[0] == "Namespace" and install[0]["metadata"]["name"] == NAMESPACE
    assert {"ServiceAccount", "Service", "Deployment"} <= set(kinds)
    assert "ClusterRole" in kinds or "Role" in kinds, "RBAC missing from install.yaml"
    for d in install[1:]:
        if d["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert d["metadata"]["namespace"] == NAMESPACE, f"{d['kind']} {d['metadata']['name']}"
        assert "{{" not in yaml.safe_dump(d), f"unrendered template in {d['kind']} {d['metadata']['name']}"
    assert not any(d["metadata"].get("annotations", {}).get("helm.sh/hook") for d in install), "helm hooks leaked"
    first_line = (MANIFESTS / "install.yaml").read_text().splitlines()[0]
    assert "Generated by hack/gen-manifests.sh" in first_line


# --- the chart documents itself ----------------------------------------------------------------------

# Values whose content is a Kubernetes object (or a group of probe timings) are documented as a whole.
DOCUMENTED_AS_A_WHOLE = {"resources", "podSecurityContext", "securityContext", "model.initContainer.resources",
                         "dashboard.labels", "probes.startup", "probes.liveness", "probes.readiness"}


def _value_paths(node: dict, prefix: str = ""):
    for key, value in node.items():
        path = prefix + key
        if isinstance(value, dict) and value and path not in DOCUMENTED_AS_A_WHOLE:
            yield from _value_paths(value, path + ".")
        else:
            yield path


def test_chart_readme_documents_every_value_and_only_real_metrics():
    readme = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = [p for p in _value_paths(values) if f"| `{p}` |" not in readme]
    assert not missing, f"charts/mesp/README.md lacks rows for {missing}"
    documented = set(re.findall(r"`(mesp_[a-z_]+)`", readme))
    assert documented, "no metric names in the chart README"
    assert documented <= _operator_metric_names(), sorted(documented - _operator_metric_names())


def _schema_generator():
    spec = importlib.util.spec_from_file_location("gen_values_schema", REPO / "hack" / "gen-values-schema.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_value_is_documented_by_a_comment_in_values_yaml():
    text = (CHART / "values.yaml").read_text()
    comments = _schema_generator().value_comments(text)
    missing = [p for p in _value_paths(yaml.safe_load(text)) if p not in comments]
    assert not missing, f"values.yaml keys without a '# --' comment: {missing}"


def test_schema_descriptions_are_generated_from_the_values_comments():
    assert (CHART / "values.schema.json").read_text() == _schema_generator().render(), \
        "values.schema.json descriptions differ from values.yaml's comments; run hack/gen-values-schema.py"


def test_values_comments_are_read_per_key_path():
    text = """# A file comment, not a value's.
# -- Top value, continued
#    on a second line.
top: 1
group:
  # -- Nested value.
  inner: [a]
  # -- Dropped: a blank line ends a comment.

  plain: 2
# -- Back at the top.
other:
  - item
"""
    assert _schema_generator().value_comments(text) == {
        "top": "Top value, continued on a second line.", "group.inner": "Nested value.", "other": "Back at the top."}
