"""`mesp train`: Experiments 1 and 2 — cluster, tune experts per cluster and a dense baseline, write a model."""

from __future__ import annotations

import sys
from pathlib import Path

from mesp_core.cli.common import add_json, add_ray, add_trace, command, emit, fraction, load_sharded_trace, load_trace, ray_cluster
from mesp_core.offline.config import TrainConfig

_DEFAULTS = TrainConfig()


def register(sub) -> None:
    p = command(sub, "train", "cluster the trace, tune experts per cluster and a dense baseline, write a model folder",
                description="Experiments 1 and 2: K-Shape clusters, per-cluster expert selection with Optuna, dense baseline. "
                "Holds out 20% of the functions (by key hash, see --holdout) for 'mesp evaluate'. "
                "Deterministic: every budget is a count (trials, epochs, windows) and every fit is seeded, so the same "
                "--seed and trace train the same model on any load; only --max-fit-seconds, off by default, adds a clock.")
    add_trace(p)
    p.add_argument("--out", required=True, metavar="DIR", help="model folder to write (replaced atomically)")
    p.add_argument("--k", type=int, help="number of clusters (default: chosen by silhouette)")
    p.add_argument("--holdout", type=fraction, default=_DEFAULTS.test_fraction, metavar="FRACTION",
                   help=f"share of functions held out for 'mesp evaluate' and 'mesp simulate' (default {_DEFAULTS.test_fraction:g}; "
                   "0 trains on every function, for the model you deploy once the figures are known)")
    p.add_argument("--families", nargs="+", default=list(_DEFAULTS.families), help="trainable candidate families")
    p.add_argument("--trials", type=int, default=_DEFAULTS.dense_trials,
                   help=f"Optuna trials per family for the dense baseline (default {_DEFAULTS.dense_trials})")
    p.add_argument("--epochs", type=int, default=_DEFAULTS.dense_epochs,
                   help=f"epochs of one dense trial at most, early stopping after {_DEFAULTS.patience} without progress "
                   f"(default {_DEFAULTS.dense_epochs})")
    p.add_argument("--cluster-epochs", type=int, default=_DEFAULTS.cluster_epochs,
                   help=f"epochs of one per-cluster candidate at most (default {_DEFAULTS.cluster_epochs})")
    p.add_argument("--max-fit-seconds", type=float, default=_DEFAULTS.max_fit_seconds, metavar="SECONDS",
                   help="optional wall-clock cap on each network fit (default: none). A capped fit depends on the "
                   "machine's load, so the same seed may then train another model; the fits it cut short are "
                   "listed in the manifest's training.cut_short and in the --json report")
    p.add_argument("--loss-weight", choices=["none", "sqrt_scale", "scale"], default=_DEFAULTS.loss_weight,
                   help=f"networks' per-window loss weight: scale = WAPE-aligned (busy functions count more); default {_DEFAULTS.loss_weight}")
    p.add_argument("--threads", type=int, default=_DEFAULTS.threads,
                   help=f"torch threads for K-Shape's large batched operations (default {_DEFAULTS.threads}); routing, "
                   "fitting and scoring always run on one thread, as some kernels round differently with more")
    p.add_argument("--quick", action="store_true", help="small budget (demo/tests): same pipeline, fewer windows, trials and epochs")
    p.add_argument("--plots", metavar="DIR", help="write centroid plots to DIR")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_ray(p, "the clustering (K-Shape on day shards), the dense family studies and the per-cluster expert searches "
            "(Ray tasks in parallel; the same model as one process)")
    add_json(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from mesp_core.offline.config import quick
    from mesp_core.offline.training import train

    config = TrainConfig(
        k=args.k,
        families=tuple(args.families),
        dense_trials=args.trials,
        dense_epochs=args.epochs,
        cluster_epochs=args.cluster_epochs,
        max_fit_seconds=args.max_fit_seconds,
        seed=args.seed if hasattr(args, "seed") else 0,
        threads=args.threads,
        loss_weight=args.loss_weight,
        test_fraction=args.holdout,
    )
    if args.quick:
        config = quick(config)
    if args.ray:
        from mesp_core.distributed.training import ShardedTraceAccess, run_on_ray

        with ray_cluster(args) as n_shards:  # the trace stays in shards: read, clustered and windowed there
            access = ShardedTraceAccess(load_sharded_trace(args, n_shards))
            report = train(access, args.out, config, progress=not args.quiet, run_tasks=run_on_ray)
    else:
        report = train(load_trace(args), args.out, config, progress=not args.quiet)
    if args.plots:
        _plot_centroids(args.out, args.plots)
    emit(args, report.to_json(), _table(report))
    return 0


def _table(report) -> str:
    lines = [f"trained in {report.seconds:.0f}s: K={report.k} clusters; model in {report.out_dir}", ""]
    lines.append(f"{'cluster':<8}{'days':>6}  {'expert':<24}{'val WAPE':>9}  description")
    for c in report.clusters:
        best = c["ranking"][0]
        score = "-" if best["val_wape"] is None else f"{best['val_wape']:.3f}"  # None: no validation windows
        lines.append(f"{c['id']:<8}{c['n_days']:>6}  {c['chosen']:<24}{score:>9}  {c['description']['label']}")
    lines += ["", "dense baseline (all clusters, validation WAPE):"]
    for r in report.dense_ranking:
        lines.append(f"  {r['family']:<22}{r['val_wape']:.3f}")
    if report.cut_short:
        lines += ["", f"max-fit-seconds cut {len(report.cut_short)} fit(s) short (the model depends on the machine's load): "
                  + ", ".join(report.cut_short)]
    if report.recent_check:
        from mesp_core.offline.recent_check import describe_recent_check

        lines += ["", "recent-error check: " + describe_recent_check(report.recent_check)]
    return "\n".join(lines)


def _plot_centroids(model_dir, plot_dir) -> None:
    from mesp_core import load_model
    from mesp_core.offline.plots import plot_router_centroids

    path = Path(plot_dir) / "centroids.png"
    plot_router_centroids(load_model(model_dir), path)
    print(f"mesp: centroid plot written to {path}", file=sys.stderr)
