"""The per-function choice among cheap policies (mesp_core.replay.cheap_choice)."""

import numpy as np
import pytest

from mesp_core.replay.baselines import FixedKeepAlivePolicy, HybridHistogramPolicy
from mesp_core.replay.cheap_choice import (
    CHEAP_KEEP_ALIVE_MINUTES,
    SEASONAL_NAIVE_FLOOR,
    CheapChoicePolicy,
    CheapMenu,
    SeasonalNaiveForecaster,
    cheap_candidates,
    choose,
)
from mesp_core.replay.policies import ForecastFloorPolicy
from mesp_core.replay.simulate import simulate

from .support import random_trace, repeat_period

START, MORNING, LEAD = 300, 200, 1


def _candidates():
    candidates = {f"keep-alive {m} min": FixedKeepAlivePolicy(m) for m in (2, 5, 10, 30)}
    candidates["floor"] = ForecastFloorPolicy(repeat_period(60))
    candidates["hybrid"] = HybridHistogramPolicy(min_samples=3)
    return candidates


def _sweep(counts, costs=(1.0, 8.0, 64.0), **kwargs):
    menu = CheapMenu(_candidates(), morning_minutes=MORNING)
    policies = {f"cheap C={c:g}": CheapChoicePolicy(c, menu) for c in costs}
    report = simulate(counts, policies, start_minute=START, lead_minutes=LEAD, progress=False, **kwargs)
    return report, policies, menu


def test_it_picks_what_a_brute_force_over_the_morning_picks_and_replays_that_policy():
    counts = random_trace(n=30, T=420, seed=11)
    report, policies, menu = _sweep(counts)
    first_plan = START - LEAD
    assert menu.morning_window == (first_plan - MORNING, first_plan)
    # Brute force: each candidate alone, replayed over the morning on the history before the first plan.
    names = list(_candidates())
    cold, idle = [], []
    for name in names:
        alone = simulate(counts[:, :first_plan], {name: _candidates()[name]}, first_plan - MORNING, first_plan,
                         lead_minutes=LEAD, progress=False)
        row = [r.name for r in alone.results].index(name)
        cold.append(alone.per_function_cold[row])
        idle.append(alone.per_function_idle[row])
    cold, idle = np.array(cold), np.array(idle)
    # Every candidate alone over the afternoon, to check the chosen plans are that candidate's.
    afternoon = simulate(counts, _candidates(), start_minute=START, lead_minutes=LEAD, progress=False)
    rows = [[r.name for r in afternoon.results].index(name) for name in names]
    n = counts.shape[0]
    picks = []
    for name, policy in policies.items():
        cost = policy.cold_start_cost
        expected = np.array([min(range(len(names)), key=lambda k: (cost * cold[k, i] + idle[k, i], k)) for i in range(n)])
        np.testing.assert_array_equal(policy.choice, expected)
        assert policy.chosen_names() == [names[k] for k in expected]
        p = [r.name for r in report.results].index(name)
        np.testing.assert_array_equal(report.per_function_cold[p],
                                      afternoon.per_function_cold[np.array(rows)[expected], np.arange(n)])
        np.testing.assert_array_equal(report.per_function_idle[p],
                                      afternoon.per_function_idle[np.array(rows)[expected], np.arange(n)])
        assert report.result(name).cold_start_cost == cost and report.result(name).group == "cheap choice"
        picks.append(expected)
    assert len({tuple(p) for p in picks}) > 1  # the cost moves the choice on this trace
    # A higher cost of a cold start never buys more cold starts over the morning.
    morning_cold = [cold[p, np.arange(n)].sum() for p in picks]
    assert morning_cold == sorted(morning_cold, reverse=True)


def test_the_choice_and_each_minutes_plan_never_look_past_their_origin():
    counts = random_trace(n=20, T=420, seed=4)
    changed = counts.copy()
    cut = START + 40
    changed[:, cut:] = np.random.default_rng(0).poisson(50.0, size=changed[:, cut:].shape)
    before, policies_a, _ = _sweep(counts, record_settings=True)
    after, policies_b, _ = _sweep(changed, record_settings=True)
    for name in policies_a:
        np.testing.assert_array_equal(policies_a[name].choice, policies_b[name].choice)
        # Settings for minutes up to `cut` are planned from minutes before it only.
        np.testing.assert_array_equal(before.recorded_settings[name][:, : cut - START + 1],
                                      after.recorded_settings[name][:, : cut - START + 1])
    # Changing the morning does change the choice (the test can fail).
    morning = counts.copy()
    morning[:, START - MORNING: START - LEAD] = 0
    morning[:, START - 60: START - LEAD: 7] = 500
    _, policies_c, _ = _sweep(morning)
    assert any((policies_a[n].choice != policies_c[n].choice).any() for n in policies_a)


def test_choose_breaks_ties_towards_the_earlier_candidate():
    cold = np.array([[1, 0, 2], [0, 0, 0]])
    idle = np.array([[0, 5, 0], [10, 5, 1]])
    assert choose(cold, idle, 10.0).tolist() == [0, 0, 1]
    assert choose(cold, idle, 0.5).tolist() == [0, 0, 0]  # column 2: 0.5 x 2 + 0 ties 0 + 1


def test_the_default_menu_and_bad_arguments():
    candidates = cheap_candidates()
    assert list(candidates) == [f"keep-alive {m} min" for m in CHEAP_KEEP_ALIVE_MINUTES] + [
        SEASONAL_NAIVE_FLOOR, "hybrid histogram"]
    assert isinstance(candidates[SEASONAL_NAIVE_FLOOR].forecaster, SeasonalNaiveForecaster)
    with pytest.raises(ValueError, match="cold_start_cost must be > 0"):
        CheapChoicePolicy(0.0)
    with pytest.raises(ValueError, match="at least one candidate"):
        CheapMenu({})
    with pytest.raises(ValueError, match="needs history before the replay.*at minute 61, at least 62 are needed"):
        simulate(random_trace(n=2, T=100), {"c": CheapChoicePolicy(2.0)}, start_minute=62, progress=False)


def test_a_short_morning_starts_when_forecasters_have_an_hour_of_context():
    menu = CheapMenu(_candidates())  # 720 minutes asked for, 38 there
    simulate(random_trace(n=3, T=150), {"c": CheapChoicePolicy(2.0, menu)}, start_minute=100, progress=False)
    assert menu.morning_window == (61, 99)


def test_the_seasonal_naive_forecaster_repeats_a_weekly_pattern_when_the_context_holds_it():
    week = 7 * 1440
    rng = np.random.default_rng(1)
    one_week = rng.poisson(3.0, size=week).astype(np.float32)
    series = np.tile(one_week, 2)[: week + 1440 + 120]  # 8 days of history and a bit
    forecaster = SeasonalNaiveForecaster()
    out = forecaster(series[None, :], 30)
    t = series.shape[0]
    np.testing.assert_array_equal(out[0], one_week[(t + np.arange(30)) % week])
