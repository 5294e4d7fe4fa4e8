"""`mesp demo`: generate a trace (or read one), train, evaluate and replay — the whole story in one command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mesp_core.cli import evaluate, simulate, train
from mesp_core.cli.common import add_trace, command, run_parsed


def register(sub) -> None:
    p = command(sub, "demo", "generate a trace (or use --trace), train, evaluate and replay; print tables, write plots")
    add_trace(p)
    p.add_argument("--out", default="mesp-demo", metavar="DIR", help="output folder (default ./mesp-demo)")
    p.add_argument("--full", dest="quick", action="store_false", help="use the full training budget instead of the quick one")
    p.set_defaults(func=run)


def run(args) -> int:
    out = Path(args.out)
    model_dir = out / "model"
    common = ["--seed", str(args.seed), "--synthetic-functions", str(args.synthetic_functions), "--synthetic-days", str(args.synthetic_days)]
    if args.trace:
        common = ["--trace", *args.trace]
    steps = [
        ["train", *common, "--out", str(model_dir), "--json", str(out / "train.json"), "--plots", str(out)] + (["--quick"] if args.quick else []),
        ["evaluate", "--model", str(model_dir), *common, "--json", str(out / "evaluate.json"), "--plots", str(out)],
        ["simulate", "--model", str(model_dir), *common, "--json", str(out / "simulate.json"), "--plot", str(out / "tradeoff.png")],
    ]
    parser = argparse.ArgumentParser(prog="mesp")
    sub = parser.add_subparsers(dest="command", required=True)
    for step_command in (train, evaluate, simulate):
        step_command.register(sub)
    for step in steps:
        print(f"\n$ mesp {' '.join(step)}", file=sys.stderr)
        code = run_parsed(parser.parse_args(step))
        if code:
            return code
    print(f"\nmesp demo: everything is in {out}/ (model/, *.json, *.png)", file=sys.stderr)
    return 0
