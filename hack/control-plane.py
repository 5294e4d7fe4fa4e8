#!/usr/bin/env python3
"""A real, local control plane for MESP's integration tests: etcd + kube-apiserver + Prometheus.

Everything binds to 127.0.0.1 on free ports, lives in one work directory and is stopped again.
By hand:
    hack/control-plane.py up [--dir DIR] [--backfill FILE.om] [--no-prometheus]
        starts the servers in the background, writes DIR/state.json and DIR/admin.kubeconfig,
        prints the state (ports, kubeconfigs, Prometheus URL) as JSON
    hack/control-plane.py down [--dir DIR]
        stops what `up` started (apiserver before etcd)
The test fixtures import this file and use the ControlPlane class directly.

Needs: /usr/bin/etcd, /usr/bin/prometheus, /usr/bin/promtool (Debian etcd-server, prometheus),
openssl, and a kube-apiserver built by hack/build-kube-apiserver.sh (called here; cached by version).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_KUBE_VERSION = "1.34.3"
ADMIN_USER = "mesp-admin"
OPERATOR_NAMESPACE = "mesp-system"
OPERATOR_SERVICE_ACCOUNT = "mesp"


# The API server's audit log, kept as the write log of the tests: who (user and user agent) created,
# changed or deleted which Knative or MESP object or Lease. Lease writes keep their body too, so the
# holder of every shard Lease at any time can be read back. Reads are not logged.
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Request
    verbs: ["create", "update", "patch", "delete"]
    resources:
      - group: coordination.k8s.io
        resources: ["leases"]
  - level: Metadata
    verbs: ["create", "update", "patch", "delete"]
    resources:
      - group: serving.knative.dev
      - group: mesp.dev
  - level: None
"""


class ControlPlaneError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kube_apiserver_binary(version: str = DEFAULT_KUBE_VERSION) -> Path:
    """Path of the cached kube-apiserver; builds it (≈12 min, once) when missing."""
    out = subprocess.run([str(REPO / "hack" / "build-kube-apiserver.sh"), version], check=True,
                         stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()
    path = Path(out[-1])
    if not path.is_file():
        raise ControlPlaneError(f"build-kube-apiserver.sh printed {path}, which does not exist")
    return path


def _need(binary: str) -> str:
    path = shutil.which(binary) or (f"/usr/bin/{binary}" if Path(f"/usr/bin/{binary}").exists() else None)
    if not path:
        raise ControlPlaneError(f"{binary} not found: apt-get install -y --no-install-recommends etcd-server prometheus")
    return path


class Process:
    def __init__(self, name: str, argv: list[str], log_path: Path, detach: bool = False):
        self.name, self.argv, self.log_path = name, argv, log_path
        self.log = open(log_path, "ab")
        self.popen = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=detach)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0, kill: bool = False) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self.log.close()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class ControlPlane:
    """etcd + kube-apiserver (+ Prometheus) in `workdir`. Use start()/stop() or as a context manager."""

    def __init__(self, workdir: Path | str | None = None, *, kube_version: str = DEFAULT_KUBE_VERSION,
                 detach: bool = False, operator_namespace: str = OPERATOR_NAMESPACE,
                 operator_service_account: str = OPERATOR_SERVICE_ACCOUNT, audit: bool = True):
        self.audit = audit  # the write log (AUDIT_POLICY); benchmarks turn it off, it costs every write a log line
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="mesp-cp-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kube_version = kube_version
        self.detach = detach
        self.processes: dict[str, Process] = {}
        self.admin_token = os.urandom(16).hex()
        self.operator_token = os.urandom(16).hex()
        self.operator_user = f"system:serviceaccount:{operator_namespace}:{operator_service_account}"
        self.etcd_port = self.apiserver_port = self.prometheus_port = None

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self, prometheus: bool = True, backfill: Path | None = None) -> "ControlPlane":
        try:
            self.start_etcd()
            self.start_apiserver()
            if prometheus:
                if backfill is not None:
                    self.backfill(backfill)
                self.start_prometheus()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for name in ("prometheus", "kube-apiserver", "etcd"):  # apiserver before etcd
            proc = self.processes.pop(name, None)
            if proc is not None:
                proc.stop()

    # -- etcd -----------------------------------------------------------------------------------
    def start_etcd(self) -> None:
        self.etcd_port, peer = free_port(), free_port()
        data = self.workdir / "etcd"
        argv = [_need("etcd"), "--name", "mesp", "--data-dir", str(data),
                "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
                "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"mesp=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync", "--quota-backend-bytes", str(4 * 1024**3), "--log-level", "warn"]
        self.processes["etcd"] = Process("etcd", argv, self.workdir / "etcd.log", self.detach)
        self._wait(lambda: self._http_ok(f"http://127.0.0.1:{self.etcd_port}/health"), "etcd", 20)

    # -- kube-apiserver -------------------------------------------------------------------------
    def start_apiserver(self) -> None:
        binary = kube_apiserver_binary(self.kube_version)
        self.apiserver_port = free_port()
        certs = self.workdir / "certs"
        certs.mkdir(exist_ok=True)
        sa_key, sa_pub = certs / "sa.key", certs / "sa.pub"
        if not sa_key.exists():
            subprocess.run(["openssl", "genrsa", "-out", str(sa_key), "2048"], check=True, capture_output=True)
            subprocess.run(["openssl", "rsa", "-in", str(sa_key), "-pubout", "-out", str(sa_pub)],
                           check=True, capture_output=True)
        ns = self.operator_user.split(":")[2]
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(
            f'{self.admin_token},{ADMIN_USER},uid-admin,"system:masters"\n'
            f'{self.operator_token},{self.operator_user},uid-operator,'
            f'"system:serviceaccounts,system:serviceaccounts:{ns}"\n')
        audit_policy = self.workdir / "audit-policy.yaml"
        audit_policy.write_text(AUDIT_POLICY)
        audit = (["--audit-policy-file", str(audit_policy), "--audit-log-path", str(self.audit_log),
                  "--audit-log-format", "json", "--audit-log-mode", "blocking"] if self.audit else [])
        argv = [str(binary),
                "--etcd-servers", f"http://127.0.0.1:{self.etcd_port}", *audit,
                "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
                "--secure-port", str(self.apiserver_port),
                "--cert-dir", str(certs),
                "--token-auth-file", str(tokens),
                "--authorization-mode", "RBAC",
                "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                "--service-account-key-file", str(sa_pub),
                "--service-account-signing-key-file", str(sa_key),
                "--service-cluster-ip-range", "10.96.0.0/16",
                "--disable-admission-plugins", "ServiceAccount",
                "--event-ttl", "1h", "--v", "1"]
        self.processes["kube-apiserver"] = Process("kube-apiserver", argv, self.workdir / "kube-apiserver.log",
                                                   self.detach)
        self._wait(self._apiserver_ready, "kube-apiserver", 90)
        self.write_kubeconfig(self.admin_token, self.workdir / "admin.kubeconfig", ADMIN_USER)
        self.write_kubeconfig(self.operator_token, self.workdir / "operator.kubeconfig", "mesp-operator")

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    def audit_events(self) -> list[dict]:
        """The audit log's entries so far (see AUDIT_POLICY), oldest first."""
        if not self.audit_log.exists():
            return []
        lines = self.audit_log.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{") and line.endswith("}")]

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def ca_file(self) -> Path:
        # --cert-dir makes a self-signed CA and a serving cert; apiserver.crt holds both.
        return self.workdir / "certs" / "apiserver.crt"

    def _apiserver_ready(self) -> bool:
        if not self.ca_file.exists():
            return False
        try:  # the file appears before it is completely written
            ctx = ssl.create_default_context(cafile=str(self.ca_file))
        except ssl.SSLError:
            return False
        req = urllib.request.Request(f"{self.apiserver_url}/readyz",
                                     headers={"Authorization": f"Bearer {self.admin_token}"})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    def write_kubeconfig(self, token: str, path: Path, user: str) -> Path:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "mesp",
            "clusters": [{"name": "local", "cluster": {"server": self.apiserver_url,
                                                       "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "mesp", "context": {"cluster": "local", "user": user}}],
        }
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        return path

    @property
    def admin_kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def operator_kubeconfig(self) -> Path:
        return self.workdir / "operator.kubeconfig"

    # -- Prometheus ------------------------------------------------------------------------------
    @property
    def prometheus_dir(self) -> Path:
        return self.workdir / "prometheus"

    def backfill(self, openmetrics: Path) -> None:
        """Write TSDB blocks from an OpenMetrics file (promtool), before Prometheus starts."""
        self.prometheus_dir.mkdir(exist_ok=True)
        result = subprocess.run([_need("promtool"), "tsdb", "create-blocks-from", "openmetrics",
                                 "--max-block-duration=24h", str(openmetrics), str(self.prometheus_dir)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise ControlPlaneError(f"promtool backfill failed: {result.stderr.strip()[-2000:]}")

    def start_prometheus(self) -> None:
        if self.prometheus_port is None:
            self.prometheus_port = free_port()  # kept across restarts: clients keep their URL
        self.prometheus_dir.mkdir(exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\nscrape_configs: []\n")
        argv = [_need("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={self.prometheus_dir}",
                f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
                "--storage.tsdb.retention.time=3650d", "--log.level=warn"]
        self.processes["prometheus"] = Process("prometheus", argv, self.workdir / "prometheus.log", self.detach)
        self._wait(lambda: self._http_ok(f"{self.prometheus_url}/-/ready"), "prometheus", 60)

    def stop_prometheus(self, kill: bool = True) -> None:
        """Kill Prometheus (SIGKILL by default: an outage, not a shutdown)."""
        proc = self.processes.pop("prometheus", None)
        if proc is not None:
            proc.stop(kill=kill)

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    # -- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _http_ok(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _wait(self, ready, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.processes.get(name)
            if proc is not None and not proc.alive():
                raise ControlPlaneError(f"{name} exited with {proc.popen.returncode}:\n{proc.tail()}")
            if ready():
                return
            time.sleep(0.2)
        proc = self.processes.get(name)
        raise ControlPlaneError(f"{name} not ready after {timeout:.0f}s:\n{proc.tail() if proc else ''}")

    def state(self) -> dict:
        return {
            "workdir": str(self.workdir),
            "apiserver": self.apiserver_url if self.apiserver_port else None,
            "admin_kubeconfig": str(self.admin_kubeconfig),
            "operator_kubeconfig": str(self.operator_kubeconfig),
            "operator_user": self.operator_user,
            "prometheus": self.prometheus_url if self.prometheus_port else None,
            "pids": {name: proc.pid for name, proc in self.processes.items()},
        }


def _stop_pids(pids: dict) -> None:
    for name in ("prometheus", "kube-apiserver", "etcd"):
        pid = pids.get(name)
        if not pid:
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start etcd, kube-apiserver and Prometheus in the background")
    up.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "mesp-control-plane"))
    up.add_argument("--backfill", type=Path, help="OpenMetrics file to backfill into Prometheus first")
    up.add_argument("--no-prometheus", action="store_true")
    up.add_argument("--kube-version", default=DEFAULT_KUBE_VERSION)
    down = sub.add_parser("down", help="stop what `up` started")
    down.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "mesp-control-plane"))
    args = parser.parse_args(argv)
    state_file = Path(args.dir) / "state.json"
    try:
        if args.command == "up":
            if state_file.exists():
                print(f"control-plane: {state_file} exists; run `down --dir {args.dir}` first", file=sys.stderr)
                return 1
            cp = ControlPlane(args.dir, kube_version=args.kube_version, detach=True)
            cp.start(prometheus=not args.no_prometheus, backfill=args.backfill)
            state_file.write_text(json.dumps(cp.state(), indent=2))
            print(json.dumps(cp.state(), indent=2))
            return 0
        if not state_file.exists():
            print(f"control-plane: nothing running in {args.dir}", file=sys.stderr)
            return 1
        _stop_pids(json.loads(state_file.read_text()).get("pids", {}))
        state_file.unlink()
        return 0
    except (ControlPlaneError, subprocess.CalledProcessError) as exc:
        print(f"control-plane: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
