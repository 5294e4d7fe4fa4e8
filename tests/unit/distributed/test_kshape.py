"""ShardedKShape (mesp_core.distributed.kshape) on a real two-node Ray cluster: the same fit as the
single-process KShape on the shards' concatenation, through both shape-extraction paths."""

from __future__ import annotations

import numpy as np
import pytest

from mesp_core.distributed.kshape import ShardedKShape
from mesp_core.forecasting.kshape import EmptyClusterError, KShape
from tests.unit.forecasting.support import T_DAY, diurnal_day, three_shapes, timer_day


def assert_same_fit(sharded: ShardedKShape, single: KShape) -> None:
    np.testing.assert_array_equal(sharded.labels_, single.labels_)
    np.testing.assert_allclose(sharded.cluster_centers_, single.cluster_centers_, atol=1e-8)
    assert sharded.inertia_ == pytest.approx(single.inertia_, rel=1e-9)
    assert sharded.n_iter_ == single.n_iter_


def test_clusters_larger_than_the_series_length_sum_their_scatter_over_shards(ray_cluster):
    # 300 series of length 64: clusters of 64+ members take the summed S = sum y y^T path
    X = three_shapes(300, 64, 5)
    single = KShape(3, random_state=1, n_init=2).fit(X)
    sharded = ShardedKShape(3, random_state=1, n_init=2).fit(np.array_split(X, 3))
    assert np.bincount(single.labels_).max() >= 64  # the path this test is about really ran
    assert_same_fit(sharded, single)
    assert sharded.n_shards_ == 3


def test_daily_patterns_in_uneven_shards_give_the_single_process_labels(ray_cluster):
    rng = np.random.RandomState(0)
    days = [diurnal_day(9 + (i % 4), rng) for i in range(40)] + [timer_day(30, rng, i) for i in range(30)]
    days += [rng.poisson(3.0, T_DAY).astype(float) for _ in range(30)]
    X = np.array(days)[rng.permutation(100)].astype(np.float32)
    single = KShape(3, max_iter=20, random_state=0).fit(X)
    sharded = ShardedKShape(3, max_iter=20, random_state=0).fit([X[:7], X[7:60], X[60:]])
    assert_same_fit(sharded, single)
    assert sharded.worker_memory_mb_ > 0 and sharded.driver_memory_mb_ > 0


def test_given_initial_centroids_and_object_store_shards(ray_cluster):
    import ray

    X = three_shapes(90, 48, 2)
    init = X[[0, 1, 2]].copy()
    single = KShape(3, init=init, max_iter=10).fit(X)
    sharded = ShardedKShape(3, init=init, max_iter=10).fit([ray.put(X[:45]), ray.put(X[45:])])
    assert_same_fit(sharded, single)


def test_bad_shards_are_refused_clearly(ray_cluster):
    with pytest.raises(ValueError, match="different lengths"):
        ShardedKShape(2).fit([np.ones((5, 10)), np.ones((5, 12))])
    with pytest.raises(ValueError, match="no shards"):
        ShardedKShape(2).fit([])
    with pytest.raises(ValueError, match="cannot form 5 clusters from 4 series"):
        ShardedKShape(5).fit([three_shapes(2, 16, 0), three_shapes(2, 16, 1)])
    # identical series: every attempt leaves a cluster empty, as in one process
    same = np.tile(three_shapes(1, 16, 0), (6, 1))
    with pytest.raises(EmptyClusterError):
        ShardedKShape(3, random_state=0).fit([same[:3], same[3:]])
