"""`mesp`: train, cluster, evaluate, forecast, extend, simulate, run the operator, or the whole demo.

Every command reads traces with `--trace FILE [FILE ...]` (Azure Functions 2019 layout, plain or
.gz, days dNN joined per function) and writes to `--out DIR`; without `--trace` the built-in seeded
generator provides a realistic multi-day trace. Figures go to stdout as tables, or as JSON with
`--json FILE` (`-` for stdout). Bad input ends with a one-line reason and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2


class CliError(Exception):
    """A problem with what the user gave us: reported in one line, no traceback."""


# ---------------------------------------------------------------------------- shared options
def _add_trace(parser: argparse.ArgumentParser, required: bool = False) -> None:
    group = parser.add_argument_group("input trace")
    group.add_argument(
        "--trace",
        nargs="+",
        metavar="FILE",
        required=required,
        help="Azure Functions 2019 invocation files (invocations_per_function_md.anon.dNN.csv[.gz]); "
        "several days are joined per function"
        + ("" if required else ". Default: a generated trace (see --synthetic-functions/--synthetic-days)"),
    )
    group.add_argument("--skip-bad-rows", action="store_true", help="skip and count malformed rows instead of stopping at the first")
    if not required:
        group.add_argument("--synthetic-functions", type=int, default=600, metavar="N", help="functions in the generated trace (default 600)")
        group.add_argument("--synthetic-days", type=int, default=2, metavar="D", help="days in the generated trace (default 2)")
        group.add_argument("--seed", type=int, default=0, help="seed of the generated trace and of training (default 0)")


def _fraction(text: str) -> float:
    """argparse type: a float in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE ('-' = stdout, replacing the table)")


def _load_trace(args, progress: bool = True):
    from mesp_core.data.reader import read_invocations

    if getattr(args, "trace", None):
        trace = read_invocations(args.trace, on_error="skip" if args.skip_bad_rows else "raise", progress=progress)
        if trace.skipped:
            print(f"mesp: skipped {trace.skipped} malformed rows (first: {trace.problems[0] if trace.problems else '?'})", file=sys.stderr)
        source = f"{len(args.trace)} file(s)"
    else:
        from mesp_core.data.synthetic import generate_trace

        if args.synthetic_functions < 10 or args.synthetic_days < 1:
            raise CliError("--synthetic-functions must be >= 10 and --synthetic-days >= 1")
        trace = generate_trace(n_functions=args.synthetic_functions, days=args.synthetic_days, seed=args.seed)
        source = f"generated trace (seed {args.seed})"
    if len(trace.keys) == 0:
        raise CliError("the trace has no functions")
    print(f"mesp: {len(trace.keys)} functions x {trace.counts.shape[1]} minutes from {source}", file=sys.stderr)
    return trace


def _emit(args, payload: dict, table: str) -> None:
    target = getattr(args, "json", None)
    if target == "-":
        print(json.dumps(payload, indent=2, default=_jsonable))
        return
    print(table)
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
        print(f"mesp: figures written to {target}", file=sys.stderr)


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(type(value).__name__)


# ---------------------------------------------------------------------------- commands
def cmd_train(args) -> int:
    from mesp_core.offline.config import TrainConfig
    from mesp_core.offline.training import train

    trace = _load_trace(args)
    config = TrainConfig(
        k=args.k,
        families=tuple(args.families),
        dense_trials=args.trials,
        seed=args.seed if hasattr(args, "seed") else 0,
        threads=args.threads,
        loss_weight=args.loss_weight,
        test_fraction=args.holdout,
    )
    if args.quick:
        config = _quick(config)
    report = train(trace, args.out, config, progress=not args.quiet)
    if args.plots:
        _train_plots(trace, args.out, args.plots)
    _emit(args, report.to_json(), _train_table(report))
    return 0


def _quick(config):
    """A budget for demos and tests: a few minutes on 2 cores, same pipeline."""
    from dataclasses import replace

    return replace(
        config,
        dense_trials=min(config.dense_trials, 2),
        trial_seconds=8.0,
        cluster_seconds=4.0,
        max_dense_windows=15_000,
        max_cluster_windows=6_000,
        k_max=min(config.k_max, 8),
    )


def _train_table(report) -> str:
    lines = [f"trained in {report.seconds:.0f}s: K={report.k} clusters; model in {report.out_dir}", ""]
    lines.append(f"{'cluster':<8}{'days':>6}  {'expert':<24}{'val WAPE':>9}  description")
    for c in report.clusters:
        best = c["ranking"][0]
        lines.append(f"{c['id']:<8}{c['n_days']:>6}  {c['chosen']:<24}{best['val_wape']:>9.3f}  {c['description']['label']}")
    lines += ["", "dense baseline (all clusters, validation WAPE):"]
    for r in report.dense_ranking:
        lines.append(f"  {r['family']:<22}{r['val_wape']:.3f}")
    if report.recent_check:
        from mesp_core.offline.recent_check import describe_recent_check

        lines += ["", "recent-error check: " + describe_recent_check(report.recent_check)]
    return "\n".join(lines)


def _train_plots(trace, model_dir, plot_dir) -> None:
    from mesp_core import load_model
    from mesp_core.offline.plots import plot_router_centroids

    model = load_model(model_dir)
    path = Path(plot_dir) / "centroids.png"
    plot_router_centroids(model, path)
    print(f"mesp: centroid plot written to {path}", file=sys.stderr)


def cmd_cluster(args) -> int:
    import numpy as np

    from mesp_core.forecasting.patterns import cluster_days
    from mesp_core.offline.plots import plot_clusters

    trace = _load_trace(args)
    days, owner = trace.daily()
    result = cluster_days(days, k=args.k, k_range=range(args.k_min, args.k_max + 1), random_state=args.seed, progress=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_clusters(result, days, out / "clusters.png")
    np.save(out / "centroids.npy", result.centroids)
    with open(out / "labels.csv", "w") as handle:
        handle.write("HashOwner,HashApp,HashFunction,day,cluster\n")
        for row, (function, label) in enumerate(zip(owner, result.labels)):
            key = trace.keys[function]
            day_index = int(np.sum(owner[:row] == function))
            handle.write(f"{key[0]},{key[1]},{key[2]},{day_index},{int(label)}\n")
    sizes = {int(c): int((result.labels == c).sum()) for c in np.unique(result.labels)}
    payload = {
        "k": result.k,
        "silhouette": {str(k): v for k, v in result.silhouette.items()},
        "inertia": result.inertia,
        "sizes": sizes,
        "clusters": [{"id": c, "size": sizes.get(c, 0), **result.descriptions[c]} for c in range(result.k)],
        "idle_days": sizes.get(-1, 0),
        "outputs": {"plot": str(out / "clusters.png"), "centroids": str(out / "centroids.npy"), "labels": str(out / "labels.csv")},
    }
    lines = [f"K-Shape: {len(days)} daily patterns -> K={result.k} clusters (+{sizes.get(-1, 0)} idle/flat days)"]
    if result.silhouette:
        lines.append("silhouette: " + ", ".join(f"k={k}: {v:.3f}" for k, v in result.silhouette.items()))
    lines.append("")
    for c in range(result.k):
        lines.append(f"cluster {c:<3} {sizes.get(c, 0):>6} days  {result.descriptions[c]['label']}")
    lines.append(f"\nplot: {out / 'clusters.png'}; labels: {out / 'labels.csv'}")
    (out / "clusters.json").write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    _emit(args, payload, "\n".join(lines))
    return 0


MODEL_HELP = "model folder from `mesp train` (default: the model shipped in the package, trained on the real Azure sample)"


def _model_dir(args) -> str:
    """--model, or the packaged model when it is not given."""
    if args.model:
        return str(args.model)
    from mesp_core.forecasting.model import default_model_path

    return str(default_model_path())


def cmd_evaluate(args) -> int:
    from mesp_core import load_model
    from mesp_core.offline.evaluation import backtest, format_table
    from mesp_core.offline.split import held_out_functions

    model_dir = _model_dir(args)
    model = load_model(model_dir)
    trace = _load_trace(args)
    held = held_out_functions(model, trace)
    if len(held) == 0:
        raise CliError("every function of this trace was used in training: give a trace with unseen functions")
    print(f"mesp: evaluating on {len(held)} functions the model never saw ({len(trace.keys) - len(held)} seen in training are left out)", file=sys.stderr)
    origins = range(args.first_origin, args.last_origin + 1, args.every)
    result = backtest(model, trace.counts[held], origins=origins, horizon=args.horizon, progress=True)
    payload = result.to_json() | {"model": model_dir}
    if args.plots:
        from mesp_core.offline.plots import plot_backtest_samples

        path = Path(args.plots) / "forecasts.png"
        plot_backtest_samples(result, path)
        payload["plot"] = str(path)
        print(f"mesp: sample forecasts plotted to {path}", file=sys.stderr)
    _emit(args, payload, format_table(result))
    return 0


def cmd_forecast(args) -> int:
    import numpy as np

    from mesp_core import load_model
    from mesp_core.forecasting.model import policy_config, plan_from_distribution

    model_dir = _model_dir(args)
    model = load_model(model_dir)
    trace = _load_trace(args)
    rows = np.arange(len(trace.keys))
    if args.function:
        rows = np.array([i for i, k in enumerate(trace.keys) if args.function in k], dtype=np.int64)
        if len(rows) == 0:
            raise CliError(f"no function with hash {args.function!r} in the trace")
    if args.plot and args.plot_functions < 1:
        raise CliError(f"--plot-functions must be at least 1, got {args.plot_functions}")
    at = args.at if args.at is not None else trace.counts.shape[1]
    if not 60 <= at <= trace.counts.shape[1]:
        raise CliError(f"--at must be between 60 and {trace.counts.shape[1]} (minutes into the trace)")
    context = trace.counts[rows, :at]
    # With --capacity, also what the operator would set: min-scale per minute, its last minutes
    # sized over [i, i + lead + hold], so one forecast reaches that much further.
    config = None if args.capacity is None else policy_config(args.capacity, args.lead, {"quantile": args.quantile})[0]
    distribution = model.forecast_distribution(context, args.horizon + (config.lookahead if config else 0),
                                               approach=args.approach)
    plan = None if config is None else plan_from_distribution(distribution, args.horizon, config)
    point = distribution.point[:, : args.horizon]
    upper = distribution.quantile(args.quantile)[:, : args.horizon]
    routes = model.explain_routes(context, switched=distribution.switched)
    items = []
    for j, i in enumerate(rows):
        items.append(
            {
                "function": "/".join(trace.keys[i]),
                "route": routes[j],
                "forecast": np.round(point[j], 3).tolist(),
                f"p{round(args.quantile * 100)}": np.round(upper[j], 3).tolist(),
            }
        )
        if plan is not None:
            items[-1]["min_scale"] = plan[j].tolist()
    lines = [f"forecast at minute {at}, next {args.horizon} minutes ({args.approach}); showing the first 10 minutes"]
    for item in items[: args.limit]:
        route = item["route"]
        head = " ".join(f"{v:.0f}" for v in item["forecast"][:10])
        lines.append(f"{item['function'][-16:]}  cluster {route['cluster']} ({route['expert']}, d={route['distance']:.2f}, {route['description']}): {head}")
        if plan is not None:
            lines.append(f"{'':16}  min-scale: {' '.join(str(v) for v in item['min_scale'][:10])}")
    if len(items) > args.limit:
        lines.append(f"... {len(items) - args.limit} more (use --json for all)")
    if args.plot:
        from mesp_core.offline.plots import plot_function_forecasts

        shown = range(min(len(rows), args.plot_functions))
        panels = [{"function": items[j]["function"], "route": routes[j], "history": context[j],
                   "forecast": point[j], "upper": upper[j], "quantile": args.quantile,
                   "actual": trace.counts[rows[j], at : at + args.horizon],
                   "min_scale": None if plan is None else plan[j]} for j in shown]
        lines.append(f"plot of {len(panels)} function(s): {plot_function_forecasts(panels, args.plot)}")
    payload = {"model": model_dir, "at": at, "horizon": args.horizon, "approach": args.approach, "functions": items}
    if plan is not None:
        payload["policy"] = {"capacity_per_instance": args.capacity, "lead_minutes": args.lead, "quantile": args.quantile}
    _emit(args, payload, "\n".join(lines))
    return 0


def cmd_extend(args) -> int:
    from mesp_core.offline.extend import extend

    trace = _load_trace(args)
    report = extend(args.model, trace, args.out, threshold=args.threshold, k=args.k, seed=args.seed, progress=not args.quiet)
    lines = [
        f"{report['n_far_days']} of {report['n_days']} new daily patterns are far from every centroid (distance > {report['threshold']:.3f})",
        f"added clusters: {[c['id'] for c in report['added']] or 'none'}; existing experts unchanged; model in {args.out}",
    ]
    for c in report["added"]:
        lines.append(f"  cluster {c['id']}: {c['n_days']} days, {c['chosen']} — {c['description']['label']}")
    _emit(args, report, "\n".join(lines))
    return 0


# Function-plans above which `mesp simulate` suggests a faster setting (1,284 functions x 720
# minutes, a plan every minute, took 162 s on 2 cores).
_LONG_REPLAY_PLANS = 2_000_000


def cmd_simulate(args) -> int:
    import numpy as np

    from mesp_core import load_model
    from mesp_core.offline.split import held_out_functions
    from mesp_core.replay.report import format_table, plot_tradeoff
    from mesp_core.replay.standard import run_replay

    model_dir = _model_dir(args)
    model = load_model(model_dir)
    trace = _load_trace(args)
    if args.sample is not None and args.sample < 1:
        raise CliError(f"--sample must be at least 1, got {args.sample}")
    rows = held_out_functions(model, trace) if not args.all_functions else np.arange(len(trace.keys))
    if len(rows) == 0:
        raise CliError("no unseen functions to replay (use --all-functions to replay training functions too)")
    if args.sample is not None and args.sample < len(rows):
        print(f"mesp: replaying a sample of {args.sample} of {len(rows)} functions (--sample-seed {args.sample_seed})",
              file=sys.stderr)
        rows = np.sort(np.random.default_rng(args.sample_seed).choice(rows, args.sample, replace=False))
    counts = trace.counts[rows]
    start = args.start if args.start is not None else counts.shape[1] - 720
    plans = len(counts) * max(0, counts.shape[1] - start) / max(1, args.replan_every)  # run_replay checks it
    if plans > _LONG_REPLAY_PLANS:  # ~6 minutes on 2 cores: say how to get a quicker look
        print(f"mesp: {len(counts)} functions x {counts.shape[1] - start} minutes with a plan every "
              f"{args.replan_every} min is a long replay; --replan-every 5 or --sample N is quicker", file=sys.stderr)
    capacity = args.capacity
    if args.durations:
        capacity = _capacities_from_durations(args, [trace.keys[i] for i in rows])
    report = run_replay(
        model,
        counts,
        start_minute=start,
        capacity=capacity,
        replan_every=args.replan_every,
        lead_minutes=args.lead,
        horizon=args.horizon,
        keep_warm_minutes=args.keep_warm,
        quantiles=tuple(args.quantiles),
    )
    if args.plot:
        plot_tradeoff(report, args.plot)
        print(f"mesp: trade-off plot written to {args.plot}", file=sys.stderr)
    _emit(args, report.to_dict() | {"model": model_dir}, format_table(report))
    return 0


def _capacities_from_durations(args, keys):
    """Per-function capacity from --durations files (see mesp_core.replay.simulate.capacities_from_durations)."""
    import pandas as pd

    from mesp_core.replay.standard import capacities_from_durations
    from mesp_core.data.tables import read_durations

    frames = []
    for path in args.durations:
        frame = read_durations(path, on_error="skip" if args.skip_bad_rows else "raise")
        if frame.attrs.get("skipped"):
            print(f"mesp: skipped {frame.attrs['skipped']} malformed rows of {path}", file=sys.stderr)
        frames.append(frame)
    capacities, derived = capacities_from_durations(
        keys, pd.concat(frames, ignore_index=True), container_concurrency=args.container_concurrency,
        target_utilization=args.target_utilization, default=args.capacity)
    print(f"mesp: capacity from mean duration for {derived} of {len(keys)} functions "
          f"(container concurrency {args.container_concurrency or 'unlimited'}, target utilisation "
          f"{args.target_utilization:g}); the others use --capacity {args.capacity:g}", file=sys.stderr)
    return capacities


def cmd_generate(args) -> int:
    from mesp_core.data.synthetic import generate_trace
    from mesp_core.data.writer import write_invocations

    trace = generate_trace(n_functions=args.functions, days=args.days, seed=args.seed)
    paths = write_invocations(trace, args.out, gzip=args.gzip)
    print("\n".join(str(p) for p in paths))
    return 0


def cmd_operator(args, rest: list[str]) -> int:
    from mesp_operator.main import run

    return run(rest)


def cmd_demo(args) -> int:
    """Generate (or read) a trace, train, evaluate, replay: the whole story in one command."""
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
    for step in steps:
        print(f"\n$ mesp {' '.join(step)}", file=sys.stderr)
        code = main(step)
        if code:
            return code
    print(f"\nmesp demo: everything is in {out}/ (model/, *.json, *.png)", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- parser
def _command(sub, name: str, summary: str, **kwargs) -> argparse.ArgumentParser:
    """A subcommand whose --help opens with its one-line summary unless it has a longer description."""
    kwargs.setdefault("description", summary[0].upper() + summary[1:] + ".")
    return sub.add_parser(name, help=summary, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mesp",
        description="MESP: mixture-of-experts forecasting of serverless invocations and a predictive "
        "min-scale operator for Knative.",
        epilog="Run 'mesp COMMAND --help' for the options of a command. 'mesp demo' runs the whole story "
        "on a generated trace.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = _command(sub, "train", "cluster the trace, tune experts per cluster and a dense baseline, write a model folder",
                       description="Experiments 1 and 2: K-Shape clusters, per-cluster expert selection with Optuna, dense baseline. "
                       "Holds out 20% of the functions (by key hash, see --holdout) for 'mesp evaluate'.")
    _add_trace(p)
    p.add_argument("--out", required=True, metavar="DIR", help="model folder to write (replaced atomically)")
    p.add_argument("--k", type=int, help="number of clusters (default: chosen by silhouette)")
    p.add_argument("--holdout", type=_fraction, default=0.2, metavar="FRACTION",
                   help="share of functions held out for 'mesp evaluate' and 'mesp simulate' (default 0.2; "
                   "0 trains on every function, for the model you deploy once the figures are known)")
    p.add_argument("--families", nargs="+", default=["dlinear", "nbeats", "lstm", "patchtst"], help="trainable candidate families")
    p.add_argument("--trials", type=int, default=3, help="Optuna trials per family for the dense baseline (default 3)")
    p.add_argument("--loss-weight", choices=["none", "sqrt_scale", "scale"], default="sqrt_scale",
                   help="networks' per-window loss weight: scale = WAPE-aligned (busy functions count more); default sqrt_scale")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: these networks are small)")
    p.add_argument("--quick", action="store_true", help="small time budget (demo/tests): same pipeline, fewer windows and shorter trials")
    p.add_argument("--plots", metavar="DIR", help="write centroid plots to DIR")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    _add_json(p)
    p.set_defaults(func=cmd_train)

    p = _command(sub, "cluster", "Experiment 1 only: K-Shape clusters of the daily patterns, with descriptions and a plot")
    _add_trace(p)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for clusters.png, clusters.json, centroids.npy, labels.csv")
    p.add_argument("--k", type=int, help="number of clusters (default: best silhouette in --k-min..--k-max)")
    p.add_argument("--k-min", type=int, default=3, help="smallest K tried (default 3)")
    p.add_argument("--k-max", type=int, default=10, help="largest K tried (default 10)")
    _add_json(p)
    p.set_defaults(func=cmd_cluster)

    p = _command(sub, "evaluate", "Experiment 3: rolling-origin backtest of MoE vs dense vs naive on unseen functions")
    p.add_argument("--model", metavar="DIR", help=MODEL_HELP)
    _add_trace(p)
    p.add_argument("--first-origin", type=int, default=720, help="first origin, minute of the last day (default 720)")
    p.add_argument("--last-origin", type=int, default=1380, help="last origin (default 1380)")
    p.add_argument("--every", type=int, default=60, help="minutes between origins (default 60)")
    p.add_argument("--horizon", type=int, default=60, help="minutes forecast from each origin (default 60)")
    p.add_argument("--plots", metavar="DIR", help="write sample forecast plots to DIR")
    _add_json(p)
    p.set_defaults(func=cmd_evaluate)

    p = _command(sub, "forecast", "forecast the next minutes for the functions of a trace, with routes explained")
    p.add_argument("--model", metavar="DIR", help=MODEL_HELP)
    _add_trace(p)
    p.add_argument("--function", help="only functions whose hash contains this string")
    p.add_argument("--at", type=int, help="forecast origin in minutes from the trace start (default: its end)")
    p.add_argument("--horizon", type=int, default=60, help="minutes to forecast (default 60)")
    p.add_argument("--approach", default="moe", help="moe | dense | dense:<family> | naive (default moe)")
    p.add_argument("--quantile", type=float, default=0.9, help="upper quantile also reported (default 0.9)")
    p.add_argument("--limit", type=int, default=20, help="rows shown in the table (default 20)")
    p.add_argument("--capacity", type=float, metavar="INV_PER_MIN",
                   help="also plan min-scale as the operator would: invocations per minute one instance serves")
    p.add_argument("--lead", type=int, default=1, help="with --capacity: minutes an instance needs to become ready (default 1)")
    p.add_argument("--plot", metavar="PNG", help="plot history, forecast, quantile band and (when the trace goes on) "
                   "what followed, for the first --plot-functions functions")
    p.add_argument("--plot-functions", type=int, default=6, metavar="N", help="functions in --plot (default 6)")
    _add_json(p)
    p.set_defaults(func=cmd_forecast)

    p = _command(sub, "extend", "add clusters for new patterns far from every centroid; train only their experts")
    p.add_argument("--model", required=True, metavar="DIR", help="existing model folder (left untouched)")
    _add_trace(p)
    p.add_argument("--out", required=True, metavar="DIR", help="new model folder")
    p.add_argument("--threshold", type=float, help="distance above which a day is new (default: the largest cluster's p95 route distance)")
    p.add_argument("--k", type=int, help="clusters to add (default: by silhouette, 1..4)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    _add_json(p)
    p.set_defaults(func=cmd_extend)

    p = _command(sub, "simulate", "cold-start replay: policies side by side (Knative default, keep-alive, hybrid histogram, forecast floors, oracle)")
    p.add_argument("--model", metavar="DIR", help=MODEL_HELP)
    _add_trace(p)
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
    p.add_argument("--quantiles", type=float, nargs="+", default=[0.5, 0.8, 0.9, 0.95, 0.99], metavar="Q",
                   help="forecast quantiles of the MESP curve (default 0.5 0.8 0.9 0.95 0.99)")
    p.add_argument("--horizon", type=int, help="forecast horizon used for planning (default and minimum: replan interval + lead + hold)")
    p.add_argument("--all-functions", action="store_true", help="also replay functions the model was trained on")
    p.add_argument("--sample", type=int, metavar="N",
                   help="replay a random sample of N of those functions, for a quicker look at a big trace")
    p.add_argument("--sample-seed", type=int, default=0, metavar="S", help="seed of --sample's choice (default 0)")
    p.add_argument("--plot", metavar="PNG", help="write the cold-start vs idle trade-off plot")
    _add_json(p)
    p.set_defaults(func=cmd_simulate)

    p = _command(
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
    p.set_defaults(func=cmd_generate)

    p = _command(sub, "operator", "run the Kubernetes operator (options: mesp operator --help)", add_help=False)
    p.set_defaults(func=cmd_operator)

    p = _command(sub, "demo", "generate a trace (or use --trace), train, evaluate and replay; print tables, write plots")
    _add_trace(p)
    p.add_argument("--out", default="mesp-demo", metavar="DIR", help="output folder (default ./mesp-demo)")
    p.add_argument("--full", dest="quick", action="store_false", help="use the full training budget instead of the quick one")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    rest: list[str] = []
    if argv and argv[0] == "operator":
        args, rest = argparse.Namespace(command="operator", func=cmd_operator, verbose=False), argv[1:]
    else:
        args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from mesp_core.forecasting.artifact import ArtifactError
    from mesp_core.data.trace import TraceFormatError

    try:
        if args.command == "operator":
            return cmd_operator(args, rest)
        return args.func(args)
    except (CliError, ArtifactError, TraceFormatError, ValueError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        print(f"mesp {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"mesp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
