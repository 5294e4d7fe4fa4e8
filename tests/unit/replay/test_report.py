"""What a replay found (mesp_core.replay.report): the table, the JSON, the plot, curve read-offs."""

import json

import pytest

from mesp_core.replay.baselines import OraclePolicy
from mesp_core.replay.policies import KNATIVE_DEFAULT, ForecastFloorPolicy
from mesp_core.replay.report import PolicyResult, compare_curves, format_table, plot_tradeoff
from mesp_core.replay.simulate import simulate

from .support import all_policy_kinds, random_trace, repeat_period, scaled_quantile


def test_report_table_json_and_plot(tmp_path):
    counts = random_trace(n=20, T=300, seed=3)
    point = repeat_period(60)
    policies = all_policy_kinds(point)
    policies["q0.5"] = ForecastFloorPolicy(quantile_forecaster=scaled_quantile(point), quantile=0.5, group="sweep")
    policies["oracle"] = OraclePolicy()
    report = simulate(counts, policies, start_minute=150, progress=False)
    table = format_table(report)
    for name in (KNATIVE_DEFAULT, "ka10", "hybrid", "point", "q0.9", "q0.5", "oracle"):
        assert name in table
    data = json.loads(report.to_json())
    assert [p["name"] for p in data["policies"]][0] == KNATIVE_DEFAULT
    assert data["policies"][0]["cold_vs_default"] == 1.0
    assert data["totals"]["functions"] == 20 and data["totals"]["minutes"] == 150
    assert data["cold_start_rate_definition"] == "cold starts / demanded instance-minutes"
    png = tmp_path / "tradeoff.png"
    plot_tradeoff(report, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def _result(name, cold_rate, idle, group=None, quantile=None):
    return PolicyResult(name=name, cold_starts=0, cold_start_rate=cold_rate, cold_minutes=0, cold_minute_rate=0.0,
                        idle_instance_minutes=idle, warm_instance_minutes=idle, cold_vs_default=1.0,
                        idle_vs_default=1.0, p75_function_cold_rate=0.0, changes_per_hour=0.0,
                        group=group, quantile=quantile)


def test_curve_is_read_off_at_each_policys_idle_and_cold_rate():
    results = [
        _result("knative default", 0.10, 100),
        _result("keep-alive 10 min", 0.03, 500),
        _result("curve q=0.5", 0.04, 300, "curve", 0.5),
        _result("curve q=0.9", 0.02, 700, "curve", 0.9),
        _result("curve", 0.05, 250, "curve"),  # the group's point floor: not a curve point, not compared
        _result("oracle", 0.0, 50),
    ]
    by_policy = {c["policy"]: c for c in compare_curves(results)}
    assert set(by_policy) == {"knative default", "keep-alive 10 min"}
    keep_alive = by_policy["keep-alive 10 min"]
    assert keep_alive["curve_cold_start_rate_at_same_idle"] == pytest.approx(0.03)  # halfway 300..700
    assert keep_alive["curve_idle_at_same_cold_start_rate"] == pytest.approx(500)
    # Outside the curve's range nothing is extrapolated.
    assert by_policy["knative default"]["curve_cold_start_rate_at_same_idle"] is None
    assert by_policy["knative default"]["curve_idle_at_same_cold_start_rate"] is None
    # A single quantile point is no curve.
    assert compare_curves([results[0], results[2]]) == []
