"""A Ray worker killed in the middle of a sharded K-Shape fit: Ray reruns its task elsewhere and the
fit is unchanged (shard tasks are pure functions of their arguments)."""

from __future__ import annotations

import numpy as np

from mesp_core.distributed.kshape import ShardedKShape
from mesp_core.forecasting.kshape import KShape
from tests.unit.distributed.worker_kill import kill_one_worker_running
from tests.unit.forecasting.support import three_shapes


def test_a_worker_killed_mid_fit_is_retried_and_the_fit_is_unchanged(ray_cluster):
    X = three_shapes(900, 256, 11)
    single = KShape(4, max_iter=15, random_state=3).fit(X)
    with kill_one_worker_running("_assign_shard") as killed:
        sharded = ShardedKShape(4, max_iter=15, random_state=3).fit(np.array_split(X, 4))
    assert killed, "no shard task was caught running: the fit ended before a worker could be killed"
    np.testing.assert_array_equal(sharded.labels_, single.labels_)
    np.testing.assert_allclose(sharded.cluster_centers_, single.cluster_centers_, atol=1e-8)
    assert sharded.n_iter_ == single.n_iter_
