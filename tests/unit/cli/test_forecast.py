"""`mesp forecast` (mesp_core.cli.forecast): JSON on stdout, the packaged model by default, the plot,
and min-scale plans like the model API's."""

import gzip
import json

import numpy as np
import pytest

from mesp_core.cli import main

from .support import GOLDEN, TINY_TRACE, _one_line_error


def test_forecast_json_on_stdout(capsys, tmp_path):
    trace_dir = tmp_path / "trace"
    assert main(["generate", "--out", str(trace_dir), "--functions", "12", "--days", "1", "--seed", "4", "--gzip"]) == 0
    files = sorted(str(p) for p in trace_dir.iterdir())
    with gzip.open(files[0], "rt") as handle:
        assert handle.readline().startswith("HashOwner,HashApp,HashFunction,Trigger,1,2,3")
    capsys.readouterr()
    assert main(["forecast", "--model", str(GOLDEN), "--trace", *files, "--horizon", "15", "--json", "-"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["functions"]) == 12
    first = payload["functions"][0]
    assert len(first["forecast"]) == 15 and len(first["p90"]) == 15 and "cluster" in first["route"]


def test_forecast_without_model_uses_the_packaged_one(capsys):
    from mesp_core.forecasting.model import default_model_path

    assert main(["forecast", *TINY_TRACE, "--horizon", "10", "--json", "-"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["functions"]) == 80 and all(len(f["forecast"]) == 10 for f in payload["functions"])
    assert payload["model"] == str(default_model_path())


def test_forecast_plot_shows_history_forecast_and_what_followed(tiny_model_dir, tmp_path, capsys):
    png = tmp_path / "forecast.png"
    argv = ["forecast", "--model", str(tiny_model_dir), *TINY_TRACE, "--at", "2000", "--horizon", "30"]
    assert main([*argv, "--plot", str(png), "--plot-functions", "3"]) == 0
    assert "plot of 3 function(s)" in capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "--plot-functions" in _one_line_error(capsys, [*argv, "--plot", str(png), "--plot-functions", "0"])


def test_forecast_with_capacity_plans_min_scale_like_the_model_api(tiny_model_dir, tiny_model, tiny_trace, tmp_path, capsys):
    report = tmp_path / "forecast.json"
    argv = ["forecast", "--model", str(tiny_model_dir), *TINY_TRACE, "--at", "2000", "--horizon", "30"]
    assert main([*argv, "--capacity", "20", "--lead", "2", "--json", str(report), "--plot", str(tmp_path / "f.png")]) == 0
    assert "min-scale:" in capsys.readouterr().out
    payload = json.loads(report.read_text())
    assert payload["policy"] == {"capacity_per_instance": 20.0, "lead_minutes": 2, "quantile": 0.9}
    plans = np.array([item["min_scale"] for item in payload["functions"]])
    expected = tiny_model.plan_min_scale(tiny_trace.counts[:, :2000], 30, capacity_per_instance=20.0, lead_minutes=2)
    np.testing.assert_array_equal(plans, expected)
    assert "capacity_per_instance" in _one_line_error(capsys, [*argv, "--capacity", "0"])


def test_one_function_is_picked_by_its_hash(tiny_model_dir, tiny_trace, capsys):
    key = tiny_trace.keys[7]
    argv = ["forecast", "--model", str(tiny_model_dir), *TINY_TRACE, "--at", "1500", "--horizon", "5"]
    assert main([*argv, "--function", key[2], "--json", "-"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [f["function"] for f in payload["functions"]] == ["/".join(key)]
    assert (payload["at"], payload["horizon"], payload["approach"]) == (1500, 5, "moe")
    assert "no function with hash 'nothing-like-it'" in _one_line_error(capsys, [*argv, "--function", "nothing-like-it"])


def test_part_of_a_hash_picks_the_functions_that_contain_it(tiny_model_dir, tiny_trace, capsys):
    """--function matches a substring of any of the three hashes, as its help says."""
    part = tiny_trace.keys[7][2][:10]
    argv = ["forecast", "--model", str(tiny_model_dir), *TINY_TRACE, "--at", "1500", "--horizon", "5"]
    assert main([*argv, "--function", part, "--json", "-"]) == 0
    picked = [f["function"] for f in json.loads(capsys.readouterr().out)["functions"]]
    expected = ["/".join(k) for k in tiny_trace.keys if any(part in h for h in k)]
    assert "/".join(tiny_trace.keys[7]) in picked and picked == expected


@pytest.mark.parametrize("at", ["59", "2881"])
def test_the_origin_must_leave_an_hour_of_context_inside_the_trace(tiny_model_dir, capsys, at):
    line = _one_line_error(capsys, ["forecast", "--model", str(tiny_model_dir), *TINY_TRACE, "--at", at])
    assert line == "mesp forecast: error: --at must be between 60 and 2880 (minutes into the trace)"


def test_the_table_shows_limit_rows_and_says_how_many_more(tiny_model_dir, capsys):
    assert main(["forecast", "--model", str(tiny_model_dir), *TINY_TRACE, "--horizon", "10", "--limit", "3",
                 "--approach", "naive"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "forecast at minute 2880, next 10 minutes (naive); showing the first 10 minutes"
    assert len(lines) == 1 + 3 + 1 and lines[-1] == "... 77 more (use --json for all)"
    assert all(" cluster " in line for line in lines[1:4])


def test_with_a_floor_stage_the_plan_and_each_chosen_floor_come_from_it(tiny_floor_model_dir, tiny_trace, capsys):
    from mesp_core import load_model

    argv = ["forecast", "--model", str(tiny_floor_model_dir), *TINY_TRACE, "--horizon", "30", "--at", "2000",
            "--capacity", "20", "--cold-start-cost", "8", "--json", "-"]
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    expected = load_model(tiny_floor_model_dir).floor_plan(tiny_trace.counts[:, :2000], 30, 20.0, 1, 8.0)
    assert payload["policy"]["floor_stage"] is True and payload["policy"]["cold_start_cost"] == 8.0
    assert [f["min_scale"] for f in payload["functions"]] == expected.plan.tolist()
    assert [f["floor"] for f in payload["functions"]] == expected.floors


def test_a_cold_start_cost_without_floor_stage_is_one_line(tiny_model_dir, capsys):
    line = _one_line_error(capsys, ["forecast", "--model", str(tiny_model_dir), *TINY_TRACE, "--capacity", "20",
                                    "--cold-start-cost", "8"])
    assert line.startswith("mesp forecast: error: --cold-start-cost needs --capacity and a model with a floor stage")
