"""`mesp` as users run it: help texts, one-line errors with exit code 2, JSON figures."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mesp_core import cli
from mesp_core.cli import main

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "model_v1"
TINY_TRACE = ["--synthetic-functions", "80", "--synthetic-days", "2", "--seed", "1"]  # = conftest.tiny_trace
COMMANDS = ["train", "cluster", "evaluate", "forecast", "extend", "simulate", "generate", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself(command, capsys):
    from mesp_core.cli import build_parser

    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    subcommand = build_parser()._subparsers._group_actions[0].choices[command]
    assert subcommand.description and subcommand.description.split()[0] in out
    unexplained = [action.option_strings for action in subcommand._actions if not action.help]
    assert not unexplained, f"options without a help text: {unexplained}"


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mesp ")]
    assert len(err) == 1 and "Traceback" not in err[0]
    return err[0]


def test_missing_trace_file(capsys, tmp_path):
    line = _one_line_error(capsys, ["cluster", "--trace", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "c")])
    assert "nope.csv" in line


def test_malformed_trace_names_file_and_line(capsys, tmp_path):
    bad = tmp_path / "invocations_per_function_md.anon.d01.csv"
    header = "HashOwner,HashApp,HashFunction,Trigger," + ",".join(str(i) for i in range(1, 1441))
    good = "o,a,f1,http," + ",".join("1" for _ in range(1440))
    negative = "o,a,f2,http," + ",".join("-3" if i == 5 else "1" for i in range(1440))
    bad.write_text("\n".join([header, good, negative]) + "\n")
    line = _one_line_error(capsys, ["forecast", "--model", str(GOLDEN), "--trace", str(bad)])
    assert f"{bad}:3" in line and "negative" in line


def test_corrupt_model_is_one_line(capsys, tmp_path):
    (tmp_path / "manifest.json").write_text("garbage")
    line = _one_line_error(capsys, ["forecast", "--model", str(tmp_path), *TINY_TRACE])
    assert "corrupt manifest" in line


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


def test_cluster_command_writes_plot_and_labels(tmp_path, capsys):
    out = tmp_path / "clusters"
    assert main(["cluster", *TINY_TRACE, "--k", "3", "--out", str(out), "--json", str(out / "report.json")]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["k"] == 3 and len(report["clusters"]) == 3
    assert (out / "clusters.png").stat().st_size > 10_000
    assert len((out / "labels.csv").read_text().splitlines()) == 1 + 80 * 2


def test_evaluate_and_simulate_on_held_out_functions(tiny_model_dir, tmp_path, capsys):
    report = tmp_path / "evaluate.json"
    assert main(["evaluate", "--model", str(tiny_model_dir), *TINY_TRACE, "--every", "120", "--json", str(report), "--plots", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "moe" in table and "seasonal_naive" in table
    payload = json.loads(report.read_text())
    assert payload["protocol"]["n_functions"] == 16 and set(payload["overall"]) >= {"moe", "seasonal_naive", "repeat_last_hour"}
    assert (tmp_path / "forecasts.png").stat().st_size > 10_000
    sim = tmp_path / "simulate.json"
    assert main(["simulate", "--model", str(tiny_model_dir), *TINY_TRACE, "--start", "2500", "--replan-every", "10", "--json", str(sim), "--plot", str(tmp_path / "tradeoff.png")]) == 0
    assert "knative" in capsys.readouterr().out.lower()
    assert (tmp_path / "tradeoff.png").stat().st_size > 10_000
    sim_payload = json.loads(sim.read_text())
    assert sim_payload["settings"]["keep_warm_minutes"] == 2 and "curve_comparisons" in sim_payload


def test_simulate_keep_warm_and_quantiles(tiny_model_dir, tmp_path, capsys):
    sim = tmp_path / "simulate.json"
    argv = ["simulate", "--model", str(tiny_model_dir), *TINY_TRACE, "--start", "2700", "--replan-every", "10"]
    assert main([*argv, "--keep-warm", "6", "--quantiles", "0.7", "0.95", "--json", str(sim)]) == 0
    payload = json.loads(sim.read_text())
    assert payload["settings"]["keep_warm_minutes"] == 6
    curve = sorted(p["quantile"] for p in payload["policies"] if p["quantile"] is not None)
    assert curve == [0.7, 0.95]
    capsys.readouterr()
    assert "quantile" in _one_line_error(capsys, [*argv, "--quantiles", "1.5"])
    assert "keep_warm_minutes" in _one_line_error(capsys, [*argv, "--keep-warm", "-1"])


def test_simulate_sample_replays_a_seeded_subset(tiny_model_dir, tmp_path, capsys, monkeypatch):
    argv = ["simulate", "--model", str(tiny_model_dir), *TINY_TRACE, "--start", "2700", "--replan-every", "10"]
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


def test_console_script_runs_out_of_process():
    result = subprocess.run([sys.executable, "-m", "mesp_core.cli", "forecast", "--model", "/nonexistent/model", *TINY_TRACE],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("mesp forecast: error:")


def test_simulate_capacity_from_duration_files(tiny_model_dir, tiny_trace, tmp_path, capsys):
    """--durations: each function covered by the files gets Knative's capacity from its mean duration."""
    durations = tmp_path / "function_durations_percentiles.anon.d01.csv"
    header = ("HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,percentile_Average_1,"
              "percentile_Average_25,percentile_Average_50,percentile_Average_75,percentile_Average_99,percentile_Average_100")
    rows = [",".join([*key, "2000", "10", "1", "9", "1", "1", "1", "1", "1", "1", "1"]) for key in tiny_trace.keys]
    durations.write_text("\n".join([header, *rows]) + "\n")
    sim = tmp_path / "simulate.json"
    argv = ["simulate", "--model", str(tiny_model_dir), *TINY_TRACE, "--start", "2700", "--replan-every", "10"]
    assert main([*argv, "--durations", str(durations), "--container-concurrency", "4", "--json", str(sim)]) == 0
    assert "capacity from mean duration for" in capsys.readouterr().err
    settings = json.loads(sim.read_text())["settings"]
    assert settings["capacity_per_instance"] is None
    assert settings["capacity_per_function"]["min"] == settings["capacity_per_function"]["max"] == pytest.approx(4 * 0.7 * 30)
    assert "container_concurrency" in _one_line_error(capsys, [*argv, "--durations", str(durations), "--container-concurrency", "-1"])
    durations.write_text(header + "\nonly,three,fields\n")
    assert "d01.csv:2: expected 14 columns" in _one_line_error(capsys, [*argv, "--durations", str(durations)])
