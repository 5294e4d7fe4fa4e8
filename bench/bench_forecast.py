"""Online cost of the mixture: route + forecast N functions in one batch (target: 10,000 < 1 s).

    python bench/bench_forecast.py [--model DIR] [--n 10000] [--context 1440] [--horizon 60] [--threads 2]
                                   [--backend auto|numpy|torch]

Prints the best of --repeat timings for route, forecast(moe), forecast(dense), forecast(naive) and
forecast_distribution+quantile (what the operator calls), plus the process's peak RSS."""

import argparse
import resource
import time

import numpy as np

import mesp_core
from mesp_core.forecasting.model import default_model_path
from mesp_core.data.synthetic import generate_trace


def best_of(repeat, fn):
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(default_model_path()))
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--context", type=int, default=1440)
    parser.add_argument("--horizon", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backend", default="auto", choices=("auto", "numpy", "torch"),
                        help="what runs the networks (--threads: torch's threads, when torch does)")
    args = parser.parse_args()
    model = mesp_core.load_model(args.model, backend=args.backend)
    if model.backend == "torch":
        import torch

        torch.set_num_threads(args.threads)
    days = -(-args.context // 1440)
    trace = generate_trace(n_functions=min(args.n, 2000), days=days, seed=7)
    reps = -(-args.n // len(trace.keys))
    context = np.tile(trace.counts[:, -args.context :], (reps, 1))[: args.n]
    print(f"model {args.model}: {len(model.clusters)} clusters; {args.n} functions x {args.context} min, horizon {args.horizon}, served by {model.backend}"
          + (f" on {args.threads} threads" if model.backend == "torch" else ""))
    rows = {
        "route": lambda: model.route(context),
        "forecast moe": lambda: model.forecast(context, args.horizon, approach="moe"),
        "forecast dense": lambda: model.forecast(context, args.horizon, approach="dense"),
        "forecast naive": lambda: model.forecast(context, args.horizon, approach="naive"),
        "moe point + q0.9": lambda: model.forecast_distribution(context, args.horizon).quantile(0.9),
    }
    for name, fn in rows.items():
        fn()  # warm-up (FFT plans, allocator)
        print(f"{name:<18} {best_of(args.repeat, fn):7.3f} s")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
