"""`mesp simulate`: the cold-start replay — Knative default, keep-alive, hybrid histogram, forecast floors,
MESP and the per-function cheap choice swept over the cold-start cost, oracle."""

from __future__ import annotations

import sys

from mesp_core.cli.common import (
    CliError, add_json, add_model, add_ray, add_trace, command, emit, load_sharded_trace, load_trace, model_dir, ray_cluster,
)
from mesp_core.replay.standard import CURVE_COSTS, CURVE_QUANTILES

COST_HELP = ("how many idle instance-minutes one avoided cold start is worth (C > 0): a floor instance kept "
             "idle for a minute costs 1, a cold start costs C")

# Function-plans above which `mesp simulate` suggests a faster setting (1,284 functions x 720
# minutes, a plan every minute, took 162 s on 2 cores).
LONG_REPLAY_PLANS = 2_000_000


def register(sub) -> None:
    p = command(sub, "simulate", "cold-start replay: policies side by side (Knative default, keep-alive, hybrid histogram, "
                "forecast floors, MESP and the per-function cheap choice over the cold-start cost, oracle)",
                description="Replay the trace's last minutes under each floor policy and count cold starts and idle "
                "instance-minutes. MESP and the per-function choice among cheap policies are drawn as curves over the "
                "cold-start cost C: " + COST_HELP + ". MESP sizes its floor at the critical fractile C/(1+C) of its "
                "forecast; the cheap choice picks, per function, the cheap policy with the least C x cold starts + idle "
                "over its own morning. The table reads each curve off at the seasonal-naive floor's idle and at "
                "keep-alive 10 min's cold-start rate.")
    add_model(p)
    add_trace(p)
    p.add_argument("--start", type=int, help="first replayed minute (default: the last 720 minutes)")
    p.add_argument("--capacity", type=float, default=60.0,
                   help="invocations per minute one instance serves (default 60; with --durations, for functions the files do not cover)")
    p.add_argument("--durations", nargs="+", metavar="FILE",
                   help="function_durations_percentiles files: each function's capacity becomes container concurrency x "
                        "target utilisation x 60000 / its mean duration in ms, as Knative would scale it")
    p.add_argument("--container-concurrency", type=int, default=0, metavar="N",
                   help="with --durations: requests one instance runs at once (default 0 = unlimited, Knative's "
                        "soft target of 100 applies)")
    p.add_argument("--target-utilization", type=float, default=0.7, metavar="U",
                   help="with --durations: share of that concurrency Knative fills before adding an instance (default 0.7)")
    p.add_argument("--replan-every", type=int, default=1, help="minutes between plans (default 1, as the operator)")
    p.add_argument("--lead", type=int, default=1, help="minutes an instance needs to become ready (default 1)")
    p.add_argument("--keep-warm", type=int, default=2, metavar="MINUTES",
                   help="minutes Knative keeps an instance after its last need: stable window + scale-to-zero grace (default 2)")
    p.add_argument("--cold-start-costs", default=",".join(f"{c:g}" for c in CURVE_COSTS), metavar="C1,C2,...",
                   help="cold-start costs the MESP and cheap-choice curves sweep, one point each; the cold-start cost is "
                        + COST_HELP + " (default " + ",".join(f"{c:g}" for c in CURVE_COSTS) + ")")
    p.add_argument("--quantiles", type=float, nargs="+", default=[], metavar="Q",
                   help="also draw the experts' quantile curve (MESP MoE sized at each quantile Q, an expert override "
                        "of the cost), e.g. " + " ".join(f"{q:g}" for q in CURVE_QUANTILES) + " (default: none)")
    p.add_argument("--morning", type=int, default=720, metavar="MINUTES",
                   help="the cheap choice picks each function's policy (keep-alive 2-30 min, seasonal-naive floor, hybrid "
                        "histogram) by C x cold starts + idle over this many minutes before the replay's first plan (default 720)")
    p.add_argument("--no-cheap-choice", action="store_true", help="leave the per-function cheap choice out (quicker)")
    p.add_argument("--horizon", type=int, help="forecast horizon used for planning (default and minimum: replan interval + lead + hold)")
    p.add_argument("--all-functions", action="store_true", help="also replay functions the model was trained on")
    p.add_argument("--sample", type=int, metavar="N",
                   help="replay a random sample of N of those functions, for a quicker look at a big trace")
    p.add_argument("--sample-seed", type=int, default=0, metavar="S", help="seed of --sample's choice (default 0)")
    p.add_argument("--plot", metavar="PNG", help="write the cold-start vs idle trade-off plot")
    add_ray(p, "the reading and the replay (function shards as Ray tasks; the same figures as one process)")
    add_json(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from mesp_core import load_model
    from mesp_core.replay.report import format_table, plot_tradeoff
    from mesp_core.replay.standard import run_replay

    folder = model_dir(args)
    model = load_model(folder, backend="torch")  # offline figures: the backend they were measured with
    if args.sample is not None and args.sample < 1:
        raise CliError(f"--sample must be at least 1, got {args.sample}")
    costs = parse_costs(args.cold_start_costs)
    if args.morning < 1:
        raise CliError(f"--morning must be at least 1 minute, got {args.morning}")
    if args.ray:
        from mesp_core.distributed.evaluation import replay_on_ray

        with ray_cluster(args) as n_shards:
            sharded = load_sharded_trace(args, n_shards)
            rows, capacity, settings = _replay_plan(args, model, sharded, sharded.n_minutes, costs)
            report = replay_on_ray(model, sharded, rows, capacity, **settings)
    else:
        trace = load_trace(args)
        rows, capacity, settings = _replay_plan(args, model, trace, trace.counts.shape[1], costs)
        report = run_replay(model, trace.counts[rows], capacity=capacity, **settings)
    if args.plot:
        plot_tradeoff(report, args.plot)
        print(f"mesp: trade-off plot written to {args.plot}", file=sys.stderr)
    emit(args, report.to_dict() | {"model": folder}, format_table(report))
    return 0


def _replay_plan(args, model, trace, minutes: int, costs) -> tuple:
    """Which functions to replay (from the trace's keys), their capacity, and run_replay's settings."""
    from mesp_core.offline.split import replay_functions, seeded_sample

    rows = replay_functions(model, trace, all_functions=args.all_functions)
    if len(rows) == 0:
        raise CliError("no unseen functions to replay (use --all-functions to replay training functions too)")
    if args.sample is not None and args.sample < len(rows):
        print(f"mesp: replaying a sample of {args.sample} of {len(rows)} functions (--sample-seed {args.sample_seed})",
              file=sys.stderr)
        rows = seeded_sample(rows, args.sample, args.sample_seed)
    start = args.start if args.start is not None else minutes - 720
    plans = len(rows) * max(0, minutes - start) / max(1, args.replan_every)  # run_replay checks it
    if plans > LONG_REPLAY_PLANS:  # ~6 minutes on 2 cores: say how to get a quicker look
        print(f"mesp: {len(rows)} functions x {minutes - start} minutes with a plan every "
              f"{args.replan_every} min is a long replay; --replan-every 5 or --sample N is quicker", file=sys.stderr)
    capacity = args.capacity
    if args.durations:
        capacity = _capacities_from_durations(args, [trace.keys[i] for i in rows])
    settings = {"start_minute": start, "replan_every": args.replan_every, "lead_minutes": args.lead, "horizon": args.horizon,
                "keep_warm_minutes": args.keep_warm, "quantiles": tuple(args.quantiles), "cold_start_costs": costs,
                "cheap_choice": not args.no_cheap_choice, "morning_minutes": args.morning}
    return rows, capacity, settings


def _capacities_from_durations(args, keys):
    """Per-function capacity from --durations files (see mesp_core.replay.standard.capacities_from_durations)."""
    from mesp_core.data.tables import read_duration_files
    from mesp_core.replay.standard import capacities_from_durations

    durations, skipped = read_duration_files(args.durations, on_error="skip" if args.skip_bad_rows else "raise")
    for path, count in skipped.items():
        print(f"mesp: skipped {count} malformed rows of {path}", file=sys.stderr)
    capacities, derived = capacities_from_durations(
        keys, durations, container_concurrency=args.container_concurrency,
        target_utilization=args.target_utilization, default=args.capacity)
    print(f"mesp: capacity from mean duration for {derived} of {len(keys)} functions "
          f"(container concurrency {args.container_concurrency or 'unlimited'}, target utilisation "
          f"{args.target_utilization:g}); the others use --capacity {args.capacity:g}", file=sys.stderr)
    return capacities


def parse_costs(text: str) -> tuple[float, ...]:
    """--cold-start-costs: comma-separated numbers, each > 0, no repeats."""
    from mesp_core.replay.standard import check_costs

    parts = [part.strip() for part in str(text).split(",") if part.strip()]
    if not parts:
        raise CliError("--cold-start-costs needs at least one cost, e.g. 1,4,16")
    try:
        values = [float(part) for part in parts]
    except ValueError:
        raise CliError(f"--cold-start-costs must be comma-separated numbers, got {text!r}") from None
    try:
        return check_costs(values)
    except ValueError as exc:
        raise CliError(f"--cold-start-costs: {exc} (each cost C is {COST_HELP})") from None
