"""`mesp cluster --ray` and `mesp train --ray` on a real Ray cluster: the same clusters as one process."""

from __future__ import annotations

import json

import numpy as np
import torch

from mesp_core.cli import main
from mesp_core.data.synthetic import generate_trace
from tests.unit.cli.support import write_trace
from tests.unit.conftest import TINY


def _without_paths(summary: dict) -> dict:
    return {key: value for key, value in summary.items() if key not in ("outputs", "ray")}


def test_cluster_with_ray_writes_what_one_process_writes(ray_cluster, tmp_path, capsys):
    files = write_trace(generate_trace(n_functions=60, days=2, seed=5), tmp_path / "trace")
    common = ["cluster", "--trace", *files, "--k-min", "2", "--k-max", "4"]
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    assert main([*common, "--out", str(tmp_path / "ray"), "--ray", "auto", "--shards", "3"]) == 0
    table = capsys.readouterr().out
    assert "Ray: 3 shards; largest worker: " in table
    one = json.loads((tmp_path / "one" / "clusters.json").read_text())
    on_ray = json.loads((tmp_path / "ray" / "clusters.json").read_text())
    assert on_ray["ray"]["shards"] == 3 and on_ray["ray"]["reader_peak_rss_mb"] > 0 and on_ray["ray"]["kshape_worker_mb"] > 0
    assert _without_paths(on_ray) == _without_paths(one)
    assert (tmp_path / "ray" / "labels.csv").read_text() == (tmp_path / "one" / "labels.csv").read_text()
    np.testing.assert_allclose(np.load(tmp_path / "ray" / "centroids.npy"), np.load(tmp_path / "one" / "centroids.npy"), atol=1e-6)
    assert (tmp_path / "ray" / "clusters.png").stat().st_size > 10_000


def test_train_on_a_sharded_trace_clusters_as_one_process(ray_cluster, tmp_path):
    from mesp_core.distributed.trace import ShardedTrace
    from mesp_core.distributed.training import ShardedTraceAccess
    from mesp_core.offline.training import train

    trace = generate_trace(n_functions=40, days=2, seed=1)
    reports = []
    for name, source in (("one", trace), ("ray", ShardedTraceAccess(ShardedTrace.from_trace(trace, 3)))):
        torch.manual_seed(0)
        reports.append(train(source, tmp_path / name, TINY, progress=False))
    one, on_ray = reports
    assert [(c["id"], c["n_days"], c["description"]) for c in on_ray.clusters] == [
        (c["id"], c["n_days"], c["description"]) for c in one.clusters
    ]
    from safetensors.numpy import load_file

    np.testing.assert_allclose(
        load_file(tmp_path / "ray" / "centroids.safetensors")["centroids"],
        load_file(tmp_path / "one" / "centroids.safetensors")["centroids"],
        atol=1e-6,
    )


def test_train_command_takes_ray(ray_cluster, tmp_path, capsys, monkeypatch):
    from dataclasses import replace

    from mesp_core.offline import config as config_module
    from tests.unit.cli.test_train import TINY_BUDGET

    monkeypatch.setattr(config_module, "quick", lambda config: replace(config, **TINY_BUDGET))
    out = tmp_path / "model"
    argv = ["train", "--synthetic-functions", "40", "--synthetic-days", "2", "--seed", "2", "--k", "2", "--families", "dlinear",
            "--trials", "1", "--holdout", "0.25", "--threads", "1", "--quick", "--quiet", "--out", str(out),
            "--ray", "auto", "--shards", "2"]
    assert main(argv) == 0
    assert "K=2 clusters; model in " + str(out) in capsys.readouterr().out
    assert (out / "manifest.json").exists()
