"""PNG figures. matplotlib is imported inside each function (Agg backend), never at import time."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def plot_clusters(result, days_raw, path, members_per_cluster: int = 8) -> Path:
    """One PNG with a panel per cluster: a few members (z-normalised, clock time, light grey) and
    the centroid (bold), titled with id, size and description.

    K-Shape centroids have an arbitrary phase, so each is drawn rolled to the clock time of its
    most typical member (smallest SBD). Short-period timer clusters are zoomed in, since a whole
    day of 5-minute spikes is a solid block."""
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
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.9 * rows), squeeze=False)
    minutes = days.shape[1]
    hours = np.arange(minutes) / 60.0  # x axis in hours, or minutes for zoomed timer panels
    for c in range(rows * cols):
        ax = axes[c // cols][c % cols]
        if c >= k:
            ax.axis("off")
            continue
        centroid = znormalize(np.asarray(result.centroids[c], dtype=np.float64)[None])[0]
        members = np.flatnonzero(labels == c)
        description = result.descriptions[c] if c < len(result.descriptions) else {}
        period = description.get("period_minutes")
        zoom, span, x = "", minutes, hours
        if description.get("kind") == "timer" and period and period <= 60:
            span = max(60, 6 * int(period))
            zoom, x = f" (first {span} min)", np.arange(minutes)
        if len(members):
            _, dist, lags = aligned_members(days[members], centroid)
            order = np.argsort(dist, kind="stable")
            centroid = np.roll(centroid, int(lags[order[0]]))
            if members_per_cluster:
                # evenly spread over the distance ranking: typical and atypical members alike
                pick = order[np.unique(np.linspace(0, len(order) - 1, min(members_per_cluster, len(order))).round().astype(int))]
                for row in znormalize(days[members[pick]]):
                    ax.plot(x, row, color="0.78", linewidth=0.6)
        ax.plot(x, centroid, color="tab:blue", linewidth=1.6)
        if zoom:
            ax.set_xlim(0, span)
            ax.set_xlabel("minute of day", fontsize=8)
        else:
            ax.set_xlim(0, minutes / 60.0)
            ax.set_xticks(range(0, int(minutes / 60) + 1, 6))
            ax.set_xlabel("hour of day", fontsize=8)
        ax.set_title(f"cluster {c} · {len(members)} days\n{description.get('label', '')}{zoom}", fontsize=9)
        ax.tick_params(labelsize=7)
        if c % cols == 0:
            ax.set_ylabel("z-score", fontsize=8)
    idle = int((labels == -1).sum())
    fig.suptitle(
        f"K-Shape clusters of daily patterns (K={k}; {idle} idle/flat days not shown)\n"
        "grey: member days (z-normalised); blue: centroid, placed at its most typical member's time",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
