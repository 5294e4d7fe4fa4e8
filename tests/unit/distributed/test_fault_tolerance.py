"""A Ray worker killed in the middle of a sharded K-Shape fit: Ray reruns its task elsewhere and the
fit is unchanged (shard tasks are pure functions of their arguments)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np

from mesp_core.distributed.kshape import ShardedKShape
from mesp_core.forecasting.kshape import KShape
from tests.unit.forecasting.support import three_shapes


def _descendants(root: int) -> list[int]:
    """Processes below `root` (this test's Ray nodes and their workers), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        found += children
        frontier += children
    return found


def _running(task: str) -> list[int]:
    """Our Ray workers executing `task` right now (Ray titles them ray::<task>)."""
    pids = []
    for pid in _descendants(os.getpid()):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if title.startswith(f"ray::{task}"):
            pids.append(pid)
    return pids


def test_a_worker_killed_mid_fit_is_retried_and_the_fit_is_unchanged(ray_cluster):
    X = three_shapes(900, 256, 11)
    single = KShape(4, max_iter=15, random_state=3).fit(X)
    killed: list[int] = []
    done = threading.Event()

    def kill_one_worker():
        while not done.is_set() and not killed:
            for pid in _running("_assign_shard"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.005)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    try:
        sharded = ShardedKShape(4, max_iter=15, random_state=3).fit(np.array_split(X, 4))
    finally:
        done.set()
        killer.join()
    assert killed, "no shard task was caught running: the fit ended before a worker could be killed"
    np.testing.assert_array_equal(sharded.labels_, single.labels_)
    np.testing.assert_allclose(sharded.cluster_centers_, single.cluster_centers_, atol=1e-8)
    assert sharded.n_iter_ == single.n_iter_
