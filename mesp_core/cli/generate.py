"""`mesp generate`: a seeded synthetic trace written as Azure Functions 2019 day files."""

from __future__ import annotations

from mesp_core.cli.common import CliError, command


def register(sub) -> None:
    p = command(
        sub, "generate", "write a seeded synthetic trace in the Azure layout",
        description="Write a seeded synthetic trace as Azure Functions 2019 files, one "
        "invocations_per_function_md.anon.dNN.csv per day: diurnal, weekday/weekend, timer, bursty, "
        "sparse and batch-spike functions with daily totals over five orders of magnitude; with "
        "--holidays and --level-shifts, multi-day events too. The same seed gives the same files; every "
        "command reads them with --trace.")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write the day files to (created if missing)")
    p.add_argument("--functions", type=int, default=600, metavar="N", help="number of functions (default 600)")
    p.add_argument("--days", type=int, default=2, metavar="D", help="number of days, d01 a Monday (default 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--holidays", type=int, nargs="?", const=-1, default=0, metavar="N",
                   help="N weekdays (drawn per seed) with weekend-like traffic, as public holidays; alone: one per "
                        "week of --days (default 0)")
    p.add_argument("--level-shifts", type=float, nargs="?", const=0.1, default=0.0, metavar="SHARE",
                   help="share of functions whose level shifts once after the first day, by x1/4 to x4; alone: 0.1 "
                        "(default 0)")
    p.add_argument("--gzip", action="store_true", help="write .csv.gz instead of .csv")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from mesp_core.data.synthetic import generate_with_events
    from mesp_core.data.writer import write_invocations

    holidays = max(1, args.days // 7) if args.holidays == -1 else args.holidays
    if holidays < 0:
        raise CliError(f"--holidays must be >= 0, got {holidays}")
    if not 0.0 <= args.level_shifts <= 1.0:
        raise CliError(f"--level-shifts must be a share in [0, 1], got {args.level_shifts:g}")
    trace, _, events = generate_with_events(n_functions=args.functions, days=args.days, seed=args.seed,
                                            holidays=holidays, level_shifts=args.level_shifts)
    paths = write_invocations(trace, args.out, gzip=args.gzip)
    if events.holidays or events.level_shifts:
        days = ", ".join(trace.days[d] for d in events.holidays) or "none"
        print(f"mesp: holidays {days}; level shifts in {len(events.level_shifts)} of {args.functions} functions",
              file=sys.stderr)
    print("\n".join(str(p) for p in paths))
    return 0
