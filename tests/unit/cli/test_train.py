"""`mesp train` (mesp_core.cli.train): its flags become the TrainConfig, the model is trained and
written, the table, JSON and centroid plot come out."""

import json
from dataclasses import replace

from mesp_core import load_model
from mesp_core.cli import build_parser, main
from mesp_core.offline import config as config_module
from mesp_core.offline.config import TrainConfig

# What --quick becomes here: conftest's tiny budget, so the real pipeline runs in seconds.
TINY_BUDGET = dict(dense_top_n=1, scratch_trials=1, dense_epochs=4, cluster_epochs=3, max_dense_windows=3000,
                   max_cluster_windows=1500, min_cluster_windows=50, stride=60,
                   floor_origins=2000, floor_epochs=1, floor_val_functions=5)


def test_the_defaults_of_the_flags_are_the_training_configs():
    defaults = TrainConfig()
    args = build_parser().parse_args(["train", "--out", "model"])
    assert args.holdout == defaults.test_fraction and tuple(args.families) == defaults.families
    assert args.trials == defaults.dense_trials and args.loss_weight == defaults.loss_weight
    assert args.threads == defaults.threads and args.k is None and args.quick is False
    assert (args.epochs, args.cluster_epochs) == (defaults.dense_epochs, defaults.cluster_epochs)
    assert args.max_fit_seconds is None is defaults.max_fit_seconds  # no clock unless asked for


def test_train_turns_its_flags_into_the_config_and_writes_model_report_and_plot(tmp_path, capsys, monkeypatch):
    given = []

    def tiny_quick(config):
        given.append(config)
        return replace(config, **TINY_BUDGET)

    monkeypatch.setattr(config_module, "quick", tiny_quick)
    out, report = tmp_path / "model", tmp_path / "train.json"
    argv = ["train", "--synthetic-functions", "40", "--synthetic-days", "2", "--seed", "2", "--out", str(out),
            "--k", "2", "--families", "dlinear", "--trials", "1", "--holdout", "0.25", "--loss-weight", "scale",
            "--threads", "1", "--epochs", "3", "--cluster-epochs", "2", "--max-fit-seconds", "900", "--quick", "--quiet", "--json", str(report), "--plots", str(tmp_path / "plots")]
    assert main(argv) == 0
    (config,) = given
    assert (config.k, config.families, config.dense_trials, config.seed) == (2, ("dlinear",), 1, 2)
    assert (config.test_fraction, config.loss_weight, config.threads) == (0.25, "scale", 1)
    assert (config.dense_epochs, config.cluster_epochs, config.max_fit_seconds) == (3, 2, 900.0)

    captured = capsys.readouterr()
    assert captured.out.startswith("trained in ") and "K=2 clusters; model in " + str(out) in captured.out
    assert "dense baseline (all clusters, validation WAPE):" in captured.out and "recent-error check: " in captured.out
    payload = json.loads(report.read_text())
    assert payload["k"] == 2 and len(payload["clusters"]) == 2 and payload["n_test_functions"] == 10
    assert payload["out_dir"] == str(out)
    model = load_model(out)
    recorded = model.manifest["training"]["config"]
    assert recorded["loss_weight"] == "scale" and recorded["dense_epochs"] == 4 and recorded["families"] == ["dlinear"]
    # The quantile calibration stage ran on the validation functions (too few forecasts here for a map).
    assert model.manifest["quantile_calibration"]["protocol"]["n_val_functions"] == payload["n_val_functions"]
    assert (tmp_path / "plots" / "centroids.png").stat().st_size > 10_000
    assert f"centroid plot written to {tmp_path / 'plots' / 'centroids.png'}" in captured.err


def test_the_table_shows_a_cluster_without_validation_windows_instead_of_crashing():
    from mesp_core.cli.train import _table
    from mesp_core.offline.training import TrainReport

    # A small trace can route no validation window to a cluster: it keeps the floor, unranked.
    unranked = {"id": 1, "n_days": 14, "chosen": "seasonal_naive", "description": {"label": "timer every 30 min"},
                "ranking": [{"candidate": "seasonal_naive", "family": "seasonal_naive", "val_wape": None}]}
    report = TrainReport(out_dir="m", seconds=1.0, k=1, clusters=[unranked],
                         dense_ranking=[{"family": "seasonal_naive", "val_wape": 0.359}],
                         n_train_functions=20, n_val_functions=5, n_test_functions=5)
    row = next(line for line in _table(report).splitlines() if line.startswith("1 "))
    assert row.split()[:4] == ["1", "14", "seasonal_naive", "-"] and row.endswith("timer every 30 min")
