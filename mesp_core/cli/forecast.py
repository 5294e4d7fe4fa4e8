"""`mesp forecast`: the next minutes for the functions of a trace, with routes explained (and a plan)."""

from __future__ import annotations

from mesp_core.cli.common import CliError, add_json, add_model, add_trace, command, emit, load_trace, model_dir
from mesp_core.constants import DEFAULT_HORIZON, MIN_CONTEXT
from mesp_core.forecasting.approaches import APPROACH_HELP


def register(sub) -> None:
    p = command(sub, "forecast", "forecast the next minutes for the functions of a trace, with routes explained")
    add_model(p)
    add_trace(p)
    p.add_argument("--function", help="only functions whose hash contains this string")
    p.add_argument("--at", type=int, help="forecast origin in minutes from the trace start (default: its end)")
    p.add_argument("--horizon", type=int, default=DEFAULT_HORIZON, help=f"minutes to forecast (default {DEFAULT_HORIZON})")
    p.add_argument("--approach", default="moe", help=f"{APPROACH_HELP} (default moe)")
    p.add_argument("--quantile", type=float, default=0.9, help="upper quantile also reported (default 0.9)")
    p.add_argument("--limit", type=int, default=20, help="rows shown in the table (default 20)")
    p.add_argument("--capacity", type=float, metavar="INV_PER_MIN",
                   help="also plan min-scale as the operator would: invocations per minute one instance serves")
    p.add_argument("--lead", type=int, default=1, help="with --capacity: minutes an instance needs to become ready (default 1)")
    p.add_argument("--cold-start-cost", type=float, metavar="C",
                   help="with --capacity and a model with a floor stage: idle instance-minutes one avoided cold start "
                   "is worth (default: the model's); the plan and each function's chosen floor come from the floor stage")
    p.add_argument("--plot", metavar="PNG", help="plot history, forecast, quantile band and (when the trace goes on) "
                   "what followed, for the first --plot-functions functions")
    p.add_argument("--plot-functions", type=int, default=6, metavar="N", help="functions in --plot (default 6)")
    add_json(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from mesp_core import load_model

    folder = model_dir(args)
    model = load_model(folder)
    trace = load_trace(args)
    rows = np.arange(len(trace.keys))
    if args.function:
        rows = np.array([i for i, key in enumerate(trace.keys) if any(args.function in part for part in key)], dtype=np.int64)
        if len(rows) == 0:
            raise CliError(f"no function with hash {args.function!r} in the trace")
    if args.plot and args.plot_functions < 1:
        raise CliError(f"--plot-functions must be at least 1, got {args.plot_functions}")
    at = args.at if args.at is not None else trace.counts.shape[1]
    if not MIN_CONTEXT <= at <= trace.counts.shape[1]:
        raise CliError(f"--at must be between {MIN_CONTEXT} and {trace.counts.shape[1]} (minutes into the trace)")
    context = trace.counts[rows, :at]
    outlook = model.outlook(context, args.horizon, args.approach, args.quantile, args.capacity, args.lead)
    floor = None
    if args.capacity is not None and model.floor is not None:  # the plan the operator's floor stage sets
        floor = model.floor_plan(context, args.horizon, args.capacity, args.lead, args.cold_start_cost)
        outlook.plan = floor.plan
    elif args.cold_start_cost is not None:
        raise CliError("--cold-start-cost needs --capacity and a model with a floor stage (see `mesp floor`)")
    items = []
    for j, i in enumerate(rows):
        items.append({
            "function": "/".join(trace.keys[i]),
            "route": outlook.routes[j],
            "forecast": np.round(outlook.point[j], 3).tolist(),
            f"p{round(args.quantile * 100)}": np.round(outlook.upper[j], 3).tolist(),
        })
        if outlook.plan is not None:
            items[-1]["min_scale"] = outlook.plan[j].tolist()
        if floor is not None:
            items[-1]["floor"] = floor.floors[j]
    lines = [f"forecast at minute {at}, next {args.horizon} minutes ({args.approach}); showing the first 10 minutes"]
    for item in items[: args.limit]:
        route = item["route"]
        head = " ".join(f"{v:.0f}" for v in item["forecast"][:10])
        lines.append(f"{item['function'][-16:]}  cluster {route['cluster']} ({route['expert']}, d={route['distance']:.2f}, {route['description']}): {head}")
        if outlook.plan is not None:
            chosen = f" (floor: {item['floor']})" if "floor" in item else ""
            lines.append(f"{'':16}  min-scale{chosen}: {' '.join(str(v) for v in item['min_scale'][:10])}")
    if len(items) > args.limit:
        lines.append(f"... {len(items) - args.limit} more (use --json for all)")
    if args.plot:
        from mesp_core.offline.plots import plot_function_forecasts

        shown = range(min(len(rows), args.plot_functions))
        panels = [{"function": items[j]["function"], "route": outlook.routes[j], "history": context[j],
                   "forecast": outlook.point[j], "upper": outlook.upper[j], "quantile": args.quantile,
                   "actual": trace.counts[rows[j], at : at + args.horizon],
                   "min_scale": None if outlook.plan is None else outlook.plan[j]} for j in shown]
        lines.append(f"plot of {len(panels)} function(s): {plot_function_forecasts(panels, args.plot)}")
    payload = {"model": folder, "at": at, "horizon": args.horizon, "approach": args.approach, "functions": items}
    if outlook.plan is not None:
        payload["policy"] = {"capacity_per_instance": args.capacity, "lead_minutes": args.lead, "quantile": args.quantile}
        if floor is not None:
            payload["policy"] = {"capacity_per_instance": args.capacity, "lead_minutes": args.lead,
                                 "floor_stage": True, "cold_start_cost": floor.cold_start_cost}
    emit(args, payload, "\n".join(lines))
    return 0
