"""Writing the Azure invocation layout (mesp_core.data.writer): one file per day, read back unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from mesp_core.constants import MINUTES_PER_DAY
from mesp_core.data.reader import read_invocations
from mesp_core.data.synthetic import generate_trace
from mesp_core.data.trace import INVOCATION_COLUMNS, InvocationTrace
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


def _read_rows(path):
    lines = path.read_text().splitlines()
    return lines[0], [line.split(",") for line in lines[1:]]


def test_each_day_file_holds_the_functions_present_that_day(tmp_path):
    counts = np.zeros((3, 2 * MINUTES_PER_DAY), dtype=np.float32)
    trace = InvocationTrace(keys=[("o", "a", f"f{i}") for i in range(3)], triggers=["http", "timer", "queue"],
                            counts=counts, days=["d01", "d02"],
                            present=np.array([[True, False], [True, True], [False, True]]))
    first, second = write_invocations(trace, tmp_path / "new" / "folder")  # created when missing
    header, rows = _read_rows(first)
    assert header == ",".join(INVOCATION_COLUMNS)
    assert [r[:4] for r in rows] == [["o", "a", "f0", "http"], ["o", "a", "f1", "timer"]]
    assert [r[2] for r in _read_rows(second)[1]] == ["f1", "f2"]
    assert all(len(r) == len(INVOCATION_COLUMNS) for r in rows)


def test_whole_counts_are_written_as_integers_and_others_exactly(tmp_path):
    counts = np.zeros((2, 2 * MINUTES_PER_DAY), dtype=np.float32)
    counts[:, :MINUTES_PER_DAY] = 3.0  # day 1: whole numbers only
    counts[0, MINUTES_PER_DAY] = 1.0 / 3.0  # day 2: one fraction
    counts[1, MINUTES_PER_DAY] = 7.0
    trace = InvocationTrace(keys=[("o", "a", "f0"), ("o", "a", "f1")], triggers=["http"] * 2, counts=counts,
                            days=["d01", "d02"], present=np.ones((2, 2), dtype=bool))
    day1, day2 = write_invocations(trace, tmp_path)
    assert _read_rows(day1)[1][0][4:7] == ["3", "3", "3"]
    rows = _read_rows(day2)[1]
    assert rows[0][4] == "0.333333343" and rows[1][4] == "7" and rows[1][5] == "0"  # 9 digits: exact for float32
    assert np.float32(float(rows[0][4])) == counts[0, MINUTES_PER_DAY]


def test_two_days_that_would_share_a_file_are_refused(tmp_path):
    # "x" is the second day, so it would be numbered d02, which "d02" already is.
    trace = InvocationTrace(keys=[("o", "a", "f")], triggers=["http"], counts=np.zeros((1, 2 * MINUTES_PER_DAY)),
                            days=["d02", "x"], present=np.ones((1, 2), dtype=bool))
    with pytest.raises(ValueError, match="two days of the trace map to file day d02"):
        write_invocations(trace, tmp_path)
