"""Validation figures of the floor stage (issue 16) on the model's VALIDATION functions only.

MESP's floor at several cold-start costs (each function's floor policy chosen by C * cold + idle)
against the seasonal-naive floor and keep-alive 10, replayed like `mesp simulate` (second half-day,
start minute 720, replanned every minute, 60 invocations/minute per instance, 2 min of Knative
keep-alive under the floor, 1 min lead). Prints cold-start rate and idle instance-minutes, and MESP's
cold rate interpolated at the naive floor's idle.

The packaged model has its floor stage (added by `mesp floor` on its own training split; the command
below rebuilds the same stage bit for bit into a folder of your choice):

    mesp floor --model MODEL_WITHOUT_FLOOR \
        --trace ../shared/data/azure2019/invocations_per_function_md.sample.csv.gz --out model-floor/
    python bench/bench_floor_val.py --model mesp_core/default_model [--costs 1 2 4 10 32 64]
        [--variants] [--sample N] [--json OUT.json]

--variants adds two ablations: the head alone (the demand head's newsvendor quantile, no choice)
and the cluster defaults alone (no per-function rolling choice).
--ceiling adds what no choice among these candidates can beat: every candidate's floors are computed
every minute and replayed alone, then each function takes, in hindsight, the candidate cheapest by
C * cold + idle over its whole replay ("hindsight per function"), or over each 30-minute block
("hindsight per block", each block scored on the candidate's own replay: a close approximation,
since a switch carries the previous candidate's instances over). The rolling choice sees only
the past; if even these curves do not reach a target, no choice among these candidates will.
The validation functions are the ones the floor stage chose its cluster defaults on: these are
validation figures (in-sample for that choice), not the held-out protocol.

Measured 2026-12-07 (packaged model + `mesp floor` with its defaults, 445 s on 2 shared cores):
1,027 validation functions x 720 minutes, replayed in 146 s (6 costs + the two baselines):

    policy                  cold rate   idle inst-min
    MESP C=1 / 2 / 4          5.41% / 2.91% / 2.32%    208,608 / 248,387 / 275,796
    MESP C=10 / 32 / 64       1.67% / 1.15% / 1.00%    339,408 / 477,562 / 590,100
    seasonal-naive floor      2.41%                    341,398
    keep-alive 10 min         1.81%                    533,490
    MESP at the naive floor's idle: 1.66% (0.69x); at keep-alive 10's cold rate: 325,963 idle (0.61x)
With --variants (before the first step rebuilt the record from history, 1.72% / 0.71x for MESP):
cluster defaults alone 2.15% (0.89x), head alone 2.42% (1.00x) at the naive floor's idle.
--planner 120:30 / 480:30 / 240:10 / 240:60 on a 400-function sample: 0.76x / 0.75x / 0.75x / 0.77x
against 0.76x for the default 240:30 (the window and cadence barely matter).
Three more candidates (seasonal naive + keep-alive 3 / 10, q=0.5 + keep-alive 5) gave the same
1.66% at the naive floor's idle: not kept. Held-out functions, one-shot check after the choices
(--functions held-out, 1,284 x 720, 332 s): 2.52% vs the naive floor's 3.11% at its idle (0.81x),
392,696 idle at keep-alive 10's cold rate (0.56x its 695,275).
--ceiling (2026-12-07, retrained packaged model, --costs 1 2 4 8 16 32 64; 175 s + 5 min): at the naive
floor's idle the rolling choice has 0.70x its cold rate, hindsight per function 0.62x, per 30-min
block 0.46x; at keep-alive 10's cold rate 0.60x / 0.57x / 0.51x its idle.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from mesp_core.data.reader import read_invocations
from mesp_core.floor_cost import demand_instances, replay_floors
from mesp_core.forecasting.floors import ALL_CLUSTERS, Candidate
from mesp_core.forecasting.model import load_model
from mesp_core.offline.floor_training import model_split
from mesp_core.offline.split import seeded_sample
from mesp_core.policy import PolicyConfig
from mesp_core.replay.baselines import FixedKeepAlivePolicy
from mesp_core.replay.floor_policy import MespFloorPolicy
from mesp_core.replay.policies import ForecastFloorPolicy
from mesp_core.replay.simulate import simulate
from mesp_core.replay.standard import model_forecasters

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "azure2019" / "invocations_per_function_md.sample.csv.gz"
NAIVE, KEEP_ALIVE = "seasonal-naive floor", "keep-alive 10 min"


def variant(model, **floor_changes):
    """A shallow copy of the model whose floor stage differs (the experts are shared)."""
    other = copy.copy(model)
    other.floor = replace(model.floor, **floor_changes)
    return other


def interpolate(points, x_key, y_key, x):
    """y at x on the curve through points (sorted by x); None outside it."""
    pts = sorted(points, key=lambda r: r[x_key])
    xs, ys = [p[x_key] for p in pts], [p[y_key] for p in pts]
    if not xs or x < xs[0] or x > xs[-1]:
        return None
    return float(np.interp(x, xs, ys))


def candidate_replays(model, counts: np.ndarray, start: int, costs, keep=()) -> tuple[list[str], dict, dict]:
    """Every floor candidate replayed alone from minute `start`, its floors computed every minute as
    the rows of `simulate` are (capacity 60, lead 1, 2 minutes of keep-alive): (candidate names,
    {cost: (cold [P, n, W], idle [P, n, W])}, {name: floors [n, W]} of the candidates named in
    `keep`, at the first cost). Costs differ only in the newsvendor candidate."""
    n, T = counts.shape
    demand = demand_instances(counts, 60.0)
    planners = {c: model.floor_planner(c, 60.0, 1, 2) for c in costs}
    names = next(iter(planners.values())).names
    floors = {c: np.zeros((len(names), n, T - start), dtype=np.int32) for c in costs}
    rows_all = np.arange(n)
    with torch.inference_mode():
        for t in range(start, T):
            # The head's quantiles and the naive floor do not depend on the cost: computed once a minute.
            shared = planners[costs[0]].shared_inputs(counts, t, 1)
            for c, planner in planners.items():
                floors[c][:, :, t - start] = planner.candidate_plans(counts, rows_all, np.full(n, t), 1, **shared)[:, :, 0]
    kept = {name: floors[costs[0]][names.index(name)].copy() for name in keep}
    # Small counts per minute: int32 halves what 7 costs x 19 candidates x n x W hold.
    replays = {c: tuple(a.astype(np.int32) for a in replay_floors(demand, floors.pop(c), keep_alive=2,
                                                                       lead_minutes=1, start=start)) for c in costs}
    return names, replays, kept


def hindsight_rows(model, counts: np.ndarray, start: int, costs, block: int = 30) -> list[dict]:
    """Per cost: cold starts and idle of the per-function and per-block hindsight choices among the
    floor stage's candidates (see --ceiling), replayed as the rows of `simulate` are (capacity 60,
    lead 1, 2 minutes of keep-alive)."""
    n, T = counts.shape
    demanded = int(demand_instances(counts, 60.0)[:, start:].sum())
    rows_all = np.arange(n)
    _names, replays, _kept = candidate_replays(model, counts, start, costs)
    out = []
    for c in costs:
        cold, idle = replays[c]
        P = cold.shape[0]
        cost = c * cold.sum(axis=-1) + idle.sum(axis=-1)  # [P, n]
        best = np.argmin(cost, axis=0)
        per_fn = (int(cold.sum(axis=-1)[best, rows_all].sum()), int(idle.sum(axis=-1)[best, rows_all].sum()))
        span = (T - start) // block * block
        cold_b = cold[:, :, :span].reshape(P, n, -1, block).sum(axis=-1)
        idle_b = idle[:, :, :span].reshape(P, n, -1, block).sum(axis=-1)
        pick = np.argmin(c * cold_b + idle_b, axis=0)[None]
        # Minutes past the last whole block keep the per-function choice.
        per_block = (int(np.take_along_axis(cold_b, pick, 0).sum() + cold[:, :, span:].sum(axis=-1)[best, rows_all].sum()),
                     int(np.take_along_axis(idle_b, pick, 0).sum() + idle[:, :, span:].sum(axis=-1)[best, rows_all].sum()))
        for group, (cs, idl) in (("hindsight per function", per_fn), (f"hindsight per {block}-min block", per_block)):
            out.append({"policy": f"{group} C={c:g}", "group": group, "cold_rate": cs / demanded,
                        "cold_starts": cs, "idle": idl})
        print(f"hindsight C={c:g}: per function {100 * per_fn[0] / demanded:.2f}% / {per_fn[1]:,}, "
              f"per block {100 * per_block[0] / demanded:.2f}% / {per_block[1]:,}", file=sys.stderr, flush=True)
    return out


def add_validation_args(parser: argparse.ArgumentParser) -> None:
    """The arguments every validation bench of the floor stage takes."""
    parser.add_argument("--model", required=True, help="model folder with a floor stage")
    parser.add_argument("--trace", nargs="+", default=[str(SAMPLE)], help="the trace the model was trained on")
    parser.add_argument("--sample", type=int, default=0, help="a seeded sample of N validation functions (0 = all)")
    parser.add_argument("--start", type=int, default=720)
    parser.add_argument("--json", help="write the figures as JSON")


def load_floor_model(args):
    """(model, trace, fit functions, validation functions), or None (said why) without a floor stage."""
    torch.set_num_threads(1)
    model = load_model(args.model)
    if model.floor is None:
        print(f"{args.model} has no floor stage (add one with `mesp floor`)", file=sys.stderr)
        return None
    trace = read_invocations(args.trace)
    fit, val = model_split(model, trace)
    if args.sample:
        val = seeded_sample(val, args.sample)
    return model, trace, fit, val


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_validation_args(parser)
    parser.add_argument("--costs", nargs="+", type=float, default=[1.0, 2.0, 4.0, 10.0, 32.0, 64.0])
    parser.add_argument("--variants", action="store_true", help="also the head alone and the cluster defaults alone")
    parser.add_argument("--planner", nargs="*", default=[], metavar="WINDOW:EVERY",
                        help="also the rolling choice scored over WINDOW minutes and reselected every EVERY minutes")
    parser.add_argument("--ceiling", action="store_true",
                        help="also the hindsight choices among the candidates (what no rolling choice can beat)")
    parser.add_argument("--functions", choices=["validation", "held-out"], default="validation",
                        help="validation functions (default), or the held-out ones as a one-shot check: "
                        "never choose anything on those")
    args = parser.parse_args()
    loaded = load_floor_model(args)
    if loaded is None:
        return 2
    model, trace, _fit, val = loaded
    if args.functions == "held-out":
        from mesp_core.offline.split import held_out_functions

        val = held_out_functions(model, trace)
        if args.sample:
            val = seeded_sample(val, args.sample)
    counts = trace.counts[val]
    policies = {f"MESP C={c:g}": MespFloorPolicy(model, c, group="MESP") for c in args.costs}
    if args.variants:
        head_only = variant(model, candidates=[Candidate("newsvendor", q="newsvendor")],
                            defaults={ALL_CLUSTERS: {k: "newsvendor" for k in model.floor.defaults[ALL_CLUSTERS]}})
        defaults_only = variant(model, reselect_every=10**9)  # never reselects after the first (default) choice
        for c in args.costs:
            policies[f"head alone C={c:g}"] = MespFloorPolicy(head_only, c, group="head alone")
            policies[f"cluster defaults C={c:g}"] = MespFloorPolicy(defaults_only, c, group="cluster defaults")
    for spec in args.planner:
        window, every = (int(x) for x in spec.split(":"))
        other = variant(model, window=window, reselect_every=every)
        for c in args.costs:
            policies[f"MESP {spec} C={c:g}"] = MespFloorPolicy(other, c, group=f"MESP {spec}")
    naive_point, _ = model_forecasters(model, "naive")
    policies[NAIVE] = ForecastFloorPolicy(naive_point, config=PolicyConfig(), group=NAIVE)
    policies[KEEP_ALIVE] = FixedKeepAlivePolicy(10)

    started = time.monotonic()
    report = simulate(counts, policies, start_minute=args.start, capacity_per_instance=60.0, replan_every=1,
                      lead_minutes=1, keep_warm_minutes=2, progress=True)
    seconds = time.monotonic() - started
    rows = [{"policy": r.name, "group": r.group, "cold_rate": r.cold_start_rate, "cold_starts": r.cold_starts,
             "idle": r.idle_instance_minutes} for r in report.results]
    if args.ceiling:
        rows += hindsight_rows(model, counts.astype(np.float64), args.start, args.costs)
    by_name = {r["policy"]: r for r in rows}
    naive, keep = by_name[NAIVE], by_name[KEEP_ALIVE]
    print(f"{len(val)} {args.functions} functions x {trace.counts.shape[1] - args.start} minutes, replayed in {seconds:.0f}s")
    width = max(28, *(len(r["policy"]) + 2 for r in rows))
    print(f"{'policy':<{width}}{'cold rate':>10}{'idle inst-min':>15}")
    for r in rows:
        print(f"{r['policy']:<{width}}{100 * r['cold_rate']:>9.2f}%{r['idle']:>15,}")
    summary = {}
    for group in sorted({r["group"] for r in rows if r["group"] not in (NAIVE, None)}):
        curve = [r for r in rows if r["group"] == group]
        at_idle = interpolate(curve, "idle", "cold_rate", naive["idle"])
        at_cold = interpolate(curve, "cold_rate", "idle", keep["cold_rate"])
        summary[group] = {"cold_rate_at_naive_idle": at_idle, "idle_at_keep_alive_10_cold_rate": at_cold}
        text = "outside the curve" if at_idle is None else (
            f"{100 * at_idle:.2f}% ({at_idle / naive['cold_rate']:.2f}x the naive floor's {100 * naive['cold_rate']:.2f}%)")
        print(f"{group}: cold rate at the naive floor's idle ({naive['idle']:,}): {text}")
        text = "outside the curve" if at_cold is None else f"{at_cold:,.0f} ({at_cold / keep['idle']:.2f}x its {keep['idle']:,})"
        print(f"{group}: idle at keep-alive 10's cold rate ({100 * keep['cold_rate']:.2f}%): {text}")
    if args.json:
        Path(args.json).write_text(json.dumps({"functions": int(len(val)), "seconds": round(seconds, 1),
                                               "rows": rows, "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
