"""Offline training (mesp_core.offline.training) on a generated trace: what the artifact records, and
training on every function within the window caps. One tiny model is trained per test session
(conftest.tiny_model_dir)."""

import json

import pytest

from mesp_core.offline.split import held_out_functions


def test_manifest_records_what_the_model_is(tiny_model_dir, tiny_trace):
    manifest = json.loads((tiny_model_dir / "manifest.json").read_text())
    assert manifest["format"] == "mesp-model" and manifest["format_version"] == 1
    assert manifest["training_data"]["fingerprint"] == tiny_trace.fingerprint()
    assert len(manifest["clusters"]) == 3
    for entry in manifest["clusters"]:
        assert entry["ranking"][0]["candidate"] == entry["chosen"]
        assert entry["description"]["label"]
    for relative in manifest["files"]:
        assert (tiny_model_dir / relative).is_file()
    assert not list(tiny_model_dir.rglob("*.pt")) and not list(tiny_model_dir.rglob("*.pkl"))


def test_holdout_zero_trains_on_every_function_within_the_window_caps(tiny_trace, tmp_path):
    from mesp_core import load_model
    from mesp_core.offline.config import TrainConfig
    from mesp_core.offline.training import train

    # 64 fit functions x 2 days at stride 60 give ~2,900 fit windows and 128 days: the caps cut
    # them before routing and clustering.
    config = TrainConfig(k=3, families=("dlinear",), dense_trials=1, dense_top_n=1, dense_epochs=4, cluster_epochs=3,
                         max_dense_windows=3000, max_cluster_windows=1500, min_cluster_windows=50, stride=60,
                         test_fraction=0.0, max_fit_windows=400, max_val_windows=60, max_cluster_days=90,
                         floor_stage=False)
    train(tiny_trace, tmp_path / "all", config, progress=False)
    model = load_model(tmp_path / "all")
    data = model.manifest["training_data"]
    assert data["n_test_functions"] == 0 and data["n_fit_functions"] + data["n_val_functions"] == len(tiny_trace.keys)
    assert len(held_out_functions(model, tiny_trace)) == 0
    assert (data["n_fit_windows"], data["n_val_windows"]) == (400, 60)
    clustering = model.manifest["clustering"]
    assert clustering["n_days"] == 90 and clustering["n_fit_days"] == 2 * data["n_fit_functions"]
    with pytest.raises(ValueError, match="window caps"):
        TrainConfig(max_val_windows=0).validate()


def test_a_trace_too_small_to_fit_on_is_refused_before_any_work(tiny_trace, tmp_path):
    from mesp_core.offline.config import TrainConfig
    from mesp_core.offline.training import train

    with pytest.raises(ValueError, match=r"too few functions to train on \(2 in the trace\)"):
        train(tiny_trace.subset([0, 1]), tmp_path / "m", TrainConfig(k=2), progress=False)
    assert not (tmp_path / "m").exists()
    with pytest.raises(ValueError, match="k must be >= 1"):  # the config is validated first
        train(tiny_trace, tmp_path / "m", TrainConfig(k=0), progress=False)


def test_the_artifact_hashes_every_file_and_keeps_weights_only_for_networks(tiny_model_dir):
    from mesp_core.forecasting.artifact import sha256_file

    manifest = json.loads((tiny_model_dir / "manifest.json").read_text())
    for relative, digest in manifest["files"].items():
        assert sha256_file(tiny_model_dir / relative) == digest, relative
    assert "training_keys.txt" in manifest["files"]
    assert manifest["naive"] == {"config": manifest["naive"]["config"], "weights": None}
    for entry in manifest["clusters"]:
        weights = entry["expert"]["weights"]
        family = entry["expert"]["config"]["family"]
        if family in ("seasonal_naive", "repeat_last_hour"):
            assert weights is None
        elif family != "blend":
            assert weights == f"experts/cluster-{entry['id']}.safetensors"
    # The dense models kept are the best trained families (the floors rank among them but are not kept).
    trained = [r["family"] for r in manifest["dense"]["ranking"] if r["family"] not in ("seasonal_naive", "repeat_last_hour")]
    top_n = manifest["training"]["config"]["dense_top_n"]
    assert list(manifest["dense"]["models"]) == trained[:top_n] and manifest["dense"]["best"] == trained[0]
    for family, entry in manifest["dense"]["models"].items():
        assert entry["weights"] == f"dense/{family}.safetensors"


def test_save_expert_writes_and_hashes_weights_only_when_there_are_some(tmp_path):
    from mesp_core.forecasting.artifact import sha256_file
    from mesp_core.forecasting.experts import build_expert
    from mesp_core.offline.training import save_expert

    files = {}
    floor = build_expert({"family": "seasonal_naive"})
    assert save_expert(tmp_path, "experts/cluster-0.safetensors", floor, files) == {"config": floor.config(), "weights": None}
    assert files == {} and not (tmp_path / "experts").exists()
    net = build_expert({"family": "dlinear", "input_size": 120})
    entry = save_expert(tmp_path, "experts/cluster-1.safetensors", net, files)
    assert entry == {"config": net.config(), "weights": "experts/cluster-1.safetensors"}
    assert files == {"experts/cluster-1.safetensors": sha256_file(tmp_path / "experts" / "cluster-1.safetensors")}


def test_a_wall_clock_cap_is_off_by_default_and_names_every_fit_it_cuts_short(tiny_trace, tmp_path):
    from mesp_core.cli.train import _table
    from mesp_core.offline.config import TrainConfig
    from mesp_core.offline.training import train

    assert TrainConfig().max_fit_seconds is None
    # A cap no fit can meet: every network stops before its first step, and says so.
    config = TrainConfig(k=2, families=("dlinear",), dense_trials=1, dense_top_n=1, min_cluster_windows=50, stride=60,
                         max_dense_windows=1000, max_cluster_windows=500, max_fit_seconds=1e-9)
    report = train(tiny_trace, tmp_path / "capped", config, progress=False)
    manifest = json.loads((tmp_path / "capped" / "manifest.json").read_text())
    assert manifest["training"]["cut_short"] == report.cut_short
    assert report.cut_short[0] == "dense dlinear trial 0"
    fitted = [f"cluster {c['id']} {r['candidate']}" for c in manifest["clusters"] for r in c["ranking"] if "epochs" in r]
    assert fitted and report.cut_short[1:] == fitted
    assert "max-fit-seconds cut " + str(len(report.cut_short)) + " fit(s) short" in _table(report)
