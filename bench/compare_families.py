"""Compare trainable families on validation functions of a real trace, on the very same windows.

    python bench/compare_families.py [--trace FILE] [--families nbeats autoformer] [--epochs 8] \\
        [--train-windows 4000] [--val-windows 6000] [--seed 0]

The functions are split as `mesp train` splits them (the held-out share is never read; validation
functions are other functions than the fit ones), windows are cut as training cuts them (input
480, horizon 60, stride 30, a day of history before validation origins), then every family is fitted
with its default hyper-parameters on the same seeded sample of fit windows for at most `--epochs`
epochs (early stopping on a seeded sample of validation windows), and scored by WAPE on the
validation windows. One torch thread, as `mesp train` fits. The figure decides whether a family is
worth its cost in the default list (mesp_core.offline.config.TRAINABLE_DEFAULT).

Measured 2026-12-07 on the shared 2-CPU VM, shared sample (6,418 functions: 4,107 fit, 1,027
validation), 4,000 train / 1,333 early-stopping / 6,000 scored windows, three runs (the windows are
the same in each: seeded), load average 12-25 so the seconds are only roughly comparable:

    python bench/compare_families.py                       # nbeats, then autoformer
    python bench/compare_families.py --families autoformer --param autoformer.lr=0.003 \
        --param autoformer.d_model=32 --param autoformer.d_ff=64

    family         params epochs         stopped   fit s  s/epoch  val WAPE
    nbeats         344240      8      max_epochs     9.5     1.19     0.237
    autoformer       7649      8      max_epochs   235.7    29.46     0.366
    autoformer*     29633      8      max_epochs   541.8    67.73     0.327   (lr 3e-3, d_model 32, d_ff 64)
    seasonal_naive                                                    0.270

Per training step of 256 windows x 240 minutes, in CPU seconds on one thread: N-BEATS 0.008,
Autoformer 0.39 (d_model 16) and 0.78 (d_model 32). Autoformer is therefore offered
(`mesp train --families ... autoformer`, trained on at most `family_max_windows["autoformer"]`
windows) but not in the default list: it loses to N-BEATS and even to seasonal naive here.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from mesp_core.constants import MIN_CONTEXT
from mesp_core.data.reader import read_invocations
from mesp_core.data.windows import make_windows
from mesp_core.forecasting.experts import TRAINABLE_FAMILIES, build_expert
from mesp_core.offline.config import TrainConfig
from mesp_core.offline.selection import cap_windows, score
from mesp_core.offline.split import function_split

SAMPLE = "/work/shared/data/azure2019/invocations_per_function_md.sample.csv.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", default=SAMPLE)
    parser.add_argument("--families", nargs="+", default=["nbeats", "autoformer"], choices=list(TRAINABLE_FAMILIES))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-windows", type=int, default=4_000)
    parser.add_argument("--val-windows", type=int, default=6_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--param", action="append", default=[], metavar="FAMILY.NAME=VALUE",
                        help="a hyper-parameter other than the default, e.g. autoformer.lr=0.003 (repeatable)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    config = TrainConfig(seed=args.seed)
    trace = read_invocations([args.trace], progress=False)
    fit_idx, val_idx, _held_out = function_split(trace, config.test_fraction, config.val_fraction, config.seed)
    fit_series = [trace.counts[i] for i in fit_idx]
    val_series = [trace.counts[i] for i in val_idx]
    fit = make_windows(fit_series, config.input_size_max, config.horizon, stride=config.stride, min_context=MIN_CONTEXT,
                       rng=config.seed, max_windows=config.max_fit_windows)
    val = make_windows(val_series, config.input_size_max, config.horizon, stride=config.stride,
                       min_context=config.val_min_context, rng=config.seed + 1, max_windows=config.max_val_windows)
    train = cap_windows(fit, args.train_windows, args.seed)
    stop = cap_windows(val, max(1, args.train_windows // 3), args.seed + 1)  # early stopping
    scored = cap_windows(val, args.val_windows, args.seed + 2)
    print(f"# {len(trace.keys)} functions: {len(fit_idx)} fit, {len(val_idx)} validation; windows: {len(train)} train, "
          f"{len(stop)} early-stopping, {len(scored)} scored (validation functions); epochs <= {args.epochs}; "
          f"torch {torch.__version__}, 1 thread, load average {os.getloadavg()[0]:.1f}")
    print(f"{'family':<12}{'params':>9}{'epochs':>7}{'stopped':>16}{'fit s':>8}{'s/epoch':>9}{'val WAPE':>10}")
    overrides: dict[str, dict] = {}
    for item in args.param:
        name, value = item.split("=", 1)
        family, key = name.split(".", 1)
        overrides.setdefault(family, {})[key] = json.loads(value)
    for family in args.families:
        expert = build_expert({"family": family, "horizon": config.horizon, "seed": args.seed, "max_epochs": args.epochs,
                               "loss_weight": config.loss_weight, **overrides.get(family, {})})
        started = time.perf_counter()
        expert.fit(train, stop)
        seconds = time.perf_counter() - started
        report = expert.fit_report_
        params = sum(p.numel() for p in expert.module.parameters())
        print(f"{family + ('*' if family in overrides else ''):<12}{params:>9}{report['epochs']:>7}{report['stopped']:>16}{seconds:>8.1f}"
              f"{seconds / max(report['epochs'], 1):>9.2f}{score(expert, scored):>10.3f}", flush=True)
    floor = build_expert({"family": "seasonal_naive", "horizon": config.horizon})
    print(f"{'seasonal_naive':<12}{'':>9}{'':>7}{'':>16}{'':>8}{'':>9}{score(floor, scored, val_series):>10.3f}")
    for family, params in overrides.items():
        print(f"# {family}*: {params}")
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
