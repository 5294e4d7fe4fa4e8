"""`mesp generate`: a seeded synthetic trace written as Azure Functions 2019 day files."""

from __future__ import annotations

from mesp_core.cli.common import command


def register(sub) -> None:
    p = command(
        sub, "generate", "write a seeded synthetic trace in the Azure layout",
        description="Write a seeded synthetic trace as Azure Functions 2019 files, one "
        "invocations_per_function_md.anon.dNN.csv per day: diurnal, weekday/weekend, timer, bursty, "
        "sparse and batch-spike functions with daily totals over five orders of magnitude. The same "
        "seed gives the same files; every command reads them with --trace.")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write the day files to (created if missing)")
    p.add_argument("--functions", type=int, default=600, metavar="N", help="number of functions (default 600)")
    p.add_argument("--days", type=int, default=2, metavar="D", help="number of days, d01 a Monday (default 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--gzip", action="store_true", help="write .csv.gz instead of .csv")
    p.set_defaults(func=run)


def run(args) -> int:
    from mesp_core.data.synthetic import generate_trace
    from mesp_core.data.writer import write_invocations

    trace = generate_trace(n_functions=args.functions, days=args.days, seed=args.seed)
    paths = write_invocations(trace, args.out, gzip=args.gzip)
    print("\n".join(str(p) for p in paths))
    return 0
