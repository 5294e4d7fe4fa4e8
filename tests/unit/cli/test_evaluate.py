"""`mesp evaluate` (mesp_core.cli.evaluate) on the functions the model never saw, then `mesp simulate` on
the same model."""

import json

from mesp_core.cli import main

from .support import TINY_TRACE, _one_line_error, seen_functions_only, write_trace


def test_evaluate_and_simulate_on_held_out_functions(tiny_model_dir, tmp_path, capsys):
    report = tmp_path / "evaluate.json"
    assert main(["evaluate", "--model", str(tiny_model_dir), *TINY_TRACE, "--every", "120", "--json", str(report), "--plots", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "moe" in table and "seasonal_naive" in table
    payload = json.loads(report.read_text())
    assert payload["protocol"]["n_functions"] == 16 and set(payload["overall"]) >= {"moe", "seasonal_naive", "repeat_last_hour"}
    assert (tmp_path / "forecasts.png").stat().st_size > 10_000
    # The experts' quantile coverage per cluster: in the table, the JSON and a reliability diagram.
    assert "quantile coverage of the experts (moe, not calibrated)" in table
    coverage = payload["quantile_coverage"]
    assert set(coverage["per_cluster"]) <= set(payload["per_cluster"]) and coverage["per_cluster"]
    assert (tmp_path / "reliability.png").stat().st_size > 10_000
    sim = tmp_path / "simulate.json"
    assert main(["simulate", "--model", str(tiny_model_dir), *TINY_TRACE, "--start", "2500", "--replan-every", "10", "--json", str(sim), "--plot", str(tmp_path / "tradeoff.png")]) == 0
    assert "knative" in capsys.readouterr().out.lower()
    assert (tmp_path / "tradeoff.png").stat().st_size > 10_000
    sim_payload = json.loads(sim.read_text())
    assert sim_payload["settings"]["keep_warm_minutes"] == 2 and "curve_comparisons" in sim_payload


def test_the_protocol_flags_set_the_origins_and_horizon(tiny_model_dir, capsys):
    argv = ["evaluate", "--model", str(tiny_model_dir), *TINY_TRACE, "--first-origin", "600", "--last-origin", "1300",
            "--every", "300", "--horizon", "30", "--json", "-"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out)  # --json -: the figures instead of the table
    assert payload["protocol"]["origins"] == [600, 900, 1200] and payload["protocol"]["horizon"] == 30
    assert payload["protocol"]["n_forecasts"] == 3 * payload["protocol"]["n_functions"]
    assert payload["model"] == str(tiny_model_dir)
    assert f"evaluating on {payload['protocol']['n_functions']} functions the model never saw" in captured.err


def test_a_trace_of_training_functions_only_has_nothing_to_evaluate(tiny_model, tiny_model_dir, tiny_trace, tmp_path, capsys):
    files = write_trace(seen_functions_only(tiny_model, tiny_trace), tmp_path / "seen")
    line = _one_line_error(capsys, ["evaluate", "--model", str(tiny_model_dir), "--trace", *files])
    assert line == ("mesp evaluate: error: every function of this trace was used in training: "
                    "give a trace with unseen functions")
