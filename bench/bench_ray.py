"""Sharded K-Shape on Ray vs one process: wall time, peak RSS per process, same labels.

    python bench/bench_ray.py [--functions 20000] [--days 1] [--k 6] [--max-iter 10] [--shards 4] [--cpus 2]

A seeded generated trace (mesp_core.data.synthetic) is written as Azure day files; then, each in a
fresh process so peak RSS is its own:
  single: read_invocations -> daily patterns -> idle days set aside -> KShape(k).fit
  ray:    ShardedTrace.read (a Ray task per day file, then one per function shard) -> the shards'
          daily patterns -> ShardedKShape(k).fit, on a local Ray cluster of --cpus CPUs
Memory: one process's peak RSS (ru_maxrss) for single. A Ray process maps the shared object store
and the store pages it reads count in its RSS without being its own, so for ray the figures are
the largest peak RSS of a day-reading worker (a fresh process per day file, exiting after it), and
the private memory (RssAnon) of the driver and of the K-Shape shard workers, sampled after every
step / as each task ends (workers import torch: about 0.3 GB before any data). Labels must be
identical.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_live_days(files) -> np.ndarray:
    """The trace's non-flat function-days, read in one process (what K-Shape clusters), holding
    only one copy once read."""
    from mesp_core.data.reader import read_invocations
    from mesp_core.forecasting.sbd import is_flat

    trace = read_invocations(files)
    days, _ = trace.daily()
    del trace
    return days[~is_flat(days)]


def run_single(files, args) -> dict:
    from mesp_core.forecasting.kshape import KShape

    started = time.perf_counter()
    live = read_live_days(files)
    read_s = time.perf_counter() - started
    model = KShape(args.k, max_iter=args.max_iter, random_state=args.seed).fit(live)
    return {"labels": model.labels_, "read_s": read_s, "wall_s": time.perf_counter() - started,
            "n_days": len(live), "n_iter": model.n_iter_, "inertia": model.inertia_, "driver_rss_mb": _rss_mb()}


def _live(days):
    from mesp_core.forecasting.sbd import is_flat

    return np.ascontiguousarray(days[~is_flat(days)])


def run_ray(files, args) -> dict:
    import ray

    from mesp_core.distributed.engine import remote
    from mesp_core.distributed.kshape import ShardedKShape
    from mesp_core.distributed.trace import ShardedTrace

    # address="local": a fresh cluster, never one already running here (a test run's, say)
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    try:
        started = time.perf_counter()
        sharded = ShardedTrace.read(files, args.shards)
        day_refs, _, _ = sharded.daily()
        live_refs = [remote(_live).remote(ref) for ref in day_refs]
        ray.wait(live_refs, num_returns=len(live_refs))
        read_s = time.perf_counter() - started
        model = ShardedKShape(args.k, max_iter=args.max_iter, random_state=args.seed).fit(live_refs)
        return {"labels": model.labels_, "read_s": read_s, "wall_s": time.perf_counter() - started,
                "n_days": len(model.labels_), "n_iter": model.n_iter_, "inertia": model.inertia_,
                "driver_rss_mb": _rss_mb(), "driver_private_mb": model.driver_memory_mb_,
                "worker_rss_mb": model.worker_memory_mb_, "reader_rss_mb": sharded.reader_rss_mb,
                "shards": sharded.n_shards}
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=20000)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--k", type=int, default=6)
    parser.add_argument("--max-iter", type=int, default=10)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mode", choices=["single", "ray"], help=argparse.SUPPRESS)  # one side, in a fresh process
    parser.add_argument("--files", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.mode:
        result = (run_single if args.mode == "single" else run_ray)(args.files, args)
        np.save(args.result + ".labels.npy", result.pop("labels"))
        Path(args.result).write_text(json.dumps(result))
        return

    from mesp_core.data.synthetic import generate_trace
    from mesp_core.data.writer import write_invocations

    with tempfile.TemporaryDirectory() as tmp:
        clock = time.perf_counter()
        files = [str(p) for p in write_invocations(generate_trace(n_functions=args.functions, days=args.days, seed=args.seed), tmp)]
        print(f"trace: {args.functions} functions x {args.days} day(s), written in {time.perf_counter() - clock:.0f}s; "
              f"k={args.k}, max_iter={args.max_iter}, {args.shards} shards on {args.cpus} CPUs")
        results = {}
        for mode in ("single", "ray"):
            out = os.path.join(tmp, f"{mode}.json")
            cmd = [sys.executable, __file__, "--mode", mode, "--files", *files, "--result", out,
                   "--k", str(args.k), "--max-iter", str(args.max_iter), "--shards", str(args.shards),
                   "--cpus", str(args.cpus), "--seed", str(args.seed)]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
            subprocess.run(cmd, check=True, env=env)
            results[mode] = json.loads(Path(out).read_text())
            results[mode]["labels"] = np.load(out + ".labels.npy")
    single, on_ray = results["single"], results["ray"]
    for name, r in results.items():
        print(f"{name:7} {r['n_days']} days, {r['n_iter']} iterations: read {r['read_s']:.1f} s, total {r['wall_s']:.1f} s; "
              f"driver peak RSS {r['driver_rss_mb']:.0f} MiB")
    print(f"        ray memory: driver private {on_ray['driver_private_mb']:.0f} MiB (its RSS also counts object-store pages it read); "
          f"largest day-reading worker peak RSS {on_ray['reader_rss_mb']:.0f} MiB; "
          f"largest K-Shape worker private {on_ray['worker_rss_mb']:.0f} MiB")
    same = np.array_equal(single["labels"], on_ray["labels"])
    print(f"labels identical: {same}; inertia {single['inertia']:.9f} vs {on_ray['inertia']:.9f}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
