"""PNG figures. matplotlib is imported inside each function (Agg backend), never at import time."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def plot_clusters(result, days_raw, path, members_per_cluster: int = 8, rows=None) -> Path:
    """One PNG with a panel per cluster: a few members (z-normalised, clock time, light grey) and
    the centroid (bold), titled with id, size and description.

    `rows`: when `days_raw` is a sample of the clustered days, their indices in `result.labels`
    (members are drawn from the sample; sizes still count every day).

    K-Shape centroids have an arbitrary phase, so each is drawn rolled to the clock time of its
    most typical member (smallest SBD). Short-period timer clusters are zoomed in, since a whole
    day of 5-minute spikes is a solid block."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mesp_core.forecasting.sbd import aligned_members, znormalize

    days = np.asarray(days_raw)
    all_labels = np.asarray(result.labels)
    labels = all_labels if rows is None else all_labels[np.asarray(rows, dtype=np.int64)]
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
        ax.set_title(f"cluster {c} · {int((all_labels == c).sum())} days\n{description.get('label', '')}{zoom}", fontsize=9)
        ax.tick_params(labelsize=7)
        if c % cols == 0:
            ax.set_ylabel("z-score", fontsize=8)
    idle = int((all_labels == -1).sum())
    fig.suptitle(
        f"K-Shape clusters of daily patterns (K={k}; {idle} idle/flat days not shown)\n"
        "grey: member days (z-normalised); blue: centroid, placed at its most typical member's time",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_router_centroids(model, path) -> Path:
    """The router's K centroids (one row each, z-normalised daily shape) with their experts."""
    plt = _pyplot()
    centroids = model.router.full_centroids
    k = len(centroids)
    fig, axes = plt.subplots(k, 1, figsize=(10, 1.6 * k + 0.6), sharex=True, squeeze=False)
    hours = np.arange(centroids.shape[1]) / 60.0
    for c, ax in enumerate(axes[:, 0]):
        ax.plot(hours, centroids[c], color="#1f4e79", linewidth=1.0)
        ax.set_ylabel(f"{c}", rotation=0, labelpad=12)
        ax.set_title(f"cluster {c}: {model.describe_cluster(c)} — expert {model.expert_name(c)}", fontsize=9, loc="left")
        ax.set_yticks([])
    axes[-1, 0].set_xlabel("hour of day")
    axes[-1, 0].set_xticks(range(0, 25, 3))
    fig.tight_layout()
    return _save(fig, path)


def plot_backtest_samples(result, path) -> Path:
    """Forecast vs actual for one held-out function per cluster at the middle origin."""
    plt = _pyplot()
    items = result.samples.get("items", [])
    if not items:
        raise ValueError("the backtest kept no samples to plot")
    fig, axes = plt.subplots(len(items), 1, figsize=(10, 2.2 * len(items) + 0.5), squeeze=False)
    colours = {"moe": "#c0392b", "seasonal_naive": "#7f8c8d", "repeat_last_hour": "#bdc3c7"}
    for item, ax in zip(items, axes[:, 0]):
        context, actual = np.asarray(item["context"]), np.asarray(item["actual"])
        past = np.arange(-len(context), 0)
        future = np.arange(len(actual))
        ax.plot(past, context, color="black", linewidth=0.8, label="history")
        ax.plot(future, actual, color="black", linewidth=1.4, label="actual")
        for name, values in item["forecasts"].items():
            ax.plot(future, values, linewidth=1.2 if name == "moe" else 0.9,
                    color=colours.get(name), linestyle="-" if name == "moe" else "--", label=name)
        ax.axvline(0, color="#999999", linewidth=0.6)
        ax.set_title(f"held-out function {item['function']}, cluster {item['cluster']}", fontsize=9, loc="left")
        ax.set_ylabel("invocations/min", fontsize=8)
    axes[0, 0].legend(fontsize=7, ncol=4, loc="upper left")
    axes[-1, 0].set_xlabel(f"minutes from the forecast origin (minute {result.samples.get('origin')} of the trace)")
    fig.tight_layout()
    return _save(fig, path)


def plot_reliability(result, path) -> Path:
    """Reliability diagram of the experts' quantiles, one panel per routed cluster (and all): empirical
    coverage against the nominal level, randomized PIT and share at or below, with the diagonal."""
    plt = _pyplot()
    curves = result.coverage.get("reliability", {}) if result.coverage else {}
    if not curves:
        raise ValueError("the backtest measured no quantile coverage to plot")
    cols = min(3, len(curves))
    rows = math.ceil(len(curves) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.4 * rows), squeeze=False)
    for i in range(rows * cols):
        ax = axes[i // cols][i % cols]
        if i >= len(curves):
            ax.axis("off")
            continue
        label, curve = list(curves.items())[i]
        ax.plot([0, 1], [0, 1], color="#999999", linewidth=0.8, linestyle=":")
        ax.plot(curve["levels"], curve["pit"], marker="o", markersize=3, color="#c0392b", label="randomized PIT")
        ax.plot(curve["levels"], curve["at_or_below"], marker="s", markersize=3, color="#1f4e79",
                linewidth=0.9, label="share at or below")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(label if len(label) <= 42 else label[:41] + "…", fontsize=8, loc="left")
        ax.set_xlabel("nominal level", fontsize=8)
        ax.set_ylabel("coverage", fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return _save(fig, path)


def plot_function_forecasts(items, path, history_minutes: int = 240) -> Path:
    """What `mesp forecast` decided, one panel per function: recent history, the point forecast,
    the band up to the upper quantile, and what really followed when the trace has it.

    Each item: {"function", "route", "history", "forecast", "upper", "quantile", "actual" (may be empty),
    "min_scale" (optional: the plan, drawn in instances on a second axis)}.
    """
    plt = _pyplot()
    if not items:
        raise ValueError("no functions to plot")
    fig, axes = plt.subplots(len(items), 1, figsize=(10, 2.2 * len(items) + 0.5), squeeze=False)
    for item, ax in zip(items, axes[:, 0]):
        history = np.asarray(item["history"])[-history_minutes:]
        forecast, upper = np.asarray(item["forecast"]), np.asarray(item["upper"])
        actual = np.asarray(item.get("actual", []))
        future = np.arange(len(forecast))
        ax.plot(np.arange(-len(history), 0), history, color="black", linewidth=0.8, label="history")
        if actual.size:
            ax.plot(np.arange(len(actual)), actual, color="black", linewidth=1.4, label="actual")
        ax.fill_between(future, forecast, upper, color="#c0392b", alpha=0.18, linewidth=0,
                        label=f"up to q={item['quantile']:g}")
        ax.plot(future, forecast, color="#c0392b", linewidth=1.2, label="forecast")
        ax.axvline(0, color="#999999", linewidth=0.6)
        if item.get("min_scale") is not None:  # the plan, in instances, on its own axis
            scale_ax = ax.twinx()
            scale_ax.step(future, item["min_scale"], where="post", color="#1f4e79", linewidth=1.0)
            scale_ax.set_ylabel("min-scale", fontsize=8, color="#1f4e79")
            scale_ax.set_ylim(bottom=0)
        route = item["route"]
        ax.set_title(f"{item['function'][-24:]}: cluster {route['cluster']} ({route['description']}), "
                     f"expert {route['expert']}", fontsize=8, loc="left")
        ax.set_ylabel("invocations/min", fontsize=8)
    axes[0, 0].legend(fontsize=7, ncol=4, loc="upper left")
    axes[-1, 0].set_xlabel("minutes from the forecast origin")
    fig.tight_layout()
    return _save(fig, path)
