"""`mesp evaluate --ray` and `mesp simulate --ray` (mesp_core.distributed.evaluation) on a real Ray
cluster: the backtest and the replay over function shards give the figures of one process, to the bit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mesp_core.cli import main

TRACE = ["--synthetic-functions", "30", "--synthetic-days", "2", "--seed", "4"]


def run_json(argv, path) -> dict:
    assert main([*argv, "--json", str(path)]) == 0
    payload = json.loads(path.read_text())
    payload.pop("plot", None)
    payload.pop("reliability_plot", None)
    return payload


def test_evaluate_with_ray_gives_the_one_process_figures(ray_cluster, tmp_path):
    argv = ["evaluate", *TRACE, "--first-origin", "600", "--last-origin", "1200", "--every", "120"]
    one = run_json(argv, tmp_path / "one.json")
    on_ray = run_json([*argv, "--ray", "auto", "--shards", "3", "--plots", str(tmp_path / "plots")], tmp_path / "ray.json")
    assert one["protocol"]["n_functions"] == 30 and len(one["per_cluster"]) >= 2  # several clusters, every function
    assert one["quantile_coverage"]["per_cluster"]  # the coverage samples are joined too
    assert on_ray == one
    assert (tmp_path / "plots" / "forecasts.png").stat().st_size > 10_000
    assert (tmp_path / "plots" / "reliability.png").stat().st_size > 10_000


def test_simulate_with_ray_gives_the_one_process_figures(ray_cluster, tmp_path):
    argv = ["simulate", *TRACE, "--sample", "12", "--start", "2520", "--replan-every", "5", "--cold-start-costs", "1,16",
            "--quantiles", "0.9", "--morning", "240"]
    one = run_json(argv, tmp_path / "one.json")
    on_ray = run_json([*argv, "--ray", "auto", "--shards", "4"], tmp_path / "ray.json")
    assert one["totals"]["functions"] == 12
    assert any(p["coverage"] is not None for p in one["policies"])  # coverage counts are joined too
    assert on_ray == one


def test_a_replay_of_shards_keeps_per_function_capacities_and_arrays(ray_cluster, tiny_model):
    from mesp_core.data.synthetic import generate_trace
    from mesp_core.distributed.evaluation import replay_on_ray
    from mesp_core.distributed.trace import ShardedTrace
    from mesp_core.replay.standard import run_replay

    trace = generate_trace(n_functions=12, days=2, seed=6)
    rows = np.array([0, 2, 3, 7, 8, 11])
    capacity = np.linspace(5.0, 80.0, len(rows))
    settings = {"start_minute": 2700, "replan_every": 10, "cold_start_costs": (4,), "cheap_choice": False}
    one = run_replay(tiny_model, trace.counts[rows], capacity=capacity, progress=False, **settings)
    on_ray = replay_on_ray(tiny_model, ShardedTrace.from_trace(trace, 3), rows, capacity, **settings)
    assert on_ray.to_dict() == one.to_dict()
    np.testing.assert_array_equal(on_ray.per_function_cold, one.per_function_cold)
    np.testing.assert_array_equal(on_ray.per_function_idle, one.per_function_idle)
    with pytest.raises(ValueError, match="start_minute"):  # a task's bad-input error, as one process says it
        replay_on_ray(tiny_model, ShardedTrace.from_trace(trace, 2), rows, 60.0, start_minute=1)
