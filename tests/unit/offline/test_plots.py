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
