"""cluster_days_sharded (mesp_core.distributed.patterns) on a real Ray cluster: Experiment 1 with the
days left in shards gives cluster_days' result (K by silhouette, labels, centroids, descriptions)."""

from __future__ import annotations

import numpy as np
import pytest

from mesp_core.distributed.patterns import ShardRows, cluster_days_sharded, member_sample
from mesp_core.forecasting.patterns import cluster_days
from tests.unit.forecasting.support import T_DAY, diurnal_day, timer_day


@pytest.fixture(scope="module")
def days():
    """Diurnal, timer and noise days with some idle ones among them, shuffled."""
    rng = np.random.RandomState(4)
    rows = [diurnal_day(8 + (i % 5), rng) for i in range(45)] + [timer_day(15, rng, i) for i in range(35)]
    rows += [rng.poisson(2.0, T_DAY).astype(float) for _ in range(30)] + [np.zeros(T_DAY)] * 6
    return np.array(rows)[rng.permutation(len(rows))].astype(np.float32)


def assert_same_clustering(sharded, single) -> None:
    assert sharded.k == single.k
    np.testing.assert_array_equal(sharded.labels, single.labels)
    np.testing.assert_allclose(sharded.centroids, single.centroids, atol=1e-6)
    assert sharded.descriptions == single.descriptions
    assert sharded.silhouette == single.silhouette
    assert sharded.inertia == pytest.approx(single.inertia, rel=1e-9)
    assert sharded.n_iter == single.n_iter


def test_k_chosen_by_silhouette_on_shards_matches_one_process(ray_cluster, days):
    kwargs = dict(k=None, k_range=range(2, 5), random_state=0, max_iter=20, silhouette_sample=60)
    single = cluster_days(days, **kwargs)
    sharded, model = cluster_days_sharded([days[:30], days[30:31], days[31:]], **kwargs)
    assert (single.labels == -1).sum() == 6  # idle days set aside in both
    assert model.n_shards_ == 3
    assert_same_clustering(sharded, single)


def test_given_k_on_object_store_shards_matches_one_process(ray_cluster, days):
    import ray

    single = cluster_days(days, k=3, random_state=2, max_iter=20, silhouette_sample=50)
    refs = [ray.put(days[a:b]) for a, b in ((0, 29), (29, 58), (58, 87), (87, len(days)))]
    assert_same_clustering(cluster_days_sharded(refs, k=3, random_state=2, max_iter=20, silhouette_sample=50)[0], single)


def test_member_sample_spreads_over_each_cluster(ray_cluster, days):
    import ray

    labels = np.array([0] * 50 + [1] * 10 + [-1] * 56)
    rows = ShardRows([ray.put(days[:70]), ray.put(days[70:])], [70, 46])
    index, sample = member_sample(rows, labels, per_cluster=20)
    assert (labels[index] == 0).sum() == 20 and (labels[index] == 1).sum() == 10 and (labels[index] == -1).sum() == 0
    np.testing.assert_array_equal(sample, days[index])


def test_bad_day_shards_are_refused(ray_cluster):
    with pytest.raises(ValueError, match="1440 minutes per row"):
        cluster_days_sharded([np.ones((4, 60))], k=2)
    with pytest.raises(ValueError, match="idle/constant"):
        cluster_days_sharded([np.zeros((4, T_DAY))], k=2)
