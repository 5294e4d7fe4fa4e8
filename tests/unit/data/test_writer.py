"""Writing the Azure invocation layout (mesp_core.data.writer): one file per day, read back unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from mesp_core.constants import MINUTES_PER_DAY
from mesp_core.data.reader import read_invocations
from mesp_core.data.synthetic import generate_trace
from mesp_core.data.trace import InvocationTrace
from mesp_core.data.writer import write_invocations


@pytest.mark.parametrize("compress", [False, True])
def test_write_then_read_round_trip(tmp_path, compress):
    trace = generate_trace(n_functions=40, days=3, seed=5)
    paths = write_invocations(trace, tmp_path, gzip=compress)
    suffix = ".csv.gz" if compress else ".csv"
    assert [p.name for p in paths] == [f"invocations_per_function_md.anon.d0{d}{suffix}" for d in (1, 2, 3)]
    assert read_invocations(paths) == trace
    assert read_invocations(paths).fingerprint() == trace.fingerprint()


def test_round_trip_with_absent_days_and_fractional_counts(tmp_path):
    rng = np.random.default_rng(0)
    counts = rng.gamma(1.0, 3.0, size=(3, 2 * MINUTES_PER_DAY)).astype(np.float32)
    present = np.array([[True, True], [True, False], [True, True]])
    counts[1, MINUTES_PER_DAY:] = 0
    trace = InvocationTrace(
        keys=[("o", "a", f"f{i}") for i in range(3)], triggers=["http", "timer", "queue"],
        counts=counts, days=["d04", "d05"], present=present,
    )
    paths = write_invocations(trace, tmp_path)
    assert [p.name for p in paths] == ["invocations_per_function_md.anon.d04.csv", "invocations_per_function_md.anon.d05.csv"]
    assert read_invocations(paths) == trace


def test_sample_named_day_is_written_as_d01(tmp_path):
    trace = InvocationTrace(keys=[("o", "a", "f")], triggers=["http"], counts=np.ones((1, MINUTES_PER_DAY)), days=["sample"], present=np.ones((1, 1)))
    (path,) = write_invocations(trace, tmp_path)
    assert path.name == "invocations_per_function_md.anon.d01.csv"
    again = read_invocations(path)
    assert again.days == ["d01"] and np.array_equal(again.counts, trace.counts)
