"""The offline plots (mesp_core.offline.plots): PNG files of clusters, centroids, backtests, forecasts."""

from __future__ import annotations

import pytest

from mesp_core.forecasting.patterns import cluster_days

from ..forecasting.support import mixed_days


def test_plot_clusters_writes_a_png(tmp_path):
    from mesp_core.offline.plots import plot_clusters

    days, _ = mixed_days()
    result = cluster_days(days, k=3, random_state=0)
    path = plot_clusters(result, days, tmp_path / "out" / "clusters.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    with pytest.raises(ValueError, match="one row per label"):
        plot_clusters(result, days[:5], tmp_path / "bad.png")


PNG = b"\x89PNG\r\n\x1a\n"


def test_router_centroids_are_plotted_one_panel_per_cluster(tiny_model, tmp_path):
    from mesp_core.offline.plots import plot_router_centroids

    path = plot_router_centroids(tiny_model, tmp_path / "new" / "centroids.png")
    assert path == tmp_path / "new" / "centroids.png" and path.read_bytes()[:8] == PNG
    # One 1.6-inch row per centroid (plus a margin) at 110 dpi.
    from matplotlib.image import imread

    height = imread(path).shape[0]
    assert height == round((1.6 * len(tiny_model.router.full_centroids) + 0.6) * 110)


def test_backtest_samples_are_plotted_and_an_empty_backtest_is_refused(tiny_model, tiny_trace, tmp_path):
    from mesp_core.offline.evaluation import backtest
    from mesp_core.offline.plots import plot_backtest_samples

    result = backtest(tiny_model, tiny_trace.counts[:10], origins=[900, 1200], horizon=30)
    assert result.samples["items"]
    path = plot_backtest_samples(result, tmp_path / "forecasts.png")
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 10_000
    empty = backtest(tiny_model, tiny_trace.counts[:3], origins=[900], horizon=30, n_samples=0)
    with pytest.raises(ValueError, match="the backtest kept no samples to plot"):
        plot_backtest_samples(empty, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_function_forecasts_are_plotted_with_or_without_a_plan(tiny_model, tiny_trace, tmp_path):
    from mesp_core.offline.plots import plot_function_forecasts

    context = tiny_trace.counts[:2, :900]
    outlook = tiny_model.outlook(context, 20, capacity_per_instance=10.0)
    items = [{"function": "/".join(tiny_trace.keys[i]), "route": outlook.routes[i], "history": context[i],
              "forecast": outlook.point[i], "upper": outlook.upper[i], "quantile": 0.9,
              "actual": tiny_trace.counts[i, 900:920], "min_scale": outlook.plan[i] if i == 0 else None}
             for i in range(2)]
    items[1]["actual"] = []  # a trace that ends at the origin has nothing to compare with
    path = plot_function_forecasts(items, tmp_path / "f.png")
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 10_000
    with pytest.raises(ValueError, match="no functions to plot"):
        plot_function_forecasts([], tmp_path / "empty.png")


def test_the_reliability_diagram_has_a_panel_per_cluster(tiny_model, tiny_trace, tmp_path):
    from mesp_core.offline.evaluation import backtest
    from mesp_core.offline.plots import plot_reliability

    result = backtest(tiny_model, tiny_trace.counts[:10], origins=[900, 1200], horizon=30)
    path = plot_reliability(result, tmp_path / "reliability.png")
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 10_000
    without = backtest(tiny_model, tiny_trace.counts[:3], origins=[900], horizon=30, coverage=False)
    with pytest.raises(ValueError, match="no quantile coverage"):
        plot_reliability(without, tmp_path / "none.png")
