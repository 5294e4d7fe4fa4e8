#!/usr/bin/env python3
"""Real Knative Serving, without containers, inside a network namespace of its own (issue 15).

On top of hack/control-plane.py's servers (kube-apiserver, Prometheus) it runs:
  etcd 3.6, kube-controller-manager and kube-scheduler (built from the Go module proxy, stamped),
  KWOK managing fake nodes (pods become Running and Ready there without containers),
  Knative Serving's webhook, controller and autoscaler (with Knative's own CRDs, config maps, RBAC
  and webhook registrations, taken from the Go module cache of the pinned knative.dev/serving),
  and a stand-in for the pods' queue-proxy stats endpoint (:9090 on every pod IP), the only
  stand-in: it replaces the user's pods, and reports zero load or the load a test sets.
Everything runs in a network namespace that the bed creates (`ip netns add`), with only a loopback
device: the service CIDR, the KWOK pod CIDR and the system components' addresses are routed to `lo`,
so the apiserver reaches the webhook through its Service's ClusterIP and the autoscaler scrapes pod
IPs, and no traffic can leave the namespace. The process that starts the bed enters the namespace
(setns) for as long as the bed runs; processes it starts from then on are inside too.

By hand (as root):
    hack/knative-bed.py up [--dir DIR] [--nodes N] [--serving-version 0.48.0] [--backfill FILE.om] [--no-prometheus]
        starts everything in the background, writes DIR/state.json and DIR/admin.kubeconfig and
        prints the state as JSON; reach it with `ip netns exec NETNS kubectl --kubeconfig ...`
    hack/knative-bed.py down [--dir DIR]
        stops what `up` started (Knative first, the apiserver before etcd) and deletes the namespace
The test fixtures (tests/knative/conftest.py) import this file and use the KnativeBed class.

Needs: root (network namespaces), iproute2, openssl, Prometheus (Debian), PyYAML, and the binaries
that hack/build-kube-binary.sh and hack/build-go-binary.sh build (called here; cached by version).
"""

from __future__ import annotations

import argparse
import ctypes
import http.server
import importlib.util
import json
import os
import shutil
import signal
import socketserver
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HACK = REPO / "hack"


def _control_plane_module():
    """hack/control-plane.py, loaded once under the name the integration tests use."""
    module = sys.modules.get("mesp_control_plane")
    if module is None:
        spec = importlib.util.spec_from_file_location("mesp_control_plane", HACK / "control-plane.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["mesp_control_plane"] = module
        spec.loader.exec_module(module)
    return module


cp = _control_plane_module()
ControlPlane, ControlPlaneError, Process, free_port = cp.ControlPlane, cp.ControlPlaneError, cp.Process, cp.free_port

KNATIVE_SERVING_VERSION = "0.48.0"   # the newest that builds from the module proxy (GUIDE §5)
# The Knative release that module version is (knative-v1.21.0 and v0.48.0 tag one commit, January
# 2026). The module's YAML says app.kubernetes.io/version: devel; a release's YAML carries this, so
# the bed installs it as a release would (MESP's actuation: auto reads it from the Revision CRD).
KNATIVE_RELEASES = {"0.47.0": "1.20.0", "0.48.0": "1.21.0"}
KNATIVE_NAMESPACE = "knative-serving"
SERVICE_CIDR = "10.96.0.0/16"        # ControlPlane's --service-cluster-ip-range
POD_CIDR = "10.244.0.0/16"           # KWOK's pod IPs
NODE_CIDR = "10.245.0.0/16"          # KWOK's node IPs (nothing listens there: no kubelet)
SYSTEM_CIDR = "10.246.0.0/24"        # the Knative components' "pod IPs"
AUTOSCALER_IP = "10.246.0.2"         # POD_IP of the autoscaler (its stats forwarder publishes it)
QUEUE_METRICS_PORT = 9090            # knative.dev/serving pkg/networking.AutoscalingQueueMetricsPort
NODE_ANNOTATION = "kwok.x-k8s.io/node"
CLONE_NEWNET = 0x40000000
# Knative's components as processes: (binary, POD_NAME, PROFILING_PORT, extra env).
# Ports are fixed (the namespace is the bed's own); the controller's kubelet probe server is
# compiled out (hack/build-go-binary.sh), since the autoscaler's stats server owns :8080.
COMPONENTS = {
    "knative-webhook": ("knative-webhook", "webhook-0", 8008,
                        # The webhook Service maps 443 to the pod's 8443; with no kube-proxy the
                        # apiserver's connection to ClusterIP:443 lands on the webhook itself.
                        {"WEBHOOK_NAME": "webhook", "WEBHOOK_PORT": "443"}),
    "knative-controller": ("knative-controller", "controller-0", 8009, {}),
    "knative-autoscaler": ("knative-autoscaler", "autoscaler-0", 8010, {"POD_IP": AUTOSCALER_IP}),
}


class BedError(ControlPlaneError):
    pass


# ---------------------------------------------------------------------------------------- binaries
def kube_binary(name: str, version: str) -> Path:
    return _built([str(HACK / "build-kube-binary.sh"), name, version])


def go_binary(name: str, env: dict | None = None) -> Path:
    return _built([str(HACK / "build-go-binary.sh"), name], env)


def _built(argv: list[str], env: dict | None = None) -> Path:
    """Path a build script prints (a cached binary, or built now: see the script for the cost)."""
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    if result.returncode != 0:
        raise BedError(f"{' '.join(argv)} failed:\n{result.stderr[-3000:]}")
    path = Path(result.stdout.strip().splitlines()[-1])
    if not path.is_file():
        raise BedError(f"{argv[0]} printed {path}, which does not exist")
    return path


def go_module_dir(module: str, version: str) -> Path:
    """The unpacked module in the Go module cache (downloaded from the proxy when missing)."""
    result = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], capture_output=True,
                            text=True, cwd=tempfile.gettempdir())
    if result.returncode != 0:
        raise BedError(f"go mod download {module}@{version}: {result.stdout[-1000:]}{result.stderr[-1000:]}")
    return Path(json.loads(result.stdout)["Dir"])


def knative_manifests(serving_version: str = KNATIVE_SERVING_VERSION) -> dict[str, list[Path]]:
    """Knative Serving's own YAML, from the pinned modules. Module zips drop symlinks, and serving's
    networking/caching CRDs and config-network.yaml are symlinks there: they come from the
    knative.dev/networking and knative.dev/caching versions that serving's go.mod requires."""
    serving = go_module_dir("knative.dev/serving", f"v{serving_version}")
    requires = {}
    for line in (serving / "go.mod").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("knative.dev/networking", "knative.dev/caching"):
            requires[parts[0]] = parts[1]
    networking = go_module_dir("knative.dev/networking", requires["knative.dev/networking"])
    caching = go_module_dir("knative.dev/caching", requires["knative.dev/caching"])
    core = serving / "config" / "core"
    return {
        "namespace": [core / "100-namespace.yaml"],
        "rbac": sorted((core / "200-roles").glob("*.yaml")) + [core / "200-serviceaccount.yaml"],
        "crds": sorted((core / "300-resources").glob("*.yaml"))
        + [networking / "config" / f for f in ("certificate.yaml", "ingress.yaml", "serverlessservice.yaml",
                                               "domain-claim.yaml")]
        + [caching / "config" / "image.yaml"],
        "configmaps": sorted((core / "configmaps").glob("*.yaml")) + [networking / "config" / "config-network.yaml"],
        # the Services only: the Deployments are the processes this bed runs
        "services": [core / "deployments" / f for f in ("webhook.yaml", "controller.yaml", "autoscaler.yaml")],
        "webhooks": sorted((core / "webhooks").glob("*.yaml")),
    }


# ------------------------------------------------------------------------------- network namespace
class NetNamespace:
    """A named network namespace (`ip netns add`) with only loopback, and routes to it."""

    def __init__(self, name: str):
        self.name = name
        self.path = Path("/run/netns") / name
        self._home_fd: int | None = None

    def create(self) -> None:
        if os.geteuid() != 0:
            raise BedError("the Knative test bed needs root: it creates a network namespace")
        self._ip("netns", "add", self.name)
        self._ip("-n", self.name, "link", "set", "lo", "up")
        for cidr in (SERVICE_CIDR, POD_CIDR, NODE_CIDR, SYSTEM_CIDR):
            self._ip("-n", self.name, "route", "add", "local", cidr, "dev", "lo")

    def enter(self) -> None:
        """Move the calling thread (and every process and thread it starts later) into the namespace."""
        self._home_fd = os.open("/proc/self/ns/net", os.O_RDONLY)
        _setns(self.path)

    def leave(self) -> None:
        if self._home_fd is not None:
            _setns_fd(self._home_fd)
            os.close(self._home_fd)
            self._home_fd = None

    def delete(self) -> None:
        if self.path.exists():
            subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)

    @staticmethod
    def _ip(*args: str) -> None:
        result = subprocess.run(["ip", *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise BedError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def _setns(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        _setns_fd(fd)
    finally:
        os.close(fd)


def _setns_fd(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise BedError(f"setns: {os.strerror(err)}")


# ------------------------------------------------------------------------------ a small REST client
class Kube:
    """Just enough of a Kubernetes client for the bed (stdlib only, like control-plane.py)."""

    def __init__(self, server: str, token: str, ca_file: Path):
        self.server, self.token = server, token
        self.ctx = ssl.create_default_context(cafile=str(ca_file))
        self._resources: dict[str, dict[str, tuple[str, bool]]] = {}

    def request(self, method: str, path: str, body=None, content_type: str = "application/json",
                ok=(200, 201)) -> dict:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.server + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {self.token}", "Content-Type": content_type,
                                              "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=15) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            if exc.code in ok:
                return json.loads(exc.read() or b"{}")
            raise BedError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:1000].decode(errors='replace')}") from None

    def get(self, path: str) -> dict | None:
        try:
            return self.request("GET", path)
        except BedError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise

    def resource_path(self, doc: dict) -> str:
        """Collection path of an object's kind (discovery, cached per group/version)."""
        api_version, kind = doc["apiVersion"], doc["kind"]
        if api_version not in self._resources:
            base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            listing = self.request("GET", base)
            self._resources[api_version] = {r["kind"]: (r["name"], r["namespaced"])
                                            for r in listing["resources"] if "/" not in r["name"]}
        plural, namespaced = self._resources[api_version][kind]
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        ns = doc["metadata"].get("namespace")
        return f"{base}/namespaces/{ns}/{plural}" if namespaced else f"{base}/{plural}"

    def create(self, doc: dict) -> dict:
        """Create; an object that already exists is left as it is."""
        try:
            return self.request("POST", self.resource_path(doc), doc)
        except BedError as exc:
            if "HTTP 409" in str(exc):
                return doc
            raise


def load_yaml(path: Path) -> list[dict]:
    import yaml

    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# ------------------------------------------------------------------------------- the pods' stats
def encode_stat(pod_name: str, concurrency: float, rps: float, uptime: float, now: float) -> bytes:
    """A knative.dev/serving metrics.Stat protobuf (stat.proto), as the queue-proxy serves it."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            byte, n = n & 0x7F, n >> 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                return bytes(out)

    name = pod_name.encode()
    msg = b"\x0a" + varint(len(name)) + name
    # 2 average_concurrent_requests, 3 ..._proxied (none: no activator), 4 request_count,
    # 5 proxied_request_count, 6 process_uptime: doubles (wire type 1)
    for field, value in ((2, concurrency), (3, 0.0), (4, rps), (5, 0.0), (6, uptime)):
        msg += bytes([field << 3 | 1]) + struct.pack("<d", value)
    return msg + b"\x38" + varint(int(now))


class PodStats:
    """Serves GET http://<pod IP>:9090/metrics for every KWOK pod: the Stat its queue-proxy would
    report. Load per revision comes from a JSON file that tests write:
        {"<namespace>/<revision>": {"concurrency": total in-flight requests, "rps": total per second}}
    and is split evenly over the revision's pods that are Ready. A revision not listed: zero load."""

    def __init__(self, kube: Kube, load_file: Path, port: int = QUEUE_METRICS_PORT):
        self.kube, self.load_file, self.port = kube, load_file, port
        self.pods: dict[str, tuple[str, str, float]] = {}   # pod IP -> (pod name, ns/revision, start)
        self.ready: dict[str, int] = {}
        self.started = time.time()

    def refresh(self) -> None:
        listing = self.kube.request("GET", "/api/v1/pods?labelSelector=serving.knative.dev%2Frevision")
        pods, ready = {}, {}
        for pod in listing.get("items", []):
            ip = pod.get("status", {}).get("podIP")
            if not ip:
                continue
            key = f"{pod['metadata']['namespace']}/{pod['metadata']['labels']['serving.knative.dev/revision']}"
            pods[ip] = (pod["metadata"]["name"], key, time.time())
            if any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in pod["status"].get("conditions", [])):
                ready[key] = ready.get(key, 0) + 1
        for ip, (name, key, _) in pods.items():  # keep each pod's first-seen time (its uptime)
            if ip in self.pods and self.pods[ip][0] == name:
                pods[ip] = self.pods[ip]
        self.pods, self.ready = pods, ready

    def load(self) -> dict:
        try:
            return json.loads(self.load_file.read_text())
        except (OSError, ValueError):
            return {}

    def stat_for(self, ip: str) -> bytes | None:
        if ip not in self.pods:
            self.refresh()
        if ip not in self.pods:
            return None
        name, key, seen = self.pods[ip]
        share = self.load().get(key, {})
        n = max(self.ready.get(key, 1), 1)
        now = time.time()
        return encode_stat(name, float(share.get("concurrency", 0.0)) / n, float(share.get("rps", 0.0)) / n,
                           now - seen, now)

    def serve(self) -> None:
        stats = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                body = stats.stat_for(self.connection.getsockname()[0]) if self.path == "/metrics" else None
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        def poll():
            while True:
                try:
                    stats.refresh()
                except Exception as exc:  # the apiserver may be briefly away; keep serving
                    print(f"pod-stats: refresh failed: {exc}", file=sys.stderr, flush=True)
                time.sleep(1.0)

        threading.Thread(target=poll, daemon=True).start()
        # all addresses: every pod IP is a local address of the namespace
        Server(("0.0.0.0", self.port), Handler).serve_forever()


# --------------------------------------------------------------------------------------- the bed
class KnativeBed(ControlPlane):
    """etcd 3.6 + kube-apiserver + controller-manager + scheduler + KWOK + Knative Serving
    (+ Prometheus) in a network namespace of its own. start()/stop(), or a context manager."""

    STOP_ORDER = ("knative-autoscaler", "knative-controller", "knative-webhook", "pod-stats", "kwok",
                  "kube-scheduler", "kube-controller-manager", "prometheus", "kube-apiserver", "etcd")

    def __init__(self, workdir=None, *, kube_version: str = cp.DEFAULT_KUBE_VERSION,
                 serving_version: str = KNATIVE_SERVING_VERSION, nodes: int = 1, detach: bool = False,
                 netns: str | None = None, **kwargs):
        super().__init__(workdir, kube_version=kube_version, detach=detach, **kwargs)
        self.serving_version = serving_version
        self.nodes = nodes
        self.netns = NetNamespace(netns or f"mesp-kn-{os.getpid()}-{os.urandom(3).hex()}")
        self.load_file = self.workdir / "pod-load.json"
        self.timings: dict[str, float] = {}
        self.knative_token: str | None = None
        self.kube: Kube | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, prometheus: bool = True, backfill: Path | None = None) -> "KnativeBed":
        t0 = time.monotonic()
        # Everything built (or found in the caches) before the namespace, which has no network.
        binaries = self.binaries()
        manifests = knative_manifests(self.serving_version)
        self.timings["binaries_s"] = time.monotonic() - t0
        try:
            self.netns.create()
            self.netns.enter()
            t1 = time.monotonic()
            self.start_etcd(binaries["etcd"])
            self.start_apiserver()
            self.kube = Kube(self.apiserver_url, self.admin_token, self.ca_file)
            self.start_kube_controllers(binaries)
            self.start_kwok(binaries["kwok"])
            self.timings["kubernetes_s"] = time.monotonic() - t1
            t2 = time.monotonic()
            self.start_pod_stats()
            self.install_knative(manifests)
            self.start_knative(binaries)
            self.timings["knative_s"] = time.monotonic() - t2
            if prometheus:
                if backfill is not None:
                    self.backfill(backfill)
                self.start_prometheus()
            self.timings["startup_s"] = time.monotonic() - t1
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for name in self.STOP_ORDER:
            proc = self.processes.pop(name, None)
            if proc is not None:
                proc.stop(timeout=stop_grace(name))
        for proc in self.processes.values():
            proc.stop()
        self.processes.clear()
        self.netns.leave()
        self.netns.delete()

    def kill(self, name: str) -> None:
        """SIGKILL one component (an outage, not a shutdown); restart() brings it back."""
        proc = self.processes[name]
        proc.stop(kill=True)

    def restart(self, name: str) -> None:
        """Start a component killed by kill() again, with the same command and environment."""
        old = self.processes[name]
        if old.alive():
            raise BedError(f"{name} is still running")
        env = getattr(old, "env", None)
        self._start(name, old.argv, env)

    def binaries(self) -> dict[str, Path]:
        env = {"KNATIVE_SERVING_VERSION": self.serving_version}
        out = {name: kube_binary(name, self.kube_version) for name in ("kube-controller-manager", "kube-scheduler")}
        out["kube-apiserver"] = cp.kube_apiserver_binary(self.kube_version)
        for name in ("etcd", "kwok", *COMPONENTS):
            out[name] = go_binary(name, env)
        return out

    def _start(self, name: str, argv: list[str], env: dict | None = None) -> Process:
        proc = Process(name, argv, self.workdir / f"{name}.log", self.detach) if env is None else \
            _EnvProcess(name, argv, self.workdir / f"{name}.log", self.detach, env)
        self.processes[name] = proc
        return proc

    # -- Kubernetes -----------------------------------------------------------------------------
    def start_etcd(self, binary: Path | None = None) -> None:
        """etcd 3.6 (Debian's 3.4 makes KWOK's watches back off for up to ~40 s: GUIDE §5)."""
        binary = binary or go_binary("etcd")
        self.etcd_port, peer = free_port(), free_port()
        shutil.rmtree(self.workdir / "etcd", ignore_errors=True)  # a fresh cluster every start
        argv = [str(binary), "--name", "mesp", "--data-dir", str(self.workdir / "etcd"),
                "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
                "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"mesp=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync", "--quota-backend-bytes", str(4 * 1024**3), "--log-level", "warn"]
        self._start("etcd", argv)
        self._wait(lambda: self._http_ok(f"http://127.0.0.1:{self.etcd_port}/health"), "etcd", 20)

    def start_kube_controllers(self, binaries: dict[str, Path]) -> None:
        kubeconfig = str(self.admin_kubeconfig)
        certs = self.workdir / "certs"
        common = ["--kubeconfig", kubeconfig, "--authentication-kubeconfig", kubeconfig,
                  "--authorization-kubeconfig", kubeconfig, "--bind-address", "127.0.0.1", "--leader-elect=false",
                  "--v", "1"]
        kcm_port, sched_port = free_port(), free_port()
        self._start("kube-controller-manager", [
            str(binaries["kube-controller-manager"]), *common, "--secure-port", str(kcm_port),
            "--cert-dir", str(self.workdir / "kcm-certs"),
            "--service-account-private-key-file", str(certs / "sa.key"), "--root-ca-file", str(self.ca_file),
            "--service-cluster-ip-range", SERVICE_CIDR, "--use-service-account-credentials=false"])
        self._start("kube-scheduler", [
            str(binaries["kube-scheduler"]), *common, "--secure-port", str(sched_port),
            "--cert-dir", str(self.workdir / "scheduler-certs")])
        self._wait(lambda: self._https_ok(kcm_port), "kube-controller-manager", 60)
        self._wait(lambda: self._https_ok(sched_port), "kube-scheduler", 60)

    @staticmethod
    def _https_ok(port: int) -> bool:
        ctx = ssl._create_unverified_context()  # their self-signed serving certs; /healthz only
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=ctx, timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    def start_kwok(self, binary: Path) -> None:
        argv = [str(binary), "--kubeconfig", str(self.admin_kubeconfig), "--config", str(HACK / "kwok-stages.yaml"),
                "--manage-all-nodes=false", f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}=fake",
                "--cidr", POD_CIDR, "--node-ip", NODE_CIDR.replace("0.0/16", "0.1"),
                "--server-address", f"127.0.0.1:{free_port()}",
                # KWOK renews each node's Lease every 10 s as a kubelet would, so a heartbeat late
                # under CPU load (the node-heartbeat stage posts status every 20-45 s) never makes
                # the node lifecycle controller mark the node and its pods NotReady.
                "--node-lease-duration-seconds", "40"]
        self._start("kwok", argv)
        for i in range(self.nodes):
            name = f"kwok-node-{i}"
            self.kube.create({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "annotations": {NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                             "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                        "kubernetes.io/arch": "amd64", "type": "kwok"}},
                "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                           "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"}}})
        self._wait(self._nodes_ready, "kwok", 60)

    def _nodes_ready(self) -> bool:
        nodes = self.kube.request("GET", "/api/v1/nodes").get("items", [])
        ready = [n for n in nodes if any(c["type"] == "Ready" and c["status"] == "True"
                                         for c in n.get("status", {}).get("conditions", []))]
        return len(ready) >= self.nodes

    # -- Knative --------------------------------------------------------------------------------
    def start_pod_stats(self) -> None:
        self.set_load({})
        argv = [sys.executable, str(Path(__file__).resolve()), "pod-stats", "--dir", str(self.workdir)]
        self._start("pod-stats", argv)

    def set_load(self, load: dict) -> None:
        """Load the pods' stats report: {"<ns>/<revision>": {"concurrency": c, "rps": r}} (totals)."""
        tmp = self.load_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(load))
        tmp.replace(self.load_file)

    def install_knative(self, manifests: dict[str, list[Path]]) -> None:
        docs = {group: [d for path in paths for d in load_yaml(path)] for group, paths in manifests.items()}
        release = KNATIVE_RELEASES.get(self.serving_version)
        for doc in (d for group in docs.values() for d in group):
            labels = doc["metadata"].get("labels") or {}
            if release and labels.get("app.kubernetes.io/version") == "devel":
                labels["app.kubernetes.io/version"] = release
        for group in ("namespace", "rbac", "crds"):
            for doc in docs[group]:
                self.kube.create(doc)
        self._wait_crds([d["metadata"]["name"] for d in docs["crds"]])
        for doc in docs["configmaps"]:
            if doc["metadata"]["name"] == "config-deployment":
                # no registry here: a dev.local image is one Knative never looks up
                doc["data"]["queue-sidecar-image"] = "dev.local/knative/queue:v" + self.serving_version
            self.kube.create(doc)
        for doc in docs["services"]:
            if doc["kind"] == "Service":
                self.kube.create(doc)
        for doc in docs["webhooks"]:
            self.kube.create(doc)
        # Knative's components run as its ServiceAccount `controller`, with Knative's own RBAC.
        token = self.kube.request("POST", f"/api/v1/namespaces/{KNATIVE_NAMESPACE}/serviceaccounts/controller/token",
                                  {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                   "spec": {"expirationSeconds": 7 * 86400}})
        self.knative_token = token["status"]["token"]
        self.write_kubeconfig(self.knative_token, self.knative_kubeconfig, "knative-controller")

    def _wait_crds(self, names: list[str]) -> None:
        def established() -> bool:
            for name in names:
                crd = self.kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                if not crd or not any(c["type"] == "Established" and c["status"] == "True"
                                      for c in crd.get("status", {}).get("conditions", [])):
                    return False
            return True

        self._wait(established, "kube-apiserver", 30)

    @property
    def knative_kubeconfig(self) -> Path:
        return self.workdir / "knative.kubeconfig"

    def start_knative(self, binaries: dict[str, Path]) -> None:
        for name, (binary, pod, profiling, extra) in COMPONENTS.items():
            env = {"SYSTEM_NAMESPACE": KNATIVE_NAMESPACE, "POD_NAME": pod, "CONFIG_LOGGING_NAME": "config-logging",
                   "CONFIG_OBSERVABILITY_NAME": "config-observability", "PROFILING_PORT": str(profiling),
                   "KUBECONFIG": str(self.knative_kubeconfig), **extra}
            self._start(name, [str(binaries[binary])], env)
            if name == "knative-webhook":
                self._wait(self._webhook_serving, name, 90)
        # Ready when leading: the controller's reconcilers and the autoscaler's stats bucket.
        self._wait(lambda: self._leading("controller.knative.dev.serving.pkg.reconciler.revision."),
                   "knative-controller", 90)
        self._wait(lambda: self._leading("autoscaler-bucket-"), "knative-autoscaler", 90)

    def _webhook_serving(self) -> bool:
        """The webhook has put its CA into its registrations and answers the apiserver: a Service
        with a malformed min-scale is refused by Knative's validation (dry run)."""
        for kind, name in (("mutatingwebhookconfigurations", "webhook.serving.knative.dev"),
                           ("validatingwebhookconfigurations", "validation.webhook.serving.knative.dev")):
            obj = self.kube.get(f"/apis/admissionregistration.k8s.io/v1/{kind}/{name}") or {}
            if not all(w.get("clientConfig", {}).get("caBundle") for w in obj.get("webhooks", [{}])):
                return False
        probe = {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                 "metadata": {"name": "bed-probe", "namespace": "default"},
                 "spec": {"template": {"metadata": {"annotations": {"autoscaling.knative.dev/min-scale": "abc"}},
                                       "spec": {"containers": [{"image": "dev.local/probe"}]}}}}
        try:
            self.kube.request("POST", "/apis/serving.knative.dev/v1/namespaces/default/services?dryRun=All", probe)
        except BedError as exc:
            return "min-scale" in str(exc)
        return False

    def _leading(self, lease_prefix: str) -> bool:
        """A lease whose name starts with `lease_prefix` has a holder (Knative's leader election
        names holders by host name, so which process holds it is not visible: this is a fresh etcd)."""
        leases = self.kube.request("GET", f"/apis/coordination.k8s.io/v1/namespaces/{KNATIVE_NAMESPACE}/leases")
        return any(lease["metadata"]["name"].startswith(lease_prefix) and lease.get("spec", {}).get("holderIdentity")
                   for lease in leases.get("items", []))

    # -- state ----------------------------------------------------------------------------------
    def state(self) -> dict:
        out = super().state()
        out.update({"netns": self.netns.name, "knative_kubeconfig": str(self.knative_kubeconfig),
                    "pod_load_file": str(self.load_file), "knative_serving": f"v{self.serving_version}",
                    "timings": self.timings})
        return out


class _EnvProcess(Process):
    """A Process with extra environment variables."""

    def __init__(self, name, argv, log_path, detach, env):
        self.name, self.argv, self.log_path, self.env = name, argv, log_path, env
        self.log = open(log_path, "ab")
        self.popen = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=detach, env={**os.environ, **env})


def stop_grace(name: str) -> float:
    """Seconds a process gets after SIGTERM before SIGKILL. Knative's webhook drains connections
    for longer than a test bed needs (it never stopped within 10 s here); the others stop in < 2 s."""
    return 3.0 if name.startswith("knative-") else 10.0


def _running(pid: int) -> bool:
    """Alive and not a zombie: `up` has exited, so whoever reaps its orphans may take seconds."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _stop_pids(pids: dict) -> None:
    order = list(KnativeBed.STOP_ORDER) + [n for n in pids if n not in KnativeBed.STOP_ORDER]
    for name in order:
        pid = pids.get(name)
        if not pid:
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + stop_grace(name)
        while time.monotonic() < deadline:
            if not _running(pid):
                break
            time.sleep(0.1)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _admin_kube(workdir: Path) -> Kube:
    config = json.loads((workdir / "admin.kubeconfig").read_text())
    return Kube(config["clusters"][0]["cluster"]["server"], config["users"][0]["user"]["token"],
                Path(config["clusters"][0]["cluster"]["certificate-authority"]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    default_dir = str(Path(tempfile.gettempdir()) / "mesp-knative-bed")
    up = sub.add_parser("up", help="start the test bed in the background")
    up.add_argument("--dir", default=default_dir)
    up.add_argument("--nodes", type=int, default=1)
    up.add_argument("--backfill", type=Path, help="OpenMetrics file to backfill into Prometheus first")
    up.add_argument("--no-prometheus", action="store_true")
    up.add_argument("--kube-version", default=cp.DEFAULT_KUBE_VERSION)
    up.add_argument("--serving-version", default=KNATIVE_SERVING_VERSION)
    down = sub.add_parser("down", help="stop what `up` started and delete its network namespace")
    down.add_argument("--dir", default=default_dir)
    stats = sub.add_parser("pod-stats", help=argparse.SUPPRESS)  # run by the bed, inside its namespace
    stats.add_argument("--dir", required=True)
    args = parser.parse_args(argv)
    workdir = Path(args.dir)
    state_file = workdir / "state.json"
    try:
        if args.command == "pod-stats":
            PodStats(_admin_kube(workdir), workdir / "pod-load.json").serve()
            return 0
        if args.command == "up":
            if state_file.exists():
                print(f"knative-bed: {state_file} exists; run `down --dir {args.dir}` first", file=sys.stderr)
                return 1
            bed = KnativeBed(workdir, kube_version=args.kube_version, serving_version=args.serving_version,
                             nodes=args.nodes, detach=True)
            bed.start(prometheus=not args.no_prometheus, backfill=args.backfill)
            state_file.write_text(json.dumps(bed.state(), indent=2))
            print(json.dumps(bed.state(), indent=2))
            print(f"reach it with: ip netns exec {bed.netns.name} kubectl --kubeconfig {bed.admin_kubeconfig} ...",
                  file=sys.stderr)
            return 0
        if not state_file.exists():
            print(f"knative-bed: nothing running in {args.dir}", file=sys.stderr)
            return 1
        state = json.loads(state_file.read_text())
        _stop_pids(state.get("pids", {}))
        NetNamespace(state["netns"]).delete()
        state_file.unlink()
        return 0
    except (ControlPlaneError, subprocess.CalledProcessError) as exc:
        print(f"knative-bed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
