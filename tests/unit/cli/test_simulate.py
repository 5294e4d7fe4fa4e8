"""`mesp simulate` (mesp_core.cli.simulate): keep-warm and quantile flags, seeded samples, capacities
from duration files."""

import json

import pytest

from mesp_core import cli
from mesp_core.cli import main

from .support import TINY_TRACE, _one_line_error, seen_functions_only, write_trace


def test_simulate_keep_warm_costs_and_quantiles(tiny_model_dir, tmp_path, capsys):
    sim = tmp_path / "simulate.json"
    argv = ["simulate", "--model", str(tiny_model_dir), *TINY_TRACE, "--start", "2700", "--replan-every", "10"]
    assert main([*argv, "--keep-warm", "6", "--quantiles", "0.7", "0.95", "--cold-start-costs", "1, 4,16",
                 "--json", str(sim), "--plot", str(tmp_path / "tradeoff.png")]) == 0
    payload = json.loads(sim.read_text())
    assert payload["settings"]["keep_warm_minutes"] == 6
    experts = sorted(p["quantile"] for p in payload["policies"] if p["group"] == "MESP MoE" and p["quantile"] is not None)
    assert experts == [0.7, 0.95]
    by_group = {}
    for p in payload["policies"]:
        if p["cold_start_cost"] is not None:
            by_group.setdefault(p["group"], []).append(p["cold_start_cost"])
    assert by_group == {"MESP": [1.0, 4.0, 16.0], "cheap choice": [1.0, 4.0, 16.0]}
    assert {r["curve"] for r in payload["curve_readoffs"]} == {"MESP MoE", "MESP", "cheap choice"}
    assert (tmp_path / "tradeoff.png").stat().st_size > 10_000
    capsys.readouterr()
    assert "quantile" in _one_line_error(capsys, [*argv, "--quantiles", "1.5"])
    assert "keep_warm_minutes" in _one_line_error(capsys, [*argv, "--keep-warm", "-1"])
    for costs, message in (("1,0", "cold_start_cost must be > 0"), ("1,x", "comma-separated numbers"),
                           (",", "at least one cost"), ("2,2", "cold-start costs repeat")):
        assert message in _one_line_error(capsys, [*argv, "--cold-start-costs", costs])
    assert "--morning" in _one_line_error(capsys, [*argv, "--morning", "0"])


def test_simulate_without_the_cheap_choice_draws_only_the_mesp_curve(tiny_model_dir, capsys):
    argv = ["simulate", "--model", str(tiny_model_dir), *TINY_TRACE, "--start", "2820", "--replan-every", "10"]
    assert main([*argv, "--no-cheap-choice", "--cold-start-costs", "2,8", "--json", "-"]) == 0
    payload = json.loads(capsys.readouterr().out)
    names = [p["name"] for p in payload["policies"]]
    assert "MESP C=2" in names and "MESP C=8" in names and not any(n.startswith("cheap choice") for n in names)


def test_simulate_sample_replays_a_seeded_subset(tiny_model_dir, tmp_path, capsys, monkeypatch):
    argv = ["simulate", "--model", str(tiny_model_dir), *TINY_TRACE, "--start", "2700", "--replan-every", "10",
            "--no-cheap-choice", "--cold-start-costs", "4"]  # the sample is what is tested: a short replay
    runs = []
    for seed in ("3", "3", "4"):
        sim = tmp_path / f"simulate-{len(runs)}.json"
        assert main([*argv, "--sample", "5", "--sample-seed", seed, "--json", str(sim)]) == 0
        assert "replaying a sample of 5 of 16 functions" in capsys.readouterr().err
        payload = json.loads(sim.read_text())
        assert payload["totals"]["functions"] == 5
        runs.append(payload["totals"]["invocations"])
    assert runs[0] == runs[1] != runs[2]  # the same seed replays the same functions
    assert main([*argv, "--sample", "100", "--json", str(tmp_path / "all.json")]) == 0  # more than there are: all
    assert "replaying a sample" not in capsys.readouterr().err
    assert json.loads((tmp_path / "all.json").read_text())["totals"]["functions"] == 16
    assert "--sample" in _one_line_error(capsys, [*argv, "--sample", "0"])
    monkeypatch.setattr(cli.simulate, "LONG_REPLAY_PLANS", 5 * 180 / 10 - 1)  # 5 functions x 180 minutes / 10
    assert main([*argv, "--sample", "5", "--json", str(tmp_path / "long.json")]) == 0
    assert "is a long replay; --replan-every 5 or --sample N is quicker" in capsys.readouterr().err


def test_simulate_capacity_from_duration_files(tiny_model_dir, tiny_trace, tmp_path, capsys):
    """--durations: each function covered by the files gets Knative's capacity from its mean duration."""
    durations = tmp_path / "function_durations_percentiles.anon.d01.csv"
    header = ("HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,percentile_Average_1,"
              "percentile_Average_25,percentile_Average_50,percentile_Average_75,percentile_Average_99,percentile_Average_100")
    rows = [",".join([*key, "2000", "10", "1", "9", "1", "1", "1", "1", "1", "1", "1"]) for key in tiny_trace.keys]
    durations.write_text("\n".join([header, *rows]) + "\n")
    sim = tmp_path / "simulate.json"
    argv = ["simulate", "--model", str(tiny_model_dir), *TINY_TRACE, "--start", "2700", "--replan-every", "10",
            "--no-cheap-choice", "--cold-start-costs", "4"]
    assert main([*argv, "--durations", str(durations), "--container-concurrency", "4", "--json", str(sim)]) == 0
    assert "capacity from mean duration for" in capsys.readouterr().err
    settings = json.loads(sim.read_text())["settings"]
    assert settings["capacity_per_instance"] is None
    assert settings["capacity_per_function"]["min"] == settings["capacity_per_function"]["max"] == pytest.approx(4 * 0.7 * 30)
    assert "container_concurrency" in _one_line_error(capsys, [*argv, "--durations", str(durations), "--container-concurrency", "-1"])
    durations.write_text(header + "\nonly,three,fields\n")
    assert "d01.csv:2: expected 14 columns" in _one_line_error(capsys, [*argv, "--durations", str(durations)])


def test_all_functions_replays_the_training_functions_too(tiny_model, tiny_model_dir, tiny_trace, tmp_path, capsys):
    argv = ["simulate", "--model", str(tiny_model_dir), "--start", "2820", "--replan-every", "10", "--quantiles", "0.9",
            "--no-cheap-choice", "--cold-start-costs", "4"]
    files = write_trace(seen_functions_only(tiny_model, tiny_trace), tmp_path / "seen")
    line = _one_line_error(capsys, [*argv, "--trace", *files])
    assert line == "mesp simulate: error: no unseen functions to replay (use --all-functions to replay training functions too)"
    assert main([*argv, "--trace", *files, "--all-functions", "--json", "-"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["totals"]["functions"] == len(seen_functions_only(tiny_model, tiny_trace).keys) == 64
    assert payload["model"] == str(tiny_model_dir) and payload["settings"]["start_minute"] == 2820
