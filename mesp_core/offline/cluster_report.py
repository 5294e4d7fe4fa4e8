"""Experiment 1's outputs on disk: the cluster plot, centroids, per-day labels and a JSON summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_cluster_report(result, days: np.ndarray, owner: np.ndarray, keys, out_dir, days_index=None, extra=None) -> dict:
    """Write clusters.png, centroids.npy, labels.csv and clusters.json for a `cluster_days` result.

    `days` and `owner` come from `InvocationTrace.daily()`; `keys` are the trace's function keys.
    When the days are too many for one process (clustered on Ray), `days` may be a sample of them:
    the rows `days_index` of the full set, from which the plot draws its members.
    `extra`: more entries for clusters.json (how the run was spread, with --ray).
    Returns the summary written to clusters.json."""
    from mesp_core.offline.plots import plot_clusters

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_clusters(result, days, out / "clusters.png", rows=days_index)
    np.save(out / "centroids.npy", result.centroids)
    with open(out / "labels.csv", "w") as handle:
        handle.write("HashOwner,HashApp,HashFunction,day,cluster\n")
        days_seen: dict[int, int] = {}  # a function's days so far: its next day's index
        for function, label in zip(owner.tolist(), result.labels.tolist()):
            key = keys[function]
            day_index = days_seen.get(function, 0)
            days_seen[function] = day_index + 1
            handle.write(f"{key[0]},{key[1]},{key[2]},{day_index},{int(label)}\n")
    sizes = {int(c): int((result.labels == c).sum()) for c in np.unique(result.labels)}
    summary = {
        "k": result.k,
        "silhouette": {str(k): v for k, v in result.silhouette.items()},
        "inertia": result.inertia,
        "sizes": sizes,
        "clusters": [{"id": c, "size": sizes.get(c, 0), **result.descriptions[c]} for c in range(result.k)],
        "idle_days": sizes.get(-1, 0),
        "outputs": {"plot": str(out / "clusters.png"), "centroids": str(out / "centroids.npy"), "labels": str(out / "labels.csv")},
    }
    summary.update(extra or {})
    (out / "clusters.json").write_text(json.dumps(summary, indent=2, default=_jsonable) + "\n")
    return summary


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(type(value).__name__)
