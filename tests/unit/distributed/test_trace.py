"""ShardedTrace (mesp_core.distributed.trace) on a real Ray cluster: day files read by Ray tasks into
function shards that, joined, are exactly what the single-process reader returns."""

from __future__ import annotations

import numpy as np
import pytest

from mesp_core.data.reader import read_invocations
from mesp_core.data.synthetic import generate_trace
from mesp_core.data.trace import TraceFormatError
from mesp_core.data.writer import write_invocations
from mesp_core.distributed.trace import ShardedTrace
from tests.unit.data.support import HEADER, const_row, row, write_file


@pytest.fixture(scope="module")
def day_files(tmp_path_factory):
    """Three day files in the Azure layout; some functions are missing on some days."""
    trace = generate_trace(n_functions=40, days=3, seed=3)
    trace.present[[1, 5, 9], 0] = False  # these start on day 2
    trace.present[[2, 30], 2] = False  # these are gone on day 3
    for f, d in zip(*np.nonzero(~trace.present)):
        trace.counts[f, d * 1440 : (d + 1) * 1440] = 0
    return write_invocations(trace, tmp_path_factory.mktemp("days"), gzip=True)


@pytest.mark.parametrize("n_shards", [1, 3, 7])
def test_shards_joined_are_the_single_process_trace(ray_cluster, day_files, n_shards):
    single = read_invocations(day_files)
    sharded = ShardedTrace.read(day_files, n_shards)
    assert sharded.n_shards == n_shards
    assert sharded.bounds[0][0] == 0 and sharded.bounds[-1][1] == single.n_functions
    assert sharded.gather() == single  # keys, order, counts, days and presence
    day_refs, owner, sizes = sharded.daily()
    days, single_owner = single.daily()
    np.testing.assert_array_equal(owner, single_owner)
    import ray

    np.testing.assert_array_equal(np.concatenate(ray.get(day_refs)), days)
    assert sum(sizes) == len(days)


def test_bad_rows_give_the_readers_own_error_or_are_skipped(ray_cluster, tmp_path):
    d1 = write_file(tmp_path / "invocations_per_function_md.anon.d01.csv", [HEADER, row("1"), const_row("2", 3)])
    d2 = write_file(tmp_path / "invocations_per_function_md.anon.d02.csv", [HEADER, row("2"), const_row("3", -1)])
    with pytest.raises(TraceFormatError) as info:
        ShardedTrace.read([d1, d2], 2)
    assert str(info.value).startswith(f"{d2}:3: negative count")
    sharded = ShardedTrace.read([d1, d2], 2, on_error="skip")
    single = read_invocations([d1, d2], on_error="skip")
    assert sharded.skipped == single.skipped == 1
    assert sharded.problems == single.problems
    assert sharded.gather() == single


def test_a_trace_in_memory_is_cut_into_contiguous_shards(ray_cluster):
    trace = generate_trace(n_functions=12, days=1, seed=0)
    sharded = ShardedTrace.from_trace(trace, 5)
    assert [b - a for a, b in sharded.bounds] == [2, 3, 2, 3, 2]
    assert sharded.gather() == trace
    with pytest.raises(ValueError, match="positive integer"):
        ShardedTrace.from_trace(trace, 0)


def test_sharded_access_maps_rows_in_any_order_as_the_local_one(ray_cluster):
    from mesp_core.data.synthetic import generate_trace
    from mesp_core.distributed.training import ShardedTraceAccess
    from mesp_core.forecasting.demand import demand_examples
    from mesp_core.offline.trace_access import LocalTraceAccess, take_days

    trace = generate_trace(n_functions=25, days=2, seed=8)
    local, sharded = LocalTraceAccess(trace), ShardedTraceAccess(ShardedTrace.from_trace(trace, 4))
    assert sharded.fingerprint() == trace.fingerprint()
    np.testing.assert_array_equal(sharded.present, trace.present)
    rows = np.array([24, 3, 3, 0, 17, 9, 24, 12])  # unsorted, repeated, over every shard
    origins = np.array([1500, 200, 900, 61, 2000, 700, 100, 1200])
    for got, want in zip(sharded.map_rows(demand_examples, rows, origins, horizon=60),
                         local.map_rows(demand_examples, rows, origins, horizon=60)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(sharded.series(rows), trace.counts[rows])
    assert sharded.series([]).shape == (0, trace.n_minutes)
    blocks = sharded.map_rows_in_place(take_days, np.array([0, 5, 6, 20]), np.array([1, 0, 1, 1]))
    assert len(blocks) == 3  # functions 0 and 5, 6, and 20 lie in three of the four shards: a block each
    import ray

    np.testing.assert_array_equal(np.concatenate(ray.get(blocks)), take_days(trace.counts, np.array([0, 5, 6, 20]), np.array([1, 0, 1, 1])))
    with pytest.raises(ValueError, match="in order"):
        sharded.map_rows_in_place(take_days, np.array([5, 0]), np.array([0, 0]))
