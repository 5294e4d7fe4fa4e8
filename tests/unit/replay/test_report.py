"""What a replay found (mesp_core.replay.report): the table, the JSON, the plot, curve read-offs."""

import json
from dataclasses import replace

import numpy as np

import pytest

from mesp_core.replay.baselines import OraclePolicy
from mesp_core.replay.policies import KNATIVE_DEFAULT, ForecastFloorPolicy
from mesp_core.replay.report import (
    PolicyResult,
    SimulationReport,
    compare_curves,
    curve_readoffs,
    format_table,
    plot_tradeoff,
)
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


def _result(name, cold_rate, idle, group=None, quantile=None, cost=None):
    return PolicyResult(name=name, cold_starts=0, cold_start_rate=cold_rate, cold_minutes=0, cold_minute_rate=0.0,
                        idle_instance_minutes=idle, warm_instance_minutes=idle, cold_vs_default=1.0,
                        idle_vs_default=1.0, p75_function_cold_rate=0.0, changes_per_hour=0.0,
                        group=group, quantile=quantile, cold_start_cost=cost)


def _cost_sweep_results():
    return [
        _result("knative default", 0.10, 100),
        _result("keep-alive 10 min", 0.03, 1000),
        _result("seasonal naive", 0.05, 400),
        _result("MESP C=1", 0.06, 200, "MESP", 0.5, 1.0),
        _result("MESP C=8", 0.02, 600, "MESP", 8 / 9, 8.0),
        _result("MESP C=4", 0.04, 300, "MESP", 0.8, 4.0),
        _result("cheap choice C=1", 0.08, 150, "cheap choice", None, 1.0),
        _result("cheap choice C=8", 0.06, 350, "cheap choice", None, 8.0),
        _result("oracle", 0.0, 50),
    ]


def test_cost_curves_are_read_off_at_the_seasonal_naive_idle_and_keep_alive_10s_cold_rate():
    readoffs = {r["curve"]: r for r in curve_readoffs(_cost_sweep_results())}
    mesp = readoffs["MESP"]
    assert mesp["costs"] == [1.0, 4.0, 8.0] and mesp["points"] == 3
    # At idle 400, between C=4 (300, 4%) and C=8 (600, 2%): a third of the way.
    assert mesp["cold_start_rate_at_reference_idle"] == pytest.approx(0.04 - 0.02 / 3)
    assert mesp["cold_start_rate_ratio"] == pytest.approx((0.04 - 0.02 / 3) / 0.05)
    # At 3% cold, halfway between C=4 and C=8: idle 450, 0.45x keep-alive 10's 1000.
    assert mesp["idle_at_reference_cold_start_rate"] == pytest.approx(450)
    assert mesp["idle_ratio"] == pytest.approx(0.45)
    cheap = readoffs["cheap choice"]
    # The cheap choice stops at 350 idle and 6%: neither read-off is reached, nothing extrapolated.
    assert cheap["cold_start_rate_at_reference_idle"] is None and cheap["idle_at_reference_cold_start_rate"] is None
    assert cheap["reference_idle"] == 400 and cheap["reference_cold_start_rate"] == 0.03
    table = format_table(_report(_cost_sweep_results()))
    assert ("  MESP: cold rate 3.33% at seasonal naive's idle 400 (it has 5.00%; 0.67x); idle 450 at "
            "keep-alive 10 min's cold rate 3.00% (it has 1,000; 0.45x)") in table.splitlines()
    assert "  cheap choice: cold rate - at seasonal naive's idle 400" in table
    # The table compares curves with single policies only; the JSON has every pair.
    assert "MESP vs cheap choice C=8" not in table and "MESP vs seasonal naive" in table
    data = json.loads(_report(_cost_sweep_results()).to_json())
    assert {r["curve"] for r in data["curve_readoffs"]} == {"MESP", "cheap choice"}
    assert ("MESP", "cheap choice C=8") in {(c["curve"], c["policy"]) for c in data["curve_comparisons"]}


def test_without_the_reference_policies_the_readoffs_are_empty():
    results = [r for r in _cost_sweep_results() if r.name not in ("seasonal naive", "keep-alive 10 min")]
    (mesp, _) = curve_readoffs(results)
    assert mesp["reference_idle"] is None and mesp["cold_start_rate_ratio"] is None and mesp["idle_ratio"] is None
    assert "curve read-offs" not in format_table(_report(results))


def test_the_plot_labels_cost_curve_points_by_cost(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    labels = []
    original = Axes.annotate
    monkeypatch.setattr(Axes, "annotate", lambda self, text, *a, **k: labels.append(text) or original(self, text, *a, **k))
    plot_tradeoff(_report(_cost_sweep_results()), tmp_path / "costs.png")
    assert labels == ["C=1", "C=4", "C=8", "C=1", "C=8"]
    assert (tmp_path / "costs.png").read_bytes()[:4] == b"\x89PNG"


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


def _report(results, **totals):
    totals = {"functions": 3, "minutes": 60, "invocations": 1234.0, "demand_instance_minutes": 90,
              "busy_minutes": 40, "reference_policy": "knative default"} | totals
    n = len(results)
    return SimulationReport(results=results, settings={"lead_minutes": 1}, totals=totals,
                            per_function_cold=np.zeros((n, 3), dtype=np.int64),
                            per_function_idle=np.zeros((n, 3), dtype=np.int64))


def test_json_has_null_where_a_ratio_is_infinite_and_plain_numbers_for_numpy_values():
    results = [_result("knative default", 0.1, 0),
               replace(_result("ka", 0.05, 30), idle_vs_default=float("inf"), cold_starts=np.int64(4),
                       cold_start_rate=np.float32(0.25))]
    text = _report(results).to_json()
    assert "Infinity" not in text and "NaN" not in text
    by_name = {p["name"]: p for p in json.loads(text)["policies"]}
    assert by_name["ka"]["idle_vs_default"] is None and by_name["knative default"]["idle_vs_default"] == 1.0
    assert by_name["ka"]["cold_starts"] == 4 and by_name["ka"]["cold_start_rate"] == 0.25
    assert json.loads(_report(results).to_json(indent=None)) == json.loads(text)


def test_the_table_shows_every_policy_infinite_ratios_and_missing_coverage_plainly():
    results = [_result("knative default", 0.10, 0),
               replace(_result("ka", 0.05, 30), idle_vs_default=float("inf")),
               replace(_result("floor", 0.02, 20), coverage=0.875, coverage_busy=None)]
    table = format_table(_report(results))
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["policy", "cold", "starts"] and set(lines[1]) <= {"-", " "}
    ka = next(line for line in lines if line.startswith("ka "))
    assert ka.split()[1:5] == ["0", "5.00%", "1.00x", "30"] and ka.split()[5] == "inf"
    floor = next(line for line in lines if line.startswith("floor "))
    assert floor.endswith("87.5% (-)")
    assert lines[-1].startswith("3 functions x 60 minutes, 1,234 invocations, 90 demanded instance-minutes;")
    assert "'knative default'" in lines[-1]


def test_the_table_reads_the_curve_off_at_each_policy():
    results = [_result("knative default", 0.10, 100), _result("keep-alive 10 min", 0.03, 500),
               _result("c q=0.5", 0.04, 300, "c", 0.5), _result("c q=0.9", 0.02, 700, "c", 0.9)]
    table = format_table(_report(results))
    assert ("  c vs keep-alive 10 min: cold rate 3.00% vs 3.00% at the same idle; "
            "idle 500 vs 500 at the same cold rate") in table.splitlines()
    assert "c vs knative default" not in table  # outside the curve on both axes: nothing to read off


def test_curves_are_compared_with_every_policy_but_the_oracle_and_their_own_group():
    results = [_result("a q=0.5", 0.04, 300, "a", 0.5), _result("a q=0.9", 0.02, 700, "a", 0.9),
               _result("b q=0.5", 0.05, 200, "b", 0.5), _result("b q=0.9", 0.01, 900, "b", 0.9),
               _result("a", 0.03, 400, "a"), _result("oracle", 0.0, 450)]
    pairs = {(c["curve"], c["policy"]) for c in compare_curves(results)}
    assert pairs == {("a", "b q=0.5"), ("a", "b q=0.9"), ("b", "a q=0.5"), ("b", "a q=0.9"), ("b", "a")}


def test_a_policy_is_found_by_name_or_the_names_are_listed():
    report = _report([_result("knative default", 0.1, 0), _result("ka", 0.05, 30)])
    assert report.result("ka").name == "ka"
    with pytest.raises(KeyError, match=r"no policy named 'oracle'; have \['knative default', 'ka'\]"):
        report.result("oracle")
