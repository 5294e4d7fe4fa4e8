"""One process vs Ray from 5,000 to 50,000 functions x 14 days: wall time, memory per process, scaling.

    python bench/bench_ray_scale.py [--sizes 5000 10000 20000 50000] [--days 14]
        [--modes kshape-single kshape-ray train-single train-ray] [--cap-gib 10] [--cpus 2]
        [--shard-days 10000] [--k 6] [--max-iter 10] [--train-args=--quick] [--timeout S]
        [--cache ~/.cache/mesp/bench] [--out /tmp/ray_scale.json]

The trace: seeded generated functions (mesp_core.data.synthetic) x 14 days as Azure day files,
written once in chunks of functions into --cache (`scale_trace.py`); a smaller size is the first
N rows of every day file (the same functions).

Each run is its own child process (so its memory is its own), under a watchdog:
- kshape-single: read_invocations -> daily patterns -> idle days set aside -> KShape(k, max_iter)
  (K-Shape alone, with a count budget; `mesp cluster` adds the silhouette, two seeds and a plot);
- kshape-ray: ShardedTrace.read -> the shards' daily patterns -> ShardedKShape(k, max_iter);
- train-single / train-ray: `mesp train --trace FILES <--train-args>` without / with `--ray`.
A Ray run gets a fresh local cluster of --cpus CPUs (`ray start --head --block`, its own temp dir
under /tmp, where the object store spills; the store capped by --object-store-gib), torn down
after the run by process id. Ray's `auto` is never used, so no other cluster on the machine is
joined.

Watchdog: every --interval s it reads /proc for every process of the run (the child, the Ray
cluster's processes and all their descendants) and sums their PSS (shared pages such as Ray's
object store split among the processes mapping them, so the sum is the run's real memory).
Above --cap-gib it kills them all and the run's figure is "stopped at the memory cap after X s",
with the memory reached. Per process it keeps the peak RSS and the peak private memory (RssAnon:
a Ray process's RSS also counts object-store pages it read, which it does not own).

Output: a table, the scaling (log-log slope of time and memory over N per mode) and a JSON file
(--out) that later invocations update (same mode and size: replaced), so sizes can run apart.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

MODES = ("kshape-single", "kshape-ray", "train-single", "train-ray")
GIB = 1 << 30


# --------------------------------------------------------------------------- the child side (K-Shape alone)


def _kshape_single(files, args) -> dict:
    from bench_ray import read_live_days
    from mesp_core.forecasting.kshape import KShape

    started = time.perf_counter()
    live = read_live_days(files)
    read_s = time.perf_counter() - started
    print(f"read: {len(live)} live days in {read_s:.0f} s", flush=True)
    model = KShape(args.k, max_iter=args.max_iter, random_state=args.seed)
    model.iteration_callback = _progress(started)
    model.fit(live)
    return {"read_s": read_s, "wall_s": time.perf_counter() - started, "n_days": len(live),
            "n_iter": model.n_iter_, "inertia": model.inertia_, "labels": model.labels_}


def _progress(started: float):
    """A K-Shape iteration callback that says how far the fit got (the stage of a stopped run)."""
    return lambda it, inertia: print(f"K-Shape iteration {it + 1}: inertia {inertia:.6f} at {time.perf_counter() - started:.0f} s", flush=True)


def _live(days):
    from mesp_core.forecasting.sbd import is_flat

    return np.ascontiguousarray(days[~is_flat(days)])


def _kshape_ray(files, args) -> dict:
    from mesp_core.distributed.engine import ray_session, remote
    from mesp_core.distributed.kshape import ShardedKShape
    from mesp_core.distributed.trace import ShardedTrace

    with ray_session(args.address) as ray:
        started = time.perf_counter()
        sharded = ShardedTrace.read(files, args.shards)
        day_refs, _, _ = sharded.daily()
        live_refs = [remote(_live).remote(ref) for ref in day_refs]
        ray.wait(live_refs, num_returns=len(live_refs))
        read_s = time.perf_counter() - started
        spread = {"shards": sharded.n_shards, "reader_rss_mb": sharded.reader_rss_mb}
        del sharded, day_refs  # only the live days are needed now: the store may free the rest
        print(f"read: {spread['shards']} shards in {read_s:.0f} s", flush=True)
        model = ShardedKShape(args.k, max_iter=args.max_iter, random_state=args.seed)
        model.iteration_callback = _progress(started)
        model.fit(live_refs)
        return {"read_s": read_s, "wall_s": time.perf_counter() - started, "n_days": len(model.labels_),
                "n_iter": model.n_iter_, "inertia": model.inertia_, "labels": model.labels_, **spread,
                "kshape_worker_private_mb": model.worker_memory_mb_, "driver_private_mb": model.driver_memory_mb_}


def child_main(args) -> None:
    files = args.files
    result = (_kshape_single if args.child == "kshape-single" else _kshape_ray)(files, args)
    np.save(args.result + ".labels.npy", result.pop("labels"))
    Path(args.result).write_text(json.dumps(result))


# --------------------------------------------------------------------------- the watchdog


def _children(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    out = []
    for tid in tasks:
        try:
            out += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except OSError:
            pass
    return out


def _tree(roots) -> set[int]:
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid in seen or not os.path.exists(f"/proc/{pid}"):
            continue
        seen.add(pid)
        stack += _children(pid)
    return seen


def _memory_kib(pid: int) -> tuple[int, int, int] | None:
    """(RSS, RssAnon, PSS) of a process, KiB; None when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    fields = {}
    for line in status.splitlines() + rollup.splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "RssAnon", "Pss") and rest.strip():
            fields[name] = int(rest.split()[0])
    return fields.get("VmRSS", 0), fields.get("RssAnon", 0), fields.get("Pss", 0)


def _role(pid: int, driver: int) -> str:
    if pid == driver:
        return "driver"
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return "?"
    if cmd.startswith("ray::") and not cmd.rstrip().endswith("Agent"):  # not ray::DashboardAgent / RuntimeEnvAgent
        # Ray renames a worker after the task it runs; spill/restore workers move object-store pages to disk
        return "io-worker" if ("SpillWorker" in cmd or "RestoreWorker" in cmd or "DeleteWorker" in cmd) else "worker"
    return "ray:" + os.path.basename(cmd.split()[0]) if cmd else "?"


class Watchdog(threading.Thread):
    """Samples a run's processes; kills them all when their summed PSS passes the cap."""

    def __init__(self, roots, driver: int, cap_bytes: float, interval: float, timeout: float | None):
        super().__init__(daemon=True)
        self.roots, self.driver, self.cap, self.interval, self.timeout = list(roots), driver, cap_bytes, interval, timeout
        self.started = time.perf_counter()
        self.peak_total_pss = 0  # KiB
        self.processes: dict[int, dict] = {}
        self.stopped: str | None = None  # "memory cap" / "time limit"
        self.stopped_after = None
        self.loads: list[float] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            pids = _tree(self.roots)
            total = 0
            for pid in pids:
                mem = _memory_kib(pid)
                if mem is None:
                    continue
                rss, anon, pss = mem
                total += pss
                seen = self.processes.setdefault(pid, {"role": _role(pid, self.driver), "rss": 0, "anon": 0, "pss": 0})
                if seen["role"].startswith("ray:python") or seen["role"] == "worker":
                    seen["role"] = _role(pid, self.driver)  # a starting worker is renamed ray::<task> later
                seen["rss"], seen["anon"], seen["pss"] = max(seen["rss"], rss), max(seen["anon"], anon), max(seen["pss"], pss)
            self.peak_total_pss = max(self.peak_total_pss, total)
            self.loads.append(os.getloadavg()[0])
            elapsed = time.perf_counter() - self.started
            over = "memory cap" if total * 1024 > self.cap else ("time limit" if self.timeout and elapsed > self.timeout else None)
            if over:
                self.stopped, self.stopped_after = over, elapsed
                self.kill_all()
                return
            self._halt.wait(self.interval)

    def kill_all(self) -> None:
        for pid in _tree(self.roots):  # only this run's processes, by id
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def figures(self) -> dict:
        by_role: dict[str, dict] = {}
        for p in self.processes.values():
            role = p["role"]
            r = by_role.setdefault(role, {"n": 0, "peak_rss_mb": 0.0, "peak_private_mb": 0.0})
            r["n"] += 1
            r["peak_rss_mb"] = max(r["peak_rss_mb"], p["rss"] / 1024)
            r["peak_private_mb"] = max(r["peak_private_mb"], p["anon"] / 1024)
        return {"peak_total_pss_mb": self.peak_total_pss / 1024, "processes": by_role,
                "load_mean": float(np.mean(self.loads)) if self.loads else None,
                "load_max": float(np.max(self.loads)) if self.loads else None}


# --------------------------------------------------------------------------- a Ray cluster per run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRay:
    """`ray start --head --block` with its own temp dir and ports; stopped by process id."""

    def __init__(self, cpus: int, store_bytes: int, env: dict):
        self.temp = tempfile.mkdtemp(prefix="mbr-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        self.port = _free_port()
        ray_bin = str(Path(sys.executable).with_name("ray"))
        cmd = [ray_bin, "start", "--head", "--block", f"--port={self.port}", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}",
               f"--object-store-memory={store_bytes}", f"--temp-dir={self.temp}", "--include-dashboard=false",
               "--disable-usage-stats", f"--ray-client-server-port={_free_port()}",
               f"--node-manager-port={_free_port()}", f"--object-manager-port={_free_port()}"]
        self.log = Path(self.temp, "ray-start.log")
        with open(self.log, "w") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            if "Ray runtime started" in self.log.read_text():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(1)
        said = self.log.read_text()[-2000:]
        self.stop()
        raise RuntimeError(f"ray start failed: {said}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        for pid in sorted(_tree([self.proc.pid]), reverse=True):  # this cluster's processes only, by id
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait()
        subprocess.run(["rm", "-rf", self.temp], check=False)  # spilled objects and logs


# --------------------------------------------------------------------------- one run


def _shards(n_functions: int, args) -> int:
    return max(2 * args.cpus, math.ceil(n_functions * args.days / args.shard_days))


def _last_line(path: str) -> str:
    try:
        text = Path(path).read_text(errors="replace").replace("\r", "\n")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def _train_figures(report: dict) -> dict:
    """The model's figures from `mesp train --json` (read with .get: a later report may add or move fields)."""
    return {"k": report.get("k"), "train_seconds": report.get("seconds"), "stage_seconds": report.get("stage_seconds", {}),
            "stage_peak_rss_mb": report.get("stage_peak_rss_mb", {}),
            "experts": [{"cluster": c.get("id"), "days": c.get("n_days"), "chosen": c.get("chosen"),
                         "val_wape": (c.get("ranking") or [{}])[0].get("val_wape")} for c in report.get("clusters", [])],
            "dense": [{"family": r.get("family"), "val_wape": r.get("val_wape")} for r in report.get("dense_ranking", [])]}


def run_one(mode: str, n: int, files: list[str], work: str, args, env: dict) -> dict:
    shards = _shards(n, args)
    runs = Path(args.cache, "runs")  # each run's figures, labels and log stay for a later comparison
    runs.mkdir(parents=True, exist_ok=True)
    result_path, log_path = str(runs / f"{mode}-{n}.json"), str(runs / f"{mode}-{n}.log")
    for stale in (result_path, result_path + ".labels.npy"):
        if os.path.exists(stale):
            os.remove(stale)
    ray = LocalRay(args.cpus, int(args.object_store_gib * GIB), env) if mode.endswith("-ray") else None
    try:
        if mode.startswith("kshape"):
            cmd = [sys.executable, __file__, "--child", mode, "--result", result_path, "--k", str(args.k),
                   "--max-iter", str(args.max_iter), "--seed", str(args.seed), "--shards", str(shards), "--files", *files]
            if ray:
                cmd += ["--address", ray.address]
        else:
            cmd = [sys.executable, "-m", "mesp_core.cli", "train", "--trace", *files, "--out", os.path.join(work, f"model-{mode}-{n}"),
                   "--json", result_path, *shlex.split(args.train_args)]
            if ray:
                cmd += ["--ray", ray.address, "--shards", str(shards)]
        nice = ["nice", "-n", str(args.nice)] if args.nice else []
        load_before = os.getloadavg()
        started = time.perf_counter()
        with open(log_path, "w") as log:
            child = subprocess.Popen(nice + cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        roots = [child.pid] + ([ray.proc.pid] if ray else [])
        dog = Watchdog(roots, child.pid, args.cap_gib * GIB, args.interval, args.timeout)
        dog.start()
        code = child.wait()
        wall = time.perf_counter() - started
        dog.stop()
    finally:
        if ray:
            ray.stop()
    row = {"mode": mode, "functions": n, "days": args.days, "shards": shards if ray else None, "exit": code,
           "wall_s": wall, "load_before": load_before[0], **dog.figures(),
           "command": " ".join(shlex.quote(c) for c in cmd[:6]) + " ..."}
    if dog.stopped:
        row.update(stopped=dog.stopped, stopped_after_s=dog.stopped_after, stage=_last_line(log_path))
    elif code != 0:
        row.update(error=_last_line(log_path))
    elif mode.startswith("kshape"):
        row.update(json.loads(Path(result_path).read_text()))
        row["labels_file"] = result_path + ".labels.npy"
    else:
        row.update(_train_figures(json.loads(Path(result_path).read_text())))
    return row


# --------------------------------------------------------------------------- report


def _fmt_run(r: dict) -> str:
    procs = r.get("processes", {})
    drv = procs.get("driver", {})
    wrk = procs.get("worker", {})
    head = f"{r['mode']:<13}{r['functions']:>7} "
    if r.get("stopped"):
        t = f"stopped at the {r['stopped']} after {r['stopped_after_s']:.0f} s ({r['peak_total_pss_mb'] / 1024:.1f} GiB); last: {r.get('stage', '')[:70]}"
    elif r.get("error"):
        t = f"failed (exit {r['exit']}): {r['error'][:90]}"
    else:
        extra = (f"{r['n_days']} days, {r['n_iter']} it, inertia {r['inertia']:.6f}" if r["mode"].startswith("kshape")
                 else f"K={r['k']}, " + " ".join(f"{e['chosen']}:{e['val_wape']:.3f}" if e["val_wape"] is not None else e["chosen"]
                                                 for e in r["experts"]))
        t = f"{r['wall_s']:7.0f} s  {extra}"
    mem = (f"  | total PSS {r['peak_total_pss_mb']:6.0f} MiB, driver RSS {drv.get('peak_rss_mb', 0):5.0f} / private "
           f"{drv.get('peak_private_mb', 0):5.0f}, worker private max {wrk.get('peak_private_mb', 0):5.0f} (x{wrk.get('n', 0)})"
           f", load {r.get('load_mean') or 0:.1f}")
    return head + t + mem


def scaling(results: list[dict]) -> list[str]:
    lines = []
    for mode in MODES:
        done = sorted((r for r in results if r["mode"] == mode and not r.get("stopped") and not r.get("error")),
                      key=lambda r: r["functions"])
        if len(done) < 2:
            continue
        n = np.log([r["functions"] for r in done])
        for what, key in (("time", lambda r: r["wall_s"]), ("total PSS", lambda r: r["peak_total_pss_mb"]),
                          ("driver RSS", lambda r: r["processes"].get("driver", {}).get("peak_rss_mb", 0)),
                          ("worker private", lambda r: r["processes"].get("worker", {}).get("peak_private_mb", 0))):
            y = np.array([key(r) for r in done], dtype=float)
            if np.all(y > 0):
                slope = np.polyfit(n, np.log(y), 1)[0]
                pts = ", ".join(f"{r['functions'] // 1000}k: {v:.0f}" for r, v in zip(done, y))
                lines.append(f"{mode:<13} {what:<15} ~ N^{slope:.2f}   ({pts})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000, 20000, 50000])
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--trace-functions", type=int, default=50000,
                        help="functions of the trace generated once in --cache; a size below it takes its first N functions")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/mesp/bench"), help="where the generated day files stay between runs")
    parser.add_argument("--out", default="/tmp/ray_scale.json", help="JSON results (updated run by run)")
    parser.add_argument("--cap-gib", type=float, default=10.0, help="kill a run whose processes' summed PSS passes this (default 10)")
    parser.add_argument("--timeout", type=float, help="kill a run after this many seconds (default: none)")
    parser.add_argument("--interval", type=float, default=1.0, help="watchdog sampling period, s")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs (= Ray workers) of the local Ray cluster")
    parser.add_argument("--object-store-gib", type=float, default=2.0, help="Ray object store; beyond it Ray spills to /tmp")
    parser.add_argument("--shard-days", type=int, default=10000, help="function-days per shard at most (shards = N x days / this, >= 2 per CPU)")
    parser.add_argument("--k", type=int, default=6, help="K of the K-Shape-alone runs")
    parser.add_argument("--max-iter", type=int, default=10, help="K-Shape iterations at most (K-Shape-alone runs)")
    parser.add_argument("--train-args", default="--quick", help="budget flags for both mesp train runs (default --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nice", type=int, default=5, help="nice level of the runs (0: none)")
    parser.add_argument("--child", choices=MODES[:2], help=argparse.SUPPRESS)
    parser.add_argument("--files", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--shards", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return

    from scale_trace import prefix_trace, write_trace

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    largest = max(max(args.sizes), args.trace_functions)  # smaller sizes: the first N functions of it
    clock = time.perf_counter()
    full = write_trace(cache / f"trace-{largest}x{args.days}-seed{args.seed}", largest, args.days, args.seed)
    print(f"trace: {largest} functions x {args.days} days in {full[0].parent} ({time.perf_counter() - clock:.0f} s)", flush=True)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "operator")])  # this tree, in the driver and Ray's workers
    env["RAY_AUTH_MODE"] = "disabled"  # a private cluster on 127.0.0.1 for one run: no token to share
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else []
    with tempfile.TemporaryDirectory(prefix="ray-scale-") as work:
        for n in sorted(args.sizes):
            files = [str(f) for f in (full if n == largest else prefix_trace(full, cache / f"trace-{n}x{args.days}-seed{args.seed}", n))]
            for mode in args.modes:
                row = run_one(mode, n, files, work, args, env)
                row["finished_utc"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
                results = [r for r in results if (r["mode"], r["functions"]) != (mode, n)] + [row]
                out.write_text(json.dumps(results, indent=1, default=float))
                print(_fmt_run(row), flush=True)
            _compare_labels(results, n)
            out.write_text(json.dumps(results, indent=1, default=float))
    print("\n".join(["", "all runs:"] + [_fmt_run(r) for r in sorted(results, key=lambda r: (r["functions"], r["mode"]))]))
    print("\nscaling (log-log slope over the sizes that finished):")
    print("\n".join(scaling(results)))
    print(f"\nfigures in {out}")


def _compare_labels(results: list[dict], n: int) -> None:
    pair = {r["mode"]: r for r in results if r["functions"] == n and r["mode"].startswith("kshape") and "labels_file" in r}
    if len(pair) == 2 and all(os.path.exists(r["labels_file"]) for r in pair.values()):
        same = np.array_equal(*(np.load(r["labels_file"]) for r in pair.values()))
        for r in pair.values():
            r["labels_identical"] = bool(same)
        print(f"  K-Shape at {n}: one process and Ray labels identical: {same}", flush=True)


if __name__ == "__main__":
    main()
