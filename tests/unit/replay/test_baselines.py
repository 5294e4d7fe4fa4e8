"""The policies MESP is compared with (mesp_core.replay.baselines): keep-alive, hybrid histogram, oracle."""

import numpy as np
import pytest

from mesp_core.replay.baselines import FixedKeepAlivePolicy, HybridHistogramPolicy, OraclePolicy
from mesp_core.replay.policies import KNATIVE_DEFAULT
from mesp_core.replay.simulate import simulate

from .support import periodic_trace, random_trace


def test_oracle_is_a_lower_bound_on_cold_starts():
    counts = random_trace(seed=4)
    report = simulate(counts, {"oracle": OraclePolicy(), "ka20": FixedKeepAlivePolicy(20)},
                      start_minute=100, lead_minutes=2, progress=False)
    assert report.result("oracle").cold_starts == 0
    assert report.result(KNATIVE_DEFAULT).cold_starts > 0
    # The oracle never holds less than Knative does, only earlier: its idle cost >= the default's.
    assert report.result("oracle").idle_instance_minutes >= report.result(KNATIVE_DEFAULT).idle_instance_minutes


def test_hybrid_histogram_prewarms_a_regular_function():
    counts = periodic_trace(n=1, T=1440, period=30, value=3.0)  # idle time 29 minutes, always
    hybrid = HybridHistogramPolicy()
    report = simulate(counts, {"hybrid": hybrid, "ka20": FixedKeepAlivePolicy(20)}, start_minute=720,
                      progress=False)
    assert hybrid.uses_histogram.tolist() == [True]
    # Pre-warm at 0.9 * 29 = 26 (asked 1 minute earlier), keep to 1.1 * 30 = 33: every start warm.
    assert int(hybrid._prewarm[0]) == 26 and int(hybrid._window_end[0]) == 33
    assert report.result("hybrid").cold_starts == 0
    assert report.result("ka20").cold_starts == report.result(KNATIVE_DEFAULT).cold_starts == 24
    assert report.result("hybrid").idle_instance_minutes < report.result("ka20").idle_instance_minutes


@pytest.mark.parametrize(
    "counts_row, expect_histogram",
    [
        ([0] * 700 + [1] + [0] * 19, False),  # too few idle times: fall back to keep-alive
        ([1 if m % 7 == 0 or m % 11 == 0 else 0 for m in range(720)], True),
        ([1 if (m * m) % 13 == 0 else 0 for m in range(720)], True),
    ],
)
def test_hybrid_histogram_fallback(counts_row, expect_histogram):
    counts = np.array([counts_row + [0] * 60], dtype=np.float32)
    hybrid = HybridHistogramPolicy(min_samples=10)
    simulate(counts, {"hybrid": hybrid}, start_minute=720, progress=False)
    assert hybrid.uses_histogram.tolist() == [expect_histogram]


def test_hybrid_fallback_keeps_the_function_for_the_histogram_range():
    row = np.zeros(800, dtype=np.float32)
    row[[100, 500]] = 1.0
    hybrid = HybridHistogramPolicy(fallback_keep_alive_minutes=240)
    record = simulate(row[None, :], {"hybrid": hybrid}, start_minute=501, end_minute=800,
                      progress=False, record_settings=True).recorded_settings["hybrid"]
    # Minutes 501..740 follow the invocation at 500 by fewer than 240 idle minutes; 741.. do not.
    assert record[0, : 741 - 501].min() == 1 and record[0, 741 - 501:].max() == 0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: FixedKeepAlivePolicy(0), "keep-alive minutes must be >= 1"),
        (lambda: HybridHistogramPolicy(head_percentile=99, tail_percentile=5), "head_percentile < tail_percentile"),
        (lambda: HybridHistogramPolicy(margin=1.0), r"margin must be in \[0, 1\)"),
    ],
)
def test_bad_policy_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()
