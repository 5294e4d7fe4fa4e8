#!/usr/bin/env python3
"""Benchmark: N Knative Services (+ Revisions + MespPolicies) reconciled by one operator loop against a
real kube-apiserver + etcd and a real Prometheus backfilled with N real trace rows.

    python bench/bench_operator.py [--services 1000] [--context-minutes 240] [--json OUT]

Starts everything on 127.0.0.1 (hack/control-plane.py), runs `python -m mesp_operator` as its own process
(as the chart's ServiceAccount), and reports: setup times, the duration of the first (cold: full history
fetch, every Revision patched) and of the following (steady) loops, the time until every policy had a
min-scale applied, and the operator's resident memory (VmRSS, peak VmHWM).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))
TRACE = REPO.parent / "shared" / "data" / "azure2019" / "invocations_per_function_md.sample.csv.gz"
NAMESPACE = "bench"
LOOP_LINE = re.compile(r"loop (\d+): (\d+) policies, (\d+) planned, (\d+) actuated, (\d+) failed in ([\d.]+)s")


def load_control_plane():
    spec = importlib.util.spec_from_file_location("mesp_control_plane", REPO / "hack" / "control-plane.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["mesp_control_plane"] = module
    spec.loader.exec_module(module)
    return module


def real_rows(n: int) -> np.ndarray:
    import pandas as pd

    counts = pd.read_csv(TRACE).iloc[:, 4:].to_numpy(np.float64)
    if n > len(counts):
        raise SystemExit(f"bench: the sample has {len(counts)} function-days; asked for {n}")
    return counts[:n]


def write_history(path: Path, rows: np.ndarray, end: int, minutes: int) -> None:
    """Counters every 15 s whose per-minute increase is the real count (the trace day, tiled)."""
    start = end - minutes * 60
    with open(path, "w") as out:
        out.write("# TYPE revision_request_count unknown\n")
        for i, day in enumerate(rows):
            counts = np.tile(day, minutes // 1440 + 2)[-minutes:]
            labels = f'namespace_name="{NAMESPACE}",service_name="fn-{i:04d}"'
            total = 0.0
            lines = [f"revision_request_count{{{labels}}} 0 {start}"]
            for m, c in enumerate(counts):
                base = start + m * 60
                lines += [f"revision_request_count{{{labels}}} {total + c * k / 4:.1f} {base + 15 * k}"
                          for k in range(1, 5)]
                total += c
            out.write("\n".join(lines) + "\n")
        out.write("# EOF\n")


def rss_kib(pid: int) -> dict:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--context-minutes", type=int, default=240,
                        help="history per Service backfilled and fed to the model (default 240)")
    parser.add_argument("--loops", type=int, default=2, help="loops to observe after the first (default 2)")
    parser.add_argument("--loop-interval-seconds", type=float, default=60.0)
    parser.add_argument("--model", help="model artifact (default: the model shipped in the package)")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)

    from kubernetes import client, config

    import kube_helpers as kh
    from conftest import MESP_CRD, helm_binary, knative_crd_files

    cp_module = load_control_plane()
    figures: dict = {"services": args.services, "context_minutes": args.context_minutes}
    work = Path(tempfile.mkdtemp(prefix="mesp-bench-"))
    t0 = time.monotonic()
    rows = real_rows(args.services)
    history = work / "history.om"
    end = int(time.time() // 60) * 60
    write_history(history, rows, end, args.context_minutes + 30)
    figures["backfill_file_mb"] = round(history.stat().st_size / 1e6, 1)
    cp = cp_module.ControlPlane(work / "servers")
    proc = None
    try:
        cp.start(prometheus=True, backfill=history)
        figures["control_plane_ready_s"] = round(time.monotonic() - t0, 1)
        admin = config.new_client_from_config(str(cp.admin_kubeconfig))
        docs = []
        for path in knative_crd_files() + [MESP_CRD]:
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
        for doc in docs:
            kh.create(admin, doc)
        kh.wait_crds_established(admin, [d["metadata"]["name"] for d in docs])
        ns_sa = cp.operator_user.split(":")
        rendered = subprocess.run([str(helm_binary()), "template", "mesp", str(REPO / "charts" / "mesp"),
                                   "--namespace", ns_sa[2], "--set", f"serviceAccount.name={ns_sa[3]}",
                                   "--show-only", "templates/rbac.yaml"], check=True, capture_output=True,
                                  text=True).stdout
        for doc in [d for d in yaml.safe_load_all(rendered) if d]:
            kh.create(admin, doc)
        kh.create(admin, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})

        t1 = time.monotonic()

        def make(i: int) -> None:
            name = f"fn-{i:04d}"
            kh.create_knative_service(admin, NAMESPACE, name, annotations={kh.MIN_SCALE: "1"})
            kh.create_policy(admin, NAMESPACE, name, {"service": name, "mode": "Active", "actuation": "Revision",
                                                      "capacityPerInstance": 60, "maxScale": 100})

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(make, range(args.services)))
        figures["objects_created_s"] = round(time.monotonic() - t1, 1)
        print(f"bench: {args.services} Services + Revisions + MespPolicies created in "
              f"{figures['objects_created_s']} s", file=sys.stderr)

        log_path = work / "operator.log"
        argv = [sys.executable, "-m", "mesp_operator", "--kubeconfig", str(cp.operator_kubeconfig),
                "--prometheus-url", cp.prometheus_url, "--namespace", NAMESPACE,
                "--context-minutes", str(args.context_minutes),
                "--loop-interval-seconds", str(args.loop_interval_seconds), "--metrics-port", "0"]
        if args.model:
            argv += ["--model", args.model]
        t2 = time.monotonic()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                    env=dict(os.environ, MESP_TORCH_THREADS="1"))
        custom = client.CustomObjectsApi(admin)
        all_applied_at = None
        loops: list[dict] = []
        deadline = time.monotonic() + 20 * 60
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(1.0)
            if all_applied_at is None:
                items = custom.list_namespaced_custom_object("mesp.dev", "v1alpha1", NAMESPACE, "mesppolicies")["items"]
                applied = sum(1 for p in items if (p.get("status") or {}).get("appliedMinScale") is not None)
                if applied == args.services:
                    all_applied_at = time.monotonic() - t2
            loops = [dict(zip(("loop", "policies", "planned", "actuated", "failed"), map(int, m.groups()[:5])),
                          seconds=float(m.group(6))) for m in LOOP_LINE.finditer(log_path.read_text(errors="replace"))]
            if all_applied_at is not None and len(loops) >= 1 + args.loops:
                break
        if proc.poll() is not None:
            raise SystemExit(f"bench: the operator exited:\n{log_path.read_text()[-3000:]}")
        memory = rss_kib(proc.pid)
        figures.update({
            "all_policies_applied_after_start_s": None if all_applied_at is None else round(all_applied_at, 1),
            "loops": loops,
            "first_loop_s": loops[0]["seconds"] if loops else None,
            "steady_loop_s": max((l["seconds"] for l in loops[1:]), default=None),
            "operator_rss_mib": round(memory.get("VmRSS", 0) / 1024, 1),
            "operator_peak_rss_mib": round(memory.get("VmHWM", 0) / 1024, 1),
        })
        full = [l for l in loops if l["policies"] == args.services]
        print(f"bench: {args.services} policies; first full loop {full[0]['seconds'] if full else '?'} s, "
              f"steady loops up to {figures['steady_loop_s']} s (interval {args.loop_interval_seconds:g} s); "
              f"every policy applied {figures['all_policies_applied_after_start_s']} s after the operator started "
              f"(includes model load and watch start-up); operator RSS {figures['operator_rss_mib']} MiB "
              f"(peak {figures['operator_peak_rss_mib']} MiB)")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
        return 0 if full and all_applied_at is not None and figures["steady_loop_s"] is not None \
            and figures["steady_loop_s"] < args.loop_interval_seconds else 1
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        cp.stop()


if __name__ == "__main__":
    sys.exit(main())
