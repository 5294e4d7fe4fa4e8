#!/usr/bin/env bash
# End-to-end tests of MESP on kind clusters, for users with Docker (opt-in; not part of hack/test.sh).
#
# One suite, two test beds: this script runs the same pytest scenarios as our CI (tests/knative,
# marker `knative`), on real Knative Serving in kind instead of hack/knative-bed.py's container-less
# bed. It
#   1. creates two kind clusters (kind-config.yaml): one with Knative $KNATIVE_VERSION, one with
#      Knative $KNATIVE_1_20_VERSION (the release before a Revision's min-scale reached its
#      PodAutoscaler: the scenario where `actuation: Auto` must take the Template path),
#   2. installs Knative Serving (CRDs + core) with Kourier on each, the ingress on 127.0.0.1:31080
#      and :31081, and loads the test image (Knative's autoscale-go) into both,
#   3. runs `pytest tests/knative -m knative` with MESP_KNATIVE_KUBECONFIG /
#      MESP_KNATIVE_1_20_KUBECONFIG pointing at them (tests/knative/external_bed.py): the operator
#      runs on this machine as `mesp operator`, with the chart's RBAC through a token of its
#      ServiceAccount, against a Prometheus on 127.0.0.1 holding the replayed real day, as in CI.
#   4. with REPLAY=1, also builds the MESP image, installs the chart with kube-prometheus-stack in
#      the first cluster and replays a trace slice against a real function through the ingress
#      (1 trace minute = 1 wall-clock minute), asserting that min-scale rose before a peak.
#
# Our CI has no Docker engine, so it cannot run this script; it runs step 3's scenarios on the bed.
# What only this script adds: real pods (containers, the real queue-proxy) and, with REPLAY=1, the
# image built and run in the cluster, scraped by a real Prometheus.
#
# Needs: docker, kind, kubectl, python3 with this project installed (`pip install -e .[test]`),
# prometheus and promtool on PATH (as for the integration tests), internet access (images, Knative
# release files, Helm repo).
# Environment (defaults in brackets):
#   CLUSTER [mesp-e2e]  KEEP_CLUSTER [0: delete the clusters at the end; 1 keeps them]
#   KNATIVE_VERSION [1.21.0]  KNATIVE_1_20_VERSION [1.20.0]  KIND_NODE_IMAGE [kind's default]
#   TEST_IMAGE [ghcr.io/knative/autoscale-go:latest]  PYTEST_ARGS [-x]  OUT_DIR [./out/e2e-kind]
#   REPLAY [0]; with REPLAY=1: PROM_STACK_VERSION [75.5.0]  IMAGE [mesp:dev]
#     TRACE [empty: the project's synthetic trace; else Azure invocation files, quoted glob]
#     REPLAY_MINUTES [100]  WARMUP_MINUTES [60]  PEAK_RPM [240]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

cluster="${CLUSTER:-mesp-e2e}"
cluster_120="$cluster-120"
knative_version="${KNATIVE_VERSION:-1.21.0}"
knative_120_version="${KNATIVE_1_20_VERSION:-1.20.0}"
test_image="${TEST_IMAGE:-ghcr.io/knative/autoscale-go:latest}"
prom_stack_version="${PROM_STACK_VERSION:-75.5.0}"
image="${IMAGE:-mesp:dev}"
replay_minutes="${REPLAY_MINUTES:-100}"
warmup_minutes="${WARMUP_MINUTES:-60}"
peak_rpm="${PEAK_RPM:-240}"
out_dir="${OUT_DIR:-$repo/out/e2e-kind}"
python="${PYTHON:-python3}"
demo_ns="mesp-demo"
ingress_port=31080   # must match kind-config.yaml
kctx="kind-$cluster"

log() { echo "==> [$(date -u +%H:%M:%S)] $*"; }
die() { echo "e2e-kind: $*" >&2; exit 1; }
k() { kubectl --context "$kctx" "$@"; }

for tool in docker kind kubectl prometheus promtool "$python"; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is required"
done
docker info >/dev/null 2>&1 || die "no Docker engine reachable (docker info failed)"
"$python" -c "import mesp_core.data.synthetic, mesp_core.data.trace" 2>/dev/null \
  || die "$python cannot import mesp_core: run 'pip install -e .' in this repository first"
helm="${HELM:-$("$repo/hack/install-helm.sh")}"
h() { "$helm" --kube-context "$kctx" "$@"; }
mkdir -p "$out_dir"

cleanup() {
  local status=$?
  if [[ -n "${load_pid:-}" ]]; then kill "$load_pid" 2>/dev/null || true; fi
  if (( status != 0 )) && [[ "${REPLAY:-0}" == "1" ]] && command -v kubectl >/dev/null 2>&1; then
    echo "--- MESP operator logs (last 60 lines) ---" >&2
    k -n mesp-system logs deployment/mesp --tail=60 >&2 2>/dev/null || true
  fi
  if [[ "${KEEP_CLUSTER:-0}" != "1" ]]; then
    log "deleting kind clusters $cluster and $cluster_120 (KEEP_CLUSTER=1 keeps them)"
    kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
    kind delete cluster --name "$cluster_120" >/dev/null 2>&1 || true
  fi
  exit "$status"
}
trap cleanup EXIT

# --- 1. clusters ----------------------------------------------------------------------------------
# create_cluster NAME [CONFIG]: the first cluster maps Kourier's NodePort to the host (kind-config.yaml).
create_cluster() {
  local name="$1" config="${2:-}"
  if kind get clusters 2>/dev/null | grep -qx "$name"; then
    log "reusing kind cluster $name"
  else
    log "creating kind cluster $name"
    kind create cluster --name "$name" ${config:+--config "$config"} --wait 180s \
      ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
  fi
  kind get kubeconfig --name "$name" > "$out_dir/$name.kubeconfig"
  log "loading $test_image into $name"
  kind load docker-image "$test_image" --name "$name"
}
docker pull "$test_image" >/dev/null
create_cluster "$cluster" kind-config.yaml
create_cluster "$cluster_120"

# --- 2. Knative Serving + Kourier ---------------------------------------------------------------
# install_knative CONTEXT VERSION
install_knative() {
  local ctx="$1" version="$2"
  local serving="https://github.com/knative/serving/releases/download/knative-v$version"
  local kourier="https://github.com/knative-extensions/net-kourier/releases/download/knative-v$version"
  kc() { kubectl --context "$ctx" "$@"; }
  log "installing Knative Serving $version and Kourier in $ctx"
  kc apply -f "$serving/serving-crds.yaml"
  kc wait --for=condition=Established --timeout=120s crd -l knative.dev/crd-install=true
  kc apply -f "$serving/serving-core.yaml"
  kc apply -f "$kourier/kourier.yaml"
  kc -n knative-serving patch configmap/config-network --type merge \
    -p '{"data":{"ingress-class":"kourier.ingress.networking.knative.dev"}}'
  kc -n knative-serving patch configmap/config-domain --type merge -p '{"data":{"example.com":""}}'
  # Knative >= 1.19 exports metrics with OpenTelemetry and exports none by default: expose the
  # control plane's and queue-proxy's request metrics for Prometheus to scrape.
  kc -n knative-serving patch configmap/config-observability --type merge \
    -p '{"data":{"metrics-protocol":"prometheus","request-metrics-protocol":"prometheus"}}'
  # Scale to zero quickly, so the replay's idle gaps really end in cold starts without MESP.
  kc -n knative-serving patch configmap/config-autoscaler --type merge \
    -p '{"data":{"scale-to-zero-grace-period":"30s","stable-window":"60s"}}'
  # The ingress on a fixed NodePort that kind-config.yaml maps to 127.0.0.1:31080 on the host.
  kc -n kourier-system patch service/kourier --type merge \
    -p "{\"spec\":{\"type\":\"NodePort\",\"ports\":[{\"name\":\"http2\",\"port\":80,\"protocol\":\"TCP\",\"targetPort\":8080,\"nodePort\":$ingress_port}]}}"
  kc rollout restart deployment -n knative-serving
  kc wait --for=condition=Available --timeout=300s -n knative-serving deployment --all
  kc wait --for=condition=Available --timeout=300s -n kourier-system deployment --all
}
install_knative "$kctx" "$knative_version"
install_knative "kind-$cluster_120" "$knative_120_version"

# --- 3. the Knative suite (the scenarios CI runs on hack/knative-bed.py) ----------------------------
log "running tests/knative on $cluster (Knative $knative_version) and $cluster_120 (Knative $knative_120_version)"
suite_started=$(date +%s)
# shellcheck disable=SC2086  # PYTEST_ARGS is a list of arguments
MESP_KNATIVE_KUBECONFIG="$out_dir/$cluster.kubeconfig" \
MESP_KNATIVE_1_20_KUBECONFIG="$out_dir/$cluster_120.kubeconfig" \
MESP_KNATIVE_INGRESS="http://127.0.0.1:$ingress_port" \
MESP_KNATIVE_IMAGE="$test_image" \
MESP_KNATIVE_OUT="$out_dir/knative-suite" \
PYTHONPATH="$repo:$repo/operator${PYTHONPATH:+:$PYTHONPATH}" \
  "$python" -m pytest "$repo/tests/knative" -m knative -p no:cacheprovider ${PYTEST_ARGS:--x}
log "Knative suite passed in $(( $(date +%s) - suite_started )) s; timelines in $out_dir/knative-suite"
if [[ "${REPLAY:-0}" != "1" ]]; then
  exit 0
fi

# --- 4. with REPLAY=1: MESP in the cluster, a real Prometheus, a trace replayed -----------------------
log "installing kube-prometheus-stack $prom_stack_version"
h repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update >/dev/null
cat > "$out_dir/prometheus-values.yaml" <<'YAML'
# Small footprint for one kind node; Grafana on to show MESP's dashboard.
alertmanager: {enabled: false}
nodeExporter: {enabled: false}
grafana:
  enabled: true
  sidecar: {dashboards: {enabled: true, label: grafana_dashboard, searchNamespace: ALL}}
prometheus:
  prometheusSpec:
    # Select every ServiceMonitor/PodMonitor, not only those labelled for this release.
    serviceMonitorSelectorNilUsesHelmValues: false
    podMonitorSelectorNilUsesHelmValues: false
    scrapeInterval: 15s
    retention: 2d
YAML
h upgrade --install kps prometheus-community/kube-prometheus-stack --version "$prom_stack_version" \
  --namespace monitoring --create-namespace -f "$out_dir/prometheus-values.yaml" --wait --timeout 10m
k apply -f - <<'YAML'
# Knative's request metrics, scraped from every revision's queue-proxy (port http-usermetric).
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata:
  name: knative-queue-proxy
  namespace: monitoring
spec:
  namespaceSelector: {any: true}
  selector:
    matchExpressions:
      - {key: serving.knative.dev/revision, operator: Exists}
  podMetricsEndpoints:
    - port: http-usermetric
      interval: 15s
---
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata:
  name: knative-serving-control-plane
  namespace: monitoring
spec:
  namespaceSelector: {matchNames: [knative-serving]}
  selector:
    matchExpressions:
      - {key: app, operator: In, values: [activator, autoscaler, controller]}
  podMetricsEndpoints:
    - port: http-metrics
      interval: 15s
YAML

# --- 4a. MESP image and chart ----------------------------------------------------------------------
log "building $image and loading it into kind"
docker build -t "$image" .
kind load docker-image "$image" --name "$cluster"
log "installing the MESP chart"
h upgrade --install mesp charts/mesp --namespace mesp-system --create-namespace \
  --set image.repository="${image%:*}" --set image.tag="${image##*:}" --set image.pullPolicy=Never \
  --set operator.prometheus.url=http://prometheus-operated.monitoring.svc:9090 \
  --set metrics.serviceMonitor.enabled=true --set dashboard.enabled=true \
  --wait --timeout 5m
h test mesp --namespace mesp-system --logs

# --- 4b. sample function and its policy ----------------------------------------------------------
log "deploying the sample function and its MespPolicy"
k create namespace "$demo_ns" --dry-run=client -o yaml | k apply -f -
k apply -f - <<YAML
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
  namespace: $demo_ns
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/max-scale: "10"
    spec:
      containerConcurrency: 10
      containers:
        - image: ghcr.io/knative/helloworld-go:latest
          env:
            - {name: TARGET, value: MESP}
---
apiVersion: mesp.dev/v1alpha1
kind: MespPolicy
metadata:
  name: hello
  namespace: $demo_ns
spec:
  service: hello
  mode: Active
  actuation: Auto
  leadMinutes: 2
  holdMinutes: 2
  coldStartCost: 10        # one avoided cold start is worth 10 idle instance-minutes: q0.909
  # helloworld-go answers in ~1 ms; 60 invocations/min per instance keeps the replay's peaks at a
  # few instances on one kind node.
  capacityPerInstance: 60
  maxScale: 10
YAML
k -n "$demo_ns" wait --for=condition=Ready --timeout=300s ksvc/hello

# --- 4c. replay a trace slice, recording min-scale -------------------------------------------------
log "replaying $replay_minutes minutes of trace (warm-up $warmup_minutes) against hello.$demo_ns"
"$python" - "$out_dir" "$replay_minutes" "$warmup_minutes" "$peak_rpm" "${TRACE:-}" > "$out_dir/replay-plan.log" <<'PY'
# Pick a periodic function with idle gaps (the case where scale-to-zero causes cold starts) and
# write the per-minute counts of the slice to replay, scaled so its peak is PEAK_RPM.
import json, sys
import numpy as np
out_dir, minutes, warmup, peak_rpm, trace_glob = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
if trace_glob:
    from mesp_core.data.trace import read_invocations
    import glob
    counts = read_invocations(sorted(glob.glob(trace_glob)), on_error="skip").counts
else:
    from mesp_core.data.synthetic import generate_trace
    counts = generate_trace(n_functions=300, days=1, seed=7).counts
best = None
for row, series in enumerate(counts):
    for start in range(0, series.size - minutes, 30):
        s = series[start:start + minutes]
        ticks = np.flatnonzero(s > 0)
        late = ticks[ticks >= warmup]
        if len(ticks) < 4 or len(late) == 0 or (s > 0).mean() > 0.25:
            continue
        gaps = np.diff(ticks)
        # Peaks after the warm-up that follow at least 8 idle minutes.
        peaks = [int(t) for t in late if t - ticks[max(np.searchsorted(ticks, t) - 1, 0)] >= 8]
        if not peaks or np.median(gaps) > 40:
            continue
        score = (len(peaks), float(s.max()))
        if best is None or score > best[0]:
            best = (score, row, start, s, peaks)
if best is None:
    sys.exit("no function with periodic peaks and idle gaps found in the trace")
_, row, start, s, peaks = best
scaled = np.ceil(s * (peak_rpm / s.max())).astype(int).tolist()
plan = {"function_row": row, "start_minute": start, "counts": scaled, "peaks": peaks}
json.dump(plan, open(f"{out_dir}/replay-plan.json", "w"))
print(f"function row {row}, trace minutes {start}..{start + minutes}, peaks at replay minutes {peaks}")
PY
cat "$out_dir/replay-plan.log"

"$python" - "$out_dir" "$ingress_port" "hello.$demo_ns.example.com" "$kctx" "$demo_ns" <<'PY'
# Replay: minute i sends counts[i] requests spread over the minute; a second thread records the
# min-scale on the latest ready Revision and on the Service template, and MESP's status, every 5 s.
import json, subprocess, sys, threading, time, urllib.request
from concurrent.futures import ThreadPoolExecutor

out_dir, port, host, ctx, ns = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
plan = json.load(open(f"{out_dir}/replay-plan.json"))
counts = plan["counts"]
t0 = time.time()
stop = threading.Event()
timeline, results = [], {"ok": 0, "failed": 0, "slow": 0}
results_lock = threading.Lock()

def kubectl_json(*args):
    out = subprocess.run(["kubectl", "--context", ctx, "-n", ns, "get", *args, "-o", "json"],
                         capture_output=True, text=True, timeout=20)
    return json.loads(out.stdout) if out.returncode == 0 else {}

def min_scale():
    ksvc = kubectl_json("ksvc", "hello")
    template = ksvc.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations", {})
    values = [int(template.get("autoscaling.knative.dev/min-scale", 0))]
    latest = ksvc.get("status", {}).get("latestReadyRevisionName")
    if latest:
        rev = kubectl_json("revision", latest).get("metadata", {}).get("annotations", {})
        values.append(int(rev.get("autoscaling.knative.dev/min-scale", 0)))
    status = kubectl_json("mesppolicy", "hello").get("status", {})
    return max(values), status.get("appliedMinScale"), status.get("actuation")

def monitor():
    while not stop.is_set():
        try:
            value, applied, actuation = min_scale()
            timeline.append({"t": time.time() - t0, "min_scale": value, "applied": applied, "actuation": actuation})
        except (subprocess.TimeoutExpired, ValueError):
            pass
        stop.wait(5)

def call():
    began = time.time()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()
        outcome = "slow" if time.time() - began > 1.0 else "ok"  # over a second: it waited for a cold start
    except OSError:
        outcome = "failed"
    with results_lock:
        results[outcome] += 1

threading.Thread(target=monitor, daemon=True).start()
with ThreadPoolExecutor(max_workers=32) as pool:
    for minute, n in enumerate(counts):
        start = t0 + 60 * minute
        for j in range(n):
            time.sleep(max(0.0, start + 60 * j / max(n, 1) - time.time()))
            pool.submit(call)
        time.sleep(max(0.0, start + 60 - time.time()))
        print(f"minute {minute:3d}: {n:4d} requests, min-scale now {timeline[-1]['min_scale'] if timeline else '?'}", flush=True)
stop.set()
json.dump({"plan": plan, "timeline": timeline, "results": results}, open(f"{out_dir}/replay-result.json", "w"))

# Did min-scale rise before the peaks? Compare the idle stretch before each peak with the last
# three minutes before it.
def values(lo, hi):
    return [p["min_scale"] for p in timeline if lo <= p["t"] < hi]
risen = []
for peak in plan["peaks"]:
    before = values(60 * (peak - 3), 60 * peak)
    idle = values(60 * (peak - 8), 60 * (peak - 4))
    ok = bool(before) and bool(idle) and max(before) > min(idle)
    risen.append(ok)
    print(f"peak at minute {peak}: min-scale idle {min(idle) if idle else '?'} -> before peak {max(before) if before else '?'}"
          f" ({'raised ahead' if ok else 'NOT raised ahead'})")
print(f"requests: {results['ok']} fast, {results['slow']} slower than 1 s (cold start), {results['failed']} failed")
if not any(risen):
    sys.exit("e2e-kind: MESP did not raise min-scale ahead of any peak after the warm-up")
print("e2e-kind: min-scale rose before the peak")
PY
log "done; timeline and plan in $out_dir (Grafana: kubectl -n monitoring port-forward svc/kps-grafana 3000:80)"
