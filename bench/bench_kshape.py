"""Benchmark mesp_core.forecasting.kshape.KShape against tslearn's KShape.

Prints: our fit time on --n synthetic 1440-minute series with K=--k; tslearn's and ours on the
first --tslearn-n of them (same data, same seed, with agreement of labels); peak RSS. With --real,
also runs cluster_days (K by silhouette) on a real trace sample and prints K, the silhouette
scores and the cluster descriptions.

    python bench/bench_kshape.py --n 100000 --k 8 --tslearn-n 500 --threads 2
    python bench/bench_kshape.py --n 0 --tslearn-n 0 --real ../shared/data/azure2019/invocations_per_function_md.sample.csv.gz
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import warnings

import numpy as np


def synthetic_days(n: int, T: int = 1440, seed: int = 0) -> np.ndarray:
    """n seeded daily shapes: shifted diurnal sines, periodic timer spikes, batch spikes, bursts, noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(T, dtype=np.float32)
    out = np.empty((n, T), dtype=np.float32)
    kinds = rng.integers(0, 6, size=n)
    for i in range(n):
        kind = kinds[i]
        shift = rng.integers(0, T)
        if kind == 0:  # diurnal, one peak
            x = 1 + np.sin(2 * np.pi * (t + shift) / T)
        elif kind == 1:  # two peaks a day
            x = 1 + np.sin(4 * np.pi * (t + shift) / T)
        elif kind == 2:  # timer every p minutes
            p = rng.choice([5, 10, 15, 30, 60])
            x = ((t + shift) % p == 0).astype(np.float32) * 10
        elif kind == 3:  # nightly batch spike with a decay
            x = np.exp(-np.clip((t - shift) % T, 0, None) / rng.uniform(5, 30)) * 20
        elif kind == 4:  # bursty on/off
            x = (rng.random(T) < 0.02).astype(np.float32)
            x = np.convolve(x, np.ones(20, dtype=np.float32), mode="same")
        else:  # noise around a level
            x = np.full(T, 5.0, dtype=np.float32)
        out[i] = x + rng.normal(0, 0.3, T).astype(np.float32)
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_average() -> str:
    try:
        with open("/proc/loadavg") as handle:
            return handle.read().split()[0]
    except OSError:
        return "?"


def time_ours(X: np.ndarray, k: int, seed: int, max_iter: int):
    from mesp_core.forecasting.kshape import KShape

    started, cpu = time.perf_counter(), time.process_time()
    model = KShape(k, max_iter=max_iter, random_state=seed).fit(X)
    model.cpu_seconds_ = time.process_time() - cpu  # all threads: what it costs on idle cores
    return model, time.perf_counter() - started


def time_tslearn(X: np.ndarray, k: int, seed: int, max_iter: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tslearn warns about optional h5py at import
        from tslearn.clustering import KShape as TslearnKShape
        from tslearn.preprocessing import TimeSeriesScalerMeanVariance

    Xz = TimeSeriesScalerMeanVariance().fit_transform(X.astype(np.float64))
    compile_started = time.perf_counter()
    TslearnKShape(k, max_iter=1, random_state=seed).fit(Xz[: max(k, 20)])  # numba JIT compile
    compile_seconds = time.perf_counter() - compile_started
    started, cpu = time.perf_counter(), time.process_time()
    model = TslearnKShape(k, max_iter=max_iter, random_state=seed).fit(Xz)
    model.cpu_seconds_ = time.process_time() - cpu
    model.compile_seconds_ = compile_seconds
    return model, time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="series for our timing (0 to skip)")
    parser.add_argument("--k", type=int, default=8, help="clusters")
    parser.add_argument("--tslearn-n", type=int, default=500, help="series for the tslearn comparison (0 to skip)")
    parser.add_argument("--max-iter", type=int, default=100, help="K-Shape iterations at most (tslearn's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--real", help="trace sample (csv/csv.gz in the Azure layout) to cluster with cluster_days")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--plot", help="with --real: write the cluster PNG here")
    args = parser.parse_args(argv)
    if args.n < 0 or args.tslearn_n < 0 or args.k < 1 or args.threads < 1 or args.max_iter < 1:
        parser.error("--n and --tslearn-n must be >= 0; --k, --threads and --max-iter >= 1")

    import torch

    torch.set_num_threads(args.threads)
    report: dict = {"threads": args.threads, "k": args.k, "max_iter": args.max_iter}

    if args.n:
        t0 = time.perf_counter()
        X = synthetic_days(args.n, seed=args.seed)
        print(f"generated {args.n} x 1440 synthetic series in {time.perf_counter() - t0:.1f}s", flush=True)
        model, seconds = time_ours(X, args.k, args.seed, args.max_iter)
        full = args.n * args.k * (model.n_iter_ + 1)
        print(
            f"ours     n={args.n:>7} K={args.k}: {seconds:7.1f}s wall, {model.cpu_seconds_:.1f}s CPU (load average {load_average()})  "
            f"iterations={model.n_iter_}  inertia={model.inertia_:.5f}  "
            f"SBD pairs computed {model.pairs_computed_:,} of {full:,} without pruning  time in {model.seconds_}  peak RSS {peak_rss_mb():.0f} MB",
            flush=True,
        )
        report["ours_full"] = {"n": args.n, "seconds": round(seconds, 2), "cpu_seconds": round(model.cpu_seconds_, 1),
                               "load_average": load_average(), "n_iter": int(model.n_iter_),
                               "inertia": float(model.inertia_), "pairs_computed": int(model.pairs_computed_),
                               "pairs_without_pruning": int(full), "seconds_by_step": model.seconds_, "peak_rss_mb": round(peak_rss_mb())}
        del X, model

    if args.tslearn_n:
        X = synthetic_days(args.tslearn_n, seed=args.seed + 1)
        ours, ours_s = time_ours(X, args.k, args.seed, args.max_iter)
        ref, ref_s = time_tslearn(X, args.k, args.seed, args.max_iter)
        same = float((ours.labels_ == ref.labels_).mean())
        print(f"ours     n={args.tslearn_n:>7} K={args.k}: {ours_s:7.2f}s ({ours.cpu_seconds_:.2f}s CPU)  iterations={ours.n_iter_}  inertia={ours.inertia_:.6f}")
        print(f"tslearn  n={args.tslearn_n:>7} K={args.k}: {ref_s:7.2f}s ({ref.cpu_seconds_:.2f}s CPU)  iterations={ref.n_iter_}  inertia={ref.inertia_:.6f}  "
              f"(numba compile, excluded: {ref.compile_seconds_:.0f}s)")
        print(f"labels identical for {same:.1%} of series; speed-up x{ref_s / max(ours_s, 1e-9):.0f}", flush=True)
        report["subset"] = {"n": args.tslearn_n, "ours_seconds": round(ours_s, 3), "tslearn_seconds": round(ref_s, 3),
                            "ours_cpu_seconds": round(ours.cpu_seconds_, 2), "tslearn_cpu_seconds": round(ref.cpu_seconds_, 2),
                            "tslearn_compile_seconds": round(ref.compile_seconds_, 1),
                            "ours_n_iter": int(ours.n_iter_), "tslearn_n_iter": int(ref.n_iter_),
                            "ours_inertia": float(ours.inertia_), "tslearn_inertia": float(ref.inertia_),
                            "labels_identical_fraction": same}

    if args.real:
        import pandas as pd

        from mesp_core.forecasting.patterns import cluster_days

        frame = pd.read_csv(args.real)
        days = frame[[str(m) for m in range(1, 1441)]].to_numpy(dtype=np.float32)
        t0 = time.perf_counter()
        result = cluster_days(days, random_state=args.seed, progress=True)
        seconds = time.perf_counter() - t0
        print(f"real sample: {len(days)} days -> K={result.k} in {seconds:.1f}s (+{result.sizes.get(-1, 0)} idle/flat days)")
        print("silhouette by K: " + ", ".join(f"{k}: {v:.3f}" for k, v in sorted(result.silhouette.items())))
        for c, desc in enumerate(result.descriptions):
            print(f"  cluster {c}: {result.sizes.get(c, 0):5d} days  {desc['label']}  (period {desc['period_minutes']}, peak hours {desc['peak_hours']})")
        if args.plot:
            from mesp_core.offline.plots import plot_clusters

            print(f"cluster plot: {plot_clusters(result, days, args.plot)}")
        report["real"] = {"n_days": len(days), "k": result.k, "seconds": round(seconds, 1), "silhouette": result.silhouette,
                          "sizes": result.sizes, "descriptions": result.descriptions}

    print(f"peak RSS {peak_rss_mb():.0f} MB")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
