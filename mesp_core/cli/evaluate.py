"""`mesp evaluate`: Experiment 3 — rolling-origin backtest of MoE vs dense vs naive on unseen functions, and
the experts' quantile coverage per cluster."""

from __future__ import annotations

import sys
from pathlib import Path

from mesp_core.cli.common import (
    CliError, add_json, add_model, add_ray, add_trace, command, emit, load_sharded_trace, load_trace, model_dir, ray_cluster,
)
from mesp_core.constants import DEFAULT_HORIZON
from mesp_core.offline.evaluation import FIRST_ORIGIN, LAST_ORIGIN, ORIGIN_EVERY


def register(sub) -> None:
    p = command(sub, "evaluate", "Experiment 3: rolling-origin backtest of MoE vs dense vs naive on unseen functions")
    add_model(p)
    add_trace(p)
    p.add_argument("--first-origin", type=int, default=FIRST_ORIGIN,
                   help=f"first origin, minute of the last day (default {FIRST_ORIGIN})")
    p.add_argument("--last-origin", type=int, default=LAST_ORIGIN, help=f"last origin (default {LAST_ORIGIN})")
    p.add_argument("--every", type=int, default=ORIGIN_EVERY, help=f"minutes between origins (default {ORIGIN_EVERY})")
    p.add_argument("--horizon", type=int, default=DEFAULT_HORIZON, help=f"minutes forecast from each origin (default {DEFAULT_HORIZON})")
    p.add_argument("--plots", metavar="DIR", help="write sample forecast plots and the quantiles' reliability diagram per cluster to DIR")
    add_ray(p, "the reading and the backtest (function shards as Ray tasks; the same figures as one process)")
    add_json(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from mesp_core import load_model
    from mesp_core.offline.evaluation import backtest, format_table

    folder = model_dir(args)
    model = load_model(folder, backend="torch")  # offline figures: the backend they were measured with
    origins = range(args.first_origin, args.last_origin + 1, args.every)
    if args.ray:
        from mesp_core.distributed.evaluation import backtest_on_ray

        with ray_cluster(args) as n_shards:
            sharded = load_sharded_trace(args, n_shards)
            held = _held_out(model, sharded)
            result = backtest_on_ray(model, sharded, held, origins=origins, horizon=args.horizon)
    else:
        trace = load_trace(args)
        held = _held_out(model, trace)
        result = backtest(model, trace.counts[held], origins=origins, horizon=args.horizon, progress=True)
    payload = result.to_json() | {"model": folder}
    if args.plots:
        from mesp_core.offline.plots import plot_backtest_samples, plot_reliability

        path = Path(args.plots) / "forecasts.png"
        plot_backtest_samples(result, path)
        payload["plot"] = str(path)
        print(f"mesp: sample forecasts plotted to {path}", file=sys.stderr)
        if result.coverage:
            path = Path(args.plots) / "reliability.png"
            payload["reliability_plot"] = str(plot_reliability(result, path))
            print(f"mesp: quantile reliability per cluster plotted to {path}", file=sys.stderr)
    emit(args, payload, format_table(result))
    return 0


def _held_out(model, trace):
    """The functions of `trace` (keys are enough) the model never saw; a clear error when there are none."""
    from mesp_core.offline.split import held_out_functions

    held = held_out_functions(model, trace)
    if len(held) == 0:
        raise CliError("every function of this trace was used in training: give a trace with unseen functions")
    print(f"mesp: evaluating on {len(held)} functions the model never saw ({len(trace.keys) - len(held)} seen in training are left out)",
          file=sys.stderr)
    return held
