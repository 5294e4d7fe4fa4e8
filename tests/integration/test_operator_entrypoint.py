"""`python -m mesp_operator` (what `mesp operator` runs) as a real process: ForecastOnly touches nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

import kube_helpers as kh
from kube_helpers import control_plane_module, wait_for

pytestmark = pytest.mark.integration


def test_forecast_only_writes_the_plan_and_patches_nothing(admin_client, make_namespace, control_plane, tmp_path):
    ns = make_namespace("it-forecast")
    kh.create_knative_service(admin_client, ns, "fo-svc", annotations={kh.MIN_SCALE: "3"})
    service_before = kh.get_service(admin_client, ns, "fo-svc")
    revision_before = kh.get_revision(admin_client, ns, "fo-svc-00001")
    # No capacityPerInstance or requestDurationMs, and fo-svc had no requests in the history's last
    # hour (the real day ends quiet): no duration can be measured now, so the default applies.
    kh.create_policy(admin_client, ns, "fo", {"service": "fo-svc", "mode": "ForecastOnly", "horizonMinutes": 20})
    port = control_plane_module.free_port()
    argv = [sys.executable, "-m", "mesp_operator", "--kubeconfig", str(control_plane.operator_kubeconfig),
            "--namespace", ns, "--metrics-port", str(port), "--metrics-address", "127.0.0.1"]
    if os.environ.get("MESP_IT_MODEL"):
        argv += ["--model", os.environ["MESP_IT_MODEL"]]
    # fo-svc's series are in the legacy layout (auto would take the newer family another Service has).
    env = dict(os.environ, MESP_PROMETHEUS_URL=control_plane.prometheus_url, MESP_LOOP_INTERVAL_SECONDS="1",
               MESP_TORCH_THREADS="1", MESP_METRICS_PRESET="knative-legacy")
    log = tmp_path / "operator.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        def planned():
            st = kh.status(admin_client, ns, "fo")
            ready = next((c for c in st.get("conditions") or [] if c["type"] == "Ready"), {})
            return st if ready.get("status") == "True" and st.get("plan") else None

        st = wait_for(planned, 120, message=f"a plan in status (log: {log})")
        assert len(st["plan"]) == 20 and min(st["plan"]) >= 3  # the user's min-scale is the floor
        assert st["mode"] == "ForecastOnly" and st.get("appliedMinScale") is None
        assert st["route"]["expert"] and st["planSource"] == "fresh"
        assert st["capacitySource"] == "defaultDuration" and st["requestDurationMs"] == 1000
        # containerConcurrency unset (0 = unlimited): Knative's soft target of 100 at 70% utilisation.
        assert st["capacityPerInstance"] == pytest.approx(100 * 0.7 * 60_000 / 1000)
        actuated = kh.condition(admin_client, ns, "fo", "Actuated")
        assert actuated["status"] == "False" and actuated["reason"] == "ForecastOnly"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        assert f'mesp_forecast_next_requests_per_minute{{namespace="{ns}",policy="fo"}}' in text
        assert f'mesp_planned_min_scale{{namespace="{ns}",policy="fo"}}' in text
        assert "mesp_reconcile_duration_seconds_count" in text and "mesp_model_info{" in text
        assert 'mesp_policy_expert_info{' in text
        loaded = kh.condition(admin_client, ns, "fo", "ModelLoaded")
        assert loaded["status"] == "True" and "served by " in loaded["message"]
        if not os.environ.get("MESP_IT_MODEL"):
            # The packaged model's networks all have a numpy forward: the process never loads torch.
            assert loaded["message"].endswith("served by numpy on 1 thread)")
            maps = Path(f"/proc/{proc.pid}/maps").read_text()
            assert "libtorch" not in maps and "/numpy/" in maps
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, log.read_text()[-3000:]
    # Nothing was patched: same resourceVersion, no finalizer, no annotation added.
    assert kh.get_service(admin_client, ns, "fo-svc")["metadata"]["resourceVersion"] == \
        service_before["metadata"]["resourceVersion"]
    assert kh.get_revision(admin_client, ns, "fo-svc-00001")["metadata"]["resourceVersion"] == \
        revision_before["metadata"]["resourceVersion"]


def test_bad_settings_stop_with_one_clear_line(control_plane):
    result = subprocess.run([sys.executable, "-m", "mesp_operator", "--kubeconfig",
                             str(control_plane.operator_kubeconfig), "--loop-interval-seconds", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "mesp operator: --loop-interval-seconds: must be a positive number of seconds, got 0.0"
