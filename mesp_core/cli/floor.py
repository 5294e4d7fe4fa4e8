"""`mesp floor`: add the floor stage to an existing model (demand head + per-cluster default floors), experts untouched."""

from __future__ import annotations

from mesp_core.cli.common import add_json, add_trace, command, emit, load_trace


def register(sub) -> None:
    p = command(sub, "floor", "add the floor stage to a trained model: a demand head and each cluster's floor policy by cold-start cost",
                description="Fits the demand head on the model's fit functions and, on its validation functions, chooses each "
                "cluster's default floor policy per cold-start cost (issue 16). The trace must hold the functions the model "
                "was trained on (its training_keys.txt); held-out functions are never read. The experts are copied unchanged.")
    p.add_argument("--model", required=True, metavar="DIR", help="existing model folder (left untouched)")
    add_trace(p)
    p.add_argument("--out", required=True, metavar="DIR", help="new model folder with the floor stage")
    p.add_argument("--origins", type=int, help="training origins of the demand head (default 120000)")
    p.add_argument("--epochs", type=int, help="training epochs of the demand head (default 6)")
    p.add_argument("--val-functions", type=int, help="validation functions replayed to choose the floors (default 1500)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_json(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from dataclasses import replace

    from mesp_core.offline.floor_training import FloorConfig, add_floor_stage, describe_floor

    trace = load_trace(args)
    config = FloorConfig(seed=getattr(args, "seed", 0) or 0)
    for field, value in (("origins", args.origins), ("epochs", args.epochs), ("max_val_functions", args.val_functions)):
        if value is not None:
            config = replace(config, **{field: value})
    section = add_floor_stage(args.model, trace, args.out, config.validate(), progress=not args.quiet)
    report = {k: v for k, v in section.items() if k != "head"}
    emit(args, report, f"floor stage added; model in {args.out}\n" + describe_floor(section))
    return 0
