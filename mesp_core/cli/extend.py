"""`mesp extend`: add pattern K+1 — clusters for new daily patterns, experts trained only for them."""

from __future__ import annotations

from mesp_core.cli.common import add_json, add_trace, command, emit, load_trace


def register(sub) -> None:
    p = command(sub, "extend", "add clusters for new patterns far from every centroid; train only their experts")
    p.add_argument("--model", required=True, metavar="DIR", help="existing model folder (left untouched)")
    add_trace(p)
    p.add_argument("--out", required=True, metavar="DIR", help="new model folder")
    p.add_argument("--threshold", type=float, help="distance above which a day is new (default: the largest cluster's p95 route distance)")
    p.add_argument("--k", type=int, help="clusters to add (default: by silhouette, 1..4)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_json(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from mesp_core.offline.extend import extend

    trace = load_trace(args)
    report = extend(args.model, trace, args.out, threshold=args.threshold, k=args.k, seed=args.seed, progress=not args.quiet)
    lines = [
        f"{report['n_far_days']} of {report['n_days']} new daily patterns are far from every centroid (distance > {report['threshold']:.3f})",
        f"added clusters: {[c['id'] for c in report['added']] or 'none'}; existing experts unchanged; model in {args.out}",
    ]
    for c in report["added"]:
        lines.append(f"  cluster {c['id']}: {c['n_days']} days, {c['chosen']} — {c['description']['label']}")
    emit(args, report, "\n".join(lines))
    return 0
