"""The Knative suite's second test bed: a cluster someone else started (hack/e2e-kind.sh's kind
cluster with real Knative Serving, Kourier and real pods), reached through its admin kubeconfig.

It offers what the scenarios use of hack/knative-bed.py's KnativeBed, so the same tests run on both:
  admin_kubeconfig      the cluster's (MESP_KNATIVE_KUBECONFIG)
  operator_kubeconfig   a token of the chart's ServiceAccount (mesp-system/mesp), made here, so the
                        operator runs with exactly the chart's RBAC, as on the bed
  prometheus_url         a Prometheus started here on 127.0.0.1 (hack/control-plane.py's), holding
                        the replayed history, as on the bed (the operator runs on this machine too)
  set_load              real requests: `concurrency` requests kept in flight to each Revision's
                        Service through the ingress (MESP_KNATIVE_INGRESS), each held for a second by
                        the test image (MESP_KNATIVE_IMAGE, Knative's autoscale-go: ?sleep=1000)
  kill / restart        Knative's autoscaler Deployment scaled to 0 and back to 1
Needs Prometheus and promtool on this machine, like the bed.
"""

from __future__ import annotations

import base64
import os
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml

from knative_helpers import load_bed_module

KNATIVE_NAMESPACE = "knative-serving"
COMPONENT_DEPLOYMENTS = {"knative-autoscaler": "autoscaler", "knative-controller": "controller",
                         "knative-webhook": "webhook"}


def external_kubeconfig(serving_version: str | None) -> str | None:
    """The kubeconfig of the cluster to use instead of starting a bed: MESP_KNATIVE_KUBECONFIG, or
    MESP_KNATIVE_1_20_KUBECONFIG for the Knative 1.20 scenarios; None: start a bed."""
    if serving_version == "0.47.0":
        return os.environ.get("MESP_KNATIVE_1_20_KUBECONFIG") or None
    return os.environ.get("MESP_KNATIVE_KUBECONFIG") or None


class ExternalBed(load_bed_module().ControlPlane):
    def __init__(self, kubeconfig: str, workdir: Path | None = None):
        super().__init__(workdir or Path(tempfile.mkdtemp(prefix="mesp-kn-external-")))
        self.kubeconfig = Path(kubeconfig)
        self.ingress = os.environ.get("MESP_KNATIVE_INGRESS", "http://127.0.0.1:31080")
        self.timings: dict[str, float] = {}
        self._load_stop = threading.Event()
        self._load_threads: list[threading.Thread] = []

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, prometheus: bool = True, backfill: Path | None = None) -> "ExternalBed":
        t0 = time.monotonic()
        self._operator_token()
        if prometheus:
            if backfill is not None:
                self.backfill(backfill)
            self.start_prometheus()
        self.timings["startup_s"] = time.monotonic() - t0
        return self

    def stop(self) -> None:
        self.set_load({})
        for proc in self.processes.values():
            proc.stop()
        self.processes.clear()

    @property
    def admin_kubeconfig(self) -> Path:
        return self.kubeconfig

    def _api(self):
        from kubernetes import config

        return config.new_client_from_config(str(self.kubeconfig))

    def _operator_token(self) -> None:
        """The chart's ServiceAccount and a token of it, written as the operator's kubeconfig."""
        from kubernetes import client

        ns, sa = self.operator_user.split(":")[2:4]
        api_client = self._api()
        try:
            core = client.CoreV1Api(api_client)
            for create, body in ((core.create_namespace, {"metadata": {"name": ns}}),
                                 (lambda b: core.create_namespaced_service_account(ns, b), {"metadata": {"name": sa}})):
                try:
                    create(body)
                except client.exceptions.ApiException as exc:
                    if exc.status != 409:
                        raise
            token = core.create_namespaced_service_account_token(
                sa, ns, {"spec": {"expirationSeconds": 86400}}).status.token
            cfg = api_client.configuration
        finally:
            api_client.close()
        cluster = {"server": cfg.host}
        if cfg.ssl_ca_cert:
            cluster["certificate-authority-data"] = base64.b64encode(Path(cfg.ssl_ca_cert).read_bytes()).decode()
        self.operator_kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "mesp",
            "clusters": [{"name": "cluster", "cluster": cluster}],
            "users": [{"name": "operator", "user": {"token": token}}],
            "contexts": [{"name": "mesp", "context": {"cluster": "cluster", "user": "operator"}}]}))

    # -- outages --------------------------------------------------------------------------------
    def _scale(self, name: str, replicas: int) -> None:
        from kubernetes import client

        api_client = self._api()
        try:
            client.AppsV1Api(api_client).patch_namespaced_deployment_scale(
                COMPONENT_DEPLOYMENTS[name], KNATIVE_NAMESPACE, {"spec": {"replicas": replicas}})
        finally:
            api_client.close()

    def kill(self, name: str) -> None:
        self._scale(name, 0)

    def restart(self, name: str) -> None:
        self._scale(name, 1)

    # -- load -----------------------------------------------------------------------------------
    def set_load(self, load: dict) -> None:
        """{"<ns>/<revision>": {"concurrency": c, ...}}: c requests kept in flight to the Revision's
        Service (each held ~1 s by the test image) until the next call."""
        self._load_stop.set()
        for thread in self._load_threads:
            thread.join(5)
        self._load_stop, self._load_threads = threading.Event(), []
        for key, figures in load.items():
            namespace, revision = key.split("/")
            host = f"{self._service_of(namespace, revision)}.{namespace}.example.com"
            for _ in range(int(round(figures.get("concurrency", 0)))):
                thread = threading.Thread(target=self._requests, args=(host, self._load_stop), daemon=True)
                thread.start()
                self._load_threads.append(thread)

    def _service_of(self, namespace: str, revision: str) -> str:
        from kubernetes import client

        api_client = self._api()
        try:
            body = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
                "serving.knative.dev", "v1", namespace, "revisions", revision)
        finally:
            api_client.close()
        return body["metadata"]["labels"]["serving.knative.dev/service"]

    def _requests(self, host: str, stop: threading.Event) -> None:
        while not stop.is_set():
            request = urllib.request.Request(f"{self.ingress}/?sleep=1000", headers={"Host": host})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    response.read()
            except OSError:
                stop.wait(0.5)

    def state(self) -> dict:
        return {"kubeconfig": str(self.kubeconfig), "prometheus_url": self.prometheus_url,
                "operator_kubeconfig": str(self.operator_kubeconfig)}
