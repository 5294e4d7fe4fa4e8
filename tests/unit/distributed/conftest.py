"""A real local Ray cluster for the distributed tests: a head and a second node on this machine,
one CPU each (two worker processes), started once per test session by Ray's own test utility."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    """The address of a running two-node Ray cluster, this process connected to it as driver."""
    import ray  # part of the test install (pyproject [test]): these tests must run, not skip
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False, "object_store_memory": 200 << 20},
    )
    cluster.add_node(num_cpus=1, object_store_memory=200 << 20)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster.address
    finally:
        ray.shutdown()
        cluster.shutdown()
