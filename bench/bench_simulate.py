"""Benchmark the cold-start replay: ~1,300 functions x 720 replayed minutes, replanning every minute.

The trace is generated with a seeded numpy generator (diurnal, periodic timers, bursty, sparse) so
the run needs no data; forecasters are numpy seasonal rules (no model), so the figures measure the
replay and the policy themselves. With --model DIR the standard policy set of a trained MESP model
is replayed instead (run_replay), which adds the model's own forecasting time.

    python bench/bench_simulate.py [--functions 1300] [--replan-every 1]
        [--model DIR] [--trace FILE ...] [--plot OUT.png] [--json OUT.json]

Measured on 2 shared cores (2026-11-25), 11 policies, replanning every minute:
- generated, 1,300 functions x 720 minutes: 21.5 s wall (11.9 s CPU);
- the shared real sample (--trace .../invocations_per_function_md.sample.csv.gz), 6,418 functions
  x 720 minutes: 172 s wall.
With a trained model (--model) the model's forecasts dominate: per planning step on 1,300
functions the tiny test model took 0.23 s (naive), 1.0 s (dense), 1.4 s (MoE) per call, and
each quantile of the sweep is another call; use --replan-every 5..15 for big runs.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from mesp_core.replay.baselines import FixedKeepAlivePolicy, HybridHistogramPolicy, OraclePolicy
from mesp_core.replay.policies import ForecastFloorPolicy, KNATIVE_DEFAULT, NoFloorPolicy
from mesp_core.replay.report import format_table, plot_tradeoff
from mesp_core.replay.simulate import simulate
from mesp_core.replay.standard import run_replay


def generated_counts(n: int, minutes: int, seed: int) -> np.ndarray:
    """A seeded mix of serverless invocation patterns, [n, minutes] counts per minute."""
    rng = np.random.default_rng(seed)
    t = np.arange(minutes)
    scale = rng.lognormal(0.0, 2.2, size=(n, 1))
    kind = rng.choice(4, size=n, p=[0.35, 0.25, 0.2, 0.2])
    diurnal = 0.3 + np.clip(np.sin(2 * np.pi * (t - 360) / 1440), 0, None)[None, :]
    rate = scale * diurnal
    counts = rng.poisson(rate).astype(np.float32)
    # Timers: a fixed period and phase, a few invocations each time.
    timers = np.flatnonzero(kind == 1)
    periods = rng.choice([1, 2, 5, 10, 15, 30, 60], size=timers.size)
    for row, period in zip(timers, periods):
        counts[row] = 0
        phase = rng.integers(period)
        counts[row, phase::period] = rng.poisson(max(1.0, float(scale[row, 0])), size=len(t[phase::period]))
    # Bursty: on/off.
    bursty = np.flatnonzero(kind == 2)
    on = rng.random((bursty.size, minutes // 10 + 1)) < 0.15
    counts[bursty] *= np.repeat(on, 10, axis=1)[:, :minutes] * 4
    # Sparse: mostly zeros.
    sparse = np.flatnonzero(kind == 3)
    counts[sparse] = (rng.random((sparse.size, minutes)) < 0.03) * rng.integers(1, 4, (sparse.size, minutes))
    return counts


def seasonal(period: int):
    def forecast(contexts, horizon):
        ctx = np.asarray(contexts)[:, -period:].astype(np.float64)
        return np.tile(ctx, -(-horizon // period))[:, :horizon]

    forecast.__name__ = f"repeat_last_{period}min"
    return forecast


def recent_max(window: int):
    def quantile(contexts, horizon, q):
        ctx = np.asarray(contexts)[:, -window:].astype(np.float64)
        return np.repeat(np.quantile(ctx, q, axis=1)[:, None], horizon, axis=1)

    return quantile


def numpy_policies(quantiles):
    policies = {
        KNATIVE_DEFAULT: NoFloorPolicy(),
        "keep-alive 10 min": FixedKeepAlivePolicy(10),
        "keep-alive 20 min": FixedKeepAlivePolicy(20),
        "hybrid histogram": HybridHistogramPolicy(),
        "repeat last hour": ForecastFloorPolicy(seasonal(60)),
    }
    quantile = recent_max(60)
    for q in quantiles:
        policies[f"recent-hour quantile q={q:g}"] = ForecastFloorPolicy(
            quantile_forecaster=quantile, quantile=q, group="recent-hour quantile")
    policies["oracle"] = OraclePolicy()
    return policies


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--functions", type=int, default=1300)
    p.add_argument("--minutes", type=int, default=1440)
    p.add_argument("--start", type=int, default=720)
    p.add_argument("--replan-every", type=int, default=1)
    p.add_argument("--lead", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", metavar="DIR", help="replay a trained model's standard policy set")
    p.add_argument("--trace", nargs="+", metavar="FILE", help="Azure-layout invocation files instead of generated data")
    p.add_argument("--plot", metavar="PNG")
    p.add_argument("--json", metavar="OUT")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    if args.trace:
        from mesp_core.data.reader import read_invocations

        counts = read_invocations(args.trace).counts
    else:
        counts = generated_counts(args.functions, args.minutes, args.seed)
    quantiles = (0.5, 0.8, 0.9, 0.95, 0.99)
    began = time.perf_counter()
    if args.model:
        import torch

        from mesp_core import load_model

        torch.set_num_threads(2)
        report = run_replay(load_model(args.model), counts, start_minute=args.start, quantiles=quantiles,
                            replan_every=args.replan_every, lead_minutes=args.lead, progress=not args.quiet)
    else:
        report = simulate(counts, numpy_policies(quantiles), start_minute=args.start,
                          replan_every=args.replan_every, lead_minutes=args.lead, progress=not args.quiet)
    elapsed = time.perf_counter() - began
    n, T = counts.shape
    print(format_table(report))
    print(f"\nreplayed {n} functions x {T - args.start} minutes, {len(report.results)} policies, "
          f"replan every {args.replan_every} min: {elapsed:.1f} s")
    if args.plot:
        plot_tradeoff(report, args.plot)
    if args.json:
        with open(args.json, "w") as f:
            f.write(report.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
