"""`mesp calibrate`: fit per-cluster maps that bring the experts' quantile coverage to nominal."""

from __future__ import annotations

from mesp_core.cli.common import add_json, add_trace, command, emit, load_trace


def register(sub) -> None:
    p = command(sub, "calibrate", "calibrate the experts' quantiles per cluster on the model's validation functions",
                description="Measures, on the model's own validation functions (its training split; held-out functions are "
                "never read), how often counts stayed under each residual group's quantiles, and stores per group the "
                "monotone map nominal level -> level that covers it (manifest section 'quantile_calibration'). Point "
                "forecasts and the floor stage are untouched. The trace must hold the functions the model was trained on.")
    p.add_argument("--model", required=True, metavar="DIR", help="trained model folder")
    add_trace(p)
    p.add_argument("--out", metavar="DIR", help="write a calibrated copy here (default: calibrate the --model folder itself)")
    p.add_argument("--val-functions", type=int, help="validation functions measured (default 1500; a seeded sample beyond)")
    p.add_argument("--target", choices=("pit", "at_or_below"), default="pit",
                   help="coverage the maps make nominal: the randomized PIT of the counts (default; a count of 0 under a "
                   "forecast of 0 counts in proportion) or the plain share of minutes at or below the quantile, which "
                   "cannot fall below the share of idle minutes")
    add_json(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from dataclasses import replace

    from mesp_core.offline.calibration import CalibrationConfig, calibrate_model, describe_calibration

    trace = load_trace(args)
    config = CalibrationConfig(seed=getattr(args, "seed", 0) or 0, target=args.target)
    if args.val_functions is not None:
        config = replace(config, max_val_functions=args.val_functions)
    section = calibrate_model(args.model, trace, args.out, config.validate())
    where = args.out or args.model
    emit(args, section, f"quantile calibration stored in {where}\n" + describe_calibration(section))
    return 0
