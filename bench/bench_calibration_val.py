"""Out-of-sample check of the quantile calibration on the model's VALIDATION functions only.

`mesp calibrate` fits its maps on all validation functions and reports coverage on the same ones
(in-sample). This splits the validation functions in two seeded halves, fits on one and measures on
the other (and the other way round), with the protocol of `mesp calibrate` (origins every 60 minutes
from 720 to 1380 of the last day, 60 lead minutes pooled). Held-out functions are never read.

    python bench/bench_calibration_val.py --model mesp_core/default_model \
        --trace ../shared/data/azure2019/invocations_per_function_md.sample.csv.gz [--target pit|at_or_below]
"""

from __future__ import annotations

import argparse
import copy

import numpy as np

from mesp_core import load_model
from mesp_core.data.reader import read_invocations
from mesp_core.offline.calibration import CalibrationConfig, fit_calibration, validation_samples
from mesp_core.offline.coverage import REPORT_LEVELS, CoverageSamples
from mesp_core.offline.floor_training import model_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--trace", nargs="+", required=True)
    parser.add_argument("--target", default="pit", choices=("pit", "at_or_below"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = load_model(args.model)
    trace = read_invocations(args.trace, progress=False)
    _fit, val = model_split(model, trace)
    counts = np.asarray(trace.counts, dtype=np.float32)[val]
    halves = np.array_split(np.random.default_rng(args.seed).permutation(len(val)), 2)
    raw = copy.copy(model)
    raw.quantile_calibration = None
    before, after = [], []
    for fit_half, test_half in (halves, halves[::-1]):
        calibration, _ = fit_calibration(model, counts[np.sort(fit_half)], CalibrationConfig(target=args.target))
        fitted = copy.copy(model)
        fitted.quantile_calibration = calibration
        before.append(validation_samples(raw, counts[np.sort(test_half)], 60))
        after.append(validation_samples(fitted, counts[np.sort(test_half)], 60))
    before, after = CoverageSamples.concatenate(before), CoverageSamples.concatenate(after)
    print(f"{len(val)} validation functions, 2 folds, maps fitted on one half and measured on the other "
          f"(target {args.target}); PIT / at or below / below")
    for name, samples in (("uncalibrated", before), ("calibrated", after)):
        groups = [("all", samples)] + [(k, samples.subset(samples.keys == k)) for k in sorted(set(samples.keys.tolist()))]
        print(name)
        for key, group in groups:
            summary = group.summary()
            cells = "  ".join(f"{q:g}: {summary[f'{q:g}']['pit']:.3f}/{summary[f'{q:g}']['at_or_below']:.3f}/"
                              f"{summary[f'{q:g}']['below']:.3f}" for q in REPORT_LEVELS)
            print(f"  {key:<18} {cells}")


if __name__ == "__main__":
    main()
