#!/usr/bin/env python3
"""How much the headline figures depend on which 20% of functions is held out.

For each seed, runs exactly the documented commands with `--seed S` (the seed picks the held-out
split as well as training's own randomness):

    mesp train    --trace SAMPLE --out WORK/seedS --seed S --json WORK/trainS.json
    mesp evaluate --model WORK/seedS --trace SAMPLE --json WORK/evalS.json
    mesp simulate --model WORK/seedS --trace SAMPLE --replan-every 5 --json WORK/simS.json

then prints, per seed, the held-out WAPE of MoE / best dense / seasonal naive and the replay's
cold-start rate and idle instance-minutes of the baselines and of MESP at q = 0.9. Steps whose output
already exists in WORK are not rerun (a killed run resumes), and a model folder already in
WORK/seedS is used as it is: link WORK/seed0 to mesp_core/default_model, which is that training
with seed 0. Each training takes ≈ 10 minutes.

    python bench/bench_splits.py --seeds 0 1 2 3 4 --work /tmp/splits [--trace FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from mesp_core.replay.report import PolicyResult, curve_readoffs

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO.parent / "shared" / "data" / "azure2019" / "invocations_per_function_md.sample.csv.gz"
REPLAY_POLICIES = ["keep-alive 10 min", "hybrid histogram", "seasonal naive", "MESP C=8"]


def run(step: list[str], out: Path, log: Path) -> None:
    if out.exists():
        return
    print(f"bench: mesp {' '.join(step)}", file=sys.stderr, flush=True)
    with log.open("w") as handle:
        done = subprocess.run([sys.executable, "-m", "mesp_core.cli", *step], stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"bench: 'mesp {step[0]}' failed (exit {done.returncode}); see {log}")


def summarise(work: Path, seed: int) -> dict:
    overall = json.loads((work / f"eval{seed}.json").read_text())["overall"]
    dense = {name: m["wape"] for name, m in overall.items() if name.startswith("dense")}
    best_dense = min(dense, key=dense.get)
    policies = {p["name"]: p for p in json.loads((work / f"sim{seed}.json").read_text())["policies"]}
    row = {
        "seed": seed,
        "moe": overall["moe"]["wape"],
        "best_dense": dense[best_dense],
        "best_dense_name": best_dense,
        "naive": overall["seasonal_naive"]["wape"],
    }
    row["moe_below_naive"] = 1.0 - row["moe"] / row["naive"]
    for name in REPLAY_POLICIES:
        if name in policies:
            row[name] = (policies[name]["cold_start_rate"], policies[name]["idle_instance_minutes"])
    # Issue 16's replay targets: the MESP curve (cold-start cost sweep) at the naive floor's idle and
    # at keep-alive 10's cold-start rate, beside the per-function cheap choice's curve.
    readoffs = {r["curve"]: r for r in curve_readoffs([PolicyResult(**p) for p in policies.values()])}
    for curve, key in (("MESP", "curve"), ("cheap choice", "cheap")):
        entry = readoffs.get(curve, {})
        row[f"{key}_at_naive_idle"] = entry.get("cold_start_rate_at_reference_idle")
        row[f"{key}_idle_ratio_at_ka10"] = entry.get("idle_ratio")
        at_idle, naive = row[f"{key}_at_naive_idle"], row.get("seasonal naive")
        row[f"{key}_cold_ratio_at_naive_idle"] = None if at_idle is None or not naive else at_idle / naive[0]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--work", type=Path, required=True, help="folder for the models, logs and JSON reports")
    parser.add_argument("--trace", type=Path, default=SAMPLE)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    if not args.trace.exists():
        parser.error(f"trace not found: {args.trace}")
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in args.seeds:
        w = args.work
        trace = ["--trace", str(args.trace)]
        run(["train", *trace, "--out", str(w / f"seed{seed}"), "--seed", str(seed), "--json", str(w / f"train{seed}.json")],
            w / f"seed{seed}" / "manifest.json", w / f"train{seed}.log")
        run(["evaluate", "--model", str(w / f"seed{seed}"), *trace, "--json", str(w / f"eval{seed}.json")],
            w / f"eval{seed}.json", w / f"eval{seed}.log")
        run(["simulate", "--model", str(w / f"seed{seed}"), *trace, "--replan-every", "5", "--json", str(w / f"sim{seed}.json")],
            w / f"sim{seed}.json", w / f"sim{seed}.log")
        rows.append(summarise(args.work, seed))

    print("held-out WAPE per split (MoE, best dense, seasonal naive) and replay cold-start rate / idle instance-minutes")
    head = f"{'seed':>4}  {'MoE':>6}  {'dense':>6}  {'naive':>6}  {'MoE vs naive':>12}"
    head += "".join(f"  {name:>26}" for name in REPLAY_POLICIES) + "  MESP / cheap at naive idle  idle vs ka10"
    print(head)
    for r in rows:
        line = f"{r['seed']:>4}  {r['moe']:6.3f}  {r['best_dense']:6.3f}  {r['naive']:6.3f}  {-r['moe_below_naive']:+12.1%}"
        for name in REPLAY_POLICIES:
            cold, idle = r.get(name, (float("nan"), 0))
            line += f"  {cold:>12.2%} / {idle:>11,}"
        line += f"  {_pct(r['curve_at_naive_idle']):>12} / {_pct(r['cheap_at_naive_idle']):<12}"
        line += f"  {_times(r['curve_idle_ratio_at_ka10'])} / {_times(r['cheap_idle_ratio_at_ka10'])}"
        print(line)
    if len(rows) > 1:
        import statistics

        gains = [r["moe_below_naive"] for r in rows]
        print(f"MoE below seasonal naive: mean {statistics.mean(gains):.1%}, min {min(gains):.1%}, max {max(gains):.1%}; "
              f"MoE below best dense in {sum(r['moe'] < r['best_dense'] for r in rows)}/{len(rows)} splits")
        # Issue 16's replay targets, as means over the splits: <= 0.75x the naive floor's cold rate at its
        # idle, <= 0.5x keep-alive 10's idle at its cold rate.
        for curve, key in (("MESP", "curve"), ("cheap choice", "cheap")):
            cold = [r[f"{key}_cold_ratio_at_naive_idle"] for r in rows if r[f"{key}_cold_ratio_at_naive_idle"] is not None]
            idle = [r[f"{key}_idle_ratio_at_ka10"] for r in rows if r[f"{key}_idle_ratio_at_ka10"] is not None]
            print(f"{curve}: cold rate at the naive floor's idle {_times(statistics.mean(cold) if cold else None)} of the "
                  f"naive floor's ({len(cold)} splits); idle at keep-alive 10's cold rate "
                  f"{_times(statistics.mean(idle) if idle else None)} of its idle ({len(idle)} splits)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


def _pct(x) -> str:
    return "-" if x is None else f"{x:.2%}"


def _times(x) -> str:
    return "-" if x is None else f"{x:.2f}x"


if __name__ == "__main__":
    sys.exit(main())
