"""`mesp demo` (mesp_core.cli.demo): train, evaluate and replay in one go, everything in one folder."""

import json
from dataclasses import replace

from mesp_core.cli import main
from mesp_core.offline import config as config_module
from mesp_core.replay import standard

from .test_train import TINY_BUDGET


def test_the_demo_trains_evaluates_and_replays_into_one_folder(tmp_path, capsys, monkeypatch):
    quick_budgets = []

    def tiny_quick(config):
        quick_budgets.append(config)
        return replace(config, **TINY_BUDGET, k=2, families=("dlinear",), dense_trials=1)

    monkeypatch.setattr(config_module, "quick", tiny_quick)
    # Likewise the replay plans every 30 minutes instead of every minute (720 plans take ~25 s here).
    replay = standard.run_replay
    monkeypatch.setattr(standard, "run_replay", lambda *args, **kwargs: replay(*args, **{**kwargs, "replan_every": 30}))
    out = tmp_path / "demo"
    assert main(["demo", "--synthetic-functions", "30", "--synthetic-days", "2", "--seed", "3", "--out", str(out)]) == 0
    assert len(quick_budgets) == 1 and quick_budgets[0].seed == 3  # the quick budget unless --full
    err = capsys.readouterr().err
    for step in ("train", "evaluate", "simulate"):
        assert f"$ mesp {step} --" in err
    assert f"mesp demo: everything is in {out}/" in err
    assert json.loads((out / "train.json").read_text())["k"] == 2
    assert json.loads((out / "evaluate.json").read_text())["protocol"]["n_functions"] == 6  # 20% of 30 held out
    simulated = json.loads((out / "simulate.json").read_text())
    assert simulated["totals"]["functions"] == 6 and simulated["totals"]["minutes"] == 720
    assert (out / "model" / "manifest.json").is_file()
    for plot in ("centroids.png", "forecasts.png", "tradeoff.png"):
        assert (out / plot).stat().st_size > 10_000, plot


def test_the_demo_stops_at_the_first_step_that_fails(tmp_path, capsys):
    assert main(["demo", "--trace", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err
    assert "$ mesp train --trace" in err and "mesp train: error:" in err and "absent.csv" in err
    assert "$ mesp evaluate" not in err and not (tmp_path / "demo" / "model").exists()
