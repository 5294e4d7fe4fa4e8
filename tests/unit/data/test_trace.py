"""The trace in memory (mesp_core.data.trace): shapes, subsets, fingerprint, the function-level split."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mesp_core.constants import MINUTES_PER_DAY
from mesp_core.data.synthetic import generate_trace
from mesp_core.data.trace import InvocationTrace, split_functions


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
