#!/usr/bin/env python3
"""Benchmark: N Knative Services (+ Revisions + MespPolicies) reconciled by one operator, or by a fleet of
replicas sharing them through shard Leases, against a real kube-apiserver + etcd and a real Prometheus
backfilled with N real trace rows (rows of the sample reused in order when N exceeds its 6,418).

    python bench/bench_operator.py [--services 1000] [--replicas 1] [--shards 0] [--context-minutes 240] [--json OUT]

Starts everything on 127.0.0.1 (hack/control-plane.py), runs `python -m mesp_operator` as its own process
per replica (as the chart's ServiceAccount, with the chart's Lease RBAC for a fleet), and reports: setup
times, the duration of the first (cold: full history fetch, every Revision patched) and of the following
(steady) loops of each replica, the time until every policy had a min-scale applied, and each replica's
resident memory (VmRSS, peak VmHWM).
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
LOOP_LINE = re.compile(r"loop (\d+): (\d+) policies, (\d+) planned, (\d+) actuated, (\d+) failed in ([\d.]+)s"
                       r"(?: \(([^)]*)\))?(?:; statuses (\d+) written, (\d+) unchanged)?")
PHASE = re.compile(r"(\w+) ([\d.]+)s")


def parse_loops(text: str) -> list[dict]:
    """The operator's "loop N: ..." lines: counts, seconds and the phases' seconds (runtime.Runtime._loop)."""
    loops = []
    for m in LOOP_LINE.finditer(text):
        loop = dict(zip(("loop", "policies", "planned", "actuated", "failed"), map(int, m.groups()[:5])),
                    seconds=float(m.group(6)))
        loop["phases"] = {name: float(v) for name, v in PHASE.findall(m.group(7) or "")}
        if m.group(8) is not None:
            loop["statuses_written"], loop["statuses_unchanged"] = int(m.group(8)), int(m.group(9))
        loops.append(loop)
    return loops


def mean_phases(loops: list[dict]) -> dict:
    """Each phase's mean seconds over `loops` (phases a loop skipped count as 0)."""
    names = sorted({name for loop in loops for name in loop["phases"]})
    return {name: round(sum(loop["phases"].get(name, 0.0) for loop in loops) / len(loops), 2)
            for name in names} if loops else {}


def load_control_plane():
    spec = importlib.util.spec_from_file_location("mesp_control_plane", REPO / "hack" / "control-plane.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["mesp_control_plane"] = module
    spec.loader.exec_module(module)
    return module


def real_rows(n: int) -> np.ndarray:
    """n real function-days; beyond the sample's size its rows are reused in order (same shapes, more
    Services: what the operator's cost depends on is the number of Services, not their diversity)."""
    import pandas as pd

    counts = pd.read_csv(TRACE).iloc[:, 4:].to_numpy(np.float64)
    return counts[np.arange(n) % len(counts)]


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


def count_applied(custom) -> int | None:
    """Policies whose status has an appliedMinScale, listed in pages (one LIST of 10,000 statuses can
    outlast the API server's timeout on a loaded machine); None when a page fails: ask again next poll."""
    applied, token = 0, None
    while True:
        try:
            page = custom.list_namespaced_custom_object("mesp.dev", "v1alpha1", NAMESPACE, "mesppolicies",
                                                        limit=1000, _continue=token, _request_timeout=120)
        except Exception as exc:  # a 504, or the client's own timeout
            print(f"bench: listing the policies failed ({str(exc)[:80]}); trying again", file=sys.stderr)
            return None
        applied += sum(1 for p in page["items"] if (p.get("status") or {}).get("appliedMinScale") is not None)
        token = page["metadata"].get("continue")
        if not token:
            return applied


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
    parser.add_argument("--replicas", type=int, default=1, help="operator processes (default 1)")
    parser.add_argument("--shards", type=int, default=None,
                        help="shards of a fleet (default: 0 for one replica, else 4 per replica)")
    parser.add_argument("--lease-duration-seconds", type=float, default=30.0)
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the operator processes, e.g. MALLOC_ARENA_MAX=2")
    parser.add_argument("--timeout-minutes", type=float, default=20.0,
                        help="give up waiting for the loops after this long (default 20)")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)

    from kubernetes import client, config

    import kube_helpers as kh
    from conftest import MESP_CRD, helm_binary, knative_crd_files

    cp_module = load_control_plane()
    shards = args.shards if args.shards is not None else (0 if args.replicas == 1 else 4 * args.replicas)
    figures: dict = {"services": args.services, "context_minutes": args.context_minutes,
                     "replicas": args.replicas, "shards": shards, "env": args.env,
                     "sample_rows_reused": args.services > 6418}
    work = Path(tempfile.mkdtemp(prefix="mesp-bench-"))
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    t0 = time.monotonic()
    rows = real_rows(args.services)
    history = work / "history.om"
    end = int(time.time() // 60) * 60
    write_history(history, rows, end, args.context_minutes + 30)
    figures["backfill_file_mb"] = round(history.stat().st_size / 1e6, 1)
    cp = cp_module.ControlPlane(work / "servers", audit=False)  # as a cluster without an audit log
    procs: list[tuple[subprocess.Popen, Path]] = []
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
                                   "--set", f"replicaCount={max(args.replicas, 1)}",
                                   "--set", f"operator.shards={max(shards, args.replicas)}",
                                   "--show-only", "templates/rbac.yaml"], check=True, capture_output=True,
                                  text=True).stdout
        kh.create(admin, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns_sa[2]}})
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

        env = dict(os.environ, MESP_TORCH_THREADS="1")
        env.update(kv.split("=", 1) for kv in args.env)
        t2 = time.monotonic()
        for k in range(args.replicas):
            argv = [sys.executable, "-m", "mesp_operator", "--kubeconfig", str(cp.operator_kubeconfig),
                    "--prometheus-url", cp.prometheus_url, "--namespace", NAMESPACE,
                    "--context-minutes", str(args.context_minutes),
                    "--loop-interval-seconds", str(args.loop_interval_seconds), "--metrics-port", "0"]
            if shards:
                argv += ["--shards", str(shards), "--replica-id", f"bench-{k}", "--lease-namespace", ns_sa[2],
                         "--lease-name", "bench", "--lease-duration-seconds", str(args.lease_duration_seconds)]
            if args.model:
                argv += ["--model", args.model]
            log_path = work / f"operator-{k}.log"
            with open(log_path, "wb") as log:
                procs.append((subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env), log_path))
        custom = client.CustomObjectsApi(admin)
        all_applied_at = None
        loops: dict[int, list[dict]] = {}
        settled: dict[int, int] = {}  # loops each replica had run when every policy was applied
        first_loop_at: dict[int, float] = {}  # seconds after start when each replica's first loop was seen done
        deadline = time.monotonic() + args.timeout_minutes * 60
        # One LIST of every policy per poll: at 10,000 that is tens of MB to parse, so poll less often
        # (the "all applied" time is then known to within this step).
        poll_seconds = max(1.0, args.services / 1000)
        while time.monotonic() < deadline and all(p.poll() is None for p, _ in procs):
            time.sleep(poll_seconds)
            for k, (_, path) in enumerate(procs):
                loops[k] = parse_loops(path.read_text(errors="replace"))
                if loops[k] and k not in first_loop_at:
                    first_loop_at[k] = round(time.monotonic() - t2, 1)
            if all_applied_at is None:
                applied = count_applied(custom)
                if applied == args.services:
                    all_applied_at = time.monotonic() - t2
                    settled = {k: len(v) for k, v in loops.items()}
            elif all(len(loops[k]) >= settled[k] + args.loops for k in loops):
                break
        for k, (p, path) in enumerate(procs):
            if p.poll() is not None:
                raise SystemExit(f"bench: operator {k} exited:\n{path.read_text()[-3000:]}")
        per_replica = []
        for k, (p, _) in enumerate(procs):
            memory = rss_kib(p.pid)
            mine = loops.get(k, [])
            steady = mine[settled.get(k, len(mine)):]  # loops after every policy had been applied
            per_replica.append({
                "replica": k,
                "policies_last_loop": mine[-1]["policies"] if mine else None,
                "first_loop_s": mine[0]["seconds"] if mine else None,
                "first_loop_done_after_start_s": first_loop_at.get(k),
                "steady_loop_s": max((x["seconds"] for x in steady), default=None),
                "steady_loops_s": [x["seconds"] for x in steady],
                "first_loop_phases_s": mine[0]["phases"] if mine else None,
                "steady_phases_mean_s": mean_phases(steady),
                "statuses_written_steady": [x.get("statuses_written") for x in steady],
                "statuses_unchanged_steady": [x.get("statuses_unchanged") for x in steady],
                "rss_mib": round(memory.get("VmRSS", 0) / 1024, 1),
                "peak_rss_mib": round(memory.get("VmHWM", 0) / 1024, 1),
            })
        figures.update({
            "load_average_at_start": load_at_start,  # the machine may be shared: read the seconds with it
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "all_policies_applied_after_start_s": None if all_applied_at is None else round(all_applied_at, 1),
            "per_replica": per_replica,
            "steady_loop_s": max((r["steady_loop_s"] or 0 for r in per_replica), default=None),
            "max_rss_mib": max(r["rss_mib"] for r in per_replica),
            "max_peak_rss_mib": max(r["peak_rss_mib"] for r in per_replica),
        })
        for r in per_replica:
            print(f"bench: replica {r['replica']}: {r['policies_last_loop']} policies in its last loop, loops "
                  f"{r['first_loop_s']} s first / up to {r['steady_loop_s']} s steady; RSS {r['rss_mib']} MiB "
                  f"(peak {r['peak_rss_mib']} MiB)")
            print(f"bench: replica {r['replica']}: steady loops {r['steady_loops_s']} s, statuses written "
                  f"{r['statuses_written_steady']}, unchanged {r['statuses_unchanged_steady']}; mean phases (s) "
                  + ", ".join(f"{k} {v}" for k, v in r["steady_phases_mean_s"].items()))
        print(f"bench: {args.services} policies, {args.replicas} replica(s), {shards} shards: every policy applied "
              f"{figures['all_policies_applied_after_start_s']} s after the operators started (includes model load "
              f"and watch start-up); steady loops up to {figures['steady_loop_s']} s (interval "
              f"{args.loop_interval_seconds:g} s); RSS per replica up to {figures['max_rss_mib']} MiB "
              f"(peak {figures['max_peak_rss_mib']} MiB)")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
        return 0 if all_applied_at is not None and figures["steady_loop_s"] is not None \
            and figures["steady_loop_s"] < args.loop_interval_seconds else 1
    finally:
        for p, _ in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p, _ in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        cp.stop()


if __name__ == "__main__":
    sys.exit(main())
