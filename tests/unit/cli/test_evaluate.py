"""`mesp evaluate` (mesp_core.cli.evaluate) on the functions the model never saw, then `mesp simulate` on
the same model."""

import json

from mesp_core.cli import main

from .support import TINY_TRACE


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
