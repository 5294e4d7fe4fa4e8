"""`mesp cluster`: Experiment 1 only — K-Shape clusters of the daily patterns, described, plotted."""

from __future__ import annotations

from mesp_core.cli.common import add_json, add_ray, add_trace, command, emit, load_sharded_trace, load_trace, ray_cluster
from mesp_core.offline.config import TrainConfig

_DEFAULTS = TrainConfig()


def register(sub) -> None:
    p = command(sub, "cluster", "Experiment 1 only: K-Shape clusters of the daily patterns, with descriptions and a plot")
    add_trace(p)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for clusters.png, clusters.json, centroids.npy, labels.csv")
    p.add_argument("--k", type=int, help="number of clusters (default: best silhouette in --k-min..--k-max)")
    p.add_argument("--k-min", type=int, default=_DEFAULTS.k_min, help=f"smallest K tried (default {_DEFAULTS.k_min})")
    p.add_argument("--k-max", type=int, default=_DEFAULTS.k_max, help=f"largest K tried (default {_DEFAULTS.k_max})")
    add_ray(p, "the reading and K-Shape")
    add_json(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from mesp_core.forecasting.patterns import cluster_days
    from mesp_core.offline.cluster_report import write_cluster_report

    if args.ray:
        summary, result = _cluster_on_ray(args)
    else:
        trace = load_trace(args)
        days, owner = trace.daily()
        result = cluster_days(days, k=args.k, k_range=range(args.k_min, args.k_max + 1), random_state=args.seed, progress=True)
        summary = write_cluster_report(result, days, owner, trace.keys, args.out)
    sizes = summary["sizes"]
    lines = [f"K-Shape: {len(result.labels)} daily patterns -> K={result.k} clusters (+{sizes.get(-1, 0)} idle/flat days)"]
    if result.silhouette:
        lines.append("silhouette: " + ", ".join(f"k={k}: {v:.3f}" for k, v in result.silhouette.items()))
    lines.append("")
    for c in range(result.k):
        lines.append(f"cluster {c:<3} {sizes.get(c, 0):>6} days  {result.descriptions[c]['label']}")
    lines.append(f"\nplot: {summary['outputs']['plot']}; labels: {summary['outputs']['labels']}")
    if "ray" in summary:
        spread = summary["ray"]
        lines.append(f"Ray: {spread['shards']} shards; largest worker: {spread['reader_peak_rss_mb']:.0f} MiB reading a day file, "
                     f"{spread['kshape_worker_mb']:.0f} MiB private in K-Shape")
    emit(args, summary, "\n".join(lines))
    return 0


def _cluster_on_ray(args):
    """The same clustering with the days in shards on a Ray cluster (this process holds samples)."""
    from mesp_core.distributed.patterns import ShardRows, cluster_days_sharded, member_sample
    from mesp_core.offline.cluster_report import write_cluster_report

    with ray_cluster(args) as n_shards:
        sharded = load_sharded_trace(args, n_shards)
        day_refs, owner, sizes = sharded.daily()
        result, model = cluster_days_sharded(day_refs, k=args.k, k_range=range(args.k_min, args.k_max + 1),
                                             random_state=args.seed, progress=True)
        index, sample = member_sample(ShardRows(day_refs, sizes), result.labels)
        spread = {"shards": sharded.n_shards, "reader_peak_rss_mb": round(sharded.reader_rss_mb, 1),
                  "kshape_worker_mb": round(model.worker_memory_mb_, 1)}
        summary = write_cluster_report(result, sample, owner, sharded.keys, args.out, days_index=index, extra={"ray": spread})
    return summary, result
