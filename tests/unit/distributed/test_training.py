"""`mesp train --ray` (mesp_core.distributed.training) on a real Ray cluster: the dense family studies and
the per-cluster expert searches run as Ray tasks in parallel and write the model one process writes,
also when a worker is killed in the middle of the search."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from mesp_core.cli import main
from mesp_core.offline import config as config_module
from tests.unit.cli.test_train import TINY_BUDGET
from tests.unit.distributed.worker_kill import kill_one_worker_running

# A small multi-day trace and budget: two families, so both stages have parallel work.
TRAIN_ARGS = ["train", "--synthetic-functions", "40", "--synthetic-days", "2", "--seed", "2", "--k", "2",
              "--families", "dlinear", "nbeats", "--trials", "1", "--holdout", "0.25", "--threads", "1", "--quick", "--quiet"]


def comparable(model_dir) -> dict:
    """The manifest without what depends on the clock (creation time, seconds per stage)."""
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest.pop("created")
    manifest["training"].pop("seconds")
    manifest["training"].pop("stage_seconds")
    return manifest


@pytest.fixture(scope="module")
def one_process_model(tmp_path_factory):
    """The model `mesp train` writes without Ray, for the runs below to match."""
    out = tmp_path_factory.mktemp("one") / "model"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(config_module, "quick", lambda config: replace(config, **TINY_BUDGET))
        assert main([*TRAIN_ARGS, "--out", str(out)]) == 0
    return out


def test_train_with_ray_writes_the_model_one_process_writes(ray_cluster, one_process_model, tmp_path, monkeypatch):
    monkeypatch.setattr(config_module, "quick", lambda config: replace(config, **TINY_BUDGET))
    out = tmp_path / "model"
    assert main([*TRAIN_ARGS, "--out", str(out), "--ray", "auto", "--shards", "2"]) == 0
    on_ray, one = comparable(out), comparable(one_process_model)
    assert [c["chosen"] for c in on_ray["clusters"]] == [c["chosen"] for c in one["clusters"]]
    assert on_ray["dense"]["ranking"] == one["dense"]["ranking"]  # every trial's WAPE, epochs, parameters
    assert on_ray == one  # rankings, quantiles and weights: the files' hashes are in the manifest


def test_a_worker_killed_during_the_expert_search_is_retried_and_the_model_is_unchanged(
        ray_cluster, one_process_model, tmp_path):
    from mesp_core.data.synthetic import generate_trace
    from mesp_core.distributed.training import run_on_ray
    from mesp_core.offline.training import train

    # what TRAIN_ARGS give `mesp train` (its --quick patched to TINY_BUDGET)
    config = replace(config_module.TrainConfig(k=2, families=("dlinear", "nbeats"), dense_trials=1, test_fraction=0.25,
                                               seed=2, threads=1), **TINY_BUDGET)
    with kill_one_worker_running("_expert_task", after_seconds=0.5) as killed:  # well into the search
        train(generate_trace(n_functions=40, days=2, seed=2), tmp_path / "model", config, progress=False,
              run_tasks=run_on_ray)
    assert killed, "no expert-search task was caught running: training ended before a worker could be killed"
    assert comparable(tmp_path / "model") == comparable(one_process_model)


def test_train_with_ray_on_day_files_keeps_the_trace_in_shards_and_writes_the_same_model(ray_cluster, tmp_path, monkeypatch):
    """Day files read into 3 shards: the day sample, the fit windows, the demand head's examples and
    the validation series are cut in the shards, with every cap sampling (days, windows, validation
    functions read whole), and the model is the one process's."""
    from mesp_core.data.synthetic import generate_trace
    from tests.unit.cli.support import write_trace

    files = write_trace(generate_trace(n_functions=48, days=3, seed=6), tmp_path / "trace")
    budget = dict(TINY_BUDGET, max_cluster_days=60, max_fit_windows=400, max_val_functions=5)
    monkeypatch.setattr(config_module, "quick", lambda config: replace(config, **budget))
    args = ["train", "--trace", *files, "--k", "2", "--families", "dlinear", "--trials", "1", "--holdout", "0.2",
            "--threads", "1", "--quick", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--out", str(tmp_path / "ray"), "--ray", "auto", "--shards", "3"]) == 0
    one, on_ray = comparable(tmp_path / "one"), comparable(tmp_path / "ray")
    assert one["clustering"]["n_days"] == 60 < one["clustering"]["n_fit_days"]
    assert one["training_data"]["n_val_functions"] > 5
    assert on_ray == one
