"""PNG figures. matplotlib is imported inside each function (Agg backend), never at import time."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def plot_clusters(result, days_raw, path, members_per_cluster: int = 8) -> Path:
    """One PNG with a panel per cluster: members (z-normalised, shifted onto the centroid by
    their best SBD lag, light grey) and the centroid (bold), titled with id, size, description."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mesp_core.clustering import aligned_members, znormalize

    days = np.asarray(days_raw)
    labels = np.asarray(result.labels)
    if days.ndim != 2 or len(days) != len(labels):
        raise ValueError(f"days_raw must be [n_days, minutes] with one row per label ({len(labels)}), got shape {days.shape}")
    if members_per_cluster < 0:
        raise ValueError("members_per_cluster must be >= 0")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    k = int(result.k)
    cols = min(4, max(1, k))
    rows = max(1, math.ceil(k / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.9 * rows), squeeze=False, sharex=True)
    hours = np.arange(days.shape[1]) / 60.0
    for c in range(rows * cols):
        ax = axes[c // cols][c % cols]
        if c >= k:
            ax.axis("off")
            continue
        centroid = np.asarray(result.centroids[c], dtype=np.float64)
        members = np.flatnonzero(labels == c)
        if len(members) and members_per_cluster:
            aligned, dist = aligned_members(days[members], centroid)
            # evenly spread over the distance ranking: typical and atypical members alike
            order = np.argsort(dist, kind="stable")
            pick = order[np.unique(np.linspace(0, len(order) - 1, min(members_per_cluster, len(order))).round().astype(int))]
            for row in aligned[pick]:
                ax.plot(hours, row, color="0.75", linewidth=0.6)
        ax.plot(hours, znormalize(centroid[None])[0], color="tab:blue", linewidth=1.8)
        description = result.descriptions[c]["label"] if c < len(result.descriptions) else ""
        ax.set_title(f"cluster {c} · {len(members)} days\n{description}", fontsize=9)
        ax.set_xlim(0, 24)
        ax.set_xticks(range(0, 25, 6))
        ax.tick_params(labelsize=7)
        if c % cols == 0:
            ax.set_ylabel("z-score", fontsize=8)
        if c // cols == rows - 1:
            ax.set_xlabel("hour of day", fontsize=8)
    idle = int((labels == -1).sum())
    fig.suptitle(
        f"K-Shape clusters of daily patterns (K={k}; {idle} idle/flat days not shown)\n"
        "grey: members shifted onto the centroid by their best lag; blue: centroid",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
