"""Day patterns (mesp_core.forecasting.patterns): choosing K, describing centroids, clustering days."""

from __future__ import annotations

import numpy as np
import pytest

from mesp_core.forecasting.patterns import ClusteringResult, choose_k, cluster_days, describe_centroid

from .support import T_DAY, diurnal_day, mixed_days, spike_day, timer_day


def test_describe_centroid_kinds():
    rng = np.random.RandomState(0)
    diurnal = describe_centroid(diurnal_day(15, rng))
    assert diurnal["kind"] == "diurnal" and 15 in diurnal["peak_hours"], diurnal
    assert diurnal["label"].startswith("diurnal, peak ")
    members = np.array([timer_day(5, rng, phase=p) for p in range(6)])
    timer = describe_centroid(members.mean(axis=0), members)
    assert timer == {"label": "timer every 5 min", "kind": "timer", "peak_hours": timer["peak_hours"], "period_minutes": 5}
    midnight = describe_centroid(spike_day(3, rng))
    assert midnight["kind"] == "spiky" and midnight["label"] == "midnight batch spike"
    noon = describe_centroid(spike_day(12 * 60 + 30, rng))
    assert noon["label"] == "batch spike at 12:30" and noon["peak_hours"] == [12]
    bursty = describe_centroid((rng.rand(T_DAY) < 0.05) * rng.rand(T_DAY) * 50)
    assert bursty["kind"] == "bursty" and bursty["period_minutes"] is None, bursty
    assert describe_centroid(np.full(T_DAY, 4.0)) == {"label": "idle/flat", "kind": "idle", "peak_hours": [], "period_minutes": None}
    again = describe_centroid(diurnal_day(15, np.random.RandomState(0)))
    assert again == diurnal  # deterministic
    with pytest.raises(ValueError, match="1440"):
        describe_centroid(np.zeros(100))


def test_cluster_days_separates_shapes_and_sets_idle_days_aside():
    days, truth = mixed_days()
    result = cluster_days(days, k=3, random_state=0)
    assert isinstance(result, ClusteringResult)
    assert result.k == 3 and result.centroids.shape == (3, T_DAY) and len(result.descriptions) == 3
    np.testing.assert_array_equal(result.labels[truth == -1], -1)
    for kind in range(3):  # each true shape lands in a single cluster
        assert len(np.unique(result.labels[truth == kind])) == 1
    kinds = sorted(d["kind"] for d in result.descriptions)
    assert kinds == ["diurnal", "spiky", "timer"], result.descriptions
    assert set(result.silhouette) == {3} and result.silhouette[3] > 0.3


def test_choose_k_finds_three_shapes_and_cluster_days_uses_it():
    days, truth = mixed_days(1)
    k, scores = choose_k(days[truth >= 0], k_range=range(2, 6), sample=200, random_state=0)
    assert k == 3 and set(scores) <= {2, 3, 4, 5} and scores[3] == max(scores.values())
    result = cluster_days(days, k=None, k_range=range(2, 6), random_state=0)
    assert result.k == 3 and result.silhouette == scores


def test_cluster_days_errors():
    with pytest.raises(ValueError, match="idle/constant"):
        cluster_days(np.zeros((4, T_DAY)), k=2)
    with pytest.raises(ValueError, match="1440 minutes"):
        cluster_days(np.random.rand(4, 100), k=2)
    with pytest.raises(ValueError, match="at least 5 non-flat"):
        cluster_days(np.random.RandomState(0).rand(4, T_DAY), k=5)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        cluster_days(np.random.RandomState(0).rand(4, T_DAY), k=0)


def test_spikes_at_scattered_times_are_not_called_a_batch():
    rng = np.random.RandomState(4)
    scattered = np.array([spike_day(int(m), rng) for m in rng.randint(0, T_DAY - 10, 12)])
    described = describe_centroid(scattered[0], scattered)
    assert described["kind"] == "spiky" and described["label"] == "sporadic spikes at varying times", described
    nightly = np.array([spike_day(int(m), rng) for m in rng.randint(0, 20, 12)])
    assert describe_centroid(nightly[0], nightly)["label"] == "midnight batch spike"
