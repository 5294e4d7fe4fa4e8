"""The trace in memory (mesp_core.data.trace): shapes, subsets, fingerprint, the function-level split."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mesp_core.constants import MINUTES_PER_DAY
from mesp_core.data.synthetic import generate_trace
from mesp_core.data.trace import InvocationTrace, TraceFormatError, split_functions


def test_trace_checks_its_shapes():
    with pytest.raises(ValueError, match="counts must have shape"):
        InvocationTrace(keys=[("o", "a", "f")], triggers=["t"], counts=np.zeros((1, 100)), days=["d01"], present=np.ones((1, 1)))
    with pytest.raises(ValueError, match="unique"):
        InvocationTrace(keys=[("o", "a", "f")] * 2, triggers=["t"] * 2, counts=np.zeros((2, MINUTES_PER_DAY)), days=["d01"], present=np.ones((2, 1)))


def test_subset_fingerprint_and_split():
    trace = generate_trace(n_functions=50, days=2, seed=1)
    sub = trace.subset([3, 1])
    assert sub.keys == [trace.keys[3], trace.keys[1]]
    np.testing.assert_array_equal(sub.counts[1], trace.counts[1])
    mask = np.zeros(50, dtype=bool)
    mask[[1, 3]] = True
    assert trace.subset(mask).keys == [trace.keys[1], trace.keys[3]]

    fp = trace.fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", fp) and fp == generate_trace(n_functions=50, days=2, seed=1).fingerprint()
    changed = trace.subset(np.arange(50))
    changed.counts[7, 100] += 1
    assert changed.fingerprint() != fp

    train, test = split_functions(trace, test_fraction=0.2, seed=0)
    assert len(test) == 10 and len(train) == 40
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(50))
    again_train, again_test = split_functions(trace, 0.2, seed=0)
    assert np.array_equal(test, again_test) and np.array_equal(train, again_train)
    # same keys in another order -> the same functions are held out
    perm = np.random.default_rng(3).permutation(50)
    _, perm_test = split_functions(trace.subset(perm), 0.2, seed=0)
    assert {trace.subset(perm).keys[i] for i in perm_test} == {trace.keys[i] for i in test}
    _, other_test = split_functions(trace, 0.2, seed=1)
    assert not np.array_equal(other_test, test)
    with pytest.raises(ValueError, match="test_fraction"):
        split_functions(trace, 1.0)
    all_train, none_held = split_functions(trace, 0.0)
    assert all_train.tolist() == list(range(50)) and len(none_held) == 0


def _two_day_trace():
    counts = np.concatenate([np.stack([np.full(MINUTES_PER_DAY, 1.0), np.full(MINUTES_PER_DAY, 0.0)]),
                             np.stack([np.full(MINUTES_PER_DAY, 2.0), np.full(MINUTES_PER_DAY, 5.0)])], axis=1)
    return InvocationTrace(keys=[("o", "a", "f0"), ("o", "a", "f1")], triggers=["http", "timer"], counts=counts,
                           days=["d01", "d02"], present=np.array([[True, True], [False, True]]))


def test_present_and_triggers_must_fit_the_functions():
    counts = np.zeros((2, MINUTES_PER_DAY))
    keys = [("o", "a", "f0"), ("o", "a", "f1")]
    with pytest.raises(ValueError, match=r"present must have shape \(2, 1\), got \(2, 2\)"):
        InvocationTrace(keys=keys, triggers=["t", "t"], counts=counts, days=["d01"], present=np.ones((2, 2)))
    with pytest.raises(ValueError, match="1 triggers for 2 functions"):
        InvocationTrace(keys=keys, triggers=["t"], counts=counts, days=["d01"], present=np.ones((2, 1)))


def test_daily_rows_go_function_by_function_and_leave_out_absent_days():
    trace = _two_day_trace()
    rows, owner = trace.daily()
    assert owner.tolist() == [0, 0, 1]  # f1 is absent on d01
    assert rows.shape == (3, MINUTES_PER_DAY)
    assert [float(r[0]) for r in rows] == [1.0, 2.0, 5.0]


def test_subset_refuses_a_mask_of_the_wrong_length_and_keeps_the_days():
    trace = _two_day_trace()
    with pytest.raises(ValueError, match="boolean mask must have length 2"):
        trace.subset(np.array([True, False, True]))
    sub = trace.subset([1])
    assert sub.days == ["d01", "d02"] and sub.present.tolist() == [[False, True]] and sub.triggers == ["timer"]


def test_equality_compares_content_not_identity():
    trace = _two_day_trace()
    assert trace == _two_day_trace()
    other = _two_day_trace()
    other.triggers[1] = "http"
    assert trace != other
    assert trace != "a trace"  # other types are not equal (and do not raise)
    assert repr(trace) == "InvocationTrace(n_functions=2, days=['d01', 'd02'], skipped=0)"


def test_trace_format_error_names_file_and_line():
    line_error = TraceFormatError("/x/t.csv", 7, "negative count")
    assert str(line_error) == "/x/t.csv:7: negative count" and line_error.line == 7
    file_error = TraceFormatError("/x/t.csv", None, "file not found")
    assert str(file_error) == "/x/t.csv: file not found" and isinstance(file_error, ValueError)


def test_split_keeps_one_function_on_each_side_of_a_tiny_trace():
    trace = generate_trace(n_functions=10, days=1, seed=2).subset([0, 1])
    train, test = split_functions(trace, test_fraction=0.01)
    assert len(train) == len(test) == 1 and set(train) | set(test) == {0, 1}
    train, test = split_functions(trace, test_fraction=0.99)
    assert len(train) == len(test) == 1
