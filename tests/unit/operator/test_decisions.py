"""The operator's pure decisions: capacity, template damping, context length."""

from __future__ import annotations

import pytest

from mesp_operator.decisions import (DEFAULT_REQUEST_DURATION_MS, damp_template_change, model_context_minutes,
                                     resolve_capacity)


@pytest.mark.parametrize("spec_capacity,spec_ms,measured_ms,concurrency,target,expected", [
    # The policy's own capacity wins over everything.
    (250.0, 100.0, 50.0, 4, None, (250.0, "spec", None)),
    # Else concurrency x 0.7 x 60,000 / duration, the duration from the spec first ...
    (None, 500.0, 50.0, 4, None, (4 * 0.7 * 60_000 / 500.0, "requestDurationMs", 500.0)),
    # ... then from Prometheus ...
    (None, None, 300.0, 1, None, (0.7 * 60_000 / 300.0, "measuredDuration", 300.0)),
    # ... then the default, 1,000 ms.
    (None, None, None, 2, None, (2 * 0.7 * 60_000 / DEFAULT_REQUEST_DURATION_MS, "defaultDuration", 1000.0)),
    # containerConcurrency 0 (unlimited): the autoscaling target, else Knative's soft target of 100.
    (None, None, 300.0, 0, 10, (10 * 0.7 * 60_000 / 300.0, "measuredDuration", 300.0)),
    (None, None, 300.0, 0, None, (100 * 0.7 * 60_000 / 300.0, "measuredDuration", 300.0)),
])
def test_capacity_comes_from_the_spec_a_measured_duration_or_the_default(
        spec_capacity, spec_ms, measured_ms, concurrency, target, expected):
    capacity, source, duration = resolve_capacity(spec_capacity, spec_ms, measured_ms, concurrency, target)
    assert (source, duration) == expected[1:]
    assert capacity == pytest.approx(expected[0])


# current, wanted, floor, cap, minutes since change, cooldown, hysteresis -> value written
DAMPING = [
    (1, 5, 1, 50, 0, 10, 2, 7),     # a real raise goes out at once, with headroom
    (1, 5, 1, 6, 0, 10, 2, 6),      # ... never above the cap
    (5, 6, 1, 50, 3, 10, 2, 5),     # a small raise during the cooldown waits
    (5, 6, 1, 50, 12, 10, 2, 8),    # ... and goes out once the cooldown is over
    (8, 3, 1, 50, 4, 10, 2, 8),     # decreases wait for the cooldown
    (8, 7, 1, 50, 40, 10, 2, 8),    # ... and must exceed the hysteresis
    (8, 3, 1, 50, 40, 10, 2, 3),
    (3, 1, 1, 50, 40, 10, 5, 1),    # back to the floor is always allowed after the cooldown
    (4, 0, 2, 50, 40, 10, 0, 2),    # never below the floor
    (4, 4, 1, 50, 0, 10, 2, 4),
    (6, 10, 0, 5, 100, 10, 1, 5),   # the cap dropped below what is set: down to it at once
    (2, 0, 3, 50, 5, 10, 1, 3),     # the floor rose above what is set: up to it, cooldown or not
    (7, 7, 0, 6, 0, 10, 1, 6),
]


@pytest.mark.parametrize("current,wanted,floor,cap,since,cooldown,hysteresis,expected", DAMPING)
def test_template_damping(current, wanted, floor, cap, since, cooldown, hysteresis, expected):
    value, reason = damp_template_change(current, wanted, floor, cap, since, cooldown, hysteresis)
    assert value == expected, reason
    assert floor <= value <= cap


def test_template_raise_headroom_is_a_share_of_the_wanted_value():
    # current, wanted, floor, cap, since, cooldown, hysteresis, headroom
    assert damp_template_change(4, 10, 1, 80, 0, 15, 2, 0.5)[0] == 15     # 10 + 50%
    assert damp_template_change(1, 2, 1, 80, 30, 15, 2, 0.5)[0] == 4      # at least the hysteresis
    assert damp_template_change(20, 60, 1, 80, 0, 15, 2, 0.5)[0] == 80    # never above the cap
    # A ramp 2, 4, ..., 50 wanted one step a minute: with headroom a handful of Revisions.
    current, changes, last_change = 1, 0, -100
    for minute, want in enumerate(range(2, 52, 2)):
        value, _ = damp_template_change(current, want, 1, 100, minute - last_change, 15, 2, 0.5)
        if value != current:
            changes, last_change, current = changes + 1, minute, value
        assert value >= want - 2  # never more than the hysteresis below what is wanted
    assert changes <= 6


def test_template_damping_bounds_rollouts_over_a_day_of_noisy_wants():
    import numpy as np

    rng = np.random.default_rng(0)
    wants = np.clip(np.round(10 + 5 * np.sin(np.arange(1440) / 90) + rng.normal(0, 1.5, 1440)), 1, 40).astype(int)
    current, last_change, changes = 1, -10**6, 0
    for minute, want in enumerate(wants):
        value, _ = damp_template_change(current, int(want), 1, 40, minute - last_change, 15, 2)
        if value < current:
            assert minute - last_change >= 15, "a decrease inside the cooldown"
        if value != current:
            assert abs(value - current) > 2 or minute - last_change >= 15, "a small change inside the cooldown"
            current, last_change, changes = value, minute, changes + 1
        assert value >= want or want - value <= 2  # never far below what is wanted
    undamped = int(np.count_nonzero(np.diff(wants)))
    assert changes < undamped / 5


def test_context_covers_the_widest_expert_and_at_least_a_day():
    assert model_context_minutes({}) == 1440
    manifest = {"clusters": [{"expert": {"config": {"input_size": 240}}}],
                "naive": {"config": {"input_size": 2880}}}
    assert model_context_minutes(manifest) == 2880
