"""Benchmark every expert family: fit time on 20k windows and inference time for 10,000 contexts.

    python bench/bench_experts.py [--threads 2] [--windows 20000] [--families dlinear nbeats]

Data: a seeded numpy generator (below) of two-day per-minute traces mixing diurnal, timer, bursty
and sparse functions with levels over four orders of magnitude. Windows use input 240 and horizon 60;
validation windows come from other functions. Fits use each family's default hyper-parameters
(early stopping on the validation windows). The non-trainable experts are timed on raw contexts of
their own input size (seasonal naive: up to two days).

Measured 2026-11-25 on the shared 2-CPU dev VM (other jobs running, load average 3-5), --threads 1:

    family              params epochs         stopped   fit s  s/epoch  predict 10k s   WAPE
    seasonal_naive           0      -               -       -        -           1.28  0.518
    repeat_last_hour         0      -               -       -        -           0.09  0.582
    dlinear              28920     13  early_stopping     5.1     0.39           0.17  0.569
    nbeats              344240     20      max_epochs    18.9     0.94           0.40  0.378
    lstm                 28380     20      max_epochs    23.2     1.16           0.30  0.472
    patchtst             40444     20      max_epochs    37.8     1.89           0.36  0.446

With --threads 2 on the same busy VM, DLinear took 129.8 s (10 s/epoch) instead of 5.1 s: two
OpenMP threads competing with other processes for two cores spin and stall. Fit with one torch
thread per process when the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from mesp_core.forecasting.experts import EXPERT_FAMILIES, build_expert
from mesp_core.data.windows import make_windows

INPUT, HORIZON, DAY = 240, 60, 1440


def synthetic_series(n: int, days: int = 2, seed: int = 0) -> list[np.ndarray]:
    """Per-minute counts: diurnal, timer, bursty and sparse functions, levels 0.1..1000 per minute."""
    rng = np.random.default_rng(seed)
    t = np.arange(days * DAY)
    out = []
    for _ in range(n):
        level = 10 ** rng.uniform(-1, 3)
        kind = rng.choice(["diurnal", "timer", "bursty", "sparse"], p=[0.35, 0.35, 0.15, 0.15])
        if kind == "diurnal":
            peak = rng.uniform(6, 20) * 60
            rate = level * (0.2 + np.exp(-0.5 * (((t % DAY) - peak) / rng.uniform(60, 240)) ** 2))
        elif kind == "timer":
            period = rng.choice([5, 10, 15, 30, 60])
            rate = level * 0.05 + level * ((t + rng.integers(period)) % period == 0) * period / 4
        elif kind == "bursty":
            on = np.repeat(rng.random(len(t) // 30 + 1) < 0.2, 30)[: len(t)]
            rate = level * (0.05 + on * rng.uniform(2, 6))
        else:
            rate = np.full(len(t), level * 0.02)
        out.append(rng.poisson(rate).astype(np.float32))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--windows", type=int, default=20_000)
    parser.add_argument("--contexts", type=int, default=10_000)
    parser.add_argument("--families", nargs="+", default=list(EXPERT_FAMILIES), choices=list(EXPERT_FAMILIES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    train_series = synthetic_series(600, seed=1)
    val_series = synthetic_series(60, seed=2)
    test_series = synthetic_series(args.contexts, seed=3)
    train = make_windows(train_series, INPUT, HORIZON, stride=20, max_windows=args.windows, rng=0)
    val = make_windows(val_series, INPUT, HORIZON, stride=60, max_windows=2_000, rng=0)
    rng = np.random.default_rng(4)
    # One raw context per test function, cut at a random origin on its second day.
    origins = rng.integers(DAY, 2 * DAY - HORIZON, size=len(test_series))
    contexts = [s[:o] for s, o in zip(test_series, origins)]
    targets = np.stack([s[o : o + HORIZON] for s, o in zip(test_series, origins)])

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    print(f"# train windows {len(train)}, val windows {len(val)}, inference contexts {len(contexts)} "
          f"(input {INPUT}, horizon {HORIZON})")
    header = f"{'family':<17}{'params':>9}{'epochs':>7}{'stopped':>16}{'fit s':>8}{'s/epoch':>9}{'predict 10k s':>15}{'WAPE':>7}"
    print(header)
    print("-" * len(header))
    for family in args.families:
        expert = build_expert({"family": family, "horizon": HORIZON} | ({"input_size": INPUT} if EXPERT_FAMILIES[family].trainable else {}))
        start = time.perf_counter()
        expert.fit(train, val)
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        forecast = expert.predict(contexts)
        predict_seconds = time.perf_counter() - start
        wape = np.abs(forecast - targets).sum() / targets.sum()
        if expert.trainable:
            report = expert.fit_report_
            params = sum(p.numel() for p in expert.module.parameters())
            per_epoch = fit_seconds / max(report["epochs"], 1)
            print(f"{family:<17}{params:>9}{report['epochs']:>7}{report['stopped']:>16}{fit_seconds:>8.1f}"
                  f"{per_epoch:>9.2f}{predict_seconds:>15.2f}{wape:>7.3f}", flush=True)
        else:
            print(f"{family:<17}{0:>9}{'-':>7}{'-':>16}{'-':>8}{'-':>9}{predict_seconds:>15.2f}{wape:>7.3f}", flush=True)
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
