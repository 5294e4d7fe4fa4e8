"""Per-loop model cost of the operator's floor path: forecast.floor_batch for N policies, next to forecast_batch.

    python bench/bench_floor_operator.py [--n 1000] [--context 2880] [--loops 3] [--threads 1]

Policies are N real rows of the shared sample (reused in order beyond its 6,418), each day tiled to the
context length (as bench/bench_operator.py backfills Prometheus), planned at the packaged model's default
cold-start cost with the operator's defaults (60-minute horizon, lead 1, 60 invocations per instance).
Each loop moves one minute on: the contexts slide by one minute, as they do between operator loops.
Prints, per path, seconds per loop and milliseconds per policy (best and mean over --loops loops after a
warm-up loop), and the CPU seconds a loop of 10,000 policies would take at that rate (extrapolated).
With the stateful floor path (a PolicyMemory-like record per policy) the first loop makes every choice;
the timed loops show the steady state, where each policy makes its full choice once per 30 minutes.
"""

from __future__ import annotations

import argparse
import inspect
import time
from pathlib import Path

import numpy as np
import torch
from mesp_operator.forecast import Sizing, floor_batch, forecast_batch

import mesp_core

REPO = Path(__file__).resolve().parent.parent
TRACE = REPO.parent / "shared" / "data" / "azure2019" / "invocations_per_function_md.sample.csv.gz"


def real_series(n: int, minutes: int) -> np.ndarray:
    """n real function-days, each tiled to `minutes` + one spare day (the loops slide through it)."""
    import pandas as pd

    days = pd.read_csv(TRACE).iloc[:, 4:].to_numpy(np.float32)
    rows = days[np.arange(n) % len(days)]
    reps = -(-(minutes + 1440) // rows.shape[1])
    return np.tile(rows, (1, reps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--context", type=int, default=2880, help="minutes per context (the operator's default)")
    parser.add_argument("--horizon", type=int, default=60)
    parser.add_argument("--loops", type=int, default=3, help="timed loops after one warm-up loop")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--start", type=int, default=0, help="minute of the tiled series the first loop ends at "
                        "(after the context); vary it to land the timed loops on or off choice boundaries")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = mesp_core.load_model(mesp_core.default_model_path())
    series = real_series(args.n, args.context)
    cost = model.floor.default_cold_start_cost
    sizing = Sizing(cold_start_cost=cost)
    floor_requests = [(args.horizon, 1, 60.0, sizing)] * args.n
    forecast_requests = [("moe", args.horizon + 1, sizing)] * args.n
    stateful = "records" in inspect.signature(floor_batch).parameters
    records: list = [None] * args.n
    keys = [f"policy-{i}" for i in range(args.n)]
    print(f"{args.n} policies x {args.context} min context, horizon {args.horizon}, cost {cost:g}, "
          f"{args.threads} torch thread(s); floor path: {'stateful' if stateful else 'stateless'}")

    def contexts_at(loop: int) -> tuple[np.ndarray, int]:
        end = args.context + args.start + loop
        return series[:, end - args.context: end], end

    def floor_loop(loop: int):
        contexts, minute = contexts_at(loop)
        if stateful:
            result = floor_batch(model, contexts, floor_requests, minute=minute, keys=keys, records=records)
            records[:] = result.records
            return result
        return floor_batch(model, contexts, floor_requests)

    def forecast_loop(loop: int):
        return forecast_batch(model, contexts_at(loop)[0], forecast_requests)

    for name, fn in (("floor_batch", floor_loop), ("forecast_batch", forecast_loop)):
        started = time.process_time()
        fn(0)  # warm-up: allocator, FFT plans, and (stateful) every policy's first choice
        first = time.process_time() - started
        times = []
        for loop in range(1, args.loops + 1):
            started = time.process_time()
            fn(loop)
            times.append(time.process_time() - started)
        best, mean = min(times), float(np.mean(times))
        print(f"{name:<15} first loop {first:7.2f} s CPU; next {args.loops}: best {best:6.2f} s, mean {mean:6.2f} s "
              f"= {1000 * mean / args.n:6.2f} ms/policy -> {10_000 * mean / args.n:6.1f} CPU s per loop at 10,000")


if __name__ == "__main__":
    main()
