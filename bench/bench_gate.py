#!/usr/bin/env python3
"""A learned gate against the shipped router: does a trained mixer beat nearest-centroid routing?

Issue 2 asks the router to pick a cluster's expert by shape distance "and compare a learned gate".
This script builds that gate and compares it with the model as shipped, on the functions the model
validated on (chosen by nothing else), then on the held-out functions for the record.

For every function and every origin (60, 120, ... minutes apart, as in `mesp evaluate`), each
candidate forecasts the next hour from every minute before the origin: every cluster's expert (whatever
the route), every dense model, seasonal naive, repeat-last-hour and the MoE itself. The gate is a
softmax over those candidates, linear or a one-hidden-layer network, fed with what is known at the
origin: each candidate's error on the function's own last hour (absolute and against the MoE's), the
router's distance to every centroid and its route, the function's level, recent trend and share of
idle minutes, each candidate's forecast level against the last hour, and the time of day. It is
trained by minimising the pooled WAPE of the mixture, starting from "all weight on the MoE".

Validation: the validation functions are split in two halves (4 seeded splits, each half used once
for fitting and once for scoring), so the gate is always scored on functions it was not fitted on.

    python bench/bench_gate.py                       # packaged model, shared sample (≈ 2 min)
    python bench/bench_gate.py --model model/ --trace FILE [FILE ...] --json gate.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mesp_core.offline.metrics import wape
from mesp_core.forecasting.model import default_model_path, load_model, repeat_last_hour_forecast
from mesp_core.data.reader import read_invocations
from mesp_core.offline.split import function_split

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO.parent / "shared" / "data" / "azure2019" / "invocations_per_function_md.sample.csv.gz"
HORIZON = 60
GATES = {"linear": dict(hidden=0, weight_decay=1e-3), "mlp16": dict(hidden=16, weight_decay=1e-3),
         "mlp32": dict(hidden=32, weight_decay=1e-2)}


def candidate_forecasts(model, counts: np.ndarray, origin: int) -> tuple[list[str], np.ndarray]:
    """Every candidate's forecast of [origin, origin + HORIZON): names and [n, C, HORIZON]."""
    context = counts[:, :origin]
    names, forecasts = [], []
    with torch.inference_mode():
        for cluster, expert in sorted(model.cluster_experts.items()):
            names.append(f"cluster {cluster} expert")
            forecasts.append(model._predict(expert, context, HORIZON)[0])
        for family, expert in model.dense_experts.items():
            names.append(f"dense {family}")
            forecasts.append(model._predict(expert, context, HORIZON)[0])
    names += ["seasonal naive", "repeat last hour", "moe"]
    forecasts += [model.forecast(context, HORIZON, "naive"), repeat_last_hour_forecast(context, HORIZON),
                  model.forecast(context, HORIZON, "moe")]
    return names, np.stack(forecasts, axis=1).astype(np.float32)


def gate_inputs(model, counts: np.ndarray, origin: int, now: np.ndarray, hour_before: np.ndarray, moe: int) -> np.ndarray:
    """What the gate sees at `origin` [n, features]; `now`/`hour_before` are the candidates'
    forecasts from this origin and from the one an hour earlier."""
    last_hour = counts[:, origin - HORIZON:origin]
    level = last_hour.mean(axis=1)
    error = np.abs(hour_before - last_hour[:, None, :]).sum(axis=2) / (last_hour.sum(axis=1)[:, None] + 1.0)
    log_error = np.log(error + 1e-3)
    context = counts[:, :origin]
    distances = np.nan_to_num(model.router.distances(context), nan=2.0)
    routes = model.route(context)
    route_onehot = (routes[:, None] == np.arange(-1, distances.shape[1])[None, :]).astype(np.float32)
    last_15 = counts[:, origin - 15:origin].mean(axis=1)
    return np.concatenate([
        log_error, log_error - log_error[:, [moe]], distances, route_onehot,
        np.log1p(level)[:, None], (np.log1p(last_15) - np.log1p(level))[:, None],
        (last_hour == 0).mean(axis=1)[:, None], (context == 0).mean(axis=1)[:, None],
        np.log1p(context.mean(axis=1))[:, None],
        np.log((now.mean(axis=2) + 1.0) / (level[:, None] + 1.0)),
        np.full((len(counts), 1), (origin % 1440) / 1440.0),
    ], axis=1).astype(np.float32)


def windows(model, counts: np.ndarray, origins: list[int]):
    """Inputs, candidate forecasts, actuals and function index of every (function, origin)."""
    names, previous = candidate_forecasts(model, counts, origins[0] - HORIZON)
    moe = names.index("moe")
    inputs, forecasts, actuals, functions = [], [], [], []
    for origin in origins:
        _, now = candidate_forecasts(model, counts, origin)
        inputs.append(gate_inputs(model, counts, origin, now, previous, moe))
        forecasts.append(now)
        actuals.append(counts[:, origin:origin + HORIZON])
        functions.append(np.arange(len(counts)))
        previous = now
    return names, np.concatenate(inputs), np.concatenate(forecasts), np.concatenate(actuals), np.concatenate(functions)


def fit_gate(inputs, forecasts, actuals, moe: int, hidden: int, weight_decay: float, epochs: int = 400, seed: int = 0):
    """Softmax mixer trained on the pooled WAPE; returns weights_for(inputs) -> [m, C]."""
    torch.manual_seed(seed)
    mean, std = inputs.mean(axis=0), inputs.std(axis=0) + 1e-6
    x = torch.from_numpy((inputs - mean) / std)
    f, y = torch.from_numpy(forecasts), torch.from_numpy(actuals)
    n_candidates = forecasts.shape[1]
    if hidden:
        net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, n_candidates))
        head = net[-1]
    else:
        net = head = torch.nn.Linear(x.shape[1], n_candidates)
    with torch.no_grad():  # start from the shipped model: (almost) all weight on the MoE
        head.weight.zero_()
        head.bias.zero_()
        head.bias[moe] = 4.0
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=weight_decay)
    total = y.sum()
    for _ in range(epochs):
        optimiser.zero_grad()
        mixture = (torch.softmax(net(x), dim=1)[:, :, None] * f).sum(dim=1)
        loss = (mixture - y).abs().sum() / total
        loss.backward()
        optimiser.step()

    def weights_for(new_inputs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(net(torch.from_numpy((new_inputs - mean) / std)), dim=1).numpy()
    return weights_for


def mix(weights: np.ndarray, forecasts: np.ndarray) -> np.ndarray:
    return (weights[:, :, None] * forecasts).sum(axis=1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(default_model_path()), help="model folder (default: the packaged model)")
    parser.add_argument("--trace", nargs="+", default=[str(SAMPLE)], help="the trace the model was trained on")
    parser.add_argument("--halves", type=int, default=4, help="seeded splits of the validation functions (default 4)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    start = time.monotonic()

    model = load_model(args.model)
    config = model.manifest["training"]["config"]
    trace = read_invocations(args.trace)
    # The same split `mesp train` made.
    _, val_idx, test_idx = function_split(trace, config["test_fraction"], config["val_fraction"], config["seed"])
    minutes = trace.counts[0].shape[0]
    origins = list(range(minutes - 720, minutes - HORIZON + 1, 60))  # mesp evaluate's origins, last day
    report = {"model": args.model, "origins": origins, "validation": {}, "held_out": {}}

    def counts_of(idx):
        return np.stack([trace.counts[i] for i in idx]).astype(np.float32)

    names, inputs, forecasts, actuals, functions = windows(model, counts_of(val_idx), origins)
    moe = names.index("moe")
    report["candidates"] = names
    print(f"validation: {len(val_idx)} functions x {len(origins)} origins; MoE WAPE {wape(actuals, forecasts[:, moe]):.4f}, "
          f"seasonal naive {wape(actuals, forecasts[:, names.index('seasonal naive')]):.4f}", flush=True)
    n_functions = len(val_idx)
    for gate, settings in GATES.items():
        rows = []
        for seed in range(args.halves):
            first = np.zeros(n_functions, dtype=bool)
            first[np.random.default_rng(seed).permutation(n_functions)[: n_functions // 2]] = True
            for fit_on_first in (True, False):
                fit = first[functions] == fit_on_first
                weights_for = fit_gate(inputs[fit], forecasts[fit], actuals[fit], moe, **settings)
                score = ~fit
                rows.append((wape(actuals[score], forecasts[score, moe]),
                             wape(actuals[score], mix(weights_for(inputs[score]), forecasts[score]))))
        rows = np.array(rows)
        ratio = float((rows[:, 1] / rows[:, 0]).mean())
        report["validation"][gate] = {"moe": rows[:, 0].tolist(), "gate": rows[:, 1].tolist(), "mean_gate_over_moe": ratio}
        print(f"  {gate:7s} gate / MoE on unseen halves: mean {ratio:.3f} "
              f"(from {float((rows[:, 1] / rows[:, 0]).min()):.3f} to {float((rows[:, 1] / rows[:, 0]).max()):.3f})", flush=True)

    if len(test_idx):
        _, test_inputs, test_forecasts, test_actuals, _ = windows(model, counts_of(test_idx), origins)
        base = wape(test_actuals, test_forecasts[:, moe])
        naive = wape(test_actuals, test_forecasts[:, names.index("seasonal naive")])
        print(f"held out (for the record; fitted on all validation functions): {len(test_idx)} functions, "
              f"MoE {base:.4f}, seasonal naive {naive:.4f}")
        report["held_out"] = {"moe": base, "seasonal_naive": naive}
        for gate, settings in GATES.items():
            weights = fit_gate(inputs, forecasts, actuals, moe, **settings)(test_inputs)
            score = wape(test_actuals, mix(weights, test_forecasts))
            mean_weight = dict(zip(names, np.round(weights.mean(axis=0), 3).tolist()))
            report["held_out"][gate] = {"wape": score, "mean_weights": mean_weight}
            print(f"  {gate:7s} gate {score:.4f} (mean weight on the MoE {mean_weight['moe']:.2f})")
    report["seconds"] = round(time.monotonic() - start, 1)
    print(f"bench_gate: {report['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
